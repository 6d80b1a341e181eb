//! What each task explains: the sequence the model reads (tokenized as predictions tokenize it), the outputs the
//! prediction rests on, and the call to [`integrated_gradients`] that attributes them.

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::integrated_gradients::{integrated_gradients, PathEnds};
use super::{Attribution, ExplainOptions, TextExplanation};
use crate::data::{LabelSet, NerDataset, NerSentence, QaDataset, QaExample, SubwordLabels};
use crate::metrics::{entities, Mode, Scheme};
use crate::predict::{ner_words, TextInput, TextPredictor};

/// One tokenized sequence on the model's device, with its baseline.
struct Sequence {
    ids: Tensor,
    types: Tensor,
    mask: Tensor,
    baseline: Tensor,
    token_ids: Vec<i64>,
    type_ids: Vec<i64>,
    baseline_ids: Vec<i64>,
    tokens: Vec<String>,
}

impl Sequence {
    /// The baseline keeps the tokens the tokenizer's post-processor added (no sequence id: `[CLS]`, `[SEP]`,
    /// `<s>`, `</s>`) and puts the padding token in place of every other token.
    fn new(p: &TextPredictor, ids: &[i64], type_ids: &[i64], sequence_ids: &[Option<usize>]) -> Result<Self> {
        let tok = p.tokenizer();
        let baseline_ids: Vec<i64> =
            ids.iter().zip(sequence_ids).map(|(&id, s)| if s.is_none() { id } else { tok.pad_id() }).collect();
        let tokens = ids
            .iter()
            .map(|&id| u32::try_from(id).ok().and_then(|i| tok.inner().id_to_token(i)).unwrap_or_default())
            .collect();
        let d = p.device();
        let row = |v: &[i64]| Tensor::from_slice(v).view([1, -1]).to_device(d);
        let seq = Self {
            ids: row(ids),
            types: row(type_ids),
            mask: row(&vec![1; ids.len()]),
            baseline: row(&baseline_ids),
            token_ids: ids.to_vec(),
            type_ids: type_ids.to_vec(),
            baseline_ids,
            tokens,
        };
        // An id outside the model's vocabulary would abort libtorch: refuse it as an error.
        let model = p.text_model();
        model.check_inputs(&seq.ids, &seq.types, &seq.mask)?;
        model.check_inputs(&seq.baseline, &seq.types, &seq.mask).context("the baseline (padding token)")?;
        Ok(seq)
    }

