//! A search space: which recipe keys a study varies and over what. Written as TOML that mirrors the recipe it
//! applies to, each varied key holding a distribution instead of a value:
//!
//! ```toml
//! [train]
//! lr = { type = "log_uniform", low = 1e-5, high = 1e-3 }
//! weight_decay = { type = "uniform", low = 0.0, high = 0.1 }
//! epochs = { type = "int", low = 2, high = 6 }
//! batch_size = { type = "choice", values = [8, 16, 32] }
//! [vision]
//! tune = { type = "choice", values = ["head", "last:1", "full"] }
//! ```
//!
//! Quoted dotted keys (`"train.lr" = { … }`) mean the same. A parameter's name is its dotted path (`train.lr`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A distribution of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Uniform on `[low, high]`.
    Uniform { low: f64, high: f64 },
    /// Uniform in log space on `[low, high]` (`0 < low < high`): learning rates, decays.
    LogUniform { low: f64, high: f64 },
    /// An integer uniform on `[low, high]`, both included; `log = true` draws it log-uniformly.
    Int { low: i64, high: i64, log: bool },
    /// One of a list of values (strings, numbers, booleans).
    Choice { values: Vec<toml::Value> },
}

/// One varied key.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Dotted path in the recipe (`train.lr`, `vision.tune`, `peft.r`).
    pub name: String,
    /// What it is drawn from.
    pub dist: Dist,
}

/// Values of a trial's parameters, by name, in the recipe's own types.
pub type Params = BTreeMap<String, toml::Value>;

/// A search space: its parameters in name order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Space {
    /// The parameters.
    pub params: Vec<Param>,
}

impl Dist {
    /// The sampler's numeric view of the domain: `(low, high)` in the space the samplers work in (log for
    /// log-uniform, `±0.5` around the integer bounds), or `None` for a choice.
    pub fn internal_bounds(&self) -> Option<(f64, f64)> {
        match *self {
            Dist::Uniform { low, high } => Some((low, high)),
            Dist::LogUniform { low, high } => Some((low.ln(), high.ln())),
            Dist::Int { low, high, log: false } => Some((low as f64 - 0.5, high as f64 + 0.5)),
            Dist::Int { low, high, log: true } => Some(((low as f64 - 0.5).max(0.5).ln(), (high as f64 + 0.5).ln())),
            Dist::Choice { .. } => None,
        }
    }

    /// The recipe value of an internal number (a position in [`Dist::internal_bounds`], or a choice's index).
    pub fn to_value(&self, x: f64) -> toml::Value {
        match self {
            Dist::Uniform { low, high } => toml::Value::Float(x.clamp(*low, *high)),
            Dist::LogUniform { low, high } => toml::Value::Float(x.exp().clamp(*low, *high)),
            Dist::Int { low, high, log } => {
                let v = if *log { x.exp() } else { x };
                toml::Value::Integer((v.round() as i64).clamp(*low, *high))
            }
            Dist::Choice { values } => values[(x as usize).min(values.len() - 1)].clone(),
        }
    }

    /// The internal number of a recipe value (inverse of [`Dist::to_value`]), or `None` when the value is not in
    /// the domain (a journal written with another space).
    pub fn to_internal(&self, v: &toml::Value) -> Option<f64> {
        let num = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        match self {
            Dist::Uniform { .. } => num,
            Dist::LogUniform { .. } => num.filter(|x| *x > 0.0).map(f64::ln),
            Dist::Int { log, .. } => num.map(|x| if *log { x.max(1e-12).ln() } else { x }),
            Dist::Choice { values } => values.iter().position(|c| c == v).map(|i| i as f64),
        }
    }

    /// Number of categories of a choice.
    pub fn n_choices(&self) -> Option<usize> {
        match self {
            Dist::Choice { values } => Some(values.len()),
            _ => None,
        }
    }
}

