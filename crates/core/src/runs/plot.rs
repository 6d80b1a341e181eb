//! PNG plots drawn with plotters: training curves and confusion matrices. Text uses the embedded DejaVu Sans, so
//! plots render the same on machines without system fonts.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::{atomic_write, MetricRecord};
use crate::metrics::ConfusionMatrix;

/// DejaVu Sans 2.37, licence in `assets/fonts/LICENSE-DejaVu.txt`.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub(super) const FAMILY: &str = "sans-serif";

/// Size in pixels of one panel of [`plot_curves`].
pub const CURVE_PANEL_SIZE: (u32, u32) = (640, 400);

/// Tableau 10, as matplotlib's default cycle: distinct and readable on white.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Registers the embedded font under plotters' default family once per process.
pub(super) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ensure!(ok, "the embedded DejaVu Sans font could not be loaded");
    Ok(())
}

/// Width in pixels of `text` in the embedded font at `size`.
pub(super) fn text_width(text: &str, size: f64) -> i32 {
    // The estimate errs wide (0.65 em per character) if the font cannot lay the text out.
    (FAMILY, size).into_font().box_size(text).map_or((text.chars().count() as f64 * size * 0.65) as i32, |b| b.0 as i32)
}

pub(super) fn draw_err(e: impl Display) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// Renders `draw` on a white `w × h` canvas and writes it to `out` as PNG, atomically.
fn render_png(
    out: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).context("plot buffer has the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).context("encoding PNG")?;
    atomic_write(out, &png).with_context(|| format!("writing {}", out.display()))
}

/// One line to draw in a panel.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    /// Draw a dot at each point (for sparse evaluation series).
    markers: bool,
    /// Opacity of the line, to keep noisy raw curves in the background.
    alpha: f64,
}

struct Panel {
    title: String,
    y_desc: String,
    series: Vec<Series>,
    log_like: bool,
}

/// TensorBoard-style debiased exponential moving average, with a span of about 1/15 of the points so that short
/// runs stay nearly raw and long runs get smooth.
fn smooth(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let span = (points.len() as f64 / 15.0).max(1.0);
    let w = 1.0 - 2.0 / (span + 1.0);
    let (mut acc, mut norm) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            acc = w * acc + (1.0 - w) * y;
            norm = w * norm + (1.0 - w);
            (x, acc / norm)
        })
        .collect()
}

