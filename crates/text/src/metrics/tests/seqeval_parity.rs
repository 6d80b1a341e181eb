//! seqeval 1.2.2 on 400 random tag sequence pairs, default mode and strict mode under all six schemes.

use serde_json::Value;

use super::{oracle, sentences, MaxDiff};
use crate::metrics::seqeval::{entities, seqeval_report, try_entities, Mode, Scheme, SeqevalReport};

/// Exact: we reproduce seqeval's formulas and numpy's pairwise sums.
const TOL: f64 = 0.0;

/// Generates the cases (well-formed IOB1/IOB2/IOE1/IOE2/IOBES/BILOU sequences, then mutated predictions, and
/// malformed tags: I- without B-, type switches inside an entity, E-/S-/U-/L- in other schemes, bare prefixes,
/// `X-PER`, `OTHER`, `.`, unicode types) and scores them with seqeval.
const SEQEVAL: &str = r#"
import json, random, sys, warnings
warnings.simplefilter("ignore")
from seqeval.metrics import classification_report, accuracy_score, precision_score, recall_score, f1_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB1, IOB2, IOE1, IOE2, IOBES, BILOU, Tokens

SCHEMES = dict(IOB1=IOB1, IOB2=IOB2, IOE1=IOE1, IOE2=IOE2, IOBES=IOBES, BILOU=BILOU)
TYPES = ["PER", "LOC", "ORG", "MISC", "Ünï"]
WILD = ["X-PER", "B", "I", "I-", "B-PER-", "OTHER", ".", "B-I-PER", "E-PER", "S-LOC", "U-ORG", "L-ORG", "-",
        "B--LOC", "O-PER", "S", "E", "I-_", ".-PER", "B-"]
rng = random.Random(int(sys.argv[1]))

def well_formed(style, n):
    # Segments of O runs and entities (adjacent entities too), written in the style's own conventions.
    tags, prev_type = [], None
    while len(tags) < n:
        if rng.random() < 0.4:
            tags.append("O"); prev_type = None; continue
        t, length = rng.choice(TYPES[:3] if rng.random() < 0.8 else TYPES), rng.randint(1, 4)
        length = min(length, n - len(tags))
        if style == "IOB2": seg = ["B-" + t] + ["I-" + t] * (length - 1)
        elif style == "IOB1": seg = ["B-" + t if prev_type == t else "I-" + t] + ["I-" + t] * (length - 1)
        elif style == "IOE2": seg = ["I-" + t] * (length - 1) + ["E-" + t]
        elif style == "IOE1": seg = ["I-" + t] * length  # E- marks are fixed up below
        elif style == "IOBES": seg = ["S-" + t] if length == 1 else ["B-" + t] + ["I-" + t] * (length - 2) + ["E-" + t]
        else: seg = ["U-" + t] if length == 1 else ["B-" + t] + ["I-" + t] * (length - 2) + ["L-" + t]
        if style == "IOE1" and prev_type == t: tags[-1] = "E-" + t
        tags += seg; prev_type = t
    return tags

def mutate(tags, style):
    out = list(tags)
    for i in range(len(out)):
        r = rng.random()
        if r < 0.08: out[i] = "O"
        elif r < 0.14 and out[i] != "O": out[i] = out[i][:2] + rng.choice(TYPES[:3])  # type switch
        elif r < 0.20 and out[i] != "O": out[i] = rng.choice(style.replace("2", "").replace("1", "").replace("S", "S")) + out[i][1:]
        elif r < 0.24: out[i] = rng.choice("IBESUL") + "-" + rng.choice(TYPES[:3])
    return out

def wild(tags):
    out = list(tags)
    for i in range(len(out)):
        if rng.random() < 0.2: out[i] = rng.choice(WILD)
    return out

def num(x):
    x = float(x)
    return None if x != x else x

def report(t, p, **kw):
    try:
        r = classification_report(t, p, output_dict=True, zero_division=0, **kw)
        rows = {k: [num(v["precision"]), num(v["recall"]), num(v["f1-score"]), int(v["support"])] for k, v in r.items()}
        mode = kw.get("mode")
        extra = dict(
            p=num(precision_score(t, p, zero_division=0, **kw)), r=num(recall_score(t, p, zero_division=0, **kw)),
            f=num(f1_score(t, p, zero_division=0, **kw)), macro_f=num(f1_score(t, p, average="macro", zero_division=0, **kw)))
        return dict(rows=rows, extra=extra, accuracy=accuracy_score(t, p))
    except (ValueError, KeyError, IndexError, ZeroDivisionError) as e:
        return dict(error=type(e).__name__)

def sent_entities(s, scheme):
    try:
        if scheme is None:
            return [[k, a, b + 1] for k, a, b in get_entities(s)]
        return [[e.tag, e.start, e.end] for e in Tokens(s, SCHEMES[scheme]).entities]
    except (ValueError, KeyError, IndexError):
        return None

cases = []
for c in range(int(sys.argv[2])):
    style = ["IOB2", "IOB1", "IOE2", "IOE1", "IOBES", "BILOU"][c % 6]
    truth = [well_formed(style, rng.choice([0, 1, 2, 5, 8, 12, 15])) for _ in range(rng.randint(1, 5))]
    pred = [mutate(s, style) for s in truth]
    kind = c % 5
    if kind == 3: pred = [wild(s) for s in pred]            # malformed predictions
    if kind == 4: truth = [wild(s) for s in truth]          # malformed truth too
    if c % 7 == 0: pred = [list(s) for s in truth]          # perfect prediction
    if c % 11 == 0: pred = [["O"] * len(s) for s in truth]  # nothing predicted
    if c % 13 == 0: truth = [["O"] * len(s) for s in truth] # nothing to find
    refs = {"default": report(truth, pred)}
    ents = {"default": [[sent_entities(s, None) for s in truth], [sent_entities(s, None) for s in pred]]}
    for name in SCHEMES:
        refs[name] = report(truth, pred, mode="strict", scheme=SCHEMES[name])
        ents[name] = [[sent_entities(s, name) for s in truth], [sent_entities(s, name) for s in pred]]
    cases.append(dict(truth=truth, pred=pred, refs=refs, entities=ents))
