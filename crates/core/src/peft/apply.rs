//! Putting a method into a model: new tensors in the `VarStore`, adapters in the layers, and `requires_grad` so
//! that only the method's tensors and the head train.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail, Result};
use tch::nn::VarStore;
use tch::Tensor;

use super::bottleneck::Bottleneck;
use super::config::{AdapterKind, LoraConfig, PeftConfig, PrefixConfig, Targets};
use super::file::base_checksum;
use super::ia3::{Ia3Conv, Ia3Linear};
use super::lora;
use super::prefix::{Prefix, Source};
use super::registry::LoraParts;
use super::targets::{pattern_matches, PeftTargets};
use crate::nn::{AttentionSlots, BatchNorm2d, Conv2d, LayerVisitor, Linear, VisitLayers};

/// What [`apply_peft`] did: the method, parameter counts (as peft's `print_trainable_parameters`: every trained
/// parameter, of every parameter including the method's own; buffers are not parameters) and the adapted layers.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftReport {
    /// The method's name (`lora`, `dora`, …).
    pub method: String,
    /// Parameters that train.
    pub trainable: i64,
    /// All parameters, the method's included.
    pub total: i64,
    /// Checkpoint names of the adapted layers or attention blocks (for BitFit, of the trained biases).
    pub adapted_layers: Vec<String>,
    /// [`base_checksum`] of the base model as it was before the method was applied, head excluded: what
    /// [`super::save_adapter`] records and [`super::load_adapter`] checks.
    pub base_checksum: String,
}

impl PeftReport {
    /// `trainable / total`.
    pub fn fraction(&self) -> f64 {
        self.trainable as f64 / self.total.max(1) as f64
    }

    /// One line for logs: `trainable params: 1,234 of 22,713,216 (0.54 %) — lora on 12 layers`.
    pub fn summary_line(&self) -> String {
        let n = self.adapted_layers.len();
        let what = match self.method.as_str() {
            "prefix" | "ptuning2" => "attention blocks",
            "bitfit" => "biases",
            _ => "layers",
        };
        let place = if self.method == "none" { String::new() } else { format!(" — {} on {n} {what}", self.method) };
        format!(
            "trainable params: {} of {} ({:.2} %){place}",
            thousands(self.trainable),
            thousands(self.total),
            100.0 * self.fraction()
        )
    }
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The kinds of layer a method can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerKind {
    Linear,
    Conv,
    Attention,
}

impl LayerKind {
    fn label(self) -> &'static str {
        match self {
            LayerKind::Linear => "linear",
            LayerKind::Conv => "convolution",
            LayerKind::Attention => "attention",
        }
    }
}

/// One PEFT-capable layer as the survey saw it.
#[derive(Debug, Clone)]
struct LayerInfo {
    name: String,
    kind: LayerKind,
    busy: bool,
    /// For attention blocks: heads and head width.
    heads: i64,
    head_dim: i64,
}

#[derive(Default)]
struct Survey {
    layers: Vec<LayerInfo>,
}

impl LayerVisitor for Survey {
    fn linear(&mut self, l: &mut Linear) {
        let busy = !l.adapters.is_empty();
        self.layers.push(LayerInfo { name: l.name.clone(), kind: LayerKind::Linear, busy, heads: 0, head_dim: 0 });
    }
    fn conv2d(&mut self, l: &mut Conv2d) {
        let busy = !l.adapters.is_empty();
        self.layers.push(LayerInfo { name: l.name.clone(), kind: LayerKind::Conv, busy, heads: 0, head_dim: 0 });
    }
    fn attention(&mut self, s: &mut AttentionSlots) {
        let info = LayerInfo {
            name: s.name.clone(),
            kind: LayerKind::Attention,
            busy: s.prefix.is_some(),
            heads: s.heads,
            head_dim: s.head_dim,
        };
        self.layers.push(info);
    }
}

