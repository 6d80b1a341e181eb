//! A task recipe (`tasks/*.toml`): `[task]` metadata, the domain's table and `[train]`, resolved against the
//! domain's defaults and the command-line flags, and saved as the run's `config.toml`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use suite_core::optim::ScheduleKind;
use suite_core::peft::PeftConfig;
use suite_core::train::TrainConfig;
use suite_speech::task::SpeechConfig;
use suite_text::task::TextConfig;
use suite_vision::task::VisionConfig;

use crate::args::Domain;

/// Descriptive metadata of a recipe: what it reproduces and where its data and models come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskMeta {
    /// Short name.
    pub name: Option<String>,
    /// Domain the recipe is for.
    pub domain: Option<Domain>,
    /// What the task is.
    pub description: Option<String>,
    /// Hub ids or URLs of the data and model, for users with network access.
    pub sources: Vec<String>,
    /// Reference numbers to reproduce (metric → value).
    pub reference: BTreeMap<String, f64>,
}

/// A whole job: what a recipe file holds and what a run folder records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Recipe metadata.
    #[serde(default)]
    pub task: TaskMeta,
    /// Image classification settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<VisionConfig>,
    /// Text settings (classification, NER, QA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// Speech settings (Whisper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<SpeechConfig>,
    /// Parameter-efficient fine-tuning (`method = "none"` trains every parameter the domain's tuning selects).
    #[serde(default)]
    pub peft: PeftConfig,
    /// Training-loop settings.
    pub train: TrainConfig,
}

/// The trainer defaults of a domain, before the recipe and the flags apply.
pub fn domain_train_defaults(domain: Domain) -> TrainConfig {
    let mut t = TrainConfig::default();
    if domain == Domain::Text {
        // transformers' Trainer defaults, with warmup, and the metric chosen by the task.
        t.epochs = 3;
        t.lr = 5e-5;
        t.batch_size = 16;
        t.metric = "auto".into();
        t.schedule.kind = ScheduleKind::Linear;
        t.schedule.warmup_ratio = 0.1;
        t.weight_decay = 0.01;
    }
    if domain == Domain::Speech {
        // The Whisper fine-tuning recipe's defaults (lr 1e-5, warmup), scaled to small data sets.
        t.epochs = 3;
        t.lr = 1e-5;
        t.batch_size = 8;
        t.metric = "wer".into();
        t.schedule.kind = ScheduleKind::Linear;
        t.schedule.warmup_ratio = 0.1;
        t.weight_decay = 0.0;
    }
    if domain == Domain::Vision {
        t.epochs = 5;
        t.lr = 1e-3;
        t.metric = "accuracy".into();
        t.schedule.kind = ScheduleKind::Cosine;
        t.schedule.warmup_ratio = 0.05;
        t.weight_decay = 0.01;
    }
    t
}

/// Reads a recipe: first strictly (so an error names the line and field), then over the domain's defaults, so
/// that keys the recipe leaves out take the domain's values rather than the generic ones.
pub fn load_recipe(path: &Path, domain: Domain) -> Result<JobFile> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[serde(default)]
        #[allow(dead_code)]
        task: TaskMeta,
        #[serde(default)]
        #[allow(dead_code)]
        vision: Option<VisionConfig>,
        #[serde(default)]
        #[allow(dead_code)]
        text: Option<TextConfig>,
        #[serde(default)]
        #[allow(dead_code)]
        speech: Option<SpeechConfig>,
        #[serde(default)]
        #[allow(dead_code)]
        peft: Option<PeftConfig>,
        #[serde(default)]
        #[allow(dead_code)]
        train: Option<TrainConfig>,
    }
    let _: Strict = suite_core::config::load_toml(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    let mut defaults = toml::Table::try_from(JobFile::defaults(domain))?;
    merge(&mut defaults, file);
    let job: JobFile =
        defaults.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    Ok(job)
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) if k != "optimizer" => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl JobFile {
    /// The defaults of a domain.
    pub fn defaults(domain: Domain) -> Self {
        Self {
            task: TaskMeta { domain: Some(domain), ..TaskMeta::default() },
            vision: (domain == Domain::Vision).then(VisionConfig::default),
            text: (domain == Domain::Text).then(TextConfig::default),
            speech: (domain == Domain::Speech).then(SpeechConfig::default),
            peft: PeftConfig::None,
            train: domain_train_defaults(domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_keys_override_domain_defaults_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, "[vision]\nmodel = \"resnet18\"\n[train]\nepochs = 2\n").unwrap();
        let job = load_recipe(&p, Domain::Vision).unwrap();
        assert_eq!(job.train.epochs, 2);
        assert_eq!(job.train.metric, "accuracy", "domain default kept");
        assert_eq!(job.vision.unwrap().model, "resnet18");
        std::fs::write(&p, "[train]\nepochs = 2\nbatchsize = 3\n").unwrap();
        let e = load_recipe(&p, Domain::Vision).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("line 3") && e.contains("batchsize"), "{e}");
    }

    #[test]
    fn every_shipped_recipe_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let domain = if text.contains("[text]") {
                    Domain::Text
                } else if text.contains("[speech]") {
                    Domain::Speech
                } else {
                    Domain::Vision
                };
                let job = load_recipe(&path, domain).unwrap_or_else(|e| panic!("{e:#}"));
                job.train.validate().unwrap();
                if let Some(mut vision) = job.vision {
                    vision.data.get_or_insert_with(|| "data".into());
                    vision.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                }
                if let Some(mut t) = job.text {
                    t.data.get_or_insert_with(|| "data".into());
                    t.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                }
                if let Some(mut s) = job.speech {
                    s.data.get_or_insert_with(|| "data".into());
                    s.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                }
                job.peft.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 2, "found {n} recipes in {}", dir.display());
    }
}
