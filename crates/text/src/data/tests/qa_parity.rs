//! QA windows and post-processing against Python re-implementations of `run_qa.py`'s `prepare_train_features`,
//! `prepare_validation_features` and `utils_qa.postprocess_qa_predictions`, run with the fast tokenizer on the
//! allennlp SQuAD sample (max_len 64, stride 16) and seeded random logits.

use serde_json::Value;
use suite_core::data::Dataset;
use suite_core::python::run_python;

use super::{fixtures_dir, minilm, minilm_dir};
use crate::data::datasets::QaDataset;
use crate::data::sources::{read_squad, QaAnswer, QaExample};

const MAX_LEN: usize = 64;
const STRIDE: usize = 16;
/// Post-processing settings (n_best, max_answer_len, with_null, null_threshold): run_qa's defaults for SQuAD v1
/// and v2, thresholds that make some and most answers null, and tight limits under which some questions have no
/// valid span at all (HF's "empty" placeholder).
const POST: [(usize, usize, bool, f32); 6] = [
    (20, 30, false, 0.0),
    (20, 30, true, 0.0),
    (20, 30, true, 1.5),
    (20, 30, true, -12.0),
    (3, 1, false, 0.0),
    (2, 1, true, -1.0),
];

/// run_qa.py (transformers examples, pad_on_right) with the code that turns features into training targets, then
/// utils_qa.postprocess_qa_predictions on seeded random float32 logits, for SQuAD v1 and v2 settings.
const ORACLE: &str = r#"
import sys, json, numpy as np
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
squad = json.load(open(sys.argv[2]))
max_len, stride = int(sys.argv[3]), int(sys.argv[4])
examples = [dict(id=q["id"], question=q["question"], context=p["context"],
                 answers={"text": [a["text"] for a in q["answers"]],
                          "answer_start": [a["answer_start"] for a in q["answers"]]})
            for art in squad["data"] for p in art["paragraphs"] for q in p["qas"]]
t = tok([e["question"].lstrip() for e in examples], [e["context"] for e in examples], truncation="only_second",
        max_length=max_len, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
        padding="max_length")
features = []
for i, offsets in enumerate(t["offset_mapping"]):
    input_ids = t["input_ids"][i]
    cls_index = input_ids.index(tok.cls_token_id)
    sequence_ids = t.sequence_ids(i)
    answers = examples[t["overflow_to_sample_mapping"][i]]["answers"]
    if len(answers["answer_start"]) == 0:
        start = end = cls_index
    else:
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start_index = 0
        while sequence_ids[token_start_index] != 1:
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != 1:
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            start = end = cls_index
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            start = token_start_index - 1
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            end = token_end_index + 1
    n = sum(t["attention_mask"][i])
    features.append(dict(example=t["overflow_to_sample_mapping"][i], ids=input_ids[:n],
                         type_ids=t["token_type_ids"][i][:n], start=start, end=end,
                         offset_mapping=[o if sequence_ids[k] == 1 else None for k, o in enumerate(offsets)]))

rs = np.random.RandomState(0)
all_start = rs.normal(0, 2, (len(features), max_len)).astype(np.float32)
all_end = rs.normal(0, 2, (len(features), max_len)).astype(np.float32)

