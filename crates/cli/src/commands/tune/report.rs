//! The study's leaderboard: a terminal table, OUT/leaderboard.csv, a self-contained OUT/leaderboard.html (SVG
//! scatter plots of the objective against each parameter and a parallel-coordinates plot), and OUT/best.toml.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::journal::{Settings, Status};
use super::{direction, Trial};
use suite_core::train::MetricMode;

/// The trials with an end, best first (complete before pruned at equal value; failed last).
fn ranked<'a>(s: &Settings, trials: &'a BTreeMap<u64, Trial>) -> Vec<&'a Trial> {
    let mode = direction(s);
    let mut v: Vec<&Trial> = trials.values().filter(|t| t.end.is_some()).collect();
    let key = |t: &Trial| {
        let e = t.end.as_ref().expect("ended");
        match (e.status, e.objective) {
            (Status::Failed, _) | (_, None) => f64::INFINITY,
            (_, Some(o)) => {
                if mode == MetricMode::Max {
                    -o
                } else {
                    o
                }
            }
        }
    };
    v.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.number.cmp(&b.number)));
    v
}

/// The best trial: the best complete one, else the best of any.
pub(crate) fn best<'a>(s: &Settings, trials: &'a BTreeMap<u64, Trial>) -> Option<&'a Trial> {
    let r = ranked(s, trials);
    r.iter()
        .find(|t| t.end.as_ref().is_some_and(|e| e.status == Status::Complete && e.objective.is_some()))
        .or(r.first())
        .copied()
}

fn fmt_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f:.4e}"),
        other => other.to_string(),
    }
}

/// Seconds saved by early termination: for each pruned trial, the evaluations it did not do, at the seconds per
/// evaluation of the complete trials, up to the evaluations a complete trial does (their median).
fn time_saved(trials: &[&Trial]) -> Option<f64> {
    let complete: Vec<_> =
        trials.iter().filter_map(|t| t.end.as_ref()).filter(|e| e.status == Status::Complete).collect();
    let evals: usize = complete.iter().map(|e| e.evals).sum();
    if evals == 0 {
        return None;
    }
    let per_eval = complete.iter().map(|e| e.seconds).sum::<f64>() / evals as f64;
    let mut full: Vec<usize> = complete.iter().map(|e| e.evals).collect();
    full.sort();
    let full = full[full.len() / 2];
    Some(
        trials
            .iter()
            .filter_map(|t| t.end.as_ref())
            .filter(|e| e.status == Status::Pruned)
            .map(|e| per_eval * full.saturating_sub(e.evals) as f64)
            .sum::<f64>()
            + 0.0, // an empty sum is -0.0, which would print as "-0"
    )
}

fn pruned_rung(t: &Trial) -> Option<usize> {
    t.rungs.iter().find(|r| !r.3).map(|r| r.0)
}

