//! Bar charts as inline SVG for HTML reports (`suite inspect`), drawn with plotters in the same style and font as
//! the PNG plots of [`super::plot`].

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::plot::{draw_err, ensure_font, fmt4, text_width, truncate, FAMILY, PALETTE};

/// Draws a [`crate::quality::report::Chart`] as an SVG document for an HTML page: grouped vertical bars (one colour
/// per series, a legend when there are several), a y axis with 5 gridlines, and the labels under the bars (read
/// upwards when there are many). Drawn in pixel coordinates, like [`plot_confusion`].
pub fn bar_chart_svg(chart: &crate::quality::report::Chart) -> Result<String> {
    ensure_font()?;
    let n = chart.labels.len().max(1);
    let k = chart.series.len().max(1);
    let names: Vec<String> = chart.labels.iter().map(|l| truncate(l, 22)).collect();
    let rotate = n > 8 || names.iter().any(|s| s.chars().count() > 10);
    let label_font = 12.0;
    let label_h = if rotate { names.iter().map(|s| text_width(s, label_font)).max().unwrap_or(0) + 12 } else { 22 };
    let max = chart.series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let ymax = nice_ceiling(max);
    let (left, right, top) = (64, 16, if k > 1 { 34 } else { 12 });
    let group = ((760 - left - right) / n as i32).clamp(14, 90);
    let plot_w = group * n as i32;
    let plot_h = 240;
    let width = (left + plot_w + right).max(360);
    let height = top + plot_h + label_h + 26;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let text = |s: &str, size: f64, pos: Pos, tf: FontTransform, at: (i32, i32)| {
            let style = TextStyle::from((FAMILY, size).into_font()).color(&RGBColor(40, 40, 40)).pos(pos).transform(tf);
            root.draw_text(s, &style, at).map_err(draw_err)
        };
        let y_of = |v: f64| top + plot_h - ((v / ymax) * plot_h as f64).round() as i32;
        for i in 0..=5 {
            let v = ymax * i as f64 / 5.0;
            let y = y_of(v);
            let grid = RGBColor(225, 225, 225);
            root.draw(&PathElement::new(vec![(left, y), (left + plot_w, y)], grid.stroke_width(1)))
                .map_err(draw_err)?;
            text(&fmt4(v), 11.0, Pos::new(HPos::Right, VPos::Center), FontTransform::None, (left - 6, y))?;
        }
        let bar_w = ((group as f64 * 0.8) / k as f64).max(2.0);
        for (j, s) in chart.series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            for (i, &v) in s.values.iter().enumerate().take(n) {
                if !v.is_finite() || v <= 0.0 {
                    continue;
                }
                let x0 = left + i as i32 * group + (group as f64 * 0.1 + j as f64 * bar_w).round() as i32;
                let x1 = x0 + (bar_w.round() as i32 - 1).max(1);
                root.draw(&Rectangle::new([(x0, y_of(v)), (x1, top + plot_h)], color.filled())).map_err(draw_err)?;
            }
            if k > 1 {
                let lx = left + j as i32 * 110;
                root.draw(&Rectangle::new([(lx, 10), (lx + 14, 22)], color.filled())).map_err(draw_err)?;
                text(
                    &truncate(&s.name, 14),
                    12.0,
                    Pos::new(HPos::Left, VPos::Center),
                    FontTransform::None,
                    (lx + 18, 16),
                )?;
            }
        }
        let axis = RGBColor(120, 120, 120);
        root.draw(&PathElement::new(
            vec![(left, top), (left, top + plot_h), (left + plot_w, top + plot_h)],
            axis.stroke_width(1),
        ))
        .map_err(draw_err)?;
        for (i, name) in names.iter().enumerate() {
            let mid = left + i as i32 * group + group / 2;
            if rotate {
                let at = (mid, top + plot_h + 6);
                text(name, label_font, Pos::new(HPos::Right, VPos::Center), FontTransform::Rotate270, at)?;
            } else {
                text(
                    name,
                    label_font,
                    Pos::new(HPos::Center, VPos::Top),
                    FontTransform::None,
                    (mid, top + plot_h + 5),
                )?;
            }
        }
        let axis_title = format!("{} · {}", chart.x_label, chart.y_label);
        text(
            &axis_title,
            12.0,
            Pos::new(HPos::Center, VPos::Center),
            FontTransform::None,
            (left + plot_w / 2, height - 10),
        )?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (1 for nothing to draw), so the y axis ends on a round number.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&c| c >= v * (1.0 - 1e-12)).unwrap_or(10.0 * p)
}