impl Space {
    /// Reads a space file; an error names the file, the key and what was expected.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses a space from TOML text (see the module documentation).
    pub fn parse(text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("not TOML: {}", e.message()))?;
        let mut params = Vec::new();
        walk(&table, "", &mut params)?;
        if params.is_empty() {
            bail!(
                "no parameter: expected keys such as train.lr = {{ type = \"log_uniform\", low = 1e-5, high = 1e-3 }}"
            );
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        for w in params.windows(2) {
            if w[0].name == w[1].name {
                bail!("key {}: given twice", w[0].name);
            }
        }
        Ok(Self { params })
    }

    /// The space as TOML, in the format [`Space::parse`] reads.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for p in &self.params {
            let spec = match &p.dist {
                Dist::Uniform { low, high } => format!("{{ type = \"uniform\", low = {low:?}, high = {high:?} }}"),
                Dist::LogUniform { low, high } => {
                    format!("{{ type = \"log_uniform\", low = {low:?}, high = {high:?} }}")
                }
                Dist::Int { low, high, log } => {
                    let l = if *log { ", log = true" } else { "" };
                    format!("{{ type = \"int\", low = {low}, high = {high}{l} }}")
                }
                Dist::Choice { values } => {
                    let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                    format!("{{ type = \"choice\", values = [{}] }}", v.join(", "))
                }
            };
            out.push_str(&format!("\"{}\" = {spec}\n", p.name));
        }
        out
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<Param>) -> Result<()> {
    for (k, v) in table {
        let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) if t.contains_key("type") => out.push(Param { dist: parse_dist(&name, t)?, name }),
            toml::Value::Table(t) => walk(t, &name, out)?,
            other => bail!(
                "key {name}: expected a distribution such as {{ type = \"uniform\", low = 0.0, high = 0.1 }}, \
                 got {}",
                short(other)
            ),
        }
    }
    Ok(())
}

