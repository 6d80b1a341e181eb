//! Whisper fine-tuning as the trainer sees it: teacher-forced cross-entropy, evaluation by decoding (WER/CER),
//! and saving in hub layout or as a PEFT adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use suite_core::metrics::Metrics;
use suite_core::peft::{save_adapter, PeftConfig};
use suite_core::train::TrainModel;
use tch::{nn::VarStore, Kind, Reduction, Tensor};

use super::config::{Normalizer, SpeechTaskKind};
use super::dataset::{SpeechBatch, IGNORE_INDEX};
use super::spec_augment::SpecAugment;
use crate::decode::{transcribe_batch, DecodeOptions};
use crate::metrics::{cer, normalize_basic, normalize_english, wer};
use crate::models::{save_whisper_hub, Whisper};
use crate::tokenizer::WhisperTokenizer;

/// Encoder states kept for a frozen encoder: 1500 × d floats per clip (3 MB for whisper-base), up to this many
/// bytes; clips beyond it are re-encoded every time.
const ENCODER_CACHE_BYTES: usize = 2 << 30;

/// How a trained model is written.
#[derive(Debug, Clone)]
pub enum SpeechSaver {
    /// The full model in hub layout (`save_whisper_hub`), which transformers loads.
    Hub,
    /// Only the PEFT tensors (`adapter.safetensors`), with the tokenizer and `suite_adapter.json`.
    Adapter {
        /// The method.
        config: PeftConfig,
        /// The base model as the job named it (registry name, hub id or absolute folder).
        base_model: String,
        /// Checksum of the base weights the adapter was trained on.
        base_checksum: String,
        /// Whether the encoder was frozen (its layers carry no adapter tensors).
        freeze_encoder: bool,
    },
}

/// `suite_adapter.json`: what a folder with an adapter needs to be rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AdapterManifest {
    /// Base model to resolve with `resolve_whisper`.
    pub base_model: String,
    /// PEFT method name.
    pub method: String,
    /// Whether the encoder was frozen during training (the adapter then leaves it alone).
    #[serde(default)]
    pub freeze_encoder: bool,
}

/// One evaluated clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Audio file.
    pub audio: PathBuf,
    /// Language the clip was decoded in.
    pub language: String,
    /// Transcript from the data.
    pub reference: String,
    /// Decoded text.
    pub hypothesis: String,
    /// WER of this clip after normalisation (`None` when the normalised reference is empty).
    pub wer: Option<f64>,
}

/// A Whisper model with its tokenizer and fine-tuning settings.
pub struct WhisperTask {
    /// Every tensor of the model (and of a PEFT method).
    pub vs: VarStore,
    /// The model.
    pub model: Whisper,
    /// Its tokenizer.
    pub tokenizer: WhisperTokenizer,
    /// `tokenizer.json`, copied into saved models.
    pub tokenizer_path: PathBuf,
    /// Transcribe or translate.
    pub task: SpeechTaskKind,
    /// Masks applied to training features.
    pub spec_augment: Option<SpecAugment>,
    /// Beam size of evaluation decoding.
    pub eval_beam: usize,
    /// Normaliser applied before WER/CER.
    pub normalizer: Normalizer,
    /// How `save_model` writes.
    pub saver: SpeechSaver,
    /// The last evaluation's clips.
    pub last_predictions: Vec<Prediction>,
    encoder_frozen: bool,
    cache: HashMap<PathBuf, Tensor>,
    cache_bytes: usize,
}

