//! One self-contained HTML page of token attributions: per input, its prediction, then one block per explained
//! output (class, entity, answer start and end) with the tokens coloured on a red (lowers the output) to green
//! (raises it) scale, each block scaled to its own largest |score|.

use std::fmt::Write;

use super::{Attribution, TextExplanation};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#1f2937;background:#fff}\
h1{font-size:20px;margin:0 0 4px}.sub{color:#6b7280;font-size:13px;margin-bottom:14px}\
.input{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;margin:12px 0}\
.input h2{font-size:15px;margin:0 0 6px}.block{margin:8px 0 4px}\
.meta{font-size:12px;color:#4b5563;margin-bottom:4px}.toks{line-height:1.9;font-size:15px}\
.t{padding:2px 1px;border-radius:3px}.sp{color:#9ca3af;font-size:11px}\
.at{outline:2px solid #2563eb;outline-offset:0}\
.legend{display:inline-block;width:180px;height:10px;vertical-align:middle;border-radius:2px;\
background:linear-gradient(90deg,rgb(220,38,38),#fff,rgb(22,163,74))}";

/// The page: `title`, then each `(heading, explanation)` in order.
pub fn render(title: &str, items: &[(String, &TextExplanation)]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\
         <h1>{t}</h1><div class=\"sub\">Integrated gradients on the word embeddings (baseline: padding tokens, \
         special tokens kept). <span class=\"legend\"></span> red lowers the explained output, green raises it; \
         blue outline: the tokens whose logits are explained.</div>",
        t = escape(title)
    );
    for (heading, e) in items {
        let _ = write!(
            out,
            "<div class=\"input\"><h2>{} — {}{}</h2>",
            escape(heading),
            escape(&e.prediction),
            e.window.map(|w| format!(" (window {w})")).unwrap_or_default()
        );
        if e.attributions.is_empty() {
            out.push_str("<div class=\"meta\">nothing to explain</div>");
        }
        for a in &e.attributions {
            block(&mut out, e, a);
        }
        out.push_str("</div>");
    }
    out.push_str("</body></html>\n");
    out
}

fn block(out: &mut String, e: &TextExplanation, a: &Attribution) {
    let what = match (a.kind, &a.text) {
        ("class", _) if a.predicted => format!("class <b>{}</b> (predicted)", escape(&a.label)),
        ("class", _) => format!("class <b>{}</b> (not the predicted class)", escape(&a.label)),
        (_, Some(text)) if a.kind == "entity" => format!("<b>{}</b> “{}”", escape(&a.label), escape(text)),
        (kind, Some(text)) => format!("answer {kind} “{}”", escape(text)),
        (kind, None) => kind.to_string(),
    };
    let _ = write!(
        out,
        "<div class=\"block\"><div class=\"meta\">{what} · p = {:.3} · F(x) = {:.3}, F(baseline) = {:.3}, Σ scores = \
         {:.3} · completeness error {:.2e} ({:.2e} relative)</div><div class=\"toks\">",
        a.probability, a.output, a.baseline_output, a.sum, a.completeness_error, a.relative_error
    );
    let bpe = e.tokens.iter().any(|t| t.starts_with(['Ġ', '▁']));
    let max = a.scores.iter().fold(0f32, |m, s| m.max(s.abs())).max(f32::MIN_POSITIVE);
    for (i, (tok, &score)) in e.tokens.iter().zip(&a.scores).enumerate() {
        let special = e.token_ids[i] == e.baseline_ids[i];
        let (space, shown) = display(tok, bpe);
        if space && i > 0 {
            out.push(' ');
        }
        let x = (score / max).clamp(-1.0, 1.0);
        let colour = if x >= 0.0 { "22,163,74" } else { "220,38,38" };
        let class = match (special, a.positions.contains(&i)) {
            (true, _) => "t sp",
            (false, true) => "t at",
            (false, false) => "t",
        };
        let _ = write!(
            out,
            "<span class=\"{class}\" style=\"background:rgba({colour},{:.3}){}\" title=\"{} {score:+.4}\">{}</span>",
            x.abs(),
            // Dark text would vanish on the strongest colours.
            if x.abs() > 0.6 { ";color:#fff" } else { "" },
            escape(tok),
            escape(&shown)
        );
    }
    out.push_str("</div></div>");
}

/// How a vocabulary token reads in text: whether a space comes before it, and its characters (WordPiece `##`
/// continues a word; byte-level BPE `Ġ` and SentencePiece `▁` start one).
fn display(tok: &str, bpe: bool) -> (bool, String) {
    if let Some(rest) = tok.strip_prefix("##") {
        return (false, rest.to_string());
    }
    for mark in ['Ġ', '▁'] {
        if let Some(rest) = tok.strip_prefix(mark) {
            return (true, rest.to_string());
        }
    }
    // Without a mark, a BPE token continues the previous word; a WordPiece one starts a word.
    (!bpe, tok.to_string())
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
