//! Supervised fine-tuning of a decoder-only language model as the trainer sees it: the causal-LM loss over the
//! labelled tokens, evaluation by loss, perplexity and greedy generation on held-out prompts (exact match and
//! ROUGE-L), and saving in the layout `suite_text::generate::LanguageModel::load` reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use suite_core::metrics::Metrics;
use suite_core::peft::{save_adapter, PeftConfig};
use suite_core::train::TrainModel;
use suite_core::weights::{load_safetensors, save_hub_layout, varstore_tensors, LoadOptions};
use tch::{nn::VarStore, Kind, Reduction, Tensor};

use super::peft::{load_text_adapter, AdapterMeta, ADAPTER_FILE, ADAPTER_META};
use crate::data::{SftBatch, SftPrompt};
use crate::generate::{generate_ids, GenerationConfig};
use crate::metrics::rouge_l;
use crate::models::{copy_tokenizer_files, gpt2_checkpoint_tensors, CausalLm, GPT2_CONV1D_WEIGHTS, GPT2_MODEL_TYPES};

/// Label value of positions without loss.
const IGNORE_INDEX: i64 = -100;

/// Files of the base model copied next to the saved weights or adapter, when the base folder has them.
const BASE_FILES: [&str; 2] = ["config.json", "generation_config.json"];

/// Prompts generated for at a time during evaluation.
const GENERATE_BATCH: usize = 16;

/// The causal-LM loss of transformers' `ForCausalLMLoss`: logits at position `t` predict `labels[t + 1]`;
/// positions labelled [`IGNORE_INDEX`] are skipped. `reduction` is `Mean` (over the labelled tokens of the
/// batch, as training uses it) or `Sum` (to weight batches by their token counts in evaluation).
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor, reduction: Reduction) -> Tensor {
    let len = logits.size()[1];
    let vocab = logits.size()[2];
    let shifted = logits.narrow(1, 0, len - 1).to_kind(Kind::Float).reshape([-1, vocab]);
    let targets = labels.to_device(logits.device()).narrow(1, 1, len - 1).reshape([-1]);
    shifted.cross_entropy_loss::<Tensor>(&targets, None, reduction, IGNORE_INDEX, 0.0)
}

/// How a fine-tuned language model is written.
pub enum SftSaver {
    /// Full fine-tuning: hub layout (config.json, model.safetensors, generation config, tokenizer files).
    Full {
        /// The base model folder (config, generation config and tokenizer files come from there).
        base_dir: PathBuf,
        /// `config.json`'s `model_type`: GPT-2 stores its Conv1D weights transposed.
        model_type: String,
    },
    /// PEFT: the adapter over the base, which is named by path.
    Adapter {
        /// The method and its settings.
        config: PeftConfig,
        /// The base model folder, as an absolute path.
        base_dir: PathBuf,
        /// Checksum of the base weights the adapter was trained on.
        base_checksum: String,
    },
}

impl SftSaver {
    /// Writes the model held in `vs` into `dir`.
    pub fn save(&self, vs: &VarStore, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let base_dir = match self {
            SftSaver::Full { base_dir, model_type } => {
                let config_path = base_dir.join("config.json");
                let text = std::fs::read_to_string(&config_path)
                    .with_context(|| format!("{}: cannot read", config_path.display()))?;
                let config: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
                let mut tensors = varstore_tensors(vs, |_| true);
                if GPT2_MODEL_TYPES.contains(&model_type.as_str()) {
                    tensors = gpt2_checkpoint_tensors(tensors);
                }
                save_hub_layout(dir, &config, &tensors)?;
                base_dir
            }
            SftSaver::Adapter { config, base_dir, base_checksum } => {
                let base = base_dir.display().to_string();
                save_adapter(&dir.join(ADAPTER_FILE), vs, config, &base, base_checksum)?;
                let meta = AdapterMeta { base_model: base, method: config.method_name().into() };
                suite_core::runs::atomic_write(
                    &dir.join(ADAPTER_META),
                    serde_json::to_string_pretty(&meta)?.as_bytes(),
                )?;
                let config_path = base_dir.join("config.json");
                std::fs::copy(&config_path, dir.join("config.json"))
                    .with_context(|| format!("copying {}", config_path.display()))?;
                base_dir
            }
        };
        let generation = base_dir.join("generation_config.json");
        if generation.is_file() {
            std::fs::copy(&generation, dir.join(BASE_FILES[1]))
                .with_context(|| format!("copying {}", generation.display()))?;
        }
        copy_tokenizer_files(base_dir, dir)
    }
}

impl SftSaver {
    /// Loads a model this saver wrote into `dir` back into `vs` (the same model, set up as when it was saved).
    pub fn reload(&self, vs: &mut VarStore, dir: &Path) -> Result<()> {
        match self {
            SftSaver::Full { model_type, .. } => {
                let mut opts = LoadOptions::strict();
                if GPT2_MODEL_TYPES.contains(&model_type.as_str()) {
                    opts = opts.transposed(GPT2_CONV1D_WEIGHTS.iter().copied());
                }
                load_safetensors(vs, &[dir.join("model.safetensors")], &opts)
                    .with_context(|| format!("loading {}", dir.display()))?;
                Ok(())
            }
            SftSaver::Adapter { base_checksum, .. } => load_text_adapter(vs, dir, None, base_checksum),
        }
    }
}