impl WhisperTask {
    /// Wraps a loaded model. `encoder_frozen` says the encoder has nothing to train: it then runs without
    /// autograd, and its states are cached per clip when no augmentation changes the features.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vs: VarStore,
        model: Whisper,
        tokenizer: WhisperTokenizer,
        tokenizer_path: PathBuf,
        task: SpeechTaskKind,
        encoder_frozen: bool,
        saver: SpeechSaver,
    ) -> Self {
        Self {
            vs,
            model,
            tokenizer,
            tokenizer_path,
            task,
            spec_augment: None,
            eval_beam: 1,
            normalizer: Normalizer::Auto,
            saver,
            last_predictions: Vec::new(),
            encoder_frozen,
            cache: HashMap::new(),
            cache_bytes: 0,
        }
    }

    /// Whether the encoder runs without autograd.
    pub fn encoder_frozen(&self) -> bool {
        self.encoder_frozen
    }

    /// Encoder states `[b, 1500, d]` of a batch's features (already augmented when `augmented`).
    fn encoder_states(&mut self, mel: &Tensor, audio: &[PathBuf], train: bool, augmented: bool) -> Tensor {
        let device = self.vs.device();
        if !self.encoder_frozen {
            return self.model.encode(&mel.to_device(device), train);
        }
        // A frozen encoder is a fixed feature extractor: no dropout, no graph, and the same states every epoch.
        if augmented {
            return tch::no_grad(|| self.model.encode(&mel.to_device(device), false));
        }
        let missing: Vec<i64> =
            audio.iter().enumerate().filter(|(_, a)| !self.cache.contains_key(*a)).map(|(i, _)| i as i64).collect();
        if !missing.is_empty() {
            let idx = Tensor::from_slice(&missing);
            let fresh = tch::no_grad(|| self.model.encode(&mel.index_select(0, &idx).to_device(device), false));
            for (k, &row) in missing.iter().enumerate() {
                let states = fresh.get(k as i64);
                let bytes = states.numel() * states.kind().elt_size_in_bytes();
                if self.cache_bytes + bytes > ENCODER_CACHE_BYTES {
                    // Over budget: encode this batch as a whole, uncached.
                    return if missing.len() == audio.len() {
                        fresh
                    } else {
                        tch::no_grad(|| self.model.encode(&mel.to_device(device), false))
                    };
                }
                self.cache_bytes += bytes;
                self.cache.insert(audio[row as usize].clone(), states);
            }
        }
        let rows: Vec<&Tensor> = audio.iter().map(|a| &self.cache[a]).collect();
        Tensor::stack(&rows, 0)
    }

    /// Logits `[b, t, vocab]` of a batch, teacher-forced.
    fn logits(&mut self, batch: &SpeechBatch, train: bool) -> Tensor {
        let augment = self.spec_augment.filter(|_| train);
        let mel = match &augment {
            Some(s) => s.apply(&batch.mel, &batch.frames),
            None => batch.mel.shallow_clone(),
        };
        let states = self.encoder_states(&mel, &batch.audio, train, augment.is_some());
        self.model.decode(&batch.tokens.to_device(self.vs.device()), &states, train)
    }

    /// Cross-entropy of the logits against the labels, with `reduction`, ignoring [`IGNORE_INDEX`].
    fn cross_entropy(logits: &Tensor, labels: &Tensor, reduction: Reduction) -> Tensor {
        let v = logits.size()[2];
        logits.reshape([-1, v]).to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
            &labels.to_device(logits.device()).reshape([-1]),
            None,
            reduction,
            IGNORE_INDEX,
            0.0,
        )
    }

    /// Decodes a batch, each row in its own language (rows are grouped by language).
    pub fn transcribe_rows(&self, mel: &Tensor, languages: &[String]) -> Result<Vec<String>> {
        let mut out = vec![String::new(); languages.len()];
        let mut order: Vec<&String> = languages.iter().collect();
        order.sort();
        order.dedup();
        for lang in order {
            let rows: Vec<i64> =
                languages.iter().enumerate().filter(|(_, l)| *l == lang).map(|(i, _)| i as i64).collect();
            let opts = DecodeOptions {
                language: Some(lang.clone()),
                task: self.task.into(),
                beam_size: self.eval_beam,
                ..DecodeOptions::default()
            };
            let sub = mel.index_select(0, &Tensor::from_slice(&rows));
            let results = transcribe_batch(&self.model, &self.tokenizer, &sub, &opts)?;
            for (&row, t) in rows.iter().zip(results) {
                out[row as usize] = t.text;
            }
        }
        Ok(out)
    }
}