fn short(v: &toml::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn parse_dist(name: &str, t: &toml::Table) -> Result<Dist> {
    let ty = t
        .get("type")
        .and_then(|v| v.as_str())
        .with_context(|| format!("key {name}: expected type = \"uniform\", \"log_uniform\", \"int\" or \"choice\""))?;
    let allowed: &[&str] = match ty {
        "uniform" | "log_uniform" => &["type", "low", "high"],
        "int" => &["type", "low", "high", "log"],
        "choice" => &["type", "values"],
        other => {
            bail!("key {name}: type {other:?}: expected \"uniform\", \"log_uniform\", \"int\" or \"choice\"")
        }
    };
    for k in t.keys() {
        if !allowed.contains(&k.as_str()) {
            bail!("key {name}: unknown field {k:?} for type {ty:?}: expected {}", allowed[1..].join(", "));
        }
    }
    let float = |f: &str| -> Result<f64> {
        let v = t.get(f).with_context(|| format!("key {name}: type {ty:?} needs {f} (a number)"))?;
        v.as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .filter(|x| x.is_finite())
            .with_context(|| format!("key {name}: {f} = {}: expected a finite number", short(v)))
    };
    let dist = match ty {
        "uniform" | "log_uniform" => {
            let (low, high) = (float("low")?, float("high")?);
            if low >= high {
                bail!("key {name}: expected low < high, got low = {low}, high = {high}");
            }
            if ty == "log_uniform" {
                if low <= 0.0 {
                    bail!("key {name}: log_uniform needs low > 0, got low = {low}");
                }
                Dist::LogUniform { low, high }
            } else {
                Dist::Uniform { low, high }
            }
        }
        "int" => {
            let int = |f: &str| -> Result<i64> {
                let v = t.get(f).with_context(|| format!("key {name}: type \"int\" needs {f} (an integer)"))?;
                v.as_integer().with_context(|| format!("key {name}: {f} = {}: expected an integer", short(v)))
            };
            let (low, high) = (int("low")?, int("high")?);
            if low > high {
                bail!("key {name}: expected low ≤ high, got low = {low}, high = {high}");
            }
            let log = match t.get("log") {
                None => false,
                Some(v) => {
                    v.as_bool().with_context(|| format!("key {name}: log = {}: expected true or false", short(v)))?
                }
            };
            if log && low < 1 {
                bail!("key {name}: an int with log = true needs low ≥ 1, got low = {low}");
            }
            Dist::Int { low, high, log }
        }
        _ => {
            let values = t
                .get("values")
                .with_context(|| format!("key {name}: type \"choice\" needs values = [...]"))?
                .as_array()
                .with_context(|| format!("key {name}: values: expected an array such as [\"a\", \"b\"]"))?
                .clone();
            if values.is_empty() {
                bail!("key {name}: values: expected at least one value");
            }
            if let Some(v) = values.iter().find(|v| v.is_table() || v.is_array()) {
                bail!("key {name}: values: expected strings, numbers or booleans, got {}", short(v));
            }
            Dist::Choice { values }
        }
    };
    Ok(dist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_and_dotted_keys() {
        let s = Space::parse(
            "\"train.lr\" = { type = \"log_uniform\", low = 1e-5, high = 1e-3 }\n\
             [train]\nepochs = { type = \"int\", low = 1, high = 4 }\n\
             [vision]\ntune = { type = \"choice\", values = [\"head\", \"full\"] }\n\
             [train.schedule]\nwarmup_ratio = { type = \"uniform\", low = 0, high = 0.2 }\n",
        )
        .unwrap();
        let names: Vec<&str> = s.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["train.epochs", "train.lr", "train.schedule.warmup_ratio", "vision.tune"]);
        assert_eq!(s.get("train.lr").unwrap().dist, Dist::LogUniform { low: 1e-5, high: 1e-3 });
        assert_eq!(s.get("train.schedule.warmup_ratio").unwrap().dist, Dist::Uniform { low: 0.0, high: 0.2 });
        // Round trip through the written form.
        assert_eq!(Space::parse(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn errors_name_the_key_and_what_was_expected() {
        let cases = [
            ("[train]\nlr = 0.1\n", ["train.lr", "expected a distribution"]),
            ("[train]\nlr = { type = \"gauss\", low = 1, high = 2 }\n", ["train.lr", "\"log_uniform\""]),
            ("[train]\nlr = { type = \"log_uniform\", low = 0, high = 2 }\n", ["train.lr", "low > 0"]),
            ("[train]\nlr = { type = \"uniform\", low = 3, high = 2 }\n", ["train.lr", "low < high"]),
            ("[train]\nlr = { type = \"uniform\", low = 1 }\n", ["train.lr", "needs high"]),
            ("[train]\nepochs = { type = \"int\", low = 1.5, high = 2 }\n", ["train.epochs", "expected an integer"]),
            ("[t]\nx = { type = \"choice\", values = [] }\n", ["t.x", "at least one"]),
            ("[t]\nx = { type = \"choice\", vals = [1] }\n", ["t.x", "unknown field \"vals\""]),
            ("[t]\nx = { type = \"uniform\", low = 0, high = 1, step = 2 }\n", ["t.x", "unknown field \"step\""]),
            ("x = [\n", ["not TOML", ""]),
            ("", ["no parameter", ""]),
        ];
        for (text, needles) in cases {
            let e = Space::parse(text).unwrap_err().to_string();
            for n in needles {
                assert!(e.contains(n), "{text:?}: {e:?} lacks {n:?}");
            }
        }
    }

    #[test]
    fn values_round_trip_through_the_internal_view() {
        let d = Dist::LogUniform { low: 1e-4, high: 1e-2 };
        let (lo, hi) = d.internal_bounds().unwrap();
        assert!((lo - 1e-4f64.ln()).abs() < 1e-12 && (hi - 1e-2f64.ln()).abs() < 1e-12);
        let v = d.to_value(1e-3f64.ln());
        assert!((v.as_float().unwrap() - 1e-3).abs() < 1e-15);
        assert!((d.to_internal(&v).unwrap() - 1e-3f64.ln()).abs() < 1e-12);
        let i = Dist::Int { low: 2, high: 5, log: false };
        assert_eq!(i.to_value(5.49), toml::Value::Integer(5));
        assert_eq!(i.to_value(1.6), toml::Value::Integer(2));
        let c = Dist::Choice { values: vec!["head".into(), "full".into()] };
        assert_eq!(c.to_value(1.0), toml::Value::from("full"));
        assert_eq!(c.to_internal(&"head".into()), Some(0.0));
        assert_eq!(c.to_internal(&"last:2".into()), None);
    }
}