/// Splits a series at non-finite values (a diverged loss logged as NaN), so lines skip them instead of failing.
fn finite_runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in points {
        if y.is_finite() {
            runs.last_mut().unwrap().push((x, y));
        } else if !runs.last().unwrap().is_empty() {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

fn curve_panels(records: &[MetricRecord]) -> Vec<Panel> {
    let mut loss = Vec::new();
    let mut lr = Vec::new();
    let mut eval: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in records {
        match r {
            MetricRecord::Train(t) => {
                loss.push((t.step as f64, t.loss));
                lr.push((t.step as f64, t.lr));
            }
            MetricRecord::Eval(e) => {
                for (k, &v) in &e.metrics {
                    eval.entry(k.as_str()).or_default().push((e.step as f64, v));
                }
            }
        }
    }
    // A log written across a resume without truncation can repeat or reorder steps; lines must run left to right.
    let by_step = |v: &mut Vec<(f64, f64)>| v.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_step(&mut loss);
    by_step(&mut lr);
    eval.values_mut().for_each(by_step);
    let mut panels = Vec::new();
    let eval_loss = eval.remove("loss");
    if !loss.is_empty() || eval_loss.is_some() {
        let mut series = Vec::new();
        if !loss.is_empty() {
            let smoothed = smooth(&finite_runs(&loss).concat());
            series.push(Series {
                label: "train (raw)".into(),
                points: loss,
                color: PALETTE[0],
                width: 1,
                markers: false,
                alpha: 0.35,
            });
            series.push(Series {
                label: "train (smoothed)".into(),
                points: smoothed,
                color: PALETTE[0],
                width: 2,
                markers: false,
                alpha: 1.0,
            });
        }
        if let Some(points) = eval_loss {
            series.push(Series {
                label: "eval".into(),
                points,
                color: PALETTE[1],
                width: 2,
                markers: true,
                alpha: 1.0,
            });
        }
        panels.push(Panel { title: "Loss".into(), y_desc: "loss".into(), series, log_like: false });
    }
    if !lr.is_empty() {
        let series = vec![Series {
            label: "learning rate".into(),
            points: lr,
            color: PALETTE[4],
            width: 2,
            markers: false,
            alpha: 1.0,
        }];
        panels.push(Panel { title: "Learning rate".into(), y_desc: "lr".into(), series, log_like: true });
    }
    for (i, (name, points)) in eval.into_iter().enumerate() {
        let finite: Vec<f64> = points.iter().map(|p| p.1).filter(|v| v.is_finite()).collect();
        let label =
            match (finite.last(), finite.iter().copied().reduce(f64::min), finite.iter().copied().reduce(f64::max)) {
                (Some(last), Some(lo), Some(hi)) => {
                    format!("eval {name}: last {}, min {}, max {}", fmt4(*last), fmt4(lo), fmt4(hi))
                }
                _ => format!("eval {name}"),
            };
        let color = PALETTE[(2 + i) % PALETTE.len()];
        let series = vec![Series { label, points, color, width: 2, markers: true, alpha: 1.0 }];
        panels.push(Panel { title: format!("Eval {name}"), y_desc: name.to_string(), series, log_like: false });
    }
    panels
}

/// A number in at most 4 significant digits, switching to scientific notation for very small or large values.
pub(super) fn fmt4(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.*}", (3 - a.log10().floor() as i32).max(0) as usize);
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// Range of the finite values with 5% headroom, widened when flat so the axis stays valid.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    (lo - pad, hi + pad)
}

/// The grid of [`plot_curves`]: (columns, rows) for `n` panels.
fn grid(n: usize) -> (usize, usize) {
    let cols = if n > 1 { 2 } else { 1 };
    (cols, n.max(1).div_ceil(cols))
}

/// Draws the training curves of `records` to `out_png`: a panel for the training loss (raw and smoothed, with the
/// eval loss when there is one), one for the learning rate, and one per other eval metric, all against the
/// optimizer step. Panels are [`CURVE_PANEL_SIZE`] each, two per row (one when there is a single panel), so the
/// image is `(cols · 640) × (rows · 400)` pixels. With no records, a single panel says so.
pub fn plot_curves(records: &[MetricRecord], out_png: &Path) -> Result<()> {
    let panels = curve_panels(records);
    let (cols, rows) = grid(panels.len());
    let size = (CURVE_PANEL_SIZE.0 * cols as u32, CURVE_PANEL_SIZE.1 * rows as u32);
    let (x0, x1) = match (records.iter().map(MetricRecord::step).min(), records.iter().map(MetricRecord::step).max()) {
        // 1.5% headroom keeps markers at the first and last step inside the plot.
        (Some(a), Some(b)) if b > a => (a as f64 - (b - a) as f64 * 0.015, b as f64 + (b - a) as f64 * 0.015),
        (Some(a), _) => (a as f64 - 1.0, a as f64 + 1.0),
        _ => (0.0, 1.0),
    };
    render_png(out_png, size, |root| {
        let areas = root.split_evenly((rows, cols));
        if panels.is_empty() {
            let style =
                TextStyle::from((FAMILY, 22).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
            let (w, h) = areas[0].dim_in_pixel();
            areas[0].draw_text("No metrics recorded yet", &style, (w as i32 / 2, h as i32 / 2)).map_err(draw_err)?;
            return Ok(());
        }
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(panel, area, (x0, x1))?;
        }
        Ok(())
    })
}

fn draw_panel(panel: &Panel, area: &DrawingArea<BitMapBackend, Shift>, (x0, x1): (f64, f64)) -> Result<()> {
    let (y0, y1) = padded_range(panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err)?;
    let y_fmt = |v: &f64| if panel.log_like && *v != 0.0 { format!("{v:.1e}") } else { fmt4(*v) };
    let x_fmt = |v: &f64| format!("{}", v.round() as i64);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(&panel.y_desc)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(draw_err)?;
    for s in &panel.series {
        let style = ShapeStyle { color: s.color.mix(s.alpha), filled: false, stroke_width: s.width };
        let mut first = true;
        for run in finite_runs(&s.points) {
            let anno = chart.draw_series(LineSeries::new(run.clone(), style)).map_err(draw_err)?;
            if first {
                let legend_style = style;
                anno.label(&s.label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], legend_style));
                first = false;
            }
            if s.markers {
                chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, s.color.filled()))).map_err(draw_err)?;
            }
        }
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(legend_corner(&panel.series, (x0, x1), (y0, y1)))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// The plot corner whose legend-sized box (half the width, a quarter of the height) covers the fewest points, so the
/// legend hides as little of the curves as possible.
fn legend_corner(series: &[Series], (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> SeriesLabelPosition {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite())
        .map(|p| ((p.0 - x0) / (x1 - x0), (p.1 - y0) / (y1 - y0)))
        .collect();
    let corners = [
        (SeriesLabelPosition::UpperRight, 0.5, 0.75),
        (SeriesLabelPosition::LowerRight, 0.5, 0.0),
        (SeriesLabelPosition::UpperLeft, 0.0, 0.75),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let covered = |&(_, cx, cy): &(SeriesLabelPosition, f64, f64)| {
        pts.iter().filter(|p| p.0 >= cx && p.0 <= cx + 0.5 && p.1 >= cy && p.1 <= cy + 0.25).count()
    };
    // `min_by_key` keeps the first of equal counts, so upper right wins ties.
    let best = corners.iter().min_by_key(|c| covered(c)).unwrap_or(&corners[0]);
    best.0.clone()
}

/// Matplotlib's "Blues" ramp: white for 0, dark blue for 1.
pub(super) fn blues(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [247.0, 251.0, 255.0]),
        (0.25, [198.0, 219.0, 239.0]),
        (0.5, [107.0, 174.0, 214.0]),
        (0.75, [33.0, 113.0, 181.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    let i = STOPS.iter().rposition(|s| s.0 <= t).unwrap_or(0).min(STOPS.len() - 2);
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let f = (t - a.0) / (b.0 - a.0);
    let c = |k: usize| (a.1[k] + (b.1[k] - a.1[k]) * f).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// A count in at most 4 characters (`999`, `1.2k`, `12k`, `3.4M`).
fn compact(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=9_999 => format!("{:.1}k", n as f64 / 1e3),
        10_000..=999_999 => format!("{}k", n / 1_000),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// A class name cut to `max` characters with an ellipsis.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// Draws `matrix` as a heat map to `out_png`: rows are true classes, columns predicted classes, the colour is the
/// row-normalised fraction (so rare classes are as readable as common ones) and each cell prints its count when
/// the cells are large enough. Class names longer than 18 characters are truncated; with many classes only every
/// n-th name is printed so that names never overlap. Fails unless there is one label per class.
pub fn plot_confusion(matrix: &ConfusionMatrix, labels: &[String], out_png: &Path) -> Result<()> {
    let n = matrix.n_classes;
    if labels.len() != n {
        bail!("confusion plot: {} class labels for a {n}-class matrix", labels.len());
    }
    ensure!(n > 0, "confusion plot: the matrix has no classes");
    ensure!(n <= 4096, "confusion plot: {n} classes are too many to draw");
    // Cells shrink with the class count so that the matrix stays about 720 px; tiny cells drop their labels.
    let cell = (720 / n).clamp(2, 110) as i32;
    let name_font = (cell as f64 * 0.8).clamp(9.0, 14.0);
    let stride = ((name_font + 3.0) / cell as f64).ceil().max(1.0) as usize;
    let names: Vec<String> = labels.iter().map(|l| truncate(l, 18)).collect();
    ensure_font()?;
    let name_px = names.iter().step_by(stride).map(|s| text_width(s, name_font)).max().unwrap_or(0) + 10;
    let side = cell * n as i32;
    let (title_h, axis_title, bar_w) = (56, 30, 96);
    let left = axis_title + name_px;
    let top = title_h;
    let width = (left + side + bar_w + 20).max(520);
    let height = top + side + name_px + axis_title + 12;
    let total = matrix.total();
    let rows: Vec<u64> = matrix.support();
    let count_font = (cell as f64 * 0.3).clamp(10.0, 16.0);
    let show_counts = cell >= 22;

    render_png(out_png, (width as u32, height as u32), |root| {
        let text = |s: &str, size: f64, color: &RGBColor, pos: Pos, tf: FontTransform, at: (i32, i32)| {
            let style = TextStyle::from((FAMILY, size).into_font()).color(color).pos(pos).transform(tf);
            root.draw_text(s, &style, at).map_err(draw_err)
        };
        let title = format!("Confusion matrix ({total} samples, accuracy {:.2}%)", matrix.accuracy() * 100.0);
        text(&title, 19.0, &BLACK, Pos::new(HPos::Center, VPos::Center), FontTransform::None, (width / 2, 20))?;
        text(
            "rows: true class, columns: predicted class, colour: fraction of the row",
            12.0,
            &RGBColor(90, 90, 90),
            Pos::new(HPos::Center, VPos::Center),
            FontTransform::None,
            (width / 2, 40),
        )?;
        for (t, &row_total) in rows.iter().enumerate() {
            for (p, &count) in matrix.row(t).iter().enumerate() {
                let frac = if row_total > 0 { count as f64 / row_total as f64 } else { 0.0 };
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                let fill = blues(frac);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled())).map_err(draw_err)?;
                if show_counts {
                    let color = if frac > 0.5 { WHITE } else { RGBColor(30, 30, 30) };
                    let at = (x + cell / 2, y + cell / 2);
                    text(
                        &compact(count),
                        count_font,
                        &color,
                        Pos::new(HPos::Center, VPos::Center),
                        FontTransform::None,
                        at,
                    )?;
                }
            }
        }
        let grey = RGBColor(120, 120, 120);
        root.draw(&Rectangle::new([(left, top), (left + side, top + side)], grey.stroke_width(1))).map_err(draw_err)?;
        for (i, name) in names.iter().enumerate().step_by(stride) {
            let mid = i as i32 * cell + cell / 2;
            let dark = RGBColor(30, 30, 30);
            text(
                name,
                name_font,
                &dark,
                Pos::new(HPos::Right, VPos::Center),
                FontTransform::None,
                (left - 6, top + mid),
            )?;
            // Column names read upwards, ending just under the matrix.
            let at = (left + mid, top + side + 6);
            text(name, name_font, &dark, Pos::new(HPos::Right, VPos::Center), FontTransform::Rotate270, at)?;
        }
        let mid_y = top + side / 2;
        text("true class", 15.0, &BLACK, Pos::new(HPos::Center, VPos::Center), FontTransform::Rotate270, (14, mid_y))?;
        let at = (left + side / 2, top + side + name_px + axis_title / 2 + 2);
        text("predicted class", 15.0, &BLACK, Pos::new(HPos::Center, VPos::Center), FontTransform::None, at)?;
        // Colour bar: fraction of the true class, 0 at the bottom.
        let (bx, bw) = (left + side + 24, 16);
        let bh = side.clamp(120, 400);
        let by = top + (side - bh) / 2;
        for i in 0..bh {
            let c = blues(1.0 - i as f64 / (bh - 1) as f64);
            root.draw(&Rectangle::new([(bx, by + i), (bx + bw, by + i + 1)], c.filled())).map_err(draw_err)?;
        }
        root.draw(&Rectangle::new([(bx, by), (bx + bw, by + bh)], grey.stroke_width(1))).map_err(draw_err)?;
        for (v, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
            let y = by + ((1.0 - v) * (bh - 1) as f64).round() as i32;
            root.draw(&PathElement::new(vec![(bx + bw, y), (bx + bw + 4, y)], grey)).map_err(draw_err)?;
            text(label, 12.0, &BLACK, Pos::new(HPos::Left, VPos::Center), FontTransform::None, (bx + bw + 7, y))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_debiased_and_tracks_a_constant() {
        let flat: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, 2.5)).collect();
        assert!(
            smooth(&flat).iter().all(|p| (p.1 - 2.5).abs() < 1e-12),
            "a debiased EMA of a constant is the constant"
        );
        let noisy: Vec<(f64, f64)> = (0..300).map(|i| (i as f64, if i % 2 == 0 { 1.0 } else { 0.0 })).collect();
        let s = smooth(&noisy);
        assert!(s[250..].iter().all(|p| (p.1 - 0.5).abs() < 0.05), "smoothing must damp alternation");
    }

    #[test]
    fn helpers_format_compactly() {
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1234), "1.2k");
        assert_eq!(compact(56_789), "56k");
        assert_eq!(compact(3_400_000), "3.4M");
        assert_eq!(truncate("golden retriever puppy", 10), "golden re…");
        assert_eq!(fmt4(0.91234), "0.9123");
        assert_eq!(fmt4(12.5), "12.5");
        assert_eq!(fmt4(0.0001), "1.00e-4");
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(3), (2, 2));
    }
}
