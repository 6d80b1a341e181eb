//! The official SQuAD v1.1 and v2.0 evaluation scripts on 400 random questions per version (punctuation,
//! articles, unicode, odd whitespace, empty and missing answers) and on every prediction/answer pair.

use std::collections::HashSet;

use serde_json::Value;

use super::{oracle, MaxDiff};
use crate::metrics::squad::{exact_match, f1, f1_v1, normalize_answer, squad_v1, squad_v2};

/// Exact: same operations in the same order as the scripts.
const TOL: f64 = 0.0;

const SQUAD: &str = r#"
import collections, json, random, re, string, sys
from collections import Counter

# ---- evaluate-v1.1.py, the official SQuAD v1.1 evaluation script (rajpurkar.github.io/SQuAD-explorer), verbatim
# ---- except for renaming normalize_answer to normalize_answer_v1 (v2.0 defines its own).
def normalize_answer_v1(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer_v1(prediction).split()
    ground_truth_tokens = normalize_answer_v1(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer_v1(prediction) == normalize_answer_v1(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    message = 'Unanswered question ' + qa['id'] + \
                              ' will receive score 0.'
                    print(message, file=sys.stderr)
                    continue
                ground_truths = list(map(lambda x: x['text'], qa['answers']))
                prediction = predictions[qa['id']]
                exact_match += metric_max_over_ground_truths(
                    exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(
                    f1_score, prediction, ground_truths)

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {'exact_match': exact_match, 'f1': f1}

# ---- evaluate-v2.0.py, the official SQuAD v2.0 evaluation script (same site), verbatim: the functions main()
# ---- uses without a no-answer probability file.
def make_qid_to_has_ans(dataset):
  qid_to_has_ans = {}
  for article in dataset:
    for p in article['paragraphs']:
      for qa in p['qas']:
        qid_to_has_ans[qa['id']] = bool(qa['answers'])
  return qid_to_has_ans

def normalize_answer(s):
  """Lower text and remove punctuation, articles and extra whitespace."""
  def remove_articles(text):
    regex = re.compile(r'\b(a|an|the)\b', re.UNICODE)
    return re.sub(regex, ' ', text)
  def white_space_fix(text):
    return ' '.join(text.split())
  def remove_punc(text):
    exclude = set(string.punctuation)
    return ''.join(ch for ch in text if ch not in exclude)
  def lower(text):
    return text.lower()
  return white_space_fix(remove_articles(remove_punc(lower(s))))

def get_tokens(s):
  if not s: return []
  return normalize_answer(s).split()

def compute_exact(a_gold, a_pred):
  return int(normalize_answer(a_gold) == normalize_answer(a_pred))

def compute_f1(a_gold, a_pred):
  gold_toks = get_tokens(a_gold)
  pred_toks = get_tokens(a_pred)
  common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
  num_same = sum(common.values())
  if len(gold_toks) == 0 or len(pred_toks) == 0:
    # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
    return int(gold_toks == pred_toks)
  if num_same == 0:
    return 0
  precision = 1.0 * num_same / len(pred_toks)
  recall = 1.0 * num_same / len(gold_toks)
  f1 = (2 * precision * recall) / (precision + recall)
  return f1

def get_raw_scores(dataset, preds):
  exact_scores = {}
  f1_scores = {}
  for article in dataset:
    for p in article['paragraphs']:
      for qa in p['qas']:
        qid = qa['id']
        gold_answers = [a['text'] for a in qa['answers']
                        if normalize_answer(a['text'])]
        if not gold_answers:
          # For unanswerable questions, only correct answer is empty string
          gold_answers = ['']
        if qid not in preds:
          print('Missing prediction for %s' % qid)
          continue
        a_pred = preds[qid]
        # Take max over all gold answers
        exact_scores[qid] = max(compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(compute_f1(a, a_pred) for a in gold_answers)
  return exact_scores, f1_scores

def apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
  new_scores = {}
  for qid, s in scores.items():
    pred_na = na_probs[qid] > na_prob_thresh
    if pred_na:
      new_scores[qid] = float(not qid_to_has_ans[qid])
    else:
      new_scores[qid] = s
  return new_scores

def make_eval_dict(exact_scores, f1_scores, qid_list=None):
  if not qid_list:
    total = len(exact_scores)
    return collections.OrderedDict([
        ('exact', 100.0 * sum(exact_scores.values()) / total),
        ('f1', 100.0 * sum(f1_scores.values()) / total),
        ('total', total),
    ])
  else:
    total = len(qid_list)
    return collections.OrderedDict([
        ('exact', 100.0 * sum(exact_scores[k] for k in qid_list) / total),
        ('f1', 100.0 * sum(f1_scores[k] for k in qid_list) / total),
        ('total', total),
    ])

def merge_eval(main_eval, new_eval, prefix):
  for k in new_eval:
    main_eval['%s_%s' % (prefix, k)] = new_eval[k]

def evaluate_v2(dataset, preds):
  # main() of evaluate-v2.0.py without files: no na_prob file, default threshold 1.0.
  na_probs = {k: 0.0 for k in preds}
  qid_to_has_ans = make_qid_to_has_ans(dataset)  # maps qid to True/False
  has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
  no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
  exact_raw, f1_raw = get_raw_scores(dataset, preds)
  exact_thresh = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, 1.0)
  f1_thresh = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, 1.0)
  out_eval = make_eval_dict(exact_thresh, f1_thresh)
  if has_ans_qids:
    has_ans_eval = make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids)
    merge_eval(out_eval, has_ans_eval, 'HasAns')
  if no_ans_qids:
    no_ans_eval = make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids)
    merge_eval(out_eval, no_ans_eval, 'NoAns')
  return out_eval

# ---- random cases
rng = random.Random(int(sys.argv[1]))
WORDS = ["the", "The", "THE", "a", "A", "an", "An", "cat", "Cat", "dog", "dogs", "Paris", "paris", "New-York",
         "new york", "1,000", "1000", "$5", "5%", "café", "CAFÉ", "cafe\u0301", "naïve", "Straße", "STRASSE", "ΣΑΣ",
         "σας", "İstanbul", "東京", "東京都", "Ⅻ", "½", "x²", "théa", "the\u0301", "a_b", "the_x", "«the»", "“a”",
         "l'a", "don't", "the-end", "an—the", "Ünï", "Ⓐ", "न", "नि", "ﬁ", "ǅ", "the\u093e", "١٢٣", "Éthe",
         "...", "!!", "(a)", "[the]", "an.", "e.g.", "U.S.A.", "ǈthe", "theΣ"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u2009", "\x1c", "\x1f", "\u200b", "\u0085", "\r\n"]

def phrase(max_words=6):
    n = rng.randint(0, max_words)
    out = rng.choice(["", "", " ", "\t"])
    for i in range(n):
        out += rng.choice(WORDS) + (rng.choice(SPACES) if i + 1 < n else rng.choice(["", "", ".", " ", "?"]))
    return out

def near(s):
    # A prediction close to a gold answer: case, punctuation, articles or words changed.
    r = rng.random()
    if r < 0.25: return s
    if r < 0.4: return s.upper()
    if r < 0.55: return rng.choice(["The ", "a ", "", "an "]) + s + rng.choice(["", ".", "!", " the"])
    if r < 0.7: return " ".join(s.split()[: max(1, len(s.split()) - 1)])
    return phrase()

def dataset(version, n, tag):
    qas, preds = [], {}
    for q in range(n):
        qid = "%s-%d" % (tag, q)
        k = rng.choice([1, 1, 2, 3, 4]) if version == 1 or rng.random() < 0.7 else 0
        answers = [phrase() for _ in range(k)]
        if version == 2 and k and rng.random() < 0.15:
            answers = [rng.choice(["the", "a.", "...", " ", "An!"])]   # normalises to nothing, still "has answer"
        if version == 1 and rng.random() < 0.1:
            pass                                                       # unanswered question, scores 0 in v1.1
        elif not answers or rng.random() < 0.3:
            preds[qid] = rng.choice(["", "", phrase()])
        else:
            preds[qid] = near(rng.choice(answers))
        qas.append({"id": qid, "answers": [{"text": a} for a in answers]})
    preds["unknown-" + tag] = "ignored"                                # predictions for unknown ids are ignored
    return [{"paragraphs": [{"qas": qas}]}], preds

out = {"v1": [], "v2": [], "pairs": []}
for d in range(10):
    data, preds = dataset(1, 40, "v1d%d" % d)
    out["v1"].append({"data": data, "preds": preds, "ref": evaluate(data, preds)})
    data, preds = dataset(2, 40, "v2d%d" % d)
    out["v2"].append({"data": data, "preds": preds, "ref": evaluate_v2(data, preds)})
for v in ("v1", "v2"):
    for d in out[v]:
        for qa in d["data"][0]["paragraphs"][0]["qas"]:
            p = d["preds"].get(qa["id"], "")
            for a in [x["text"] for x in qa["answers"]] + [""]:
                out["pairs"].append({"pred": p, "gold": a, "norm_pred": normalize_answer_v1(p),
                    "norm_gold": normalize_answer(a), "em_v1": bool(exact_match_score(p, a)), "f1_v1": f1_score(p, a),
                    "em_v2": compute_exact(a, p), "f1_v2": compute_f1(a, p)})
print(json.dumps(out))
"#;

/// `(questions, predictions)` of one generated dataset in our slice form.
type Case = (Vec<(String, Vec<String>)>, Vec<(String, String)>);

fn case(d: &Value) -> Case {
    let gold = d["data"][0]["paragraphs"][0]["qas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|qa| {
            let answers = qa["answers"].as_array().unwrap().iter().map(|a| a["text"].as_str().unwrap().to_string());
            (qa["id"].as_str().unwrap().to_string(), answers.collect())
        })
        .collect();
    let preds =
        d["preds"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
    (gold, preds)
}

#[test]
fn squad_scores_match_the_official_scripts() {
    let out = oracle(SQUAD, &["20240611"]);
    let mut d = MaxDiff::new("SQuAD", TOL);

    let pairs = out["pairs"].as_array().unwrap();
    let mut distinct = HashSet::new();
    for (i, p) in pairs.iter().enumerate() {
        let (pred, gold) = (p["pred"].as_str().unwrap(), p["gold"].as_str().unwrap());
        assert_eq!(normalize_answer(pred), p["norm_pred"].as_str().unwrap(), "pair {i}: normalize_answer({pred:?})");
        assert_eq!(normalize_answer(gold), p["norm_gold"].as_str().unwrap(), "pair {i}: normalize_answer({gold:?})");
        let em = exact_match(pred, gold);
        assert_eq!(em, f64::from(u8::from(p["em_v1"].as_bool().unwrap())), "pair {i}: exact_match_score");
        d.check(|| format!("pair {i}: compute_exact({gold:?}, {pred:?})"), em, p["em_v2"].as_f64().unwrap());
        d.check(|| format!("pair {i}: f1_score({pred:?}, {gold:?})"), f1_v1(pred, gold), p["f1_v1"].as_f64().unwrap());
        d.check(|| format!("pair {i}: compute_f1({gold:?}, {pred:?})"), f1(pred, gold), p["f1_v2"].as_f64().unwrap());
        distinct.insert((pred, gold));
    }

    let mut questions = 0;
    for (k, v1) in out["v1"].as_array().unwrap().iter().enumerate() {
        let (gold, preds) = case(v1);
        let s = squad_v1(&preds, &gold).unwrap();
        d.check(|| format!("v1 dataset {k}: exact_match"), s.exact, v1["ref"]["exact_match"].as_f64().unwrap());
        d.check(|| format!("v1 dataset {k}: f1"), s.f1, v1["ref"]["f1"].as_f64().unwrap());
        assert_eq!(s.total, gold.len());
        questions += gold.len();
    }
    let mut subsets = 0;
    for (k, v2) in out["v2"].as_array().unwrap().iter().enumerate() {
        let (gold, preds) = case(v2);
        let s = squad_v2(&preds, &gold).unwrap();
        let r = &v2["ref"];
        d.check(|| format!("v2 dataset {k}: exact"), s.exact, r["exact"].as_f64().unwrap());
        d.check(|| format!("v2 dataset {k}: f1"), s.f1, r["f1"].as_f64().unwrap());
        assert_eq!(s.total as u64, r["total"].as_u64().unwrap());
        for (ours, key) in [
            (s.has_ans_exact, "HasAns_exact"),
            (s.has_ans_f1, "HasAns_f1"),
            (s.no_ans_exact, "NoAns_exact"),
            (s.no_ans_f1, "NoAns_f1"),
        ] {
            match (ours, r.get(key).and_then(Value::as_f64)) {
                (Some(a), Some(b)) => {
                    d.check(|| format!("v2 dataset {k}: {key}"), a, b);
                    subsets += 1;
                }
                (None, None) => {}
                (a, b) => panic!("v2 dataset {k}: {key}: ours {a:?}, script {b:?}"),
            }
        }
        questions += gold.len();
    }
    d.report();
    eprintln!(
        "SQuAD: {} pairs ({} distinct), {questions} questions in 20 datasets, {subsets} HasAns/NoAns averages",
        pairs.len(),
        distinct.len()
    );
    assert!(questions >= 800 && subsets >= 40, "{questions} questions, {subsets} subset averages");
}
