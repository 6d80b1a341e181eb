use super::duplicates::{exact_groups, groups_from_pairs, hamming_pairs, report_groups, Items};
use super::report::{histogram, Chart, ChartSeries, Report, Section, Severity, SplitInput};

#[test]
fn exact_groups_keep_only_repeated_keys_in_order() {
    let keys = ["a", "b", "a", "c", "b", "a"];
    assert_eq!(exact_groups(&keys), vec![vec![0, 2, 5], vec![1, 4]]);
    assert!(exact_groups(&["x", "y"]).is_empty());
}

#[test]
fn hamming_pairs_compare_every_pair_at_the_threshold() {
    let hashes = [0u64, 0b1, 0b111, u64::MAX, 0b11];
    let pairs = hamming_pairs(&hashes, 1);
    assert_eq!(pairs, vec![(0, 1, 1), (1, 4, 1), (2, 4, 1)]);
    // A brute-force count over every threshold agrees.
    for t in 0..=64 {
        let n = (0..5)
            .flat_map(|a| (a + 1..5).map(move |b| (a, b)))
            .filter(|&(a, b)| (hashes[a] ^ hashes[b]).count_ones() <= t)
            .count();
        assert_eq!(hamming_pairs(&hashes, t).len(), n, "threshold {t}");
    }
}

#[test]
fn groups_from_pairs_are_connected_components() {
    let g = groups_from_pairs(7, [(5, 1), (1, 3), (6, 4)]);
    assert_eq!(g, vec![vec![1, 3, 5], vec![4, 6]]);
    assert!(groups_from_pairs(3, []).is_empty());
}

#[test]
fn duplicates_across_splits_are_a_problem_and_listed_first() {
    let splits = vec!["train".to_string(), "test".to_string()];
    let split_of = [0, 0, 0, 1, 1];
    let names: Vec<String> = ["a.png", "b.png", "c.png", "d.png", "e.png"].map(String::from).to_vec();
    let items = Items { splits: &splits, split_of: &split_of, names: &names };
    let mut s = Section::new("duplicates", "Duplicates");
    // {0,1} within train; {2,3,4} across train and test (two pairs across, one within test).
    let groups = vec![vec![0, 1], vec![2, 3, 4]];
    let c = report_groups(&mut s, "exact", &items, &groups, &|_, _| "identical bytes".into());
    assert_eq!((c.groups_within, c.groups_across, c.extra_copies, c.pairs_across), (1, 1, 3, 2));
    assert_eq!(s.worst(), Severity::Problem);
    assert_eq!(s.stats["exact_pairs_across_splits"], 2);
    let within = s.findings.iter().find(|f| f.severity == Severity::Warning).unwrap();
    assert!(
        within.message.contains("1 exact-duplicate group(s) within a split (1 extra copies)"),
        "{}",
        within.message
    );
    let rows = &s.tables[0].rows;
    assert_eq!(rows.len(), 4);
    assert_eq!(
        (rows[0][1].as_str(), rows[0][2].as_str(), rows[0][3].as_str(), rows[0][4].as_str()),
        ("train", "c.png", "test", "d.png")
    );
    assert_eq!(rows[2][1], "train", "pairs within a split come after those across");
}

#[test]
fn histogram_bins_are_half_open_and_clamp_outliers() {
    let (labels, counts) = histogram(&[0.0, 0.5, 1.0, 1.9, 2.0, 5.0, -3.0, f64::NAN], &[0.0, 1.0, 2.0]);
    assert_eq!(labels, vec!["0–1", "1–2"]);
    // -3 clamps into the first bin, 2.0 and 5.0 into the last; NaN is skipped.
    assert_eq!(counts, vec![3.0, 4.0]);
}

#[test]
fn report_renders_escaped_html_with_inline_svg_and_json() {
    let mut r = Report::new("vision", "classification");
    r.inputs.push(SplitInput { split: "train".into(), path: "data/<pets>".into(), examples: 3 });
    let mut s = Section::new("classes", "Classes");
    s.note(Severity::Info, "3 classes");
    s.advise(Severity::Warning, "class \"dog\" has 1 example", "collect more");
    s.charts.push(Chart {
        title: "examples per class".into(),
        x_label: "class".into(),
        y_label: "examples".into(),
        labels: vec!["cat".into(), "dog".into()],
        series: vec![ChartSeries { name: "train".into(), values: vec![2.0, 1.0] }],
    });
    r.sections.push(s);
    r.finish();
    assert_eq!(r.sections[0].findings[0].severity, Severity::Warning, "most serious first");
    assert_eq!(r.worst(), Severity::Warning);
    let html = r.to_html().unwrap();
    assert!(html.contains("data/&lt;pets&gt;") && !html.contains("<pets>"));
    assert!(html.contains("<svg") && html.contains("examples per class"));
    assert!(!html.contains("<script"), "the page runs no scripts");
    let summary = r.summary();
    assert!(summary.contains("WARN  class \"dog\" has 1 example") && summary.contains("→ collect more"), "{summary}");
    let dir = tempfile::tempdir().unwrap();
    let (json, page) = r.write(dir.path()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(v["sections"][0]["findings"][0]["severity"], "warning");
    assert_eq!(v["sections"][0]["charts"][0]["series"][0]["values"][1], 1.0);
    assert!(std::fs::read_to_string(page).unwrap().starts_with("<!doctype html>"));
}
