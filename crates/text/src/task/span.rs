use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use suite_core::metrics::Metrics;
use suite_core::train::TrainModel;
use tch::{nn::VarStore, Reduction, Tensor};

use super::sequence::ModelSaver;
use crate::data::{QaBatch, QaDataset, QaPrediction};
use crate::metrics::{squad_v1, squad_v2};
use crate::models::TextModel;

/// Span-selection settings of extractive QA.
#[derive(Debug, Clone, Copy)]
pub struct SpanSettings {
    /// Candidate spans kept per question.
    pub n_best: usize,
    /// Longest answer in tokens.
    pub max_answer_len: usize,
    /// SQuAD v2: null answers allowed.
    pub version_2: bool,
    /// Null-answer threshold (v2).
    pub null_threshold: f64,
}

/// The questions an evaluation runs over: their windows (features) and gold answers.
pub struct QaEval {
    /// Windows of the evaluation questions, in the order the batches index.
    pub dataset: Arc<QaDataset>,
    /// Gold answers per question id.
    pub gold: Vec<(String, Vec<String>)>,
}

/// Extractive question answering as the trainer sees it: start/end logits over each window, the mean of the two
/// cross-entropies, and SQuAD exact match / F1 after mapping the best spans back to the context.
pub struct SpanTask {
    /// Every tensor of the model.
    pub vs: VarStore,
    /// Encoder and `qa_outputs` head.
    pub model: TextModel,
    /// Span selection.
    pub settings: SpanSettings,
    /// What evaluation batches come from.
    pub eval: Option<QaEval>,
    /// Folder with the tokenizer files, copied into every saved model.
    pub tokenizer_dir: PathBuf,
    /// Saves the model (hub layout, or adapter + head with PEFT).
    pub saver: Box<dyn ModelSaver>,
    /// Predictions of the last evaluation.
    pub last_predictions: Vec<QaPrediction>,
}

impl SpanTask {
    /// Start and end logits `[b, len]` of a batch.
    pub fn logits(&self, input_ids: &Tensor, token_type_ids: &Tensor, attention_mask: &Tensor) -> (Tensor, Tensor) {
        let d = self.vs.device();
        let out = self.model.forward(
            &input_ids.to_device(d),
            &token_type_ids.to_device(d),
            &attention_mask.to_device(d),
            false,
        );
        let (s, e) = split_span_logits(&out, attention_mask);
        (s, e)
    }

    /// Predicts answers for every window of `dataset` and maps them back to its questions.
    pub fn predict(
        &self,
        dataset: &QaDataset,
        batches: &mut dyn Iterator<Item = Result<QaBatch>>,
    ) -> Result<Vec<QaPrediction>> {
        let n = dataset.n_features();
        let mut starts: Vec<Vec<f32>> = vec![Vec::new(); n];
        let mut ends: Vec<Vec<f32>> = vec![Vec::new(); n];
        for batch in batches {
            let batch = batch?;
            let (s, e) = tch::no_grad(|| self.logits(&batch.input_ids, &batch.token_type_ids, &batch.attention_mask));
            let (s, e) = (s.to_device(tch::Device::Cpu), e.to_device(tch::Device::Cpu));
            for (row, &f) in batch.index.iter().enumerate() {
                starts[f] = Vec::<f32>::try_from(s.get(row as i64))?;
                ends[f] = Vec::<f32>::try_from(e.get(row as i64))?;
            }
        }
        let st = &self.settings;
        Ok(dataset.postprocess(&starts, &ends, st.n_best, st.max_answer_len, st.version_2, st.null_threshold as f32))
    }
}

/// Splits `[b, len, 2]` into start and end logits, with padding pushed to -inf so it never wins.
fn split_span_logits(out: &Tensor, attention_mask: &Tensor) -> (Tensor, Tensor) {
    let pad = attention_mask.to_device(out.device()).eq(0);
    let s = out.select(-1, 0).masked_fill(&pad, -1e4);
    let e = out.select(-1, 1).masked_fill(&pad, -1e4);
    (s, e)
}

impl TrainModel for SpanTask {
    type Batch = QaBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn batch_len(&self, batch: &QaBatch) -> usize {
        batch.index.len()
    }

    fn loss(&mut self, batch: &QaBatch, train: bool) -> Result<Tensor> {
        let d = self.vs.device();
        let out = self.model.forward(
            &batch.input_ids.to_device(d),
            &batch.token_type_ids.to_device(d),
            &batch.attention_mask.to_device(d),
            train,
        );
        let (s, e) = split_span_logits(&out, &batch.attention_mask);
        // As transformers' BertForQuestionAnswering: positions outside the window are clamped and ignored.
        let len = s.size()[1];
        let sp = batch.start_positions.to_device(d).clamp(0, len);
        let ep = batch.end_positions.to_device(d).clamp(0, len);
        let ls = s.cross_entropy_loss::<Tensor>(&sp, None, Reduction::Mean, len, 0.0);
        let le = e.cross_entropy_loss::<Tensor>(&ep, None, Reduction::Mean, len, 0.0);
        Ok((ls + le) / 2.0)
    }

    fn evaluate(&mut self, batches: &mut dyn Iterator<Item = Result<QaBatch>>) -> Result<Metrics> {
        let ev = self.eval.as_ref().context("QA evaluation needs its questions (eval)")?;
        let dataset = ev.dataset.clone();
        // The loss needs the labelled windows; collect them while predicting.
        let mut loss_sum = 0.0;
        let mut n = 0usize;
        let mut kept = Vec::new();
        for batch in batches {
            let batch = batch?;
            let b = batch.index.len();
            loss_sum += tch::no_grad(|| self.loss(&batch, false))?.double_value(&[]) * b as f64;
            n += b;
            kept.push(Ok(batch));
        }
        let preds = self.predict(&dataset, &mut kept.into_iter())?;
        let ev = self.eval.as_ref().expect("checked above");
        let pairs: Vec<(String, String)> = preds.iter().map(|p| (p.id.clone(), p.text.clone())).collect();
        let scores = if self.settings.version_2 { squad_v2(&pairs, &ev.gold)? } else { squad_v1(&pairs, &ev.gold)? };
        let mut m = Metrics::new();
        m.insert("exact".into(), scores.exact);
        m.insert("f1".into(), scores.f1);
        for (k, v) in [
            ("has_ans_exact", scores.has_ans_exact),
            ("has_ans_f1", scores.has_ans_f1),
            ("no_ans_exact", scores.no_ans_exact),
            ("no_ans_f1", scores.no_ans_f1),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        m.insert("loss".into(), loss_sum / n.max(1) as f64);
        self.last_predictions = preds;
        Ok(m)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.saver.save(&self.model, &self.vs, dir, &[], false, &self.tokenizer_dir)
    }
}