pub(crate) fn write(out: &Path, s: &Settings, trials: &BTreeMap<u64, Trial>) -> Result<()> {
    let names: Vec<String> = trials
        .values()
        .flat_map(|t| t.params.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = ranked(s, trials);
    // CSV.
    let mut csv = format!("rank,trial,status,{},evaluations,stopped_at_rung,seconds", s.objective);
    for n in &names {
        csv.push(',');
        csv.push_str(n);
    }
    csv.push('\n');
    for (i, t) in rows.iter().enumerate() {
        let e = t.end.as_ref().expect("ended");
        let _ = write!(
            csv,
            "{},{},{},{},{},{},{:.1}",
            i + 1,
            t.number,
            e.status.as_str(),
            e.objective.map_or(String::new(), |v| v.to_string()),
            e.evals,
            pruned_rung(t).map_or(String::new(), |r| r.to_string()),
            e.seconds
        );
        for n in &names {
            csv.push(',');
            let v = t.params.get(n).map(|v| v.to_string()).unwrap_or_default();
            csv.push_str(&v.replace(',', ";").replace('"', ""));
        }
        csv.push('\n');
    }
    std::fs::write(out.join("leaderboard.csv"), &csv)?;

    // Terminal table.
    let mut table = format!(
        "{:>4}  {:>5}  {:<8}  {:>10}  {:>5}  {:>7}",
        "rank", "trial", "status", s.objective, "evals", "seconds"
    );
    for n in &names {
        let _ = write!(table, "  {}", n.rsplit('.').next().unwrap_or(n));
    }
    table.push('\n');
    for (i, t) in rows.iter().enumerate() {
        let e = t.end.as_ref().expect("ended");
        let status = match pruned_rung(t) {
            Some(r) if e.status == Status::Pruned => format!("pruned@{r}"),
            _ => e.status.as_str().to_string(),
        };
        let _ = write!(
            table,
            "{:>4}  {:>5}  {:<8}  {:>10}  {:>5}  {:>7.1}",
            i + 1,
            format!("{:04}", t.number),
            status,
            e.objective.map_or("-".into(), |v| format!("{v:.4}")),
            e.evals,
            e.seconds
        );
        for n in &names {
            let _ = write!(table, "  {}", t.params.get(n).map(fmt_value).unwrap_or_default());
        }
        table.push('\n');
    }
    let saved = time_saved(&rows);
    print!("{table}");
    let pruned = rows.iter().filter(|t| t.end.as_ref().is_some_and(|e| e.status == Status::Pruned)).count();
    if let Some(sv) = saved {
        println!(
            "early termination: {pruned} of {} trials stopped at a rung, about {sv:.0} trial-seconds saved",
            rows.len()
        );
    }

    // best.toml.
    if let Some(b) = best(s, trials) {
        let name = format!("{:04}", b.number);
        let src = out.join("trials").join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        let body: String = text.lines().filter(|l| !l.starts_with("# ")).map(|l| format!("{l}\n")).collect();
        let e = b.end.as_ref().expect("ended");
        let header = format!(
            "# suite tune: the best trial ({name}, {} {} = {}) of the study {}.\n# Reproduce: suite finetune {} --config {}\n",
            e.status.as_str(),
            s.objective,
            e.objective.map_or("-".into(), |v| v.to_string()),
            out.display(),
            s.domain,
            out.join("best.toml").display()
        );
        std::fs::write(out.join("best.toml"), header + &body)?;
        println!(
            "best: trial {name} ({} = {}), recipe {}",
            s.objective,
            e.objective.map_or("-".into(), |v| format!("{v:.4}")),
            out.join("best.toml").display()
        );
    }
    std::fs::write(out.join("leaderboard.html"), html(s, &rows, &names, saved, &table))?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A parameter's position in [0, 1] across the trials (log scale when every value is positive and they span more
/// than a decade), and tick labels.
struct Axis {
    name: String,
    pos: Vec<Option<f64>>,
    ticks: Vec<(f64, String)>,
}

fn axis(name: &str, values: &[Option<&toml::Value>]) -> Axis {
    let nums: Vec<Option<f64>> =
        values.iter().map(|v| v.and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))).collect();
    if values.iter().all(|v| v.is_none_or(|v| v.is_float() || v.is_integer())) && nums.iter().any(Option::is_some) {
        let fin: Vec<f64> = nums.iter().flatten().copied().collect();
        let (lo, hi) = fin.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let log = lo > 0.0 && hi / lo > 10.0;
        let f = |x: f64| if log { x.ln() } else { x };
        let (a, b) = (f(lo), f(hi));
        let span = if b > a { b - a } else { 1.0 };
        let pos = nums.iter().map(|x| x.map(|x| if b > a { (f(x) - a) / span } else { 0.5 })).collect();
        let ticks = vec![(if b > a { 0.0 } else { 0.5 }, format!("{lo:.3e}")), (1.0, format!("{hi:.3e}"))];
        Axis { name: name.into(), pos, ticks: if b > a { ticks } else { ticks[..1].to_vec() } }
    } else {
        let mut cats: Vec<String> = values.iter().flatten().map(|v| fmt_value(v)).collect();
        cats.sort();
        cats.dedup();
        let n = cats.len().max(1);
        let at = |i: usize| if n == 1 { 0.5 } else { i as f64 / (n - 1) as f64 };
        let pos =
            values.iter().map(|v| v.map(|v| at(cats.iter().position(|c| *c == fmt_value(v)).unwrap_or(0)))).collect();
        let ticks = cats.iter().enumerate().map(|(i, c)| (at(i), c.clone())).collect();
        Axis { name: name.into(), pos, ticks }
    }
}