/// The normaliser to use for these languages: `auto` is the English one when every clip is English.
pub fn resolve_normalizer(n: Normalizer, languages: &[String]) -> Normalizer {
    match n {
        Normalizer::Auto if !languages.is_empty() && languages.iter().all(|l| l == "en") => Normalizer::English,
        Normalizer::Auto => Normalizer::Basic,
        other => other,
    }
}

/// Applies a (resolved) normaliser.
pub fn normalize(n: Normalizer, text: &str) -> String {
    match n {
        Normalizer::English => normalize_english(text),
        _ => normalize_basic(text),
    }
}

/// WER, CER and per-clip WER of decoded clips after normalisation: `(wer, cer, per-clip)`.
pub fn score(
    normalizer: Normalizer,
    languages: &[String],
    references: &[String],
    hypotheses: &[String],
) -> Result<(f64, f64, Vec<Option<f64>>)> {
    let n = resolve_normalizer(normalizer, languages);
    let refs: Vec<String> = references.iter().map(|r| normalize(n, r)).collect();
    let hyps: Vec<String> = hypotheses.iter().map(|h| normalize(n, h)).collect();
    let w = wer(&refs, &hyps)?.rate();
    let c = cer(&refs, &hyps)?.rate();
    let per = refs
        .iter()
        .zip(&hyps)
        .map(|(r, h)| {
            let counts = wer(std::slice::from_ref(r), std::slice::from_ref(h))?;
            Ok((counts.reference_len() > 0).then(|| counts.rate()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((w, c, per))
}

impl TrainModel for WhisperTask {
    type Batch = SpeechBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn batch_len(&self, batch: &SpeechBatch) -> usize {
        batch.index.len()
    }

    fn loss(&mut self, batch: &SpeechBatch, train: bool) -> Result<Tensor> {
        let logits = self.logits(batch, train);
        Ok(Self::cross_entropy(&logits, &batch.labels, Reduction::Mean))
    }

    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<SpeechBatch>>) -> Result<Metrics> {
        let (mut loss_sum, mut label_count) = (0.0, 0i64);
        let (mut refs, mut hyps, mut langs, mut audio) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for batch in batches {
            let batch = batch?;
            let logits = self.logits(&batch, false);
            loss_sum += Self::cross_entropy(&logits, &batch.labels, Reduction::Sum).double_value(&[]);
            label_count += batch.labels.ne(IGNORE_INDEX).sum(Kind::Int64).int64_value(&[]);
            drop(logits);
            hyps.extend(self.transcribe_rows(&batch.mel, &batch.languages)?);
            refs.extend(batch.references);
            langs.extend(batch.languages);
            audio.extend(batch.audio);
        }
        let (w, c, per) = score(self.normalizer, &langs, &refs, &hyps)?;
        self.last_predictions = audio
            .into_iter()
            .zip(langs)
            .zip(refs.into_iter().zip(hyps))
            .zip(per)
            .map(|(((audio, language), (reference, hypothesis)), wer)| Prediction {
                audio,
                language,
                reference,
                hypothesis,
                wer,
            })
            .collect();
        let mut m = Metrics::new();
        m.insert("wer".into(), w);
        m.insert("cer".into(), c);
        m.insert("loss".into(), loss_sum / label_count.max(1) as f64);
        Ok(m)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        match &self.saver {
            SpeechSaver::Hub => save_whisper_hub(&self.model, &self.vs, dir, &self.tokenizer_path),
            SpeechSaver::Adapter { config, base_model, base_checksum, freeze_encoder } => {
                save_adapter(&dir.join("adapter.safetensors"), &self.vs, config, base_model, base_checksum)?;
                let bytes = std::fs::read(&self.tokenizer_path)
                    .with_context(|| format!("{}: cannot read", self.tokenizer_path.display()))?;
                suite_core::runs::atomic_write(&dir.join("tokenizer.json"), &bytes)?;
                let manifest = AdapterManifest {
                    base_model: base_model.clone(),
                    method: config.method_name().to_string(),
                    freeze_encoder: *freeze_encoder,
                };
                suite_core::runs::atomic_write(
                    &dir.join("suite_adapter.json"),
                    (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
                )
            }
        }
    }
}
