//! NER tags: tags that are not `O` or a `B-`/`I-`/`E-`/`S-` prefix with a type, `I-X` that starts an entity
//! (IOB2 wants `B-X` first), and tags of held-out splits that training never saw; each listed with file and line.

use std::collections::BTreeSet;

use suite_core::quality::report::{Section, Severity, Table};

use super::read::{Body, Data};
use crate::data::{detect_scheme, NerSentence, TagScheme};

/// What is wrong with one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagIssue {
    /// Word index in the sentence.
    pub word: usize,
    /// The tag.
    pub tag: String,
    /// Why it is wrong.
    pub reason: String,
    /// Whether the tag is malformed (not a scheme violation).
    pub unknown: bool,
}

/// The tag issues of one sentence under IOB2 (BIOES tags are accepted; `I-X` must follow `B-X` or `I-X`).
pub fn sentence_issues(sentence: &NerSentence) -> Vec<TagIssue> {
    let mut out = vec![];
    let mut previous: Option<(char, String)> = None;
    for (w, tag) in sentence.tags.iter().enumerate() {
        if tag == "O" {
            previous = None;
            continue;
        }
        let parsed = tag.split_once('-').and_then(|(p, t)| {
            let p = p.chars().next().filter(|c| p.len() == 1 && "BIES".contains(*c))?;
            (!t.is_empty()).then(|| (p, t.to_string()))
        });
        let Some((p, t)) = parsed else {
            out.push(TagIssue {
                word: w,
                tag: tag.clone(),
                reason: "not `O` or B-/I-/E-/S- followed by an entity type (as `B-PER`)".into(),
                unknown: true,
            });
            previous = None;
            continue;
        };
        if p == 'I' || p == 'E' {
            let continues = matches!(&previous, Some((q, u)) if *u == t && (*q == 'B' || *q == 'I'));
            if !continues {
                let after = match &previous {
                    None if w == 0 => "at the start of the sentence".to_string(),
                    None => format!("after `{}`", sentence.tags[w - 1]),
                    Some(_) => format!("after `{}`", sentence.tags[w - 1]),
                };
                out.push(TagIssue {
                    word: w,
                    tag: tag.clone(),
                    reason: format!("`{tag}` {after}: an entity starts with `B-{t}`"),
                    unknown: false,
                });
            }
        }
        previous = Some((p, t));
    }
    out
}

/// Builds the section.
pub fn section(data: &Data) -> Section {
    let mut s = Section::new("tags", "NER tags");
    let mut rows = vec![];
    let (mut violations, mut unknown, mut begins) = (0, 0, 0);
    let mut train_tags = BTreeSet::new();
    let mut sentences = vec![];
    for e in &data.examples {
        let Body::Ner(sentence, lines) = &e.body else { continue };
        if e.split == 0 {
            train_tags.extend(sentence.tags.iter().cloned());
        }
        begins += sentence.tags.iter().filter(|t| t.starts_with("B-")).count();
        sentences.push(sentence.clone());
        for issue in sentence_issues(sentence) {
            if issue.unknown {
                unknown += 1;
            } else {
                violations += 1;
            }
            let line = lines.get(issue.word).copied().unwrap_or(e.line as usize);
            rows.push(vec![
                data.splits[e.split].clone(),
                format!("{}:{line}", data.files[e.split]),
                sentence.tokens.get(issue.word).cloned().unwrap_or_default(),
                issue.tag,
                issue.reason,
            ]);
        }
    }
    let scheme = detect_scheme(&sentences).ok();
    s.stat("scheme", scheme.map(|k| format!("{k:?}")));
    s.stat("tags", train_tags.len());
    s.stat("iob2_violations", violations);
    s.stat("unknown_tags", unknown);
    if unknown > 0 {
        s.advise(
            Severity::Problem,
            format!("{unknown} tag(s) are not `O` or a B-/I-/E-/S- prefix with a type"),
            "fix them in the files: they are not entities to the metrics, and strict scoring refuses them",
        );
    }
    if violations > 0 {
        let msg = format!("{violations} `I-`/`E-` tag(s) start an entity without a `B-` of the same type (IOB2)");
        // IOB1 starts entities with I- and uses B- only between touching entities of one type.
        if scheme == Some(TagScheme::Iob1) && violations > begins {
            s.advise(
                Severity::Warning,
                msg,
                "the files look like IOB1 (CoNLL-2003's original tags): convert them to IOB2 (an entity starts with \
                 B-) so that training and scoring agree on where entities start",
            );
        } else {
            s.advise(
                Severity::Warning,
                msg,
                "change the first tag of each listed entity to `B-`: the model learns two ways to start an entity, \
                 and seqeval's strict mode drops such entities",
            );
        }
    }
    if unknown == 0 && violations == 0 {
        s.note(Severity::Ok, "every tag follows the IOB2 scheme");
    }
    for sp in 1..data.splits.len() {
        let mut unseen = BTreeSet::new();
        for e in data.examples.iter().filter(|e| e.split == sp) {
            if let Body::Ner(sentence, _) = &e.body {
                unseen.extend(sentence.tags.iter().filter(|t| !train_tags.contains(*t)).cloned());
            }
        }
        if !unseen.is_empty() {
            let names: Vec<String> = unseen.iter().take(20).map(|t| format!("`{t}`")).collect();
            s.advise(
                Severity::Problem,
                format!(
                    "{} tag(s) of the {} split never occur in train: {}",
                    unseen.len(),
                    data.splits[sp],
                    names.join(", ")
                ),
                "suite finetune text refuses tags the training data lacks: add training sentences with them, or fix \
                 their spelling",
            );
        }
    }
    if !rows.is_empty() {
        s.tables.push(Table {
            title: "tag issues".into(),
            columns: ["split", "line", "word", "tag", "reason"].map(String::from).to_vec(),
            rows,
        });
    }
    s
}