/// The layers of `kinds` that `targets` selects, in model order; every pattern must select one.
fn select(
    layers: &[LayerInfo],
    targets: &Targets,
    kinds: &[LayerKind],
    method: &str,
    key: &str,
    domain: &PeftTargets,
) -> Result<Vec<String>> {
    let usable = |l: &&LayerInfo| kinds.contains(&l.kind) && domain.is_adaptable(&l.name);
    let chosen: Vec<String> = match targets {
        Targets::AllLinear => {
            let all: Vec<String> =
                layers.iter().filter(|l| l.kind == LayerKind::Linear).filter(usable).map(|l| l.name.clone()).collect();
            if all.is_empty() {
                bail!("{method}: {key} = \"all-linear\" but the model has no linear layer outside its head");
            }
            all
        }
        Targets::Names(patterns) => {
            for p in patterns {
                if layers.iter().filter(usable).any(|l| pattern_matches(p, &l.name)) {
                    continue;
                }
                let named: Vec<&LayerInfo> = layers.iter().filter(|l| pattern_matches(p, &l.name)).collect();
                if let Some(l) = named.first() {
                    let why = if !kinds.contains(&l.kind) {
                        format!("a {} layer, which {method} cannot adapt", l.kind.label())
                    } else {
                        "in the head or excluded from adaptation".to_string()
                    };
                    bail!("{method}: {key} pattern {p:?} matches only {} ({why})", l.name);
                }
                let candidates: Vec<&str> =
                    layers.iter().filter(usable).map(|l| l.name.as_str()).take(6).collect::<Vec<_>>();
                let total = layers.iter().filter(usable).count();
                bail!(
                    "{method}: {key} pattern {p:?} matches no layer of the model; its {} layers are named like {}{}",
                    kinds.iter().map(|k| k.label()).collect::<Vec<_>>().join("/"),
                    candidates.join(", "),
                    if total > candidates.len() { format!(", … ({total} in all)") } else { String::new() }
                );
            }
            layers
                .iter()
                .filter(usable)
                .filter(|l| patterns.iter().any(|p| pattern_matches(p, &l.name)))
                .map(|l| l.name.clone())
                .collect()
        }
    };
    if let Some(l) = layers.iter().find(|l| l.busy && chosen.contains(&l.name)) {
        bail!("{method}: layer {} already has an adapter (was PEFT applied twice?)", l.name);
    }
    Ok(chosen)
}

fn domain_targets(list: &[String], method: &str, what: &str) -> Result<Targets> {
    if list.is_empty() {
        bail!("{method}: this model declares no default {what}; name them with `targets` (e.g. \"all-linear\")");
    }
    Ok(Targets::Names(list.to_vec()))
}

/// Adds a trainable variable `name` (dotted) to `vs`, refusing a name that exists (tch would silently rename it).
fn new_var(vs: &VarStore, name: &str, value: Tensor) -> Result<Tensor> {
    {
        let vars = vs.variables_.lock().map_err(|_| anyhow!("the VarStore lock is poisoned"))?;
        if vars.named_variables.contains_key(name) {
            bail!("variable {name} already exists (was PEFT applied twice?)");
        }
    }
    let mut parts: Vec<&str> = name.split('.').collect();
    let last = parts.pop().ok_or_else(|| anyhow!("empty variable name"))?;
    let path = parts.iter().fold(vs.root(), |p, c| p.sub(*c));
    Ok(path.add(last, value, true))
}

/// `U(-1/√fan_in, 1/√fan_in)`: kaiming-uniform with `a = √5`, torch's default for `nn.Linear`/`nn.Conv2d` and
/// peft's for `lora_A`.
fn kaiming_a_sqrt5(shape: &[i64], like: &Tensor) -> Tensor {
    let fan_in: i64 = shape[1..].iter().product();
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    tch::no_grad(|| Tensor::empty(shape, (like.kind(), like.device())).uniform_(-bound, bound))
}

fn zeros(shape: &[i64], like: &Tensor) -> Tensor {
    Tensor::zeros(shape, (like.kind(), like.device()))
}

/// What the attaching visitor puts into the chosen layers.
enum Method<'a> {
    Lora(&'a LoraConfig),
    Ia3 { feedforward: HashSet<String> },
    Adapter { reduction: i64, act: super::config::NonLinearity },
    Prefix { tokens: i64, shared: Option<SharedMlp>, offset: i64 },
}

