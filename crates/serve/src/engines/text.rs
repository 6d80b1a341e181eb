//! Text classification, NER and QA: every input of every request in the batch goes through one prediction call
//! (padded to the batch's longest), and the results are handed back request by request.

use std::collections::BTreeMap;
use std::path::Path;

use suite_text::predict::{TextInput, TextPrediction, TextPredictor};

use crate::error::AppError;
use crate::state::ModelInfo;
use crate::worker::{Engine, Queue};

/// The inputs of one request.
pub struct TextRequest {
    pub inputs: Vec<TextInput>,
    /// Labels wanted per classification input.
    pub top_k: usize,
}

/// The queue of a text model.
pub type TextQueue = Queue<TextRequest, Vec<TextPrediction>>;

/// A loaded text model on its inference thread.
pub struct TextEngine {
    predictor: TextPredictor,
}

impl TextEngine {
    /// Loads the `which` model of a text run.
    /// With `int8`, its linear layers run in int8.
    pub fn load(run: &Path, which: &str, device: tch::Device, int8: bool) -> anyhow::Result<(Self, ModelInfo)> {
        let mut predictor = TextPredictor::load_run(run, which, device)?;
        if int8 {
            predictor.quantize_int8()?;
        }
        let info = ModelInfo {
            task: predictor.task_name().into(),
            labels: predictor.labels().to_vec(),
            precision: super::precision_name(int8),
            preprocessor: None,
        };
        Ok((Self { predictor }, info))
    }

    /// The first input of `r` that does not suit the task, as a 400 naming it.
    fn check(&self, r: &TextRequest) -> Result<(), AppError> {
        for (i, input) in r.inputs.iter().enumerate() {
            self.predictor.check(input).map_err(|e| {
                let param = if r.inputs.len() == 1 { "inputs".to_string() } else { format!("inputs[{i}]") };
                AppError::bad(param.clone(), format!("{param}: {e:#}"))
            })?;
        }
        Ok(())
    }
}

impl Engine for TextEngine {
    type Request = TextRequest;
    type Response = Vec<TextPrediction>;

    /// Requests are grouped by `top_k` (one forward per group; clients nearly always send one `top_k`), so that
    /// each gets exactly what `suite predict text --top-k K` prints.
    fn run(&mut self, batch: Vec<TextRequest>) -> Vec<Result<Vec<TextPrediction>, AppError>> {
        let mut results: Vec<Option<Result<Vec<TextPrediction>, AppError>>> = batch.iter().map(|_| None).collect();
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, r) in batch.iter().enumerate() {
            match self.check(r) {
                Ok(()) => groups.entry(r.top_k).or_default().push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (k, members) in groups {
            let inputs: Vec<TextInput> = members.iter().flat_map(|&i| batch[i].inputs.iter().cloned()).collect();
            match self.predictor.predict(&inputs, k) {
                Ok(predicted) if predicted.len() == inputs.len() => {
                    let mut it = predicted.into_iter();
                    for &i in &members {
                        results[i] = Some(Ok(it.by_ref().take(batch[i].inputs.len()).collect()));
                    }
                }
                Ok(_) => {
                    for &i in &members {
                        results[i] = Some(Err(AppError::Internal("a prediction is missing".into())));
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    for &i in &members {
                        results[i] = Some(Err(AppError::Internal(msg.clone())));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(AppError::Internal("unanswered".into())))).collect()
    }
}
