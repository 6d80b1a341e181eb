use std::path::PathBuf;

use super::*;
use crate::metrics::ConfusionMatrix;

fn train(step: u64, loss: f64) -> MetricRecord {
    MetricRecord::Train(TrainRecord {
        step,
        epoch: step / 100,
        loss,
        lr: 1e-3 * (1.0 - step as f64 / 1000.0),
        samples_per_sec: 300.0 + step as f64,
        elapsed_s: step as f64 * 0.1,
    })
}

fn eval(step: u64, acc: f64) -> MetricRecord {
    let metrics = [("accuracy", acc), ("loss", 1.0 - acc), ("macro_f1", acc * 0.9)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    MetricRecord::Eval(EvalRecord { step, epoch: step / 100, metrics })
}

/// A plausible run: a noisy decaying loss logged every 10 steps and an evaluation every 100.
fn run_records(until: u64) -> Vec<MetricRecord> {
    let mut out = Vec::new();
    for step in (10..=until).step_by(10) {
        let noise = ((step * 7919) % 13) as f64 / 13.0 - 0.5;
        out.push(train(step, 2.0 * (-(step as f64) / 300.0).exp() + 0.1 + 0.15 * noise));
        if step % 100 == 0 {
            out.push(eval(step, 0.95 - 0.6 * (-(step as f64) / 250.0).exp()));
        }
    }
    out
}

/// Directory where plots are kept for eyeballing when `SUITE_KEEP_PLOTS` is set, else the temp dir.
fn plot_dir(tmp: &Path) -> PathBuf {
    std::env::var_os("SUITE_KEEP_PLOTS").map(PathBuf::from).unwrap_or_else(|| tmp.to_path_buf())
}

#[test]
fn metrics_log_round_trips_including_nan() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("r"), true).unwrap();
    let mut recs = run_records(300);
    recs.push(train(310, f64::NAN));
    let mut log = run.metrics_log().unwrap();
    for r in &recs {
        log.append(r).unwrap();
    }
    drop(log);
    let text = fs::read_to_string(run.metrics_path()).unwrap();
    assert!(text.starts_with(r#"{"kind":"train","step":10,"epoch":0,"loss":"#), "{text}");
    assert!(text.contains(r#"{"kind":"eval","step":100,"epoch":1,"metrics":{"accuracy":"#), "{text}");
    let back = run.read_metrics().unwrap();
    assert_eq!(back.len(), recs.len());
    assert_eq!(back[..back.len() - 1], recs[..recs.len() - 1]);
    match back.last().unwrap() {
        MetricRecord::Train(t) => assert!(t.loss.is_nan() && t.step == 310, "{t:?}"),
        r => panic!("expected a train record, got {r:?}"),
    }
    // The documented example lines parse as given.
    let example = dir.path().join("example.jsonl");
    fs::write(
        &example,
        "{\"kind\":\"train\",\"step\":10,\"epoch\":0,\"loss\":0.52,\"lr\":0.001,\"samples_per_sec\":312.5,\"elapsed_s\":4.2}\n\n\
         {\"kind\":\"eval\",\"step\":10,\"epoch\":1,\"metrics\":{\"accuracy\":0.91,\"loss\":0.3}}\n",
    )
    .unwrap();
    let ex = read_metrics(&example).unwrap();
    assert_eq!(ex.len(), 2);
    assert!(matches!(&ex[1], MetricRecord::Eval(e) if e.metrics["accuracy"] == 0.91 && e.step == 10));
}

#[test]
fn bad_line_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("metrics.jsonl");
    let good = serde_json::to_string(&train(10, 0.5)).unwrap();
    fs::write(&p, format!("{good}\n{good}\n{{\"kind\":\"train\",\"step\":\"x\"}}\n{good}\n")).unwrap();
    let err = format!("{:#}", read_metrics(&p).unwrap_err());
    assert!(err.contains("metrics.jsonl line 3"), "{err}");
    let err = format!("{:#}", truncate_metrics_after(&p, 5).unwrap_err());
    assert!(err.contains("line 3"), "a bad line that is not the torn tail must not be dropped silently: {err}");
    fs::write(&p, format!("{good}\n{{\"kind\":\"test\",\"step\":1}}\n")).unwrap();
    let err = format!("{:#}", read_metrics(&p).unwrap_err());
    assert!(err.contains("line 2") && err.contains("test"), "{err}");
}

#[test]
fn resume_truncation_reproduces_the_uninterrupted_log() {
    let dir = tempfile::tempdir().unwrap();
    let full = run_records(600);

    let straight = RunDir::create(&dir.path().join("straight"), true).unwrap();
    let mut log = straight.metrics_log().unwrap();
    full.iter().for_each(|r| log.append(r).unwrap());

    // Interrupted after step 470 mid-write; the last checkpoint was at step 400.
    let resumed_path = dir.path().join("resumed");
    let resumed = RunDir::create(&resumed_path, true).unwrap();
    let mut log = resumed.metrics_log().unwrap();
    full.iter().filter(|r| r.step() <= 470).for_each(|r| log.append(r).unwrap());
    drop(log);
    let mut f = OpenOptions::new().append(true).open(resumed.metrics_path()).unwrap();
    f.write_all(b"{\"kind\":\"train\",\"step\":480,\"ep").unwrap();
    drop(f);

    let resumed = RunDir::create(&resumed_path, false).unwrap();
    let dropped = resumed.truncate_metrics_after(400).unwrap();
    assert_eq!(dropped, 7 + 1, "steps 410..=470 and the torn line");
    assert!(resumed.read_metrics().unwrap().iter().all(|r| r.step() <= 400));
    let mut log = resumed.metrics_log().unwrap();
    full.iter().filter(|r| r.step() > 400).for_each(|r| log.append(r).unwrap());
    drop(log);

    assert_eq!(
        fs::read_to_string(resumed.metrics_path()).unwrap(),
        fs::read_to_string(straight.metrics_path()).unwrap()
    );
    // Nothing past the step means nothing to rewrite; a missing log stays missing.
    assert_eq!(resumed.truncate_metrics_after(10_000).unwrap(), 0);
    assert_eq!(truncate_metrics_after(&dir.path().join("none.jsonl"), 1).unwrap(), 0);
    assert!(!dir.path().join("none.jsonl").exists());
}

#[test]
fn truncation_keeps_lines_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("metrics.jsonl");
    let line =
        r#"{"kind":"train","step":5,"epoch":0,"loss":0.5,"lr":0.1,"samples_per_sec":1.0,"elapsed_s":1.0,"gpu_mem":3}"#;
    let later = serde_json::to_string(&train(20, 0.1)).unwrap();
    fs::write(&p, format!("{line}\n{later}\n")).unwrap();
    assert_eq!(truncate_metrics_after(&p, 10).unwrap(), 1);
    assert_eq!(fs::read_to_string(&p).unwrap(), format!("{line}\n"));
}

#[test]
fn fresh_run_refuses_a_non_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run1");
    let err = RunDir::create(&root, false).unwrap_err().to_string();
    assert!(err.contains("cannot resume") && err.contains("run1"), "{err}");

    fs::create_dir(&root).unwrap();
    let run = RunDir::create(&root, true).expect("an existing empty folder is fine for a fresh run");
    assert!(run.checkpoints_dir().is_dir());
    let err = RunDir::create(&root, true).unwrap_err().to_string();
    assert!(err.contains("run1") && err.contains("--resume") && err.contains("--out"), "{err}");
    RunDir::create(&root, false).expect("resuming an existing run");

    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    assert!(RunDir::create(&file, true).unwrap_err().to_string().contains("not a folder"));
}

