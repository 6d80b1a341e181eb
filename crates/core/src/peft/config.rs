//! The `[peft]` table of a recipe and the `--peft …` flags: which method, with which hyper-parameters, on which
//! layers. Names and defaults follow Hugging Face PEFT (`r`, `lora_alpha` → `alpha`, `target_modules` →
//! `targets`, `num_virtual_tokens`, `feedforward_modules` → `feedforward`…).

use std::fmt;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parameter-efficient fine-tuning method and its settings (`[peft]` in a recipe, tagged by `method`).
///
/// Deserialisation goes through one flat table (not serde's buffered internal tagging) so that TOML errors keep
/// their line numbers; a key that belongs to another method is an error naming the method's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "method", rename_all = "lowercase", try_from = "FlatPeft")]
pub enum PeftConfig {
    /// No PEFT: the domain's own tuning strategy decides what trains.
    #[default]
    None,
    /// Low-rank adaptation (Hu et al.): `y = W·x + (B·A·dropout(x))·scale`, as peft's `LoraConfig`.
    Lora(LoraConfig),
    /// LoRA with weight decomposition (Liu et al.): a trained magnitude per output row, as peft's `use_dora=True`.
    Dora(LoraConfig),
    /// (IA)³ (Liu et al.): learned rescaling of outputs (keys, values…) or of feed-forward inputs, as peft.
    Ia3(Ia3Config),
    /// Prefix tuning (Li & Liang): trained keys/values prepended in every attention block, optionally through the
    /// reparameterisation MLP of peft's `PrefixEncoder`.
    Prefix(PrefixConfig),
    /// P-tuning v2 (Liu et al.): deep prompts in every attention block, without reparameterisation.
    Ptuning2(PrefixConfig),
    /// Bottleneck adapters (Houlsby et al., Pfeiffer et al.) after the attention output and/or the feed-forward
    /// down-projection, initialised to the identity.
    Adapter(AdapterConfig),
    /// BitFit (Ben Zaken et al.): only the biases (and the head) train.
    Bitfit,
}

/// LoRA and DoRA settings, with peft's defaults (`r = 8`, `alpha = 8`, no dropout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update `B·A`.
    #[serde(default = "default_r")]
    pub r: i64,
    /// Scale numerator: the update is multiplied by `alpha / r` (`alpha / √r` with rsLoRA).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter's input, in `[0, 1)`.
    #[serde(default)]
    pub dropout: f64,
    /// Rank-stabilised scaling `alpha / √r` (Kalajdzievski), as peft's `use_rslora`.
    #[serde(default)]
    pub rslora: bool,
    /// Layers to adapt; `None` takes the domain's default (query and value projections for BERT, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// DoRA's magnitude vector, as peft's `use_dora` (implied by `method = "dora"`).
    #[serde(default)]
    pub use_dora: bool,
}

fn default_r() -> i64 {
    8
}
fn default_alpha() -> f64 {
    8.0
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self { r: default_r(), alpha: default_alpha(), dropout: 0.0, rslora: false, targets: None, use_dora: false }
    }
}

impl LoraConfig {
    /// The factor on `B·A`: `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// (IA)³ settings: which layers get a learned vector, and which of those scale their input (feed-forward).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Ia3Config {
    /// Layers to rescale; `None` takes the domain's default (keys, values and the feed-forward down-projection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Patterns, among the targets, whose *input* is scaled rather than their output, as peft's
    /// `feedforward_modules`; `None` takes the domain's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedforward: Option<Vec<String>>,
}

/// Prefix tuning and P-tuning v2 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixConfig {
    /// Number of virtual tokens prepended to the keys and values of every attention block.
    #[serde(default = "default_virtual_tokens")]
    pub num_virtual_tokens: i64,
    /// Width of the reparameterisation MLP (peft's `encoder_hidden_size` with `prefix_projection=True`); only for
    /// `method = "prefix"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<i64>,
}

fn default_virtual_tokens() -> i64 {
    20
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self { num_virtual_tokens: default_virtual_tokens(), projection: None }
    }
}

/// Where bottleneck adapters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// After the attention output projection and after the feed-forward down-projection.
    #[default]
    Houlsby,
    /// After the feed-forward down-projection only.
    Pfeiffer,
}

/// The activation between an adapter's down- and up-projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NonLinearity {
    /// `max(0, x)`, the adapters' usual choice.
    #[default]
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
}

