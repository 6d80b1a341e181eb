//! Classification and NER datasets: labels, dynamic padding and mapping predictions back to words, checked
//! against the tokenizer's own word ids.

use suite_core::data::Dataset;
use tch::Kind;

use super::minilm;
use crate::data::datasets::{ClassifyDataset, NerDataset};
use crate::data::labels::{LabelSet, SubwordLabels};
use crate::data::sources::{ClassifyExample, NerSentence};

fn ex(text: &str, pair: Option<&str>, labels: &[&str]) -> ClassifyExample {
    ClassifyExample {
        text: text.into(),
        text_pair: pair.map(str::to_string),
        labels: labels.iter().map(|l| l.to_string()).collect(),
    }
}

fn rows(t: &tch::Tensor) -> Vec<Vec<i64>> {
    Vec::<Vec<i64>>::try_from(t).unwrap()
}

#[test]
fn classify_batches_pad_to_the_longest_item() {
    let tok = minilm();
    let examples = [ex("short", None, &["pos"]), ex("a somewhat longer text here", Some("and a pair"), &["neg"])];
    let labels = LabelSet::collect(["pos", "neg"]);
    let ds = ClassifyDataset::new(&examples, &tok, Some(&labels), 64, false).unwrap();
    assert_eq!(ds.lengths(), [3, 11]);
    let b = ds.collate(vec![1, 0]).unwrap();
    assert_eq!(b.index, [1, 0]);
    assert_eq!(b.input_ids.size(), [2, 11]);
    let ids = rows(&b.input_ids);
    assert_eq!(ids[0], tok.encode(&examples[1].text, examples[1].text_pair.as_deref(), 64).unwrap().ids);
    assert_eq!(ids[1][3..], [0; 8], "padded with [PAD] = 0");
    assert_eq!(rows(&b.attention_mask)[1], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(rows(&b.token_type_ids)[0], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(Vec::<i64>::try_from(&b.labels).unwrap(), [0, 1], "neg = 0, pos = 1");

    // Truncation to max_len, multi-label multi-hot, unlabelled batches.
    let ds = ClassifyDataset::new(&examples, &tok, None, 5, false).unwrap();
    assert_eq!(ds.lengths(), [3, 5]);
    assert_eq!(ds.collate(vec![0]).unwrap().labels.numel(), 0);
    let multi = [ex("x", None, &["a", "c"]), ex("y", None, &[])];
    let set = LabelSet::collect(["a", "b", "c"]);
    let b = ClassifyDataset::new(&multi, &tok, Some(&set), 16, true).unwrap().collate(vec![0, 1]).unwrap();
    assert_eq!(b.labels.kind(), Kind::Float);
    assert_eq!(Vec::<Vec<f32>>::try_from(&b.labels).unwrap(), [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]);

    let err =
        format!("{:#}", ClassifyDataset::new(&[ex("x", None, &["zzz"])], &tok, Some(&set), 16, false).err().unwrap());
    assert_eq!(err, "example 0: label `zzz` is not in the label set [a, b, c]");
    let err = format!("{:#}", ClassifyDataset::new(&multi, &tok, Some(&set), 16, false).err().unwrap());
    assert!(err.starts_with("example 0: 2 labels"), "{err}");
}

#[test]
fn ner_labels_follow_word_ids_and_predictions_map_back() {
    let tok = minilm();
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let sents = [
        NerSentence { tokens: words("Ekeus visited Baghdad yesterday"), tags: words("B-PER O B-LOC O") },
        NerSentence { tokens: words("Antidisestablishmentarianism"), tags: words("B-MISC") },
    ];
    let labels = LabelSet::collect(sents.iter().flat_map(|s| s.tags.iter().map(String::as_str)).chain(["I-MISC"]));
    assert_eq!(labels.names, ["O", "B-LOC", "B-MISC", "B-PER", "I-MISC"]);
    let first = NerDataset::new(&sents, &tok, Some(&labels), 64, SubwordLabels::First).unwrap();
    let all = NerDataset::new(&sents, &tok, Some(&labels), 64, SubwordLabels::All).unwrap();
    for (i, sent) in sents.iter().enumerate() {
        let enc = tok.encode_words(&sent.tokens, 64).unwrap();
        assert_eq!(first.word_ids(i).unwrap(), enc.word_ids.as_slice());
        assert!(enc.word_ids.windows(2).any(|w| w[0].is_some() && w[0] == w[1]), "some word splits into sub-words");
        let b_first = first.collate(vec![i]).unwrap();
        let b_all = all.collate(vec![i]).unwrap();
        let (lf, la) = (&rows(&b_first.labels)[0], &rows(&b_all.labels)[0]);
        let mut previous = None;
        for (pos, w) in enc.word_ids.iter().enumerate() {
            match *w {
                None => assert_eq!((lf[pos], la[pos]), (-100, -100)),
                Some(w) => {
                    let tag = labels.index(&sent.tags[w]).unwrap() as i64;
                    if previous == Some(w) {
                        assert_eq!(lf[pos], -100);
                        let inside = if sent.tags[w] == "B-MISC" { 4 } else { tag };
                        assert_eq!(la[pos], inside, "B- becomes I- on later sub-words when I- exists");
                    } else {
                        assert_eq!((lf[pos], la[pos]), (tag, tag));
                    }
                }
            }
            previous = *w;
        }
        // Predicting the gold labels gives back the gold tags.
        let preds: Vec<i64> = lf.iter().map(|&l| if l < 0 { 0 } else { l }).collect();
        assert_eq!(first.word_predictions(i, &preds, &labels), sent.tags);
    }
    // Padding: labels -100 on padded positions.
    let b = first.collate(vec![0, 1]).unwrap();
    let l = rows(&b.labels);
    let n1 = first.lengths()[1];
    assert!(l[1][n1..].iter().all(|&x| x == -100));

    // Truncation: words cut off are predicted "O".
    let short = NerDataset::new(&sents[..1], &tok, None, 4, SubwordLabels::First).unwrap();
    assert_eq!(short.lengths(), [4]);
    let preds = [0, 3, 0, 1, 1, 1];
    let tags = short.word_predictions(0, &preds, &labels);
    assert_eq!(tags.len(), 4);
    assert_eq!(tags[2..], ["O", "O"]);
    assert_eq!(short.collate(vec![0]).unwrap().labels.numel(), 0);
}
