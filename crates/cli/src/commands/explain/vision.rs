//! `suite explain vision --run runs/NAME IMAGES…`: per image, the heatmap over the model's view of it
//! (`<stem>.<method>.png`) and the raw map (`<stem>.<method>.npy`), then `explain.json` indexing them. The
//! explanations come from [`suite_vision::explain`]; this file only checks the request, writes and reports.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use suite_core::device::parse_device;
use suite_vision::data::decode_image;
use suite_vision::explain::{explain_image, resolve_layer, resolve_target, ExplanationSummary, Method};
use suite_vision::predict::VisionPredictor;

use crate::args::explain::{ExplainVisionArgs, VisionMethod};

/// One image's entry in `explain.json`.
#[derive(Serialize)]
struct Entry {
    image: String,
    overlay: String,
    raw_map: String,
    #[serde(flatten)]
    summary: ExplanationSummary,
}

/// `explain.json`.
#[derive(Serialize)]
struct Index {
    run: String,
    which: String,
    method: &'static str,
    images: Vec<Entry>,
}

/// Entry point.
pub fn run(args: ExplainVisionArgs) -> Result<()> {
    let method = match args.method {
        VisionMethod::Gradcam => Method::GradCam,
        VisionMethod::GradcamPlusPlus => Method::GradCamPlusPlus,
        VisionMethod::IntegratedGradients => {
            anyhow::ensure!(args.common.steps > 0, "--steps must be at least 1");
            Method::IntegratedGradients { steps: args.common.steps }
        }
    };
    let device = parse_device(&args.common.device)?;
    let predictor = VisionPredictor::load_run(&args.common.run, &args.common.which, device)?;
    // Every user input is checked before any work, so a mistake costs one clear error and no partial output.
    let target = args.common.target.as_deref().map(|t| resolve_target(predictor.labels(), t)).transpose()?;
    if matches!(method, Method::IntegratedGradients { .. }) {
        anyhow::ensure!(args.layer.is_none(), "--layer applies to gradcam and gradcam++, not to integrated-gradients");
    } else {
        resolve_layer(predictor.model(), args.layer.as_deref())?;
    }
    let images = args
        .images
        .iter()
        .map(|path| Ok((path, predictor.preprocess(&decode_image(path)?))))
        .collect::<Result<Vec<_>>>()?;

    let out = args.common.out.clone().unwrap_or_else(|| default_out(&args.common.run));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut stems = HashSet::new();
    let mut entries = Vec::with_capacity(images.len());
    for (path, x) in images {
        let e = explain_image(&predictor, &x, method, args.layer.as_deref(), target)?;
        let base = out.join(unique_stem(path, &mut stems)).display().to_string();
        let (png, npy) = (
            PathBuf::from(format!("{base}.{}.png", method.tag())),
            PathBuf::from(format!("{base}.{}.npy", method.tag())),
        );
        suite_vision::explain::overlay::overlay(&e.view, &e.heatmap)?
            .save(&png)
            .with_context(|| format!("writing {}", png.display()))?;
        ndarray_npy::write_npy(&npy, &e.raw).with_context(|| format!("writing {}", npy.display()))?;
        let s = &e.summary;
        let mut line = format!(
            "{}: predicted {} ({:.1}%), target {} ({:.1}%)",
            path.display(),
            s.predicted_label,
            100.0 * s.predicted_probability,
            s.target_label,
            100.0 * s.target_probability
        );
        if let Some(c) = &s.completeness {
            line += &format!(", completeness error {:.2e} of {:.3}", c.error, c.logit_difference);
        }
        println!("{line} -> {}, {}", png.display(), npy.display());
        entries.push(Entry {
            image: path.display().to_string(),
            overlay: png.display().to_string(),
            raw_map: npy.display().to_string(),
            summary: e.summary,
        });
    }
    let index = Index {
        run: args.common.run.display().to_string(),
        which: args.common.which.clone(),
        method: method.tag(),
        images: entries,
    };
    let json = out.join("explain.json");
    suite_core::runs::atomic_write(&json, serde_json::to_string_pretty(&index)?.as_bytes())?;
    println!("index: {}", json.display());
    Ok(())
}

/// `explain/<run name>-vision`.
fn default_out(run: &Path) -> PathBuf {
    let name = run.file_name().map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    PathBuf::from("explain").join(format!("{name}-vision"))
}

/// The file stem of `path`, with `-2`, `-3`… appended when another image already took it (same names in
/// different folders must not overwrite each other's outputs).
fn unique_stem(path: &Path, taken: &mut HashSet<String>) -> String {
    let stem = path.file_stem().map_or_else(|| "image".to_string(), |s| s.to_string_lossy().into_owned());
    let mut candidate = stem.clone();
    let mut n = 1;
    while !taken.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{stem}-{n}");
    }
    candidate
}