fn color(t: &Trial) -> &'static str {
    match t.end.as_ref().map(|e| e.status) {
        Some(Status::Complete) => "#1f77b4",
        Some(Status::Pruned) => "#ff7f0e",
        Some(Status::Stopped) => "#7f7f7f",
        _ => "#d62728",
    }
}

fn html(s: &Settings, rows: &[&Trial], names: &[String], saved: Option<f64>, table: &str) -> String {
    let objs: Vec<Option<&toml::Value>> = Vec::new();
    let _ = objs;
    let ovals: Vec<Option<f64>> = rows.iter().map(|t| t.end.as_ref().and_then(|e| e.objective)).collect();
    let fin: Vec<f64> = ovals.iter().flatten().copied().filter(|v| v.is_finite()).collect();
    let (olo, ohi) = fin.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let ospan = if ohi > olo { ohi - olo } else { 1.0 };
    let oy = |v: f64| if ohi > olo { (v - olo) / ospan } else { 0.5 };
    let mut body = String::new();
    let pruned = rows.iter().filter(|t| t.end.as_ref().is_some_and(|e| e.status == Status::Pruned)).count();
    let _ = write!(
        body,
        "<h1>suite tune: {} trials</h1><p>objective <b>{}</b> ({}), sampler {}, seed {}, ASHA r = {}, η = {}. \
         <span style=\"color:#1f77b4\">● complete</span> <span style=\"color:#ff7f0e\">▲ pruned (label: rung)</span> \
         <span style=\"color:#d62728\">✕ failed</span></p>",
        rows.len(),
        esc(&s.objective),
        s.direction,
        esc(&s.sampler),
        s.seed,
        s.min_resource,
        s.reduction_factor
    );
    match saved {
        Some(sv) => {
            let _ = write!(
                body,
                "<p>Early termination stopped {pruned} of {} trials at a rung: about <b>{sv:.0} trial-seconds</b> not \
                 spent, against running every trial to the end (estimated from the complete trials' seconds per \
                 evaluation).</p>",
                rows.len()
            );
        }
        None => body.push_str("<p>No complete trial yet: time saved not estimated.</p>"),
    }
    // Scatter plots.
    let (w, h, m) = (300.0, 220.0, 40.0);
    body.push_str("<h2>Objective against each parameter</h2><div>");
    for n in names {
        let vals: Vec<Option<&toml::Value>> = rows.iter().map(|t| t.params.get(n)).collect();
        let ax = axis(n, &vals);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" style=\"margin:6px;border:1px solid #ddd\">\
             <text x=\"{}\" y=\"14\" text-anchor=\"middle\" font-size=\"12\">{}</text>\
             <line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><line x1=\"{m}\" y1=\"20\" x2=\"{m}\" y2=\"{}\" stroke=\"#999\"/>",
            w / 2.0,
            esc(&ax.name),
            h - m,
            w - 10.0,
            h - m,
            h - m
        );
        let px = |p: f64| m + p * (w - m - 20.0);
        let py = |p: f64| h - m - p * (h - m - 30.0);
        for (p, label) in &ax.ticks {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                px(*p),
                h - m + 12.0,
                esc(label)
            );
        }
        if ohi.is_finite() {
            let _ = write!(svg, "<text x=\"2\" y=\"{}\" font-size=\"9\">{ohi:.3}</text><text x=\"2\" y=\"{}\" font-size=\"9\">{olo:.3}</text>", py(1.0), py(0.0));
        }
        for (i, t) in rows.iter().enumerate() {
            let (Some(x), Some(o)) = (ax.pos[i], ovals[i]) else { continue };
            let (cx, cy) = (px(x), py(oy(o)));
            let tip = format!(
                "trial {:04}: {} = {}, {} = {}",
                t.number,
                s.objective,
                o,
                n,
                t.params.get(n).map(fmt_value).unwrap_or_default()
            );
            match t.end.as_ref().map(|e| e.status) {
                Some(Status::Pruned) => {
                    let _ = write!(
                        svg,
                        "<path d=\"M{} {} L{} {} L{} {} Z\" fill=\"#ff7f0e\"><title>{}</title></path><text x=\"{}\" y=\"{}\" font-size=\"8\">{}</text>",
                        cx, cy - 5.0, cx - 4.5, cy + 4.0, cx + 4.5, cy + 4.0, esc(&tip), cx + 5.0, cy + 3.0,
                        pruned_rung(t).map_or(String::new(), |r| r.to_string())
                    );
                }
                _ => {
                    let _ = write!(
                        svg,
                        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"4\" fill=\"{}\"><title>{}</title></circle>",
                        color(t),
                        esc(&tip)
                    );
                }
            }
        }
        svg.push_str("</svg>");
        body.push_str(&svg);
    }
    body.push_str("</div>");
    // Parallel coordinates: one axis per parameter, then the objective.
    let mut axes: Vec<Axis> =
        names.iter().map(|n| axis(n, &rows.iter().map(|t| t.params.get(n)).collect::<Vec<_>>())).collect();
    axes.push(Axis {
        name: s.objective.clone(),
        pos: ovals.iter().map(|o| o.filter(|v| v.is_finite()).map(oy)).collect(),
        ticks: if ohi.is_finite() { vec![(0.0, format!("{olo:.4}")), (1.0, format!("{ohi:.4}"))] } else { Vec::new() },
    });
    let k = axes.len();
    let (pw, ph) = ((k as f64 * 130.0).max(400.0), 320.0);
    let ax_x = |i: usize| 60.0 + i as f64 * (pw - 120.0) / (k.max(2) - 1) as f64;
    let ax_y = |p: f64| ph - 40.0 - p * (ph - 80.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{pw}\" height=\"{ph}\" style=\"border:1px solid #ddd\">"
    );
    for (i, t) in rows.iter().enumerate() {
        let pts: Vec<String> = axes
            .iter()
            .enumerate()
            .filter_map(|(j, a)| a.pos[i].map(|p| format!("{:.1},{:.1}", ax_x(j), ax_y(p))))
            .collect();
        let dash =
            if t.end.as_ref().is_some_and(|e| e.status == Status::Pruned) { " stroke-dasharray=\"4 3\"" } else { "" };
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-opacity=\"0.7\"{dash}><title>trial {:04} ({})</title></polyline>",
            pts.join(" "),
            color(t),
            t.number,
            t.end.as_ref().map_or("", |e| e.status.as_str())
        );
    }
    for (j, a) in axes.iter().enumerate() {
        let x = ax_x(j);
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{x}\" y=\"20\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            ax_y(0.0),
            ax_y(1.0),
            esc(&a.name)
        );
        for (p, label) in &a.ticks {
            let _ =
                write!(svg, "<text x=\"{}\" y=\"{}\" font-size=\"9\">{}</text>", x + 3.0, ax_y(*p) + 3.0, esc(label));
        }
    }
    svg.push_str("</svg>");
    body.push_str("<h2>Parallel coordinates</h2><p>Dashed: stopped by ASHA.</p>");
    body.push_str(&svg);
    let _ = write!(body, "<h2>Leaderboard</h2><pre>{}</pre>", esc(table));
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>suite tune</title>\
         <style>body{{font-family:sans-serif;margin:20px}}pre{{font-size:12px}}</style></head><body>{body}</body></html>\n"
    )
}