/// A held-out prompt's generation, for the evaluation report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SftGeneration {
    /// The prompt as the model saw it (special tokens included).
    pub prompt: String,
    /// The reference answer.
    pub reference: String,
    /// What the model wrote (greedy, the stop token removed).
    pub prediction: String,
    /// ROUGE-L F-measure of the prediction.
    pub rouge_l: f64,
}

/// The SFT model the trainer runs.
pub struct SftTask {
    /// Every tensor of the model (base and adapter).
    pub vs: VarStore,
    /// The language model.
    pub model: Box<dyn CausalLm>,
    /// Held-out prompts and answers for generation metrics (empty: loss and perplexity only).
    pub eval_prompts: Vec<SftPrompt>,
    /// Decodes generated ids.
    pub tokenizer: tokenizers::Tokenizer,
    /// Tokens that end a generated answer (eos, end of turn).
    pub stop_ids: Vec<i64>,
    /// Padding of generation batches.
    pub pad_id: i64,
    /// How `save_model` writes the model.
    pub saver: SftSaver,
    /// The last evaluation's generations.
    pub last_generations: Vec<SftGeneration>,
}

impl SftTask {
    /// Logits `[b, len, vocab]` of a batch.
    pub fn logits(&self, batch: &SftBatch, train: bool) -> Tensor {
        let device = self.vs.device();
        let layout = batch.layout(device);
        self.model.forward_layout(&batch.input_ids.to_device(device), &layout, None, train)
    }

    /// Loads the model `save_model` wrote into `dir` (the run's `best/`) back into this task.
    pub fn reload_saved(&mut self, dir: &Path) -> Result<()> {
        self.saver.reload(&mut self.vs, dir)
    }

    fn decode(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&t| t as u32).collect();
        self.tokenizer.decode(&ids, skip_special).map_err(|e| anyhow::anyhow!("decoding: {e}"))
    }

    /// Greedy answers to the held-out prompts: (prediction, reference) pairs.
    fn generations(&self) -> Result<Vec<SftGeneration>> {
        let mut out = Vec::with_capacity(self.eval_prompts.len());
        for chunk in self.eval_prompts.chunks(GENERATE_BATCH) {
            let prompts: Vec<Vec<i64>> = chunk.iter().map(|p| p.ids.clone()).collect();
            // Room for the longest reference and some more, so a rambling answer is judged, not cut mid-word.
            let longest = chunk
                .iter()
                .map(|p| self.tokenizer.encode(p.reference.as_str(), false).map(|e| e.len()).unwrap_or(64))
                .max()
                .unwrap_or(0);
            let cfg = GenerationConfig::greedy(longest + 16, self.stop_ids.clone(), self.pad_id);
            let ids = generate_ids(self.model.as_ref(), &prompts, &cfg, &mut |_, _| true)?;
            for (p, mut new) in chunk.iter().zip(ids) {
                if new.last().is_some_and(|t| self.stop_ids.contains(t)) {
                    new.pop();
                }
                let prediction = self.decode(&new, true)?;
                let (_, _, f) = rouge_l(&p.reference, &prediction);
                let prompt = self.decode(&p.ids, false)?;
                out.push(SftGeneration { prompt, reference: p.reference.clone(), prediction, rouge_l: f });
            }
        }
        Ok(out)
    }
}

impl TrainModel for SftTask {
    type Batch = SftBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn batch_len(&self, batch: &SftBatch) -> usize {
        batch.examples
    }

    fn loss(&mut self, batch: &SftBatch, train: bool) -> Result<Tensor> {
        let logits = self.logits(batch, train);
        Ok(causal_lm_loss(&logits, &batch.labels, Reduction::Mean))
    }

    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<SftBatch>>) -> Result<Metrics> {
        let (mut sum, mut count) = (0.0, 0i64);
        for batch in batches {
            let batch = batch?;
            let logits = self.logits(&batch, false);
            sum += causal_lm_loss(&logits, &batch.labels, Reduction::Sum).double_value(&[]);
            count += batch
                .labels
                .narrow(1, 1, batch.labels.size()[1] - 1)
                .ne(IGNORE_INDEX)
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
        let loss = sum / count.max(1) as f64;
        let mut metrics = Metrics::new();
        metrics.insert("loss".into(), loss);
        metrics.insert("perplexity".into(), loss.exp());
        if !self.eval_prompts.is_empty() {
            let generations = self.generations()?;
            let n = generations.len().max(1) as f64;
            let exact = generations.iter().filter(|g| g.prediction.trim() == g.reference.trim()).count() as f64;
            metrics.insert("exact_match".into(), exact / n);
            metrics.insert("rouge_l".into(), generations.iter().map(|g| g.rouge_l).sum::<f64>() / n);
            self.last_generations = generations;
        }
        Ok(metrics)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.saver.save(&self.vs, dir)
    }
}
