//! `suite predict vision --run runs/NAME IMAGES…`: top-k labels with probabilities, through
//! [`suite_vision::predict`] (the API `suite serve` answers with).

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;
use suite_core::device::parse_device;
use suite_vision::data::decode_image;
use suite_vision::predict::{ImagePrediction, VisionPredictor};
use tch::Tensor;

use crate::args::{Domain, PredictArgs};

/// Images per forward pass: bounds memory on long file lists.
const BATCH: usize = 16;

/// One `--json` line: the image's path and its prediction.
#[derive(Serialize)]
struct Line<'a> {
    path: String,
    #[serde(flatten)]
    prediction: &'a ImagePrediction,
}

/// Entry point.
pub fn run(args: PredictArgs) -> Result<()> {
    match args.domain {
        Domain::Text => return super::text::predict(&args),
        Domain::Speech => {
            anyhow::bail!("speech runs are used through `suite transcribe --run {} FILES…`", args.run.display())
        }
        Domain::Vision if args.inputs.is_empty() => anyhow::bail!("suite predict vision: give one or more image files"),
        Domain::Vision => {}
    }
    let device = parse_device(&args.device)?;
    let mut predictor = VisionPredictor::load_run(&args.run, &args.which, device)?;
    args.precision.apply(device, || predictor.quantize_int8())?;
    let mut failed = 0;
    for chunk in args.inputs.chunks(BATCH) {
        // Local files decode as training reads them (no server size limits); a bad one is reported and skipped.
        let mut paths: Vec<&PathBuf> = Vec::with_capacity(chunk.len());
        let mut images: Vec<Tensor> = Vec::with_capacity(chunk.len());
        for path in chunk {
            match decode_image(path) {
                Ok(img) => {
                    paths.push(path);
                    images.push(predictor.preprocess(&img));
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    failed += 1;
                }
            }
        }
        for (path, p) in paths.iter().zip(predictor.predict(&images, args.top_k)?) {
            if args.json {
                println!("{}", serde_json::to_string(&Line { path: path.display().to_string(), prediction: &p })?);
            } else {
                let shown: Vec<String> = p.top.iter().map(|s| format!("{} {:.1}%", s.label, s.prob * 100.0)).collect();
                println!("{}\t{}", path.display(), shown.join("  "));
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} input(s) could not be read", args.inputs.len());
    }
    Ok(())
}
