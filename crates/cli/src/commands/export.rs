//! `suite export --run runs/NAME --out DIR`: the run's model in hub layout (timm/torchvision names + config.json for
//! vision; transformers names, config.json and tokenizer files for text).

use anyhow::{Context, Result};

use super::vision::model_dir;
use crate::args::ExportArgs;

/// Entry point.
pub fn run(args: ExportArgs) -> Result<()> {
    let src = model_dir(&args.run, &args.which)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // Everything the saved model folder holds: weights, config, and for text the tokenizer files.
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().expect("a file has a name");
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            suite_core::runs::atomic_write(&args.out.join(name), &bytes)?;
        }
    }
    let classes = args.run.join("classes.json");
    if classes.exists() {
        std::fs::copy(&classes, args.out.join("classes.json"))?;
    }
    println!("exported {} to {}", src.display(), args.out.display());
    Ok(())
}
