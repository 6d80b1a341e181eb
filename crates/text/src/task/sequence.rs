use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use suite_core::metrics::{ClassificationReport, Metrics};
use suite_core::train::TrainModel;
use tch::{nn::VarStore, Kind, Reduction, Tensor};

use super::config::TextTaskKind;
use crate::data::{LabelSet, NerDataset, TextBatch};
use crate::metrics::{multilabel_scores, seqeval_report, Mode, Scheme, SeqevalReport};
use crate::models::TextModel;

/// Sequence classification or NER as the trainer sees it: an encoder with its head, the loss and the task's
/// metrics (accuracy/F1/MCC, or seqeval entity scores).
pub struct SequenceTask {
    /// Every tensor of the model.
    pub vs: VarStore,
    /// Encoder and head.
    pub model: TextModel,
    /// `Classify` or `Ner`.
    pub kind: TextTaskKind,
    /// Label names in head order.
    pub labels: LabelSet,
    /// Classification with several labels per text.
    pub multi_label: bool,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// NER: seqeval mode and scheme.
    pub ner_mode: (Mode, Scheme),
    /// NER: the dataset the evaluation batches come from, to map token predictions back to words.
    pub eval_ner: Option<NerEval>,
    /// Folder with the tokenizer files, copied into every saved model.
    pub tokenizer_dir: PathBuf,
    /// Saves the model the way the job wants (hub layout, or adapter + head with PEFT).
    pub saver: Box<dyn ModelSaver>,
    /// The last evaluation's full report.
    pub last_report: Option<SequenceReport>,
}

/// Writes a trained text model into a folder; PEFT replaces the default (full hub layout).
pub trait ModelSaver: Send {
    /// Writes the model held by `vs` into the empty folder `dir`.
    fn save(
        &self,
        model: &TextModel,
        vs: &VarStore,
        dir: &Path,
        labels: &[String],
        multi_label: bool,
        tokenizer_dir: &Path,
    ) -> Result<()>;
}

/// The default saver: hub layout that `transformers` loads.
pub struct HubSaver;

impl ModelSaver for HubSaver {
    fn save(
        &self,
        model: &TextModel,
        vs: &VarStore,
        dir: &Path,
        labels: &[String],
        multi_label: bool,
        tokenizer_dir: &Path,
    ) -> Result<()> {
        model.export(vs, dir, labels, multi_label, tokenizer_dir)
    }
}

/// The sentences an NER evaluation runs over: the dataset (token → word mapping) and the gold word tags.
pub struct NerEval {
    /// The evaluation dataset, in the order its batches index.
    pub dataset: Arc<NerDataset>,
    /// Gold tags per sentence, same order.
    pub tags: Vec<Vec<String>>,
}

/// The detail behind an evaluation's metrics.
pub enum SequenceReport {
    /// Single-label classification: confusion matrix and per-class scores.
    Classes(ClassificationReport),
    /// NER: entity scores per type, and the word-level tags (truth, prediction) per sentence.
    Entities { report: SeqevalReport, truth: Vec<Vec<String>>, pred: Vec<Vec<String>> },
    /// Multi-label classification: only the aggregate metrics.
    MultiLabel,
}

impl SequenceTask {
    /// Logits of a batch: `[b, labels]` or `[b, len, labels]`.
    pub fn logits(&self, batch: &TextBatch, train: bool) -> Tensor {
        let d = self.vs.device();
        self.model.forward(
            &batch.input_ids.to_device(d),
            &batch.token_type_ids.to_device(d),
            &batch.attention_mask.to_device(d),
            train,
        )
    }

    fn loss_of(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        let labels = labels.to_device(logits.device());
        match (self.kind, self.multi_label) {
            (TextTaskKind::Classify, true) => logits.binary_cross_entropy_with_logits::<Tensor>(
                &labels.to_kind(Kind::Float),
                None,
                None,
                Reduction::Mean,
            ),
            (TextTaskKind::Classify, false) => {
                logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, self.label_smoothing)
            }
            _ => {
                let n = logits.size()[2];
                logits.reshape([-1, n]).cross_entropy_loss::<Tensor>(
                    &labels.reshape([-1]),
                    None,
                    Reduction::Mean,
                    -100,
                    self.label_smoothing,
                )
            }
        }
    }
}

impl TrainModel for SequenceTask {
    type Batch = TextBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn batch_len(&self, batch: &TextBatch) -> usize {
        batch.index.len()
    }

    fn loss(&mut self, batch: &TextBatch, train: bool) -> Result<Tensor> {
        let logits = self.logits(batch, train);
        Ok(self.loss_of(&logits, &batch.labels))
    }

    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<TextBatch>>) -> Result<Metrics> {
        let names = self.labels.names.clone();
        let mut loss_sum = 0.0;
        let mut n_items = 0usize;
        let mut classes = ClassificationReport::new(names.clone(), &[]);
        let (mut ml_truth, mut ml_pred) = (Vec::new(), Vec::new());
        let (mut truth, mut pred) = (Vec::new(), Vec::new());
        for batch in batches {
            let batch = batch?;
            let logits = self.logits(&batch, false);
            let b = batch.index.len();
            loss_sum += self.loss_of(&logits, &batch.labels).double_value(&[]) * b as f64;
            n_items += b;
            match (self.kind, self.multi_label) {
                (TextTaskKind::Classify, false) => {
                    classes.add_logits(&logits.to_device(tch::Device::Cpu), &batch.labels)?
                }
                (TextTaskKind::Classify, true) => {
                    let p = logits.ge(0.0).to_device(tch::Device::Cpu);
                    let t = batch.labels.ge(0.5);
                    for i in 0..b as i64 {
                        ml_pred.push(Vec::<bool>::try_from(p.get(i))?);
                        ml_truth.push(Vec::<bool>::try_from(t.get(i))?);
                    }
                }
                _ => {
                    let ev = self.eval_ner.as_ref().context("NER evaluation needs its dataset (eval_ner)")?;
                    let argmax = logits.argmax(-1, false).to_device(tch::Device::Cpu);
                    for (row, &item) in batch.index.iter().enumerate() {
                        let token_preds = Vec::<i64>::try_from(argmax.get(row as i64))?;
                        pred.push(ev.dataset.word_predictions(item, &token_preds, &self.labels));
                        truth.push(ev.tags[item].clone());
                    }
                }
            }
        }
        let mut metrics = Metrics::new();
        match (self.kind, self.multi_label) {
            (TextTaskKind::Classify, false) => {
                metrics = classes.metrics();
                if let Some(f1) = metrics.get("macro_f1").copied() {
                    metrics.insert("f1".into(), f1);
                }
                self.last_report = Some(SequenceReport::Classes(classes));
            }
            (TextTaskKind::Classify, true) => {
                metrics = multilabel_scores(&ml_truth, &ml_pred)?;
                self.last_report = Some(SequenceReport::MultiLabel);
            }
            _ => {
                let report = seqeval_report(&truth, &pred, self.ner_mode.0, self.ner_mode.1)?;
                metrics.insert("precision".into(), report.micro.precision);
                metrics.insert("recall".into(), report.micro.recall);
                metrics.insert("f1".into(), report.micro.f1);
                metrics.insert("accuracy".into(), report.accuracy);
                self.last_report = Some(SequenceReport::Entities { report, truth, pred });
            }
        }
        metrics.insert("loss".into(), loss_sum / n_items.max(1) as f64);
        Ok(metrics)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.saver.save(&self.model, &self.vs, dir, &self.labels.names, self.multi_label, &self.tokenizer_dir)
    }
}
