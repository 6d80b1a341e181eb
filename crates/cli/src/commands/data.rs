//! `suite data NAME --out DIR`: prepare the offline data sets of the demo and tests.

use anyhow::{bail, Result};
use suite_vision::data::mnist;

use crate::args::DataArgs;

/// Entry point.
pub fn run(args: DataArgs) -> Result<()> {
    match args.name.as_str() {
        "mnist5k" => {
            let m = mnist::prepare_mnist5k(&mnist::source_path(), &args.out, args.val_split, 0)?;
            let verb = if m.written { "wrote" } else { "reusing" };
            println!("{verb} {} ({} training, {} validation images)", m.root.display(), m.train, m.val);
            Ok(())
        }
        "fortunes4" | "reuters2" | "ner-synth" | "qa-synth" => {
            let assets = suite_core::cache::assets_dir();
            let p = suite_text::offline::prepare_named(&args.name, &assets, &args.out, 0)?;
            println!(
                "wrote {} ({} examples) and {} ({} examples)",
                p.train.display(),
                p.sizes.0,
                p.test.display(),
                p.sizes.1
            );
            Ok(())
        }
        "fortunes-lm" => {
            let assets = suite_core::cache::assets_dir();
            let p = suite_text::offline_lm::fortunes_lm(&assets.join("fortunes"), &args.out, 0)?;
            println!(
                "wrote {} ({} documents), {} ({} conversations), {} ({} held-out conversations) and the model \
                 folder {} (tokenizer, chat template, config of a {:.1} M-parameter Llama; no weights)",
                p.pretrain.display(),
                p.sizes.0,
                p.instruct_train.display(),
                p.sizes.1,
                p.instruct_test.display(),
                p.sizes.2,
                p.model.display(),
                p.parameters as f64 / 1e6
            );
            Ok(())
        }
        other => bail!(
            "unknown data set {other:?}: expected mnist5k, fortunes4, fortunes-lm, reuters2, ner-synth or qa-synth"
        ),
    }
}