/// The tensors of the reparameterisation MLP shared by every block.
struct SharedMlp {
    embedding: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

struct Attacher<'a> {
    vs: &'a VarStore,
    method: Method<'a>,
    chosen: HashSet<String>,
    adapted: Vec<String>,
    error: Option<anyhow::Error>,
}

impl Attacher<'_> {
    fn wants(&self, name: &str) -> bool {
        self.error.is_none() && self.chosen.contains(name)
    }

    fn record(&mut self, name: &str, r: Result<()>) {
        match r {
            Ok(()) => self.adapted.push(name.to_string()),
            Err(e) => self.error = Some(e),
        }
    }

    fn lora_parts(&self, name: &str, c: &LoraConfig, a: Tensor, b: Tensor, m: Option<Tensor>) -> Result<LoraParts> {
        let a = new_var(self.vs, &format!("{name}.lora_A.weight"), a)?;
        let b = new_var(self.vs, &format!("{name}.lora_B.weight"), b)?;
        let magnitude = match m {
            Some(m) => Some(new_var(self.vs, &format!("{name}.lora_magnitude_vector"), m)?),
            None => None,
        };
        Ok(LoraParts { a, b, magnitude, scale: c.scale(), dropout: c.dropout })
    }

    fn linear_result(&mut self, l: &mut Linear) -> Result<()> {
        let (name, w) = (l.name.clone(), &l.weight);
        let (out_f, in_f) = (l.out_features(), l.in_features());
        match &self.method {
            Method::Lora(c) => {
                let m = c.use_dora.then(|| lora::linear_magnitude(w));
                let parts = self.lora_parts(&name, c, kaiming_a_sqrt5(&[c.r, in_f], w), zeros(&[out_f, c.r], w), m)?;
                l.adapters.push(lora::linear_adapter(parts));
            }
            Method::Ia3 { feedforward } => {
                let feedforward = feedforward.contains(&name);
                let shape = if feedforward { [1, in_f] } else { [out_f, 1] };
                let l_vec = new_var(self.vs, &format!("{name}.ia3_l"), Tensor::ones(shape, (w.kind(), w.device())))?;
                l.adapters.push(Box::new(Ia3Linear { l: l_vec, feedforward }));
            }
            Method::Adapter { reduction, act } => {
                let bottleneck = (out_f / reduction).max(1);
                let bound = 1.0 / (out_f as f64).sqrt();
                let down_b =
                    tch::no_grad(|| Tensor::empty([bottleneck], (w.kind(), w.device())).uniform_(-bound, bound));
                let adapter = Bottleneck {
                    down_w: new_var(
                        self.vs,
                        &format!("{name}.adapter_down.weight"),
                        kaiming_a_sqrt5(&[bottleneck, out_f], w),
                    )?,
                    down_b: new_var(self.vs, &format!("{name}.adapter_down.bias"), down_b)?,
                    up_w: new_var(self.vs, &format!("{name}.adapter_up.weight"), zeros(&[out_f, bottleneck], w))?,
                    up_b: new_var(self.vs, &format!("{name}.adapter_up.bias"), zeros(&[out_f], w))?,
                    act: *act,
                };
                l.adapters.push(Box::new(adapter));
            }
            Method::Prefix { .. } => unreachable!("prefix methods choose attention blocks only"),
        }
        Ok(())
    }

    fn conv_result(&mut self, l: &mut Conv2d) -> Result<()> {
        let (name, w) = (l.name.clone(), &l.weight);
        let size = w.size();
        let groups = l.config.groups;
        let (out_c, in_c) = (size[0], size[1] * groups);
        match &self.method {
            Method::Lora(c) => {
                if c.r % groups != 0 {
                    bail!("lora: {name} is a grouped convolution (groups = {groups}); the rank r = {} must be a multiple of it, as in peft", c.r);
                }
                if c.use_dora && groups != 1 {
                    bail!("dora: {name} is a grouped convolution (groups = {groups}), which DoRA does not support");
                }
                let a = kaiming_a_sqrt5(&[c.r, in_c, size[2], size[3]], w);
                let b = zeros(&[out_c, c.r / groups, 1, 1], w);
                let m = c.use_dora.then(|| lora::conv_magnitude(w));
                let parts = self.lora_parts(&name, c, a, b, m)?;
                l.adapters.push(lora::conv_adapter(parts));
            }
            Method::Ia3 { feedforward } => {
                let feedforward = feedforward.contains(&name);
                let width = if feedforward { in_c } else { out_c };
                let ones = Tensor::ones([1, width, 1, 1], (w.kind(), w.device()));
                let l_vec = new_var(self.vs, &format!("{name}.ia3_l"), ones)?;
                l.adapters.push(Box::new(Ia3Conv { l: l_vec, feedforward }));
            }
            Method::Adapter { .. } | Method::Prefix { .. } => unreachable!("only linear layers are chosen"),
        }
        Ok(())
    }

    fn slot_result(&mut self, s: &mut AttentionSlots) -> Result<()> {
        let Method::Prefix { tokens, shared, offset } = &mut self.method else {
            unreachable!("only prefix methods choose attention blocks")
        };
        let width = 2 * s.heads * s.head_dim;
        let source = match shared {
            None => {
                let table = tch::no_grad(|| Tensor::randn([*tokens, width], (self.vs.kind(), self.vs.device())));
                Source::Table(new_var(self.vs, &format!("{}.prefix_kv", s.name), table)?)
            }
            Some(m) => {
                let src = Source::Mlp {
                    embedding: m.embedding.shallow_clone(),
                    w1: m.w1.shallow_clone(),
                    b1: m.b1.shallow_clone(),
                    w2: m.w2.shallow_clone(),
                    b2: m.b2.shallow_clone(),
                    offset: *offset,
                };
                *offset += width;
                src
            }
        };
        s.prefix = Some(Box::new(Prefix { source, heads: s.heads, head_dim: s.head_dim }));
        Ok(())
    }
}