print(json.dumps(cases))
"#;

fn check_report(d: &mut MaxDiff, ctx: &str, ours: &SeqevalReport, reference: &Value) {
    let rows = reference["rows"].as_object().expect("rows");
    let types: Vec<&String> = rows.keys().filter(|k| !k.ends_with(" avg")).collect();
    let our_types: Vec<&String> = ours.per_type.keys().collect();
    let mut want_types = types.clone();
    want_types.sort();
    assert_eq!(our_types, want_types, "{ctx}: entity types");
    let mut check_row = |name: &str, s: &crate::metrics::EntityScores| {
        let r = &rows[name];
        for (k, (ours, field)) in
            [(s.precision, "precision"), (s.recall, "recall"), (s.f1, "f1")].into_iter().enumerate()
        {
            match r[k].as_f64() {
                Some(theirs) => d.check(|| format!("{ctx}: {name} {field}"), ours, theirs),
                // seqeval's macro average over no entity type is NaN; ours is 0 (documented deviation).
                None => assert!(name == "macro avg" && types.is_empty() && ours == 0.0, "{ctx}: {name} {field}: NaN"),
            }
        }
        assert_eq!(s.support as u64, r[3].as_u64().unwrap(), "{ctx}: {name} support");
    };
    for (name, s) in &ours.per_type {
        check_row(name, s);
    }
    check_row("micro avg", &ours.micro);
    check_row("macro avg", &ours.macro_avg);
    check_row("weighted avg", &ours.weighted);
    // precision_score / recall_score / f1_score agree with the report's micro row, f1_score(average="macro") with
    // its macro row.
    let extra = &reference["extra"];
    d.check(|| format!("{ctx}: precision_score"), ours.micro.precision, extra["p"].as_f64().unwrap());
    d.check(|| format!("{ctx}: recall_score"), ours.micro.recall, extra["r"].as_f64().unwrap());
    d.check(|| format!("{ctx}: f1_score"), ours.micro.f1, extra["f"].as_f64().unwrap());
    if let Some(macro_f) = extra["macro_f"].as_f64() {
        d.check(|| format!("{ctx}: f1_score(average=macro)"), ours.macro_avg.f1, macro_f);
    }
    d.check(|| format!("{ctx}: accuracy_score"), ours.accuracy, reference["accuracy"].as_f64().unwrap());
}

fn check_entities(ctx: &str, tags: &[String], mode: Mode, scheme: Scheme, reference: &Value) {
    let ours = try_entities(tags, mode, scheme);
    match reference.as_array() {
        None => assert!(ours.is_err(), "{ctx}: seqeval raises on {tags:?}, we returned {ours:?}"),
        Some(list) => {
            let want: Vec<(String, usize, usize)> = list
                .iter()
                .map(|e| {
                    (
                        e[0].as_str().unwrap().to_string(),
                        e[1].as_u64().unwrap() as usize,
                        e[2].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            let ours = ours.unwrap_or_else(|e| panic!("{ctx}: {tags:?}: {e}"));
            assert_eq!(ours, want, "{ctx}: entities of {tags:?}");
            assert_eq!(entities(tags, mode, scheme), want, "{ctx}: lenient entities of a valid sequence");
        }
    }
}

#[test]
fn seqeval_reports_and_entities_match_seqeval() {
    let cases = oracle(SEQEVAL, &["20240611", "400"]);
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 400);
    let mut d = MaxDiff::new("seqeval reports", TOL);
    let (mut reports, mut errors, mut sequences, mut entity_count) = (0, 0, 0, 0);
    for (i, c) in cases.iter().enumerate() {
        let truth = sentences(&c["truth"]);
        let pred = sentences(&c["pred"]);
        let modes = std::iter::once(("default", Mode::Default, Scheme::Iob2))
            .chain(Scheme::ALL.into_iter().map(|s| (s.name(), Mode::Strict, s)));
        for (name, mode, scheme) in modes {
            let ctx = format!("case {i} {name}");
            let reference = &c["refs"][name];
            let ours = seqeval_report(&truth, &pred, mode, scheme);
            if reference.get("error").is_some() {
                assert!(ours.is_err(), "{ctx}: seqeval raises {}, we returned {ours:?}", reference["error"]);
                errors += 1;
            } else {
                let ours = ours.unwrap_or_else(|e| panic!("{ctx}: {e:#}"));
                check_report(&mut d, &ctx, &ours, reference);
                entity_count += ours.per_type.values().map(|s| s.support).sum::<usize>();
                reports += 1;
            }
            for (side, sents) in [(0, &truth), (1, &pred)] {
                for (j, s) in sents.iter().enumerate() {
                    check_entities(
                        &format!("{ctx} side {side} sentence {j}"),
                        s,
                        mode,
                        scheme,
                        &c["entities"][name][side][j],
                    );
                    sequences += 1;
                }
            }
        }
    }
    d.report();
    eprintln!("seqeval: {reports} reports ({entity_count} true entities), {errors} inputs seqeval rejects, {sequences} sequences' entities");
    // The generator must reach both outcomes in every mode, or the comparison proves little.
    assert!(reports > 900 && errors > 300, "{reports} reports, {errors} errors");
}
