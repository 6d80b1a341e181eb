//! Event files read back by TensorBoard's own reader (`EventAccumulator` of the pinned tensorboard package).

use super::*;

/// Every scalar series of the event files in `dir` as TensorBoard loads them: `{tag: [[step, value], …]}`.
fn tensorboard_scalars(dir: &Path) -> serde_json::Value {
    let code = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;
    let out = crate::python::run_python(code, &[dir.to_str().unwrap()]).unwrap_or_else(|e| panic!("{e:#}"));
    serde_json::from_str(out.trim()).unwrap()
}

fn series(got: &serde_json::Value, tag: &str) -> Vec<(u64, f64)> {
    got[tag]
        .as_array()
        .unwrap_or_else(|| panic!("no tag {tag} in {got}"))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn assert_series(got: &serde_json::Value, tag: &str, want: &[(u64, f64)]) {
    let s = series(got, tag);
    assert_eq!(s.len(), want.len(), "{tag}: {s:?} vs {want:?}");
    for ((gs, gv), (ws, wv)) in s.iter().zip(want) {
        assert_eq!(gs, ws, "{tag}: steps {s:?} vs {want:?}");
        // simple_value is float32: equal to the logged value rounded to f32.
        assert_eq!(*gv, *wv as f32 as f64, "{tag} at step {gs}");
    }
}

#[test]
fn tensorboard_reads_the_scalars_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents.") && name.ends_with(".suite"), "{name}");
    let loss = [(1, 2.25), (2, 1.75), (3, 0.0), (5, 0.123456789)];
    for (step, v) in loss {
        w.add_scalars(step, &[("train/loss".into(), v), ("train/lr".into(), 1e-3 * step as f64)]).unwrap();
    }
    w.add_scalars(5, &[("eval/accuracy".into(), 2.0 / 3.0), ("eval/loss".into(), -0.5)]).unwrap();
    let got = tensorboard_scalars(dir.path());
    let tags: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(tags, ["eval/accuracy", "eval/loss", "train/loss", "train/lr"]);
    assert_series(&got, "train/loss", &loss);
    assert_series(&got, "train/lr", &[(1, 1e-3), (2, 2e-3), (3, 3e-3), (5, 5e-3)]);
    assert_series(&got, "eval/accuracy", &[(5, 2.0 / 3.0)]);
    assert_series(&got, "eval/loss", &[(5, -0.5)]);
}

#[test]
fn a_restarted_file_replaces_the_steps_logged_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = EventWriter::create(dir.path()).unwrap();
    for step in 1..=5 {
        first.add_scalars(step, &[("train/loss".into(), step as f64)]).unwrap();
    }
    drop(first);
    // Resumed from the checkpoint of step 3: steps 4 and 5 are logged again, with other values.
    let mut second = EventWriter::create(dir.path()).unwrap();
    second.session_start(4).unwrap();
    for step in 4..=6 {
        second.add_scalars(step, &[("train/loss".into(), 10.0 * step as f64)]).unwrap();
    }
    let got = tensorboard_scalars(dir.path());
    assert_series(&got, "train/loss", &[(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]);
}