def postprocess(n_best, max_answer, version_2_with_negative, null_score_diff_threshold):
    features_per_example = {}
    for fi, f in enumerate(features):
        features_per_example.setdefault(f["example"], []).append(fi)
    out = []
    for example_index, example in enumerate(examples):
        min_null_prediction = None
        prelim_predictions = []
        for feature_index in features_per_example[example_index]:
            start_logits = all_start[feature_index]
            end_logits = all_end[feature_index]
            offset_mapping = features[feature_index]["offset_mapping"]
            feature_null_score = start_logits[0] + end_logits[0]
            if min_null_prediction is None or min_null_prediction["score"] > feature_null_score:
                min_null_prediction = {"offsets": (0, 0), "score": feature_null_score,
                                       "start_logit": start_logits[0], "end_logit": end_logits[0]}
            start_indexes = np.argsort(start_logits)[-1 : -n_best - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (start_index >= len(offset_mapping) or end_index >= len(offset_mapping)
                            or offset_mapping[start_index] is None or len(offset_mapping[start_index]) < 2
                            or offset_mapping[end_index] is None or len(offset_mapping[end_index]) < 2):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer:
                        continue
                    prelim_predictions.append({
                        "offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                        "score": start_logits[start_index] + end_logits[end_index],
                        "start_logit": start_logits[start_index], "end_logit": end_logits[end_index]})
        if version_2_with_negative and min_null_prediction is not None:
            prelim_predictions.append(min_null_prediction)
            null_score = min_null_prediction["score"]
        predictions = sorted(prelim_predictions, key=lambda x: x["score"], reverse=True)[:n_best]
        if (version_2_with_negative and min_null_prediction is not None
                and not any(p["offsets"] == (0, 0) for p in predictions)):
            predictions.append(min_null_prediction)
        context = example["context"]
        for pred in predictions:
            offsets = pred.pop("offsets")
            pred["text"] = context[offsets[0] : offsets[1]]
        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        scores = np.array([pred.pop("score") for pred in predictions])
        exp_scores = np.exp(scores - np.max(scores))
        probs = exp_scores / exp_scores.sum()
        nbest = [[p["text"], float(pr)] for p, pr in zip(predictions, probs)]
        if not version_2_with_negative:
            out.append({"id": example["id"], "text": predictions[0]["text"], "nbest": nbest})
        else:
            i = 0
            while predictions[i]["text"] == "":
                i += 1
            best = predictions[i]
            score_diff = null_score - best["start_logit"] - best["end_logit"]
            text = "" if score_diff > null_score_diff_threshold else best["text"]
            out.append({"id": example["id"], "text": text, "nbest": nbest, "diff": float(score_diff)})
    return out

print(json.dumps({"features": features, "start_logits": all_start.tolist(), "end_logits": all_end.tolist(),
                  "post": [postprocess(*c) for c in json.loads(sys.argv[5])]}))
"#;

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn floats(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

#[test]
fn qa_windows_and_postprocessing_match_run_qa() {
    let squad_path = fixtures_dir().join("squad.json");
    let args = [
        minilm_dir().to_str().unwrap().to_string(),
        squad_path.to_str().unwrap().to_string(),
        MAX_LEN.to_string(),
        STRIDE.to_string(),
        serde_json::to_string(&POST).unwrap(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out: Value = serde_json::from_str(&run_python(ORACLE, &args).unwrap()).unwrap();

    let tok = minilm();
    let examples = read_squad(&squad_path).unwrap();
    let ds = QaDataset::new(&examples, &tok, MAX_LEN, STRIDE).unwrap();
    let expected = out["features"].as_array().unwrap();
    assert_eq!(ds.n_features(), expected.len(), "number of windows");
    let mut answered = 0;
    for (f, e) in expected.iter().enumerate() {
        assert_eq!(ds.feature_example(f), Some(e["example"].as_u64().unwrap() as usize), "feature {f} example");
        assert_eq!(ds.feature_ids(f).unwrap(), ints(&e["ids"]).as_slice(), "feature {f} input_ids");
        let offsets: Vec<Option<(usize, usize)>> = e["offset_mapping"]
            .as_array()
            .unwrap()
            .iter()
            .take(ds.feature_ids(f).unwrap().len())
            .map(|o| o.as_array().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize)))
            .collect();
        assert_eq!(ds.feature_offsets(f).unwrap(), offsets.as_slice(), "feature {f} offsets");
        let positions = (e["start"].as_i64().unwrap(), e["end"].as_i64().unwrap());
        assert_eq!(ds.feature_positions(f), Some(positions), "feature {f} start/end positions");
        answered += usize::from(positions.0 != 0);
    }
    assert!(answered >= 5 && answered < expected.len(), "{answered} of {} windows hold the answer", expected.len());

    // The collated batch carries exactly those windows, padded.
    let batch = ds.collate((0..ds.len()).collect()).unwrap();
    let longest = (0..ds.n_features()).map(|f| ds.feature_ids(f).unwrap().len()).max().unwrap();
    assert_eq!(batch.input_ids.size(), [expected.len() as i64, longest as i64]);
    let starts: Vec<i64> = Vec::try_from(&batch.start_positions).unwrap();
    assert_eq!(starts, expected.iter().map(|e| e["start"].as_i64().unwrap()).collect::<Vec<_>>());

    let (starts, ends) = (floats(&out["start_logits"]), floats(&out["end_logits"]));
    let mut max_prob_diff = 0f32;
    let (mut nulls, mut empties) = (0, 0);
    for (k, &(n_best, max_answer, with_null, threshold)) in POST.iter().enumerate() {
        let preds = ds.postprocess(&starts, &ends, n_best, max_answer, with_null, threshold);
        let reference = out["post"][k].as_array().unwrap();
        let key = format!("{:?}", POST[k]);
        assert_eq!(preds.len(), reference.len());
        for (p, r) in preds.iter().zip(reference) {
            assert_eq!(p.id, r["id"].as_str().unwrap());
            assert_eq!(p.text, r["text"].as_str().unwrap(), "{key} {}", p.id);
            let nbest = r["nbest"].as_array().unwrap();
            assert_eq!(p.n_best.len(), nbest.len(), "{key} {} n-best size", p.id);
            for ((text, prob), n) in p.n_best.iter().zip(nbest) {
                assert_eq!(text, n[0].as_str().unwrap(), "{key} {} n-best text", p.id);
                max_prob_diff = max_prob_diff.max((prob - n[1].as_f64().unwrap() as f32).abs());
            }
            if with_null {
                let diff = (p.null_score_diff.unwrap() - r["diff"].as_f64().unwrap() as f32).abs();
                assert!(diff < 1e-5, "{key} {} null score diff off by {diff}", p.id);
            }
        }
        let null = preds.iter().filter(|p| p.text.is_empty()).count();
        let empty = preds.iter().filter(|p| p.text == "empty").count();
        (nulls, empties) = (nulls + null, empties + empty);
        println!(
            "{key}: {} predictions equal to postprocess_qa_predictions ({null} null, {empty} \"empty\")",
            preds.len()
        );
    }
    assert!(nulls > 0 && empties > 0, "the settings exercise null answers ({nulls}) and HF's \"empty\" ({empties})");
    println!("n-best probabilities: max |diff| {max_prob_diff:.2e} (tolerance 1e-6)");
    assert!(max_prob_diff < 1e-6);
}

#[test]
fn impossible_questions_and_answers_outside_a_window_point_at_cls() {
    let tok = minilm();
    let context = "Alpha beta gamma delta. ".repeat(30) + "The treasure is hidden under the old oak tree.";
    let start = context.find("the old oak").unwrap();
    let example = |id: &str, impossible: bool| QaExample {
        id: id.into(),
        question: "   Where is the treasure?".into(),
        context: context.clone(),
        answers: if impossible { vec![] } else { vec![QaAnswer { text: "the old oak tree".into(), start }] },
        is_impossible: impossible,
    };
    let ds = QaDataset::new(&[example("a", false), example("b", true)], &tok, 48, 8).unwrap();
    let mut hits = 0;
    for f in 0..ds.n_features() {
        let (s, e) = ds.feature_positions(f).unwrap();
        let ids = ds.feature_ids(f).unwrap();
        assert!(ids.len() <= 48);
        if ds.feature_example(f) == Some(1) {
            assert_eq!((s, e), (0, 0), "impossible question, window {f}");
        } else if s != 0 {
            hits += 1;
            let text = tok.decode(&ids[s as usize..=e as usize]).unwrap();
            assert_eq!(text, "the old oak tree");
        }
    }
    assert!(hits >= 1, "the last window(s) hold the answer");
    // The question is left-stripped as run_qa does: the window starts [CLS] where.
    assert_eq!(ds.feature_ids(0).unwrap()[1], tok.encode("where", None, 8).unwrap().ids[1]);
}
