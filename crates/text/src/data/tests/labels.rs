//! Label sets and tag schemes.

use crate::data::labels::*;
use crate::data::sources::NerSentence;

fn sentence(tags: &[&str]) -> NerSentence {
    NerSentence {
        tokens: (0..tags.len()).map(|i| format!("w{i}")).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn collect_sorts_unique_labels_with_o_first() {
    let set = LabelSet::collect(["pos", "neg", "pos", "10", "2"]);
    assert_eq!(set.names, ["10", "2", "neg", "pos"]);
    let tags = LabelSet::collect(["I-PER", "O", "B-PER", "B-LOC", "O"]);
    assert_eq!(tags.names, ["O", "B-LOC", "B-PER", "I-PER"]);
    assert_eq!(tags.index("B-PER").unwrap(), 2);
    assert_eq!(tags.len(), 4);
    let err = tags.index("B-ORG").unwrap_err().to_string();
    assert_eq!(err, "label `B-ORG` is not in the label set [O, B-LOC, B-PER, I-PER]");
    let many = LabelSet::from_names((0..30).map(|i| format!("l{i}")).collect());
    assert!(many.index("x").unwrap_err().to_string().ends_with("l19, … 10 more]"));
}

#[test]
fn schemes_are_detected_and_bad_tags_named() {
    let iob2 = [sentence(&["B-PER", "I-PER", "O", "B-LOC"]), sentence(&["O", "O"])];
    assert_eq!(detect_scheme(&iob2).unwrap(), TagScheme::Iob2);
    let iob1 = [sentence(&["I-ORG", "O", "I-PER", "B-PER"])];
    assert_eq!(detect_scheme(&iob1).unwrap(), TagScheme::Iob1);
    // An I- after an entity of another type starts a new entity: IOB1.
    assert_eq!(detect_scheme(&[sentence(&["B-PER", "I-LOC"])]).unwrap(), TagScheme::Iob1);
    let bioes = [sentence(&["B-PER", "E-PER", "S-LOC", "O"])];
    assert_eq!(detect_scheme(&bioes).unwrap(), TagScheme::Bioes);
    assert_eq!(detect_scheme(&[sentence(&["O"])]).unwrap(), TagScheme::Iob2);

    for bad in ["X-PER", "B", "B-", "PER", "o", "BPER", "É-PER"] {
        let err = detect_scheme(&[sentence(&["O"]), sentence(&["O", bad])]).unwrap_err().to_string();
        assert!(err.starts_with("sentence 2 word 2 (`w1`): tag"), "{bad}: {err}");
        assert!(err.contains(&format!("`{bad}`")), "{err}");
    }
}

#[test]
fn iob1_converts_to_iob2() {
    let tags = strings(&["I-ORG", "O", "I-PER", "I-PER", "B-PER", "I-PER", "I-LOC", "O", "I-MISC"]);
    assert_eq!(
        iob1_to_iob2(&tags),
        strings(&["B-ORG", "O", "B-PER", "I-PER", "B-PER", "I-PER", "B-LOC", "O", "B-MISC"])
    );
    let iob2 = strings(&["B-PER", "I-PER", "O", "B-LOC"]);
    assert_eq!(iob1_to_iob2(&iob2), iob2);
    let converted = sentences_to_iob2(&[sentence(&["I-ORG", "I-ORG"])]);
    assert_eq!(detect_scheme(&converted).unwrap(), TagScheme::Iob2);
}
