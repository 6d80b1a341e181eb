//! The data-quality report of `suite inspect`: what a domain found in a data set, as sections of findings, key
//! numbers, charts and tables. The domain crates fill it; this module knows no domain words and turns it into the
//! three forms a user reads: a terminal summary, `report.json` (every number and every listed item) and a
//! self-contained `report.html` (charts inline as SVG, no scripts, no external files).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::runs::atomic_write;

/// Rows of a table shown in the HTML page; `report.json` keeps them all.
pub const HTML_TABLE_ROWS: usize = 200;

/// How serious a finding is, mildest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Checked and fine.
    Ok,
    /// Worth knowing, nothing to fix.
    Info,
    /// Likely to hurt training or evaluation; worth a look.
    Warning,
    /// Makes results wrong or misleading until fixed (leakage between splits, unreadable files).
    Problem,
}

impl Severity {
    /// The marker the terminal summary puts before a finding.
    pub fn marker(self) -> &'static str {
        match self {
            Severity::Ok => "ok  ",
            Severity::Info => "info",
            Severity::Warning => "WARN",
            Severity::Problem => "FIX ",
        }
    }
}

/// One thing the inspection found, with what to do about it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// What was found, one sentence with the numbers.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// A bar chart: one bar per label and series (several series are drawn side by side, e.g. one per split).
#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// What the labels are (x axis).
    pub x_label: String,
    /// What the values are (y axis).
    pub y_label: String,
    /// One label per bar group: class names, or histogram bins such as "64-128".
    pub labels: Vec<String>,
    /// The values, each series as long as `labels`.
    pub series: Vec<ChartSeries>,
}

/// One series of a [`Chart`].
#[derive(Clone, Debug, Serialize)]
pub struct ChartSeries {
    /// Legend entry (a split name).
    pub name: String,
    /// One value per label.
    pub values: Vec<f64>,
}

/// A table of listed items (duplicate pairs, label-issue candidates, unreadable files).
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Every row, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
}

/// One part of the report: a topic (classes, duplicates, files, lengths, label issues…).
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    /// Stable key in `report.json` (`classes`, `duplicates`, …).
    pub id: String,
    /// Heading.
    pub title: String,
    /// What was found, most serious first once [`Report::finish`] has run.
    pub findings: Vec<Finding>,
    /// Key numbers for scripts (counts, rates, ratios), by name.
    pub stats: Map<String, Value>,
    /// Charts.
    pub charts: Vec<Chart>,
    /// Tables.
    pub tables: Vec<Table>,
}

impl Section {
    /// An empty section.
    pub fn new(id: &str, title: &str) -> Self {
        Section {
            id: id.into(),
            title: title.into(),
            findings: vec![],
            stats: Map::new(),
            charts: vec![],
            tables: vec![],
        }
    }

    /// Adds a finding without advice.
    pub fn note(&mut self, severity: Severity, message: impl Into<String>) -> &mut Self {
        self.findings.push(Finding { severity, message: message.into(), advice: None });
        self
    }

    /// Adds a finding with what to do about it.
    pub fn advise(&mut self, severity: Severity, message: impl Into<String>, advice: impl Into<String>) -> &mut Self {
        self.findings.push(Finding { severity, message: message.into(), advice: Some(advice.into()) });
        self
    }

    /// Records a key number (anything serde can write).
    pub fn stat(&mut self, key: &str, value: impl Serialize) -> &mut Self {
        self.stats.insert(key.into(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    /// The worst severity among the findings (`Ok` when there are none).
    pub fn worst(&self) -> Severity {
        self.findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }
}

/// One data file or folder that was inspected.
#[derive(Clone, Debug, Serialize)]
pub struct SplitInput {
    /// `train`, `val` or `test`.
    pub split: String,
    /// The path as given.
    pub path: String,
    /// How many examples were read from it.
    pub examples: usize,
}

/// The whole report of one `suite inspect` call.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `vision`, `text` or `speech`.
    pub domain: String,
    /// The task within the domain (`classification`, `ner`, `qa`, `transcription`…).
    pub task: String,
    /// The inspected data, one entry per split.
    pub inputs: Vec<SplitInput>,
    /// The run whose model ranked label issues, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The sections, in reading order.
    pub sections: Vec<Section>,
}

impl Report {
    /// An empty report.
    pub fn new(domain: &str, task: &str) -> Self {
        Report { domain: domain.into(), task: task.into(), inputs: vec![], run: None, sections: vec![] }
    }

    /// Orders each section's findings most serious first (stable, so a domain's order stays within a severity).
    pub fn finish(&mut self) {
        for s in &mut self.sections {
            s.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        }
    }

    /// The worst severity in the report.
    pub fn worst(&self) -> Severity {
        self.sections.iter().map(Section::worst).max().unwrap_or(Severity::Ok)
    }

    /// The section with this id.
    pub fn section(&self, id: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.id == id)
    }

    /// The terminal summary: the inputs, then each section's findings with their advice.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "suite inspect {} ({})", self.domain, self.task);
        for i in &self.inputs {
            let _ = writeln!(out, "  {:<5} {} ({} examples)", i.split, i.path, i.examples);
        }
        if let Some(run) = &self.run {
            let _ = writeln!(out, "  run   {run}");
        }
        for s in &self.sections {
            let _ = writeln!(out, "\n{}", s.title);
            if s.findings.is_empty() {
                let _ = writeln!(out, "  ok    nothing to report");
            }
            for f in &s.findings {
                let _ = writeln!(out, "  {}  {}", f.severity.marker(), f.message);
                if let Some(a) = &f.advice {
                    let _ = writeln!(out, "        → {a}");
                }
            }
        }
        out
    }