    fn ends(&self) -> PathEnds<'_> {
        PathEnds {
            input_ids: &self.ids,
            token_type_ids: &self.types,
            attention_mask: &self.mask,
            baseline_ids: &self.baseline,
        }
    }

    /// The model's logits for the sequence, on the CPU, without its batch dimension.
    fn logits(&self, p: &TextPredictor) -> Tensor {
        tch::no_grad(|| p.text_model().forward(&self.ids, &self.types, &self.mask, false))
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .squeeze_dim(0)
    }

    fn explanation(self, task: &'static str, prediction: String, attributions: Vec<Attribution>) -> TextExplanation {
        TextExplanation {
            task,
            prediction,
            tokens: self.tokens,
            token_ids: self.token_ids,
            type_ids: self.type_ids,
            baseline_ids: self.baseline_ids,
            window: None,
            attributions,
        }
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// Classification: the target class's logit.
pub(super) fn classify(p: &TextPredictor, input: &TextInput, opts: &ExplainOptions) -> Result<TextExplanation> {
    let (text, pair) = match input {
        TextInput::Text { text, pair } => (text.clone(), pair.clone()),
        TextInput::Tokens(words) => (words.join(" "), None),
        TextInput::Question { .. } => bail!("a question is not an input of a classifier"),
    };
    let enc = p.tokenizer().encode(&text, pair.as_deref(), p.lengths().0)?;
    let seq = Sequence::new(p, &enc.ids, &enc.type_ids, &enc.sequence_ids)?;
    let logits = seq.logits(p);
    let probs = if p.multi_label() { logits.sigmoid() } else { logits.softmax(-1, Kind::Float) };
    let (logits, probs) = (Vec::<f32>::try_from(&logits)?, Vec::<f32>::try_from(&probs)?);
    let predicted = argmax(&logits);
    let target = opts.target.unwrap_or(predicted);
    let labels = p.labels();
    let t = target as i64;
    let mut path = integrated_gradients(p.text_model(), &seq.ends(), opts.steps, &|l| l.narrow(1, t, 1))?;
    let mut a = Attribution::new("class", labels[target].clone(), probs[target] as f64, path.remove(0));
    a.predicted = target == predicted;
    let prediction = format!("{} {:.1}%", labels[predicted], probs[predicted] * 100.0);
    Ok(seq.explanation("classify", prediction, vec![a]))
}

/// NER: per predicted entity, the sum over its words of the word's predicted-tag logit at its first sub-token.
pub(super) fn ner(p: &TextPredictor, input: &TextInput, opts: &ExplainOptions) -> Result<TextExplanation> {
    let words: Vec<String> = ner_words(input).into_iter().map(|(w, _)| w).collect();
    let max_len = p.lengths().0;
    let enc = p.tokenizer().encode_words(&words, max_len)?;
    let seq = Sequence::new(p, &enc.ids, &enc.type_ids, &enc.sequence_ids)?;
    let logits = seq.logits(p);
    let preds = Vec::<i64>::try_from(&logits.argmax(-1, false))?;
    let probs = logits.softmax(-1, Kind::Float);
    // The word tags exactly as predictions derive them (first sub-token decides, truncated words are "O").
    let set = LabelSet::from_names(p.labels().to_vec());
    let sent = NerSentence { tokens: words.clone(), tags: vec!["O".into(); words.len()] };
    let ds = NerDataset::new(std::slice::from_ref(&sent), p.tokenizer(), None, max_len, SubwordLabels::First)?;
    let tags = ds.word_predictions(0, &preds, &set);
    let first_token = |w: usize| enc.word_ids.iter().position(|&x| x == Some(w));
    // (type, words, [(position, tag index)]) of each entity.
    let mut found = Vec::new();
    for (kind, s, e) in entities(&tags, Mode::Default, Scheme::Iob2) {
        let items: Vec<(i64, i64)> =
            (s..e).filter_map(|w| Some((first_token(w)? as i64, set.index(&tags[w]).ok()? as i64))).collect();
        if !items.is_empty() {
            found.push((kind, words[s..e].join(" "), items));
        }
    }
    if found.is_empty() {
        return Ok(seq.explanation("ner", "(no entities)".into(), Vec::new()));
    }
    let targets = |l: &Tensor| {
        let per_entity: Vec<Tensor> = found
            .iter()
            .map(|(_, _, items)| {
                items.iter().map(|&(pos, tag)| l.select(1, pos).select(1, tag)).reduce(|a, b| a + b).expect("non-empty")
            })
            .collect();
        Tensor::stack(&per_entity, 1)
    };
    let paths = integrated_gradients(p.text_model(), &seq.ends(), opts.steps, &targets)?;
    let mut attributions = Vec::with_capacity(found.len());
    for ((kind, text, items), path) in found.iter().zip(paths) {
        let prob = items.iter().map(|&(pos, tag)| probs.double_value(&[pos, tag])).sum::<f64>() / items.len() as f64;
        let mut a = Attribution::new("entity", kind.clone(), prob, path);
        a.text = Some(text.clone());
        a.positions = items.iter().map(|&(pos, _)| pos as usize).collect();
        attributions.push(a);
    }
    let prediction = found.iter().map(|(kind, text, _)| format!("{text} [{kind}]")).collect::<Vec<_>>().join(", ");
    Ok(seq.explanation("ner", prediction, attributions))
}

/// QA: the start logit at the predicted start token and the end logit at the predicted end token, in the window
/// the answer was taken from (the null answer: both at the first token of the window with the lowest null score).
pub(super) fn qa(p: &TextPredictor, input: &TextInput, opts: &ExplainOptions) -> Result<TextExplanation> {
    let TextInput::Question { question, context } = input else { bail!("question answering needs a question") };
    let settings = p.span_settings().context("not a question-answering model")?;
    let (max_len, stride) = p.lengths();
    let tok = p.tokenizer();
    let windows = tok.encode_windows(question.trim_start(), context, max_len, stride)?;
    let example = QaExample {
        id: "0".into(),
        question: question.clone(),
        context: context.clone(),
        answers: Vec::new(),
        is_impossible: false,
    };
    let ds = QaDataset::new(&[example], tok, max_len, stride)?;
    if ds.n_features() != windows.len() {
        bail!("internal error: {} windows for {} features", windows.len(), ds.n_features());
    }
    let (mut starts, mut ends, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
    for w in &windows {
        let seq = Sequence::new(p, &w.ids, &w.type_ids, &w.sequence_ids)?;
        let logits = seq.logits(p);
        starts.push(Vec::<f32>::try_from(&logits.select(1, 0))?);
        ends.push(Vec::<f32>::try_from(&logits.select(1, 1))?);
        seqs.push(seq);
    }
    let st = settings;
    let pred = ds
        .postprocess(&starts, &ends, st.n_best, st.max_answer_len, st.version_2, st.null_threshold as f32)
        .pop()
        .context("internal error: no answer for the question")?;
    let (f, s, e) = match pred.span {
        Some(span) => locate_span(&ds, &starts, &ends, span, st.max_answer_len)
            .context("internal error: the answer is in no window")?,
        None => {
            let null = |f: usize| starts[f][0] + ends[f][0];
            ((0..windows.len()).fold(0, |best, f| if null(f) < null(best) { f } else { best }), 0, 0)
        }
    };
    let seq = seqs.swap_remove(f);
    let (si, ei) = (s as i64, e as i64);
    let targets = |l: &Tensor| Tensor::stack(&[l.select(2, 0).select(1, si), l.select(2, 1).select(1, ei)], 1);
    let mut paths = integrated_gradients(p.text_model(), &seq.ends(), opts.steps, &targets)?;
    let softmax_at = |v: &[f32], i: usize| {
        let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
        let total: f64 = v.iter().map(|&x| (x as f64 - max).exp()).sum();
        (v[i] as f64 - max).exp() / total
    };
    let answer = if pred.span.is_some() { pred.text.clone() } else { String::new() };
    let mut end = Attribution::new("end", "end".into(), softmax_at(&ends[f], e), paths.pop().expect("two outputs"));
    let mut start =
        Attribution::new("start", "start".into(), softmax_at(&starts[f], s), paths.pop().expect("two outputs"));
    for (a, pos) in [(&mut start, s), (&mut end, e)] {
        a.text = Some(answer.clone());
        a.positions = vec![pos];
    }
    let prediction = if answer.is_empty() { "(no answer)".into() } else { format!("{answer:?}") };
    let mut out = seq.explanation("qa", prediction, vec![start, end]);
    out.window = Some(f);
    Ok(out)
}

/// The window and tokens `(f, start, end)` of the best-scoring span whose characters are `span` (the span
/// post-processing chose).
fn locate_span(
    ds: &QaDataset,
    starts: &[Vec<f32>],
    ends: &[Vec<f32>],
    span: (usize, usize),
    max_answer_len: usize,
) -> Option<(usize, usize, usize)> {
    let mut best: Option<(f32, (usize, usize, usize))> = None;
    for f in 0..ds.n_features() {
        let offsets = ds.feature_offsets(f)?;
        for (s, so) in offsets.iter().enumerate() {
            if so.is_none_or(|o| o.0 != span.0) {
                continue;
            }
            for (e, eo) in offsets.iter().enumerate().skip(s).take(max_answer_len) {
                if eo.is_some_and(|o| o.1 == span.1) {
                    let score = starts[f][s] + ends[f][e];
                    if best.is_none_or(|(b, _)| score > b) {
                        best = Some((score, (f, s, e)));
                    }
                }
            }
        }
    }
    best.map(|(_, at)| at)
}