impl LayerVisitor for Attacher<'_> {
    fn linear(&mut self, l: &mut Linear) {
        if self.wants(&l.name) {
            let r = self.linear_result(l);
            self.record(&l.name.clone(), r);
        }
    }
    fn conv2d(&mut self, l: &mut Conv2d) {
        if self.wants(&l.name) {
            let r = self.conv_result(l);
            self.record(&l.name.clone(), r);
        }
    }
    fn attention(&mut self, s: &mut AttentionSlots) {
        if self.wants(&s.name) {
            let r = self.slot_result(s);
            self.record(&s.name.clone(), r);
        }
    }
}

/// Freezes the running statistics of every batch norm outside the head: the adapter file holds only trained
/// tensors, so statistics that drifted during training could not be restored with it.
struct FreezeNorms<'a> {
    domain: &'a PeftTargets,
}

impl LayerVisitor for FreezeNorms<'_> {
    fn batch_norm(&mut self, layer: &mut BatchNorm2d) {
        if !self.domain.is_head(&layer.name) {
            layer.frozen = true;
        }
    }
}

/// Names of the variables of `vs` that are parameters (created trainable), whatever their `requires_grad` now.
pub(crate) fn parameter_names(vs: &VarStore) -> Result<Vec<String>> {
    let vars = vs.variables_.lock().map_err(|_| anyhow!("the VarStore lock is poisoned"))?;
    let mut by_ptr: HashMap<usize, Vec<(&String, &Tensor)>> = HashMap::new();
    for (name, t) in &vars.named_variables {
        by_ptr.entry(t.data_ptr() as usize).or_default().push((name, t));
    }
    let mut names = Vec::new();
    for var in &vars.trainable_variables {
        let ptr = var.tensor.data_ptr() as usize;
        if let Some(c) = by_ptr.get(&ptr) {
            names.extend(c.iter().filter(|(_, t)| t.is_set_to(&var.tensor)).map(|(n, _)| (*n).clone()));
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Adds the method's tensors to `vs` (names as peft saves them: `<layer>.lora_A.weight`, `<layer>.lora_B.weight`,
/// `<layer>.lora_magnitude_vector`, `<layer>.ia3_l`, `<layer>.adapter_down.weight`…, `<block>.prefix_kv`, and for
/// prefix tuning with projection the shared `prefix_encoder.embedding.weight`, `prefix_encoder.transform.{0,2}.*`),
/// pushes adapters and prefixes into the layers, then sets `requires_grad`: only the method's tensors and the head
/// train (and every bias for BitFit). Batch norms outside the head are frozen (running statistics fixed).
///
/// Call it after the base weights are loaded: DoRA's magnitudes start from them and the report's
/// [`PeftReport::base_checksum`] covers them. [`PeftConfig::None`] changes nothing.
///
/// Errors: an invalid config (rank 0, alpha ≤ 0, dropout outside [0, 1)…), a target pattern that matches no layer
/// (listing layers that exist), a method the model has no place for (prefix tuning without attention blocks,
/// adapters without declared positions), a layer that already has an adapter.
pub fn apply_peft(
    vs: &mut VarStore,
    model: &mut dyn VisitLayers,
    cfg: &PeftConfig,
    targets: &PeftTargets,
) -> Result<PeftReport> {
    cfg.validate()?;
    let method = cfg.method_name();
    let base_sum = base_checksum(vs, &|n| targets.is_head(n));
    let mut survey = Survey::default();
    model.visit_layers(&mut survey);
    let layers = survey.layers;
    let before: HashSet<String> = vs.variables().into_keys().collect();

    let dense_or_conv = [LayerKind::Linear, LayerKind::Conv];
    let (chosen, attach): (Vec<String>, Option<Method>) = match cfg {
        PeftConfig::None => (Vec::new(), None),
        PeftConfig::Lora(_) | PeftConfig::Dora(_) => {
            let c = match cfg {
                PeftConfig::Lora(c) | PeftConfig::Dora(c) => c,
                _ => unreachable!(),
            };
            let t = match &c.targets {
                Some(t) => t.clone(),
                None => domain_targets(&targets.default_lora, method, "LoRA targets")?,
            };
            (select(&layers, &t, &dense_or_conv, method, "targets", targets)?, None)
        }
        PeftConfig::Ia3(c) => {
            let t = match &c.targets {
                Some(t) => t.clone(),
                None => domain_targets(&targets.ia3, method, "(IA)³ targets")?,
            };
            let chosen = select(&layers, &t, &dense_or_conv, method, "targets", targets)?;
            let ff_patterns = c.feedforward.clone().unwrap_or_else(|| targets.ia3_feedforward.clone());
            let mut feedforward = HashSet::new();
            for p in &ff_patterns {
                let hits: Vec<&String> = chosen.iter().filter(|n| pattern_matches(p, n)).collect();
                if hits.is_empty() {
                    bail!("ia3: feedforward pattern {p:?} matches none of the targeted layers (as in peft, feed-forward layers must also be targets)");
                }
                feedforward.extend(hits.into_iter().cloned());
            }
            (chosen, Some(Method::Ia3 { feedforward }))
        }
        PeftConfig::Adapter(c) => {
            let mut patterns = targets.adapter_after_ffn.clone();
            if c.kind == AdapterKind::Houlsby {
                patterns.extend(targets.adapter_after_attention.iter().cloned());
            }
            if patterns.is_empty() {
                bail!("adapter: this model declares no place for bottleneck adapters (no attention output or feed-forward projection)");
            }
            let chosen =
                select(&layers, &Targets::Names(patterns), &[LayerKind::Linear], method, "adapter position", targets)?;
            (chosen, Some(Method::Adapter { reduction: c.reduction_factor, act: c.non_linearity }))
        }
        PeftConfig::Prefix(c) | PeftConfig::Ptuning2(c) => {
            let slots: Vec<&LayerInfo> = layers.iter().filter(|l| l.kind == LayerKind::Attention).collect();
            if slots.is_empty() {
                bail!("{method}: the model has no attention blocks to prepend virtual tokens to");
            }
            if let Some(s) = slots.iter().find(|s| s.busy) {
                bail!("{method}: attention block {} already has a prefix (was PEFT applied twice?)", s.name);
            }
            let shared = prefix_mlp(vs, c, &slots)?;
            let chosen = slots.iter().map(|s| s.name.clone()).collect();
            (chosen, Some(Method::Prefix { tokens: c.num_virtual_tokens, shared, offset: 0 }))
        }
        PeftConfig::Bitfit => (Vec::new(), None),
    };

    let mut adapted = Vec::new();
    if !chosen.is_empty() {
        let lora_cfg = cfg.lora();
        let method_impl = match (attach, &lora_cfg) {
            (Some(m), _) => m,
            (None, Some(c)) => Method::Lora(c),
            (None, None) => unreachable!("every method with layers has an attacher"),
        };
        let mut attacher = Attacher {
            vs,
            method: method_impl,
            chosen: chosen.iter().cloned().collect(),
            adapted: Vec::new(),
            error: None,
        };
        model.visit_layers(&mut attacher);
        if let Some(e) = attacher.error {
            return Err(e);
        }
        adapted = attacher.adapted;
    }

    if matches!(cfg, PeftConfig::None) {
        let (trainable, total) = counts(vs)?;
        return Ok(PeftReport {
            method: method.into(),
            trainable,
            total,
            adapted_layers: adapted,
            base_checksum: base_sum,
        });
    }

    let created: HashSet<String> = vs.variables().into_keys().filter(|n| !before.contains(n)).collect();
    let bitfit = matches!(cfg, PeftConfig::Bitfit);
    let is_bias = |n: &str| n == "bias" || n.ends_with(".bias");
    let vars = vs.variables();
    for name in parameter_names(vs)? {
        let train = created.contains(&name) || targets.is_head(&name) || (bitfit && is_bias(&name));
        if let Some(t) = vars.get(&name) {
            let _ = t.set_requires_grad(train);
        }
        if bitfit && train && is_bias(&name) && !targets.is_head(&name) {
            adapted.push(name);
        }
    }
    if bitfit && adapted.is_empty() {
        bail!("bitfit: the model has no bias outside its head");
    }
    model.visit_layers(&mut FreezeNorms { domain: targets });
    let (trainable, total) = counts(vs)?;
    Ok(PeftReport { method: method.into(), trainable, total, adapted_layers: adapted, base_checksum: base_sum })
}

/// The reparameterisation MLP of prefix tuning with `projection`, shared by every block, as peft's
/// `PrefixEncoder`: `embedding` `[n, token_dim]`, `transform.0` `token_dim → projection`, tanh, `transform.2`
/// `projection → Σ 2·heads·head_dim`. `token_dim` is the first block's width.
fn prefix_mlp(vs: &VarStore, c: &PrefixConfig, slots: &[&LayerInfo]) -> Result<Option<SharedMlp>> {
    let Some(hidden) = c.projection else { return Ok(None) };
    let token_dim = slots[0].heads * slots[0].head_dim;
    let out: i64 = slots.iter().map(|s| 2 * s.heads * s.head_dim).sum();
    let like = Tensor::zeros([1], (vs.kind(), vs.device()));
    let init = |shape: &[i64]| kaiming_a_sqrt5(shape, &like);
    let bias = |n: i64, fan_in: i64| {
        let b = 1.0 / (fan_in as f64).sqrt();
        tch::no_grad(|| Tensor::empty([n], (vs.kind(), vs.device())).uniform_(-b, b))
    };
    let embedding = tch::no_grad(|| Tensor::randn([c.num_virtual_tokens, token_dim], (vs.kind(), vs.device())));
    Ok(Some(SharedMlp {
        embedding: new_var(vs, "prefix_encoder.embedding.weight", embedding)?,
        w1: new_var(vs, "prefix_encoder.transform.0.weight", init(&[hidden, token_dim]))?,
        b1: new_var(vs, "prefix_encoder.transform.0.bias", bias(hidden, token_dim))?,
        w2: new_var(vs, "prefix_encoder.transform.2.weight", init(&[out, hidden]))?,
        b2: new_var(vs, "prefix_encoder.transform.2.bias", bias(out, hidden))?,
    }))
}

/// (trainable, total) parameter counts.
fn counts(vs: &VarStore) -> Result<(i64, i64)> {
    let vars = vs.variables();
    let mut trainable = 0;
    let mut total = 0;
    for name in parameter_names(vs)? {
        if let Some(t) = vars.get(&name) {
            let n = t.numel() as i64;
            total += n;
            if t.requires_grad() {
                trainable += n;
            }
        }
    }
    Ok((trainable, total))
}