    /// The self-contained HTML page.
    pub fn to_html(&self) -> Result<String> {
        let mut h = String::new();
        let title = format!("suite inspect {} ({})", self.domain, self.task);
        let _ = write!(
            h,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head>\
             <body><h1>{}</h1>",
            esc(&title),
            CSS,
            esc(&title)
        );
        h.push_str("<table class=\"inputs\"><tr><th>split</th><th>data</th><th>examples</th></tr>");
        for i in &self.inputs {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&i.split),
                esc(&i.path),
                i.examples
            );
        }
        h.push_str("</table>");
        if let Some(run) = &self.run {
            let _ = write!(h, "<p>Label issues ranked with the model of <code>{}</code>.</p>", esc(run));
        }
        // A table of contents with each section's worst severity, so problems are visible without scrolling.
        h.push_str("<ul class=\"toc\">");
        for s in &self.sections {
            let w = s.worst();
            let _ = write!(
                h,
                "<li><span class=\"sev {0:?}\">{0:?}</span> <a href=\"#{1}\">{2}</a></li>",
                w,
                esc(&s.id),
                esc(&s.title)
            );
        }
        h.push_str("</ul>");
        for s in &self.sections {
            let _ = write!(h, "<section id=\"{}\"><h2>{}</h2>", esc(&s.id), esc(&s.title));
            if s.findings.is_empty() {
                h.push_str("<p class=\"finding\"><span class=\"sev Ok\">Ok</span> nothing to report</p>");
            }
            for f in &s.findings {
                let _ = write!(
                    h,
                    "<p class=\"finding\"><span class=\"sev {:?}\">{:?}</span> {}",
                    f.severity,
                    f.severity,
                    esc(&f.message)
                );
                if let Some(a) = &f.advice {
                    let _ = write!(h, "<br><span class=\"advice\">→ {}</span>", esc(a));
                }
                h.push_str("</p>");
            }
            if !s.stats.is_empty() {
                h.push_str("<details><summary>numbers</summary><table class=\"stats\">");
                for (k, v) in &s.stats {
                    let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&compact_json(v)));
                }
                h.push_str("</table></details>");
            }
            for c in &s.charts {
                h.push_str("<figure>");
                h.push_str(&chart_svg(c)?);
                let _ = write!(h, "<figcaption>{}</figcaption></figure>", esc(&c.title));
            }
            for t in &s.tables {
                let _ = write!(h, "<h3>{} ({} rows)</h3><table class=\"list\"><tr>", esc(&t.title), t.rows.len());
                for c in &t.columns {
                    let _ = write!(h, "<th>{}</th>", esc(c));
                }
                h.push_str("</tr>");
                for r in t.rows.iter().take(HTML_TABLE_ROWS) {
                    h.push_str("<tr>");
                    for c in r {
                        let _ = write!(h, "<td>{}</td>", esc(c));
                    }
                    h.push_str("</tr>");
                }
                h.push_str("</table>");
                if t.rows.len() > HTML_TABLE_ROWS {
                    let _ = write!(
                        h,
                        "<p class=\"more\">… {} more rows in report.json</p>",
                        t.rows.len() - HTML_TABLE_ROWS
                    );
                }
            }
            h.push_str("</section>");
        }
        h.push_str("</body></html>\n");
        Ok(h)
    }

    /// Writes `report.json` and `report.html` into `dir` (created if needed), each atomically; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("report.json");
        let html = dir.join("report.html");
        let mut bytes = serde_json::to_vec_pretty(self).context("serialising the report")?;
        bytes.push(b'\n');
        atomic_write(&json, &bytes)?;
        atomic_write(&html, self.to_html()?.as_bytes())?;
        Ok((json, html))
    }
}

/// Buckets `values` into `edges.len() - 1` half-open bins `[edges[i], edges[i+1])`, the last one closed; values
/// outside every bin are counted in the nearest end bin. Returns the counts and "a–b" labels.
pub fn histogram(values: &[f64], edges: &[f64]) -> (Vec<String>, Vec<f64>) {
    let bins = edges.len().saturating_sub(1).max(1);
    let mut counts = vec![0.0; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = edges.iter().skip(1).position(|&e| v < e).unwrap_or(bins - 1).min(bins - 1);
        counts[i] += 1.0;
    }
    let labels = edges.windows(2).map(|w| format!("{}–{}", short_num(w[0]), short_num(w[1]))).collect();
    (labels, counts)
}

/// Numbers as a person writes them on an axis: 12, 1.5, 0.25, 3k.
fn short_num(v: f64) -> String {
    if v.abs() >= 10_000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

/// A JSON value on one line, long arrays shortened.
fn compact_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Draws a chart as inline SVG with plotters (grouped vertical bars, a legend when there are several series).
fn chart_svg(chart: &Chart) -> Result<String> {
    crate::runs::bar_chart_svg(chart)
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;\
padding:0 1em;color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;\
font-size:.92em;vertical-align:top}th{background:#f4f4f4}table.list td{max-width:38em;overflow-wrap:anywhere}\
.sev{display:inline-block;min-width:5.5em;text-align:center;border-radius:3px;font-size:.8em;padding:.1em .3em;\
color:#fff;font-weight:600}.sev.Ok{background:#2ca02c}.sev.Info{background:#1f77b4}.sev.Warning{background:#ff7f0e}\
.sev.Problem{background:#d62728}.advice{color:#555;margin-left:6.3em;display:inline-block}.toc{list-style:none;\
padding:0}.toc li{margin:.2em 0}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}.more{color:#777}\
code{background:#f4f4f4;padding:0 .2em}";