/// Bottleneck adapter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// Houlsby (two adapters per block) or Pfeiffer (one, after the feed-forward).
    #[serde(default)]
    pub kind: AdapterKind,
    /// Bottleneck width is the layer's output width divided by this (at least 1).
    #[serde(default = "default_reduction")]
    pub reduction_factor: i64,
    /// Activation inside the bottleneck.
    #[serde(default)]
    pub non_linearity: NonLinearity,
}

fn default_reduction() -> i64 {
    16
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self { kind: AdapterKind::Houlsby, reduction_factor: default_reduction(), non_linearity: NonLinearity::Relu }
    }
}

/// Which layers a method adapts, as peft's `target_modules`: `"all-linear"`, or name patterns.
///
/// A pattern matches a layer when it equals the layer's dotted name or is a suffix of it at a dot boundary
/// (`value` matches `bert.encoder.layer.0.attention.self.value`, `output.dense` matches both
/// `…attention.output.dense` and `…layer.0.output.dense`); a `*` component matches any one component
/// (`layer.*.output.dense` matches only the feed-forward one).
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Every linear layer of the model except the head and the domain's exclusions (peft's `"all-linear"`).
    AllLinear,
    /// Layer-name patterns.
    Names(Vec<String>),
}

impl Targets {
    /// Parses `"all-linear"` or a comma-separated list such as `"query,value"`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all-linear") || text.eq_ignore_ascii_case("all_linear") {
            return Ok(Targets::AllLinear);
        }
        Self::from_list(text.split(',').map(str::to_string).collect())
    }

    fn from_list(items: Vec<String>) -> Result<Self> {
        let names: Vec<String> = items.iter().map(|s| s.trim().to_string()).collect();
        if names.is_empty() || names.iter().any(String::is_empty) {
            bail!("expected \"all-linear\" or layer-name patterns such as \"query,value\", found {items:?}");
        }
        if let Some(bad) = names.iter().find(|n| n.starts_with('.') || n.ends_with('.') || n.contains("..")) {
            bail!("layer-name pattern {bad:?} has an empty component (patterns look like `value` or `output.dense`)");
        }
        Ok(Targets::Names(names))
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Targets::AllLinear => f.write_str("all-linear"),
            Targets::Names(n) => f.write_str(&n.join(",")),
        }
    }
}

