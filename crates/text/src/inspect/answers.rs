//! QA answers: answers that do not match their context at `answer_start` (suite finetune refuses the file), and
//! answers that no window of `max_len` tokens with `doc_stride` overlap holds whole: training points such windows
//! at the classifier token, so the question teaches "no answer here" instead of its answer.

use suite_core::quality::report::{Section, Severity, Table};

use super::read::{shorten, Body, Data};
use crate::data::{QaDataset, QaExample, TextTokenizer};

/// Whether some window finetune makes of `q` holds its first answer whole (`Ok(true)` for questions without one);
/// an error when the question leaves no room for the context.
pub fn answer_in_a_window(q: &QaExample, tok: &TextTokenizer, max_len: usize, stride: usize) -> anyhow::Result<bool> {
    if q.is_impossible || q.answers.is_empty() {
        return Ok(true);
    }
    let ds = QaDataset::new(std::slice::from_ref(q), tok, max_len, stride)?;
    // A window holding the answer points its start at a context token; the others point at the classifier token.
    Ok((0..ds.n_features()).any(|f| {
        let (start, _) = ds.feature_positions(f).unwrap_or((0, 0));
        ds.feature_offsets(f).and_then(|o| o.get(start as usize)).is_some_and(Option::is_some)
    }))
}

/// Builds the section.
pub fn section(data: &Data, tok: &TextTokenizer, max_len: usize, stride: usize) -> Section {
    let mut s = Section::new("answers", "Answers");
    s.stat("max_len", max_len);
    s.stat("doc_stride", stride);
    let (mut answerable, mut impossible, mut windows) = (0, 0, 0);
    let (mut lost, mut too_long) = (vec![], vec![]);
    for (i, e) in data.examples.iter().enumerate() {
        let Body::Qa(q) = &e.body else { continue };
        if q.is_impossible || q.answers.is_empty() {
            impossible += 1;
        } else {
            answerable += 1;
        }
        windows += tok.encode_windows(q.question.trim_start(), &q.context, max_len, stride).map_or(0, |w| w.len());
        match answer_in_a_window(q, tok, max_len, stride) {
            Ok(true) => {}
            Ok(false) => lost.push((i, q.answers[0].clone())),
            Err(err) => too_long.push((i, format!("{err:#}"))),
        }
    }
    s.stat("answerable", answerable);
    s.stat("unanswerable", impossible);
    s.stat("windows", windows);
    s.stat("answers_lost", lost.len());
    s.stat("answers_lost_rate", lost.len() as f64 / answerable.max(1) as f64);
    s.stat("answers_not_in_context", data.refused.len());
    s.stat("questions_too_long", too_long.len());
    if !data.refused.is_empty() {
        s.advise(
            Severity::Problem,
            format!("{} answer(s) or question id(s) suite finetune text refuses", data.refused.len()),
            "fix answer_start (characters into the context, as Python counts) or the answer text so they match, and \
             make question ids unique",
        );
        s.tables.push(Table {
            title: "refused answers".into(),
            columns: vec!["split".into(), "line".into(), "reason".into()],
            rows: data
                .refused
                .iter()
                .map(|r| {
                    vec![data.splits[r.split].clone(), format!("{}:{}", data.files[r.split], r.line), r.reason.clone()]
                })
                .collect(),
        });
    }
    if !lost.is_empty() {
        s.advise(
            Severity::Warning,
            format!(
                "{} of {answerable} answer(s) lie in no window of {max_len} tokens with {stride} tokens of overlap: \
                 training sees them as unanswerable",
                lost.len()
            ),
            "raise --max-len, or the recipe's doc_stride (more overlap between windows), until the longest answers \
             fit; or shorten those answers",
        );
        s.tables.push(Table {
            title: "answers in no window".into(),
            columns: vec!["split".into(), "item".into(), "answer".into(), "answer_start".into()],
            rows: lost
                .iter()
                .map(|(i, a)| {
                    let i = *i;
                    vec![
                        data.splits[data.examples[i].split].clone(),
                        data.name(i),
                        shorten(&a.text, 60),
                        a.start.to_string(),
                    ]
                })
                .collect(),
        });
    } else if answerable > 0 {
        s.note(Severity::Ok, format!("every answer lies whole in some window of {max_len} tokens"));
    }
    if !too_long.is_empty() {
        s.advise(
            Severity::Problem,
            format!("{} question(s) leave no room for the context in a window of {max_len} tokens", too_long.len()),
            "suite finetune text refuses them: shorten the questions or raise --max-len",
        );
        s.tables.push(Table {
            title: "questions too long for the windows".into(),
            columns: vec!["split".into(), "item".into(), "reason".into()],
            rows: too_long
                .iter()
                .map(|(i, why)| vec![data.splits[data.examples[*i].split].clone(), data.name(*i), why.clone()])
                .collect(),
        });
    }
    s
}
