//! `suite predict vision --run runs/NAME IMAGES…`: top-k labels with probabilities.

use anyhow::Result;
use rand::SeedableRng;
use suite_core::device::parse_device;
use suite_vision::data::{decode_image, Transform};
use suite_vision::task::{load_timm_layout, transform_config, Augment, Inputs};
use tch::{Kind, Tensor};

use super::vision::model_dir;
use crate::args::{Domain, PredictArgs};

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
    let mut task = load_timm_layout(&model_dir(&args.run, &args.which)?, device)?;
    task.inputs = Inputs::Pixels;
    let transform = Transform::eval(transform_config(&task.preprocess, Augment::None))?;
    let [c, h, w] = transform.output_shape();
    let k = args.top_k.clamp(1, task.classes.len());
    let mut rng = suite_core::data::SampleRng::seed_from_u64(0);
    let mut failed = 0;
    for path in &args.inputs {
        let img = match decode_image(path) {
            Ok(img) => img,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
                continue;
            }
        };
        let x = Tensor::from_slice(&transform.apply(&img, &mut rng)).view([1, c as i64, h as i64, w as i64]);
        let probs = tch::no_grad(|| task.logits(&x, false)).softmax(-1, Kind::Float).to_device(tch::Device::Cpu);
        let (p, i) = probs.topk(k as i64, -1, true, true);
        let p = Vec::<f32>::try_from(p.view([-1]))?;
        let i = Vec::<i64>::try_from(i.view([-1]))?;
        let labels: Vec<&str> = i.iter().map(|&c| task.classes.name(c as usize).unwrap_or("?")).collect();
        if args.json {
            let top: Vec<serde_json::Value> =
                labels.iter().zip(&p).map(|(l, p)| serde_json::json!({"label": l, "prob": p})).collect();
            println!("{}", serde_json::json!({"path": path.display().to_string(), "top": top}));
        } else {
            let shown: Vec<String> = labels.iter().zip(&p).map(|(l, p)| format!("{l} {:.1}%", p * 100.0)).collect();
            println!("{}\t{}", path.display(), shown.join("  "));
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} input(s) could not be read", args.inputs.len());
    }
    Ok(())
}