impl Serialize for Targets {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Targets::AllLinear => s.serialize_str("all-linear"),
            Targets::Names(n) => n.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let parsed = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected \"all-linear\", a comma list such as \"query,value\", or an array")
        })? {
            Raw::One(s) => Targets::parse(&s),
            Raw::Many(v) => Targets::from_list(v),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

impl PeftConfig {
    /// The method's name as written in recipes and adapter files: `lora`, `dora` (also for `lora` with
    /// `use_dora = true`), `ia3`, `prefix`, `ptuning2`, `adapter`, `bitfit` or `none`.
    pub fn method_name(&self) -> &'static str {
        match self {
            PeftConfig::None => "none",
            PeftConfig::Lora(c) if c.use_dora => "dora",
            PeftConfig::Lora(_) => "lora",
            PeftConfig::Dora(_) => "dora",
            PeftConfig::Ia3(_) => "ia3",
            PeftConfig::Prefix(_) => "prefix",
            PeftConfig::Ptuning2(_) => "ptuning2",
            PeftConfig::Adapter(_) => "adapter",
            PeftConfig::Bitfit => "bitfit",
        }
    }

    /// LoRA's settings with `use_dora` resolved, for `lora` and `dora`.
    pub fn lora(&self) -> Option<LoraConfig> {
        match self {
            PeftConfig::Lora(c) => Some(c.clone()),
            PeftConfig::Dora(c) => Some(LoraConfig { use_dora: true, ..c.clone() }),
            _ => None,
        }
    }

    /// The same configuration with DoRA spelt one way (`method = "dora"`), for comparing configs.
    pub(crate) fn canonical(&self) -> PeftConfig {
        match self.lora() {
            Some(c) if c.use_dora => PeftConfig::Dora(LoraConfig { use_dora: false, ..c }),
            _ => self.clone(),
        }
    }

    /// Checks every value's range; errors name the `[peft]` key and what was expected.
    pub fn validate(&self) -> Result<()> {
        match self {
            PeftConfig::Lora(c) | PeftConfig::Dora(c) => {
                if c.r < 1 {
                    bail!("[peft] r = {}: the LoRA rank must be a positive integer", c.r);
                }
                if !(c.alpha.is_finite() && c.alpha > 0.0) {
                    bail!("[peft] alpha = {}: expected a positive number (the update is scaled by alpha / r)", c.alpha);
                }
                check_dropout(c.dropout)?;
                check_targets(c.targets.as_ref(), "targets")?;
            }
            PeftConfig::Ia3(c) => {
                check_targets(c.targets.as_ref(), "targets")?;
                if let Some(ff) = &c.feedforward {
                    if ff.iter().any(|p| p.trim().is_empty()) {
                        bail!("[peft] feedforward = {ff:?}: patterns must not be empty");
                    }
                }
            }
            PeftConfig::Prefix(c) | PeftConfig::Ptuning2(c) => {
                if c.num_virtual_tokens < 1 {
                    bail!("[peft] num_virtual_tokens = {}: expected at least 1 virtual token", c.num_virtual_tokens);
                }
                match c.projection {
                    Some(_) if matches!(self, PeftConfig::Ptuning2(_)) => bail!(
                        "[peft] projection: P-tuning v2 has no reparameterisation MLP; use method = \"prefix\" for one"
                    ),
                    Some(h) if h < 1 => bail!("[peft] projection = {h}: expected a positive MLP width"),
                    _ => {}
                }
            }
            PeftConfig::Adapter(c) => {
                if c.reduction_factor < 1 {
                    bail!(
                        "[peft] reduction_factor = {}: expected a positive integer (bottleneck = width / factor)",
                        c.reduction_factor
                    );
                }
            }
            PeftConfig::None | PeftConfig::Bitfit => {}
        }
        Ok(())
    }

    /// Applies the CLI's PEFT flags over this configuration (flags win over a recipe's `[peft]` table). A flag
    /// that does not belong to the method is an error naming it.
    pub fn with_cli_options(self, opts: &PeftCliOptions) -> Result<PeftConfig> {
        let method = self.method_name();
        let reject = |set: bool, flag: &str| -> Result<()> {
            if set {
                bail!("{flag} does not apply to --peft {method}");
            }
            Ok(())
        };
        let lora_flags = [
            (opts.lora_r.is_some(), "--lora-r"),
            (opts.lora_alpha.is_some(), "--lora-alpha"),
            (opts.lora_dropout.is_some(), "--lora-dropout"),
            (opts.lora_targets.is_some(), "--lora-targets"),
            (opts.rslora.is_some(), "--rslora"),
        ];
        let ia3_flags =
            [(opts.ia3_targets.is_some(), "--ia3-targets"), (opts.ia3_feedforward.is_some(), "--ia3-feedforward")];
        let prefix_flags = [
            (opts.prefix_tokens.is_some(), "--prefix-tokens"),
            (opts.prefix_projection.is_some(), "--prefix-projection"),
        ];
        let adapter_flags = [
            (opts.adapter_kind.is_some(), "--adapter-kind"),
            (opts.adapter_reduction.is_some(), "--adapter-reduction"),
            (opts.adapter_non_linearity.is_some(), "--adapter-non-linearity"),
        ];
        let is_lora = self.lora().is_some();
        let is_prefix = matches!(self, PeftConfig::Prefix(_) | PeftConfig::Ptuning2(_));
        for (flags, applies) in [
            (&lora_flags[..], is_lora),
            (&ia3_flags[..], matches!(self, PeftConfig::Ia3(_))),
            (&prefix_flags[..], is_prefix),
            (&adapter_flags[..], matches!(self, PeftConfig::Adapter(_))),
        ] {
            if !applies {
                for &(set, flag) in flags {
                    reject(set, flag)?;
                }
            }
        }
        let lora = |mut c: LoraConfig| -> Result<LoraConfig> {
            c.r = opts.lora_r.unwrap_or(c.r);
            c.alpha = opts.lora_alpha.unwrap_or(c.alpha);
            c.dropout = opts.lora_dropout.unwrap_or(c.dropout);
            c.rslora = opts.rslora.unwrap_or(c.rslora);
            if let Some(t) = &opts.lora_targets {
                c.targets = Some(Targets::parse(t).map_err(|e| anyhow!("--lora-targets {t:?}: {e}"))?);
            }
            Ok(c)
        };
        // A recipe's own mistakes are reported against its keys before any flag is applied.
        self.validate()?;
        let cfg = match self {
            PeftConfig::Lora(c) => PeftConfig::Lora(lora(c)?),
            PeftConfig::Dora(c) => PeftConfig::Dora(lora(c)?),
            PeftConfig::Ia3(mut c) => {
                if let Some(t) = &opts.ia3_targets {
                    c.targets = Some(Targets::parse(t).map_err(|e| anyhow!("--ia3-targets {t:?}: {e}"))?);
                }
                if let Some(f) = &opts.ia3_feedforward {
                    c.feedforward = Some(f.split(',').map(|s| s.trim().to_string()).collect());
                }
                PeftConfig::Ia3(c)
            }
            PeftConfig::Prefix(mut c) => {
                c.num_virtual_tokens = opts.prefix_tokens.unwrap_or(c.num_virtual_tokens);
                c.projection = opts.prefix_projection.or(c.projection);
                PeftConfig::Prefix(c)
            }
            PeftConfig::Ptuning2(mut c) => {
                c.num_virtual_tokens = opts.prefix_tokens.unwrap_or(c.num_virtual_tokens);
                c.projection = opts.prefix_projection.or(c.projection);
                PeftConfig::Ptuning2(c)
            }
            PeftConfig::Adapter(mut c) => {
                if let Some(k) = &opts.adapter_kind {
                    c.kind = match k.to_ascii_lowercase().as_str() {
                        "houlsby" => AdapterKind::Houlsby,
                        "pfeiffer" => AdapterKind::Pfeiffer,
                        _ => bail!("--adapter-kind {k:?}: expected houlsby or pfeiffer"),
                    };
                }
                if let Some(a) = &opts.adapter_non_linearity {
                    c.non_linearity = match a.to_ascii_lowercase().as_str() {
                        "relu" => NonLinearity::Relu,
                        "gelu" => NonLinearity::Gelu,
                        "tanh" => NonLinearity::Tanh,
                        _ => bail!("--adapter-non-linearity {a:?}: expected relu, gelu or tanh"),
                    };
                }
                c.reduction_factor = opts.adapter_reduction.unwrap_or(c.reduction_factor);
                PeftConfig::Adapter(c)
            }
            other => other,
        };
        cfg.validate().map_err(|e| {
            let mut msg = e.to_string();
            for (key, flag) in [
                ("[peft] r =", "--lora-r"),
                ("[peft] alpha =", "--lora-alpha"),
                ("[peft] dropout =", "--lora-dropout"),
                ("[peft] num_virtual_tokens =", "--prefix-tokens"),
                ("[peft] projection =", "--prefix-projection"),
                ("[peft] projection:", "--prefix-projection:"),
                ("[peft] reduction_factor =", "--adapter-reduction"),
            ] {
                msg = msg.replace(key, flag);
            }
            anyhow!(msg)
        })?;
        Ok(cfg)
    }
}

