use anyhow::{bail, Result};
use suite_core::optim::GroupRule;
use tch::nn::VarStore;

use super::config::Tune;
use crate::models::{has_prefix, set_batch_norms_frozen, ImageClassifier};

/// Freezes what `tune` leaves out (no gradient; batch norms in eval mode) and returns the learning-rate rules: the
/// head at the full rate, trained backbone stages at `backbone_lr_mult` times it. With `freeze_bn` the batch norms
/// of the trained stages keep their statistics too.
pub fn apply_tune(
    vs: &VarStore,
    model: &mut dyn ImageClassifier,
    tune: Tune,
    backbone_lr_mult: f64,
    freeze_bn: bool,
) -> Result<Vec<GroupRule>> {
    let head = model.head_prefix().to_string();
    let trained: Vec<String> = match tune {
        Tune::Full => vec![String::new()],
        Tune::Head => vec![head.clone()],
        Tune::LastN(n) => {
            let stages = model.stages();
            if n > stages.len() {
                bail!(
                    "--tune last:{n}: this model has only {} stages (use --tune full to train everything)",
                    stages.len()
                );
            }
            let mut p: Vec<String> = model.last_stages(n).into_iter().flat_map(|s| s.prefixes).collect();
            p.push(head.clone());
            p
        }
    };
    let is_trained = |name: &str| trained.iter().any(|p| has_prefix(name, p));
    for (name, var) in vs.variables() {
        let floating = var.is_floating_point();
        let trainable_kind = !name.ends_with("running_mean") && !name.ends_with("running_var") && floating;
        if trainable_kind {
            let _ = var.set_requires_grad(is_trained(&name));
        }
    }
    // Batch norms outside the trained part keep their pretrained statistics.
    set_batch_norms_frozen(&mut *model, &[""], true);
    if !freeze_bn {
        let trained_refs: Vec<&str> = trained.iter().map(String::as_str).collect();
        set_batch_norms_frozen(&mut *model, &trained_refs, false);
    }
    Ok(vec![
        GroupRule { prefix: format!("{head}."), lr_mult: 1.0 },
        GroupRule { prefix: String::new(), lr_mult: backbone_lr_mult },
    ])
}