#[test]
fn paths_config_and_checkpoint_listing() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Cfg {
        lr: f64,
        model: String,
        layers: Vec<u32>,
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let run = RunDir::create(&root, true).unwrap();
    assert_eq!(run.checkpoint_dir(1234), root.join("checkpoints/step-00001234"));
    assert_eq!(run.best_dir(), root.join("best"));
    assert_eq!(run.final_dir(), root.join("final"));
    assert_eq!(run.curves_path(), root.join("curves.png"));
    let cfg = Cfg { lr: 3e-4, model: "resnet18".into(), layers: vec![2, 2] };
    run.write_config(&cfg).unwrap();
    let back: Cfg = toml::from_str(&fs::read_to_string(run.config_path()).unwrap()).unwrap();
    assert_eq!(back, cfg);

    assert_eq!(run.latest_checkpoint().unwrap(), None);
    for step in [200, 30, 1000] {
        let staging = staging_dir(&run.checkpoint_dir(step)).unwrap();
        fs::create_dir_all(&staging).unwrap();
        atomic_replace_dir(&staging, &run.checkpoint_dir(step)).unwrap();
    }
    // Debris of a crash: a half-written staging folder, and a checkpoint caught between the two renames.
    fs::create_dir_all(staging_dir(&run.checkpoint_dir(1100)).unwrap()).unwrap();
    fs::rename(run.checkpoint_dir(1000), run.checkpoints_dir().join(".step-00001000.replaced")).unwrap();
    let steps: Vec<u64> = run.checkpoints().unwrap().into_iter().map(|c| c.0).collect();
    assert_eq!(steps, [30, 200]);

    let run = RunDir::create(&root, false).unwrap();
    let steps: Vec<u64> = run.checkpoints().unwrap().into_iter().map(|c| c.0).collect();
    assert_eq!(steps, [30, 200, 1000], "resume must restore the moved-aside checkpoint");
    assert_eq!(run.latest_checkpoint().unwrap().unwrap().1, run.checkpoint_dir(1000));
    assert_eq!(fs::read_dir(run.checkpoints_dir()).unwrap().count(), 3, "staging debris must be removed");
}

