//! A PEFT model's weights with the method folded in, computed from the `VarStore` by name, as peft's
//! `merge_and_unload` leaves them: what an export of a fine-tuned model writes as a plain checkpoint.

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, bail, Result};
use tch::nn::VarStore;
use tch::Tensor;

use super::config::PeftConfig;
use super::lora::folded_weight;
use super::registry::LoraParts;
use super::targets::{pattern_matches, PeftTargets};

/// Name suffixes of the tensors the foldable methods add to a layer.
const METHOD_SUFFIXES: &[&str] = &[".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector", ".ia3_l"];

/// Every variable of `vs` except the method's own tensors, sorted by name, as new tensors with LoRA/DoRA
/// (`W + scale·B·A`, DoRA rescaled per output row to its magnitude) and (IA)³ (`W·diag(l)` on the rows, or on the
/// columns of the feed-forward layers, whose bias is then left alone) folded into the weights of the layers they
/// adapt. The model and `vs` are not changed.
///
/// `targets` are the domain's PEFT conventions ([`super::apply_peft`]'s), which name the (IA)³ feed-forward layers
/// when the config does not. [`PeftConfig::None`] and BitFit return the variables as they are (BitFit's biases
/// are ordinary weights). Prefix tuning, P-tuning v2 and bottleneck adapters compute something no weight can
/// hold and are refused, naming the method.
pub fn merged_weights(vs: &VarStore, cfg: &PeftConfig, targets: &PeftTargets) -> Result<Vec<(String, Tensor)>> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let get = |name: &str| vars.get(name).ok_or_else(|| anyhow!("{}: variable {name} is missing", cfg.method_name()));
    let mut out: BTreeMap<String, Tensor> = vars
        .iter()
        .filter(|(n, _)| !METHOD_SUFFIXES.iter().any(|s| n.ends_with(s)))
        .map(|(n, t)| (n.clone(), t.detach().copy()))
        .collect();
    match cfg {
        PeftConfig::None | PeftConfig::Bitfit => {}
        PeftConfig::Lora(_) | PeftConfig::Dora(_) => {
            let c = cfg.lora().expect("a LoRA config");
            for layer in layers_with(&vars, ".lora_A.weight") {
                let weight = get(&format!("{layer}.weight"))?;
                let parts = LoraParts {
                    a: get(&format!("{layer}.lora_A.weight"))?.detach(),
                    b: get(&format!("{layer}.lora_B.weight"))?.detach(),
                    magnitude: vars.get(&format!("{layer}.lora_magnitude_vector")).map(Tensor::detach),
                    scale: c.scale(),
                    dropout: 0.0,
                };
                out.insert(format!("{layer}.weight"), folded_weight(weight, &parts));
            }
        }
        PeftConfig::Ia3(c) => {
            let patterns = c.feedforward.clone().unwrap_or_else(|| targets.ia3_feedforward.clone());
            let layers = layers_with(&vars, ".ia3_l");
            let feedforward: HashSet<&String> =
                layers.iter().filter(|l| patterns.iter().any(|p| pattern_matches(p, l))).collect();
            for layer in &layers {
                let weight = get(&format!("{layer}.weight"))?;
                let l = get(&format!("{layer}.ia3_l"))?.detach().flatten(0, -1);
                let (dim, width) =
                    if feedforward.contains(layer) { (1, weight.size()[1]) } else { (0, weight.size()[0]) };
                if l.size()[0] != width {
                    bail!("ia3: {layer}.ia3_l has {} values, the weight's dimension {dim} has {width}", l.size()[0]);
                }
                // l along `dim`, ones along the other dimensions of the weight (2-D dense or 4-D kernel).
                let mut shape = vec![1i64; weight.dim()];
                shape[dim] = width;
                out.insert(format!("{layer}.weight"), tch::no_grad(|| weight * l.view(shape.as_slice())));
                let bias = format!("{layer}.bias");
                if dim == 0 {
                    if let Some(b) = vars.get(&bias) {
                        out.insert(bias, tch::no_grad(|| b * &l));
                    }
                }
            }
        }
        PeftConfig::Prefix(_) | PeftConfig::Ptuning2(_) | PeftConfig::Adapter(_) => bail!(
            "{}: the method adds computations (virtual tokens or adapter layers) that no weight of the base model \
             can hold, so it cannot be merged",
            cfg.method_name()
        ),
    }
    Ok(out.into_iter().collect())
}

/// The layers that own a variable ending in `suffix`, in name order.
fn layers_with(vars: &BTreeMap<String, Tensor>, suffix: &str) -> Vec<String> {
    vars.keys().filter_map(|n| n.strip_suffix(suffix)).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peft::test_models::{bert_input, max_diff, randomize, tiny_bert, TinyBert};
    use crate::peft::{apply_peft, merge_lora, Ia3Config, LoraConfig, PrefixConfig, Targets};

    /// The folded weights, loaded into a plain copy of the base model, give the adapted model's outputs; for
    /// LoRA/DoRA they are also the weights `merge_lora` (checked against peft) writes into the layers.
    #[test]
    fn folded_weights_reproduce_the_adapted_model() {
        let lora = LoraConfig { r: 4, alpha: 16.0, targets: Some(Targets::AllLinear), ..LoraConfig::default() };
        let cases = [
            PeftConfig::Lora(lora.clone()),
            PeftConfig::Dora(lora),
            PeftConfig::Ia3(Ia3Config::default()),
            PeftConfig::Bitfit,
        ];
        for cfg in &cases {
            let (mut vs, mut m) = tiny_bert(5);
            apply_peft(&mut vs, &mut m, cfg, &TinyBert::targets()).unwrap();
            randomize(&vs, &["lora_", "ia3_l"], 13);
            let (x, mask) = bert_input();
            let adapted = tch::no_grad(|| m.forward(&x, Some(&mask), false));
            let merged = merged_weights(&vs, cfg, &TinyBert::targets()).unwrap();
            assert!(merged.iter().all(|(n, _)| !METHOD_SUFFIXES.iter().any(|s| n.ends_with(s))));

            let (mut plain_vs, plain) = tiny_bert(99);
            let n = plain_vs.variables().len();
            assert_eq!(merged.len(), n, "{}: every base variable once", cfg.method_name());
            tch::no_grad(|| {
                let vars = plain_vs.variables();
                for (name, t) in &merged {
                    vars[name].shallow_clone().copy_(t);
                }
            });
            plain_vs.freeze();
            let d = max_diff(&adapted, &tch::no_grad(|| plain.forward(&x, Some(&mask), false)));
            println!("{}: folded weights vs adapted model {d:.2e}", cfg.method_name());
            assert!(d < 1e-5, "{}: {d}", cfg.method_name());

            if cfg.lora().is_some() {
                merge_lora(&mut m).unwrap();
                let in_place = vs.variables();
                let w = merged.iter().map(|(n, t)| max_diff(t, &in_place[n])).fold(0.0, f64::max);
                assert!(w < 1e-6, "{}: merge_lora wrote other weights ({w})", cfg.method_name());
            }
        }
    }

    #[test]
    fn methods_without_weights_to_fold_are_refused() {
        let (mut vs, mut m) = tiny_bert(5);
        let cfg = PeftConfig::Ptuning2(PrefixConfig { num_virtual_tokens: 2, projection: None });
        apply_peft(&mut vs, &mut m, &cfg, &TinyBert::targets()).unwrap();
        let e = merged_weights(&vs, &cfg, &TinyBert::targets()).unwrap_err().to_string();
        assert!(e.contains("ptuning2") && e.contains("cannot be merged"), "{e}");
    }
}