/// Every key of every method, as one TOML table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatPeft {
    method: String,
    r: Option<i64>,
    alpha: Option<f64>,
    dropout: Option<f64>,
    rslora: Option<bool>,
    targets: Option<Targets>,
    use_dora: Option<bool>,
    feedforward: Option<Vec<String>>,
    num_virtual_tokens: Option<i64>,
    projection: Option<i64>,
    kind: Option<AdapterKind>,
    reduction_factor: Option<i64>,
    non_linearity: Option<NonLinearity>,
}

const METHODS: &str = "none, lora, dora, ia3, prefix, ptuning2, adapter, bitfit";

impl TryFrom<FlatPeft> for PeftConfig {
    type Error = String;

    fn try_from(f: FlatPeft) -> std::result::Result<Self, String> {
        let set = [
            ("r", f.r.is_some()),
            ("alpha", f.alpha.is_some()),
            ("dropout", f.dropout.is_some()),
            ("rslora", f.rslora.is_some()),
            ("targets", f.targets.is_some()),
            ("use_dora", f.use_dora.is_some()),
            ("feedforward", f.feedforward.is_some()),
            ("num_virtual_tokens", f.num_virtual_tokens.is_some()),
            ("projection", f.projection.is_some()),
            ("kind", f.kind.is_some()),
            ("reduction_factor", f.reduction_factor.is_some()),
            ("non_linearity", f.non_linearity.is_some()),
        ];
        let method = f.method.trim().to_ascii_lowercase();
        let allowed: &[&str] = match method.as_str() {
            "lora" | "dora" => &["r", "alpha", "dropout", "rslora", "targets", "use_dora"],
            "ia3" => &["targets", "feedforward"],
            "prefix" | "ptuning2" | "p-tuning-v2" | "ptuning_v2" => &["num_virtual_tokens", "projection"],
            "adapter" => &["kind", "reduction_factor", "non_linearity"],
            "none" | "bitfit" => &[],
            other => return Err(format!("unknown PEFT method {other:?}, expected one of {METHODS}")),
        };
        if let Some((key, _)) = set.iter().find(|(k, on)| *on && !allowed.contains(k)) {
            let own = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
            return Err(format!("`{key}` is not a setting of method \"{method}\" (its settings: {own})"));
        }
        let lora = || LoraConfig {
            r: f.r.unwrap_or_else(default_r),
            alpha: f.alpha.unwrap_or_else(default_alpha),
            dropout: f.dropout.unwrap_or(0.0),
            rslora: f.rslora.unwrap_or(false),
            targets: f.targets.clone(),
            use_dora: f.use_dora.unwrap_or(false),
        };
        let prefix = || PrefixConfig {
            num_virtual_tokens: f.num_virtual_tokens.unwrap_or_else(default_virtual_tokens),
            projection: f.projection,
        };
        Ok(match method.as_str() {
            "lora" => PeftConfig::Lora(lora()),
            "dora" => PeftConfig::Dora(lora()),
            "ia3" => PeftConfig::Ia3(Ia3Config { targets: f.targets.clone(), feedforward: f.feedforward.clone() }),
            "prefix" => PeftConfig::Prefix(prefix()),
            "adapter" => PeftConfig::Adapter(AdapterConfig {
                kind: f.kind.unwrap_or_default(),
                reduction_factor: f.reduction_factor.unwrap_or_else(default_reduction),
                non_linearity: f.non_linearity.unwrap_or_default(),
            }),
            "bitfit" => PeftConfig::Bitfit,
            "none" => PeftConfig::None,
            _ => PeftConfig::Ptuning2(prefix()),
        })
    }
}