#[test]
fn summary_table_aligns_values() {
    let rows: Vec<(String, String)> = [("accuracy", "0.9123"), ("best step", "1200"), ("run", "runs/x")]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .to_vec();
    assert_eq!(summary_table(&rows), "accuracy   0.9123\nbest step  1200\nrun        runs/x\n");
    let rows = vec![("ø".to_string(), "1".to_string()), ("ab".to_string(), String::new())];
    assert_eq!(summary_table(&rows), "ø   1\nab\n", "width counts characters, not bytes");
    assert_eq!(summary_table(&[]), "");
}

fn decode(p: &Path) -> image::RgbImage {
    let bytes = fs::read(p).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8()
}

fn count_color(img: &image::RgbImage, rgb: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == rgb).count()
}

/// Pixels dark enough to be text or axes (the plots' lines and fills are all lighter).
fn count_dark(img: &image::RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 80))
        .count()
}

#[test]
fn curves_png_has_one_panel_per_series_and_draws_text() {
    let dir = tempfile::tempdir().unwrap();
    let keep = plot_dir(dir.path());
    let out = keep.join("curves.png");
    let mut recs = run_records(1000);
    recs.insert(40, train(405, f64::NAN));
    plot_curves(&recs, &out).unwrap();
    let img = decode(&out);
    // Panels: loss (with eval loss), learning rate, accuracy, macro_f1: 2 × 2.
    assert_eq!(img.dimensions(), (2 * CURVE_PANEL_SIZE.0, 2 * CURVE_PANEL_SIZE.1));
    assert!(count_color(&img, [31, 119, 180]) > 300, "the smoothed loss line is missing");
    assert!(count_color(&img, [255, 127, 14]) > 30, "the eval loss markers are missing");
    assert!(count_color(&img, [44, 160, 44]) > 100, "the accuracy line is missing");
    // The panel title band holds the caption text, which needs the embedded font.
    assert!(count_dark(&img, 200, 0, 440, 40) > 50, "no caption text drawn");

    let only_train: Vec<_> = recs.iter().filter(|r| matches!(r, MetricRecord::Train(_))).cloned().collect();
    let out = keep.join("curves_train_only.png");
    plot_curves(&only_train, &out).unwrap();
    assert_eq!(decode(&out).dimensions(), (2 * CURVE_PANEL_SIZE.0, CURVE_PANEL_SIZE.1));
    let out = keep.join("curves_empty.png");
    plot_curves(&[], &out).unwrap();
    let img = decode(&out);
    assert_eq!(img.dimensions(), CURVE_PANEL_SIZE);
    assert!(count_dark(&img, 0, 0, CURVE_PANEL_SIZE.0, CURVE_PANEL_SIZE.1) > 50, "the empty-run notice is missing");
}

#[test]
fn confusion_png_colours_cells_by_row_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let keep = plot_dir(dir.path());
    let names: Vec<String> = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "a very long truck class name",
    ]
    .map(String::from)
    .to_vec();
    let mut m = ConfusionMatrix::new(10);
    for t in 0..10 {
        for p in 0..10 {
            let count = if t == p { 90 + 10 * t } else { (t * 3 + p * 7) % 5 };
            for _ in 0..count {
                m.add(t, p).unwrap();
            }
        }
    }
    let out = keep.join("confusion.png");
    plot_confusion(&m, &names, &out).unwrap();
    let img = decode(&out);
    let (w, h) = img.dimensions();
    assert!((700..1400).contains(&w) && (700..1400).contains(&h), "{w}x{h}");
    // Each diagonal cell (72 px square here) is filled with the ramp colour of its row fraction, bar its count.
    for t in 0..10 {
        let frac = m.get(t, t) as f64 / m.support()[t] as f64;
        let c = super::plot::blues(frac);
        let n = count_color(&img, [c.0, c.1, c.2]);
        assert!(n > 60 * 60, "class {t}: {n} px of the colour for {frac:.3}");
    }
    assert!(count_color(&img, [247, 251, 255]) > 10 * 60 * 60, "zero cells should be the ramp's white");
    assert!(count_dark(&img, 0, 0, w, 50) > 100, "no title text");

    // Many classes: still renders, with a bounded size.
    let many: Vec<String> = (0..300).map(|i| format!("class_{i}")).collect();
    let mut m = ConfusionMatrix::new(300);
    for i in 0..3000 {
        m.add(i % 300, (i * 7) % 300).unwrap();
    }
    let out = keep.join("confusion_300.png");
    plot_confusion(&m, &many, &out).unwrap();
    let (w, h) = decode(&out).dimensions();
    assert!(w < 1200 && h < 1200, "{w}x{h}");

    let err = plot_confusion(&m, &many[..3], &out).unwrap_err().to_string();
    assert!(err.contains("3 class labels") && err.contains("300"), "{err}");
}
