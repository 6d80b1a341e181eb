//! `suite export --run runs/NAME --out DIR`: the run's model in hub layout (timm/torchvision names + config.json).

use anyhow::{Context, Result};

use super::vision::model_dir;
use crate::args::ExportArgs;

/// Entry point.
pub fn run(args: ExportArgs) -> Result<()> {
    let src = model_dir(&args.run, &args.which)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for name in ["config.json", "model.safetensors"] {
        let bytes = std::fs::read(src.join(name)).with_context(|| format!("reading {}", src.join(name).display()))?;
        suite_core::runs::atomic_write(&args.out.join(name), &bytes)?;
    }
    let classes = args.run.join("classes.json");
    if classes.exists() {
        std::fs::copy(&classes, args.out.join("classes.json"))?;
    }
    println!("exported {} to {}", src.display(), args.out.display());
    Ok(())
}