fn check_dropout(p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!("[peft] dropout = {p}: expected a probability in [0, 1)");
    }
    Ok(())
}

fn check_targets(t: Option<&Targets>, key: &str) -> Result<()> {
    if let Some(Targets::Names(n)) = t {
        if n.is_empty() || n.iter().any(|p| p.trim().is_empty()) {
            bail!("[peft] {key} = {n:?}: expected \"all-linear\" or non-empty layer-name patterns");
        }
    }
    Ok(())
}

/// The CLI's PEFT flags, without clap: the CLI fills the fields it was given and calls [`from_cli`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeftCliOptions {
    /// `--lora-r`.
    pub lora_r: Option<i64>,
    /// `--lora-alpha`.
    pub lora_alpha: Option<f64>,
    /// `--lora-dropout`.
    pub lora_dropout: Option<f64>,
    /// `--lora-targets all-linear|query,value`.
    pub lora_targets: Option<String>,
    /// `--rslora`.
    pub rslora: Option<bool>,
    /// `--ia3-targets`.
    pub ia3_targets: Option<String>,
    /// `--ia3-feedforward` (comma list).
    pub ia3_feedforward: Option<String>,
    /// `--prefix-tokens`.
    pub prefix_tokens: Option<i64>,
    /// `--prefix-projection` (MLP width; `--peft prefix` only).
    pub prefix_projection: Option<i64>,
    /// `--adapter-kind houlsby|pfeiffer`.
    pub adapter_kind: Option<String>,
    /// `--adapter-reduction`.
    pub adapter_reduction: Option<i64>,
    /// `--adapter-non-linearity relu|gelu|tanh`.
    pub adapter_non_linearity: Option<String>,
}

/// The configuration for `--peft METHOD` with the method's defaults overridden by `opts`; `METHOD` is one of
/// `none`, `lora`, `dora`, `ia3`, `prefix`, `ptuning2` (or `p-tuning-v2`), `adapter`, `houlsby`, `pfeiffer`,
/// `bitfit`.
pub fn from_cli(method: &str, opts: &PeftCliOptions) -> Result<PeftConfig> {
    let base = match method.trim().to_ascii_lowercase().as_str() {
        "none" => PeftConfig::None,
        "lora" => PeftConfig::Lora(LoraConfig::default()),
        "dora" => PeftConfig::Dora(LoraConfig::default()),
        "ia3" => PeftConfig::Ia3(Ia3Config::default()),
        "prefix" => PeftConfig::Prefix(PrefixConfig::default()),
        "ptuning2" | "p-tuning-v2" | "ptuning_v2" => PeftConfig::Ptuning2(PrefixConfig::default()),
        "adapter" | "houlsby" => PeftConfig::Adapter(AdapterConfig::default()),
        "pfeiffer" => PeftConfig::Adapter(AdapterConfig { kind: AdapterKind::Pfeiffer, ..AdapterConfig::default() }),
        "bitfit" => PeftConfig::Bitfit,
        other => bail!(
            "--peft {other:?}: expected one of none, lora, dora, ia3, prefix, ptuning2, adapter, houlsby, pfeiffer, \
             bitfit"
        ),
    };
    base.with_cli_options(opts)
}
