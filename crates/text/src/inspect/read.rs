//! The data of every split, read with the readers of `suite finetune text`, each example with its split and line so
//! that findings can name `file:line`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Result};

use super::InspectOptions;
use crate::data::sources::squad::SquadFile;
use crate::data::{read_classify_lines, read_ner_lines, read_squad, ClassifyExample, NerSentence, QaAnswer, QaExample};
use crate::task::TextTaskKind;

/// Characters of an example's text shown in item names.
pub const SHOWN_CHARS: usize = 60;

/// One example as the training reader returned it.
#[derive(Clone, Debug)]
pub enum Body {
    /// A text (or pair) and its labels.
    Classify(ClassifyExample),
    /// A sentence and the line of each word.
    Ner(NerSentence, Vec<usize>),
    /// A question about a context.
    Qa(QaExample),
}

/// One example of one split.
#[derive(Clone, Debug)]
pub struct Example {
    /// Index into [`Data::splits`].
    pub split: usize,
    /// 1-based line where the example starts (SQuAD: the line of its question id).
    pub line: u64,
    /// What was read.
    pub body: Body,
}

/// Something in a file that `suite finetune text` would refuse, with where it is.
#[derive(Clone, Debug)]
pub struct Refused {
    /// Index into [`Data::splits`].
    pub split: usize,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// The examples of every split.
#[derive(Clone, Debug, Default)]
pub struct Data {
    /// Split names, train first.
    pub splits: Vec<String>,
    /// The file of each split, as given.
    pub files: Vec<String>,
    /// Every example, split by split in file order.
    pub examples: Vec<Example>,
    /// What finetune would refuse (SQuAD answers that do not match their context, repeated question ids).
    pub refused: Vec<Refused>,
}

impl Data {
    /// How an example is named in tables: `file:line: first 60 characters`.
    pub fn name(&self, i: usize) -> String {
        let e = &self.examples[i];
        format!("{}:{}: {}", self.files[e.split], e.line, shorten(&e.shown(), SHOWN_CHARS))
    }

    /// `file:line` of an example.
    pub fn place(&self, i: usize) -> String {
        let e = &self.examples[i];
        format!("{}:{}", self.files[e.split], e.line)
    }
}

impl Example {
    /// The text a person recognises the example by: the text (pairs: both, joined by ` || `), the sentence's words,
    /// or the question.
    pub fn shown(&self) -> String {
        match &self.body {
            Body::Classify(c) => match &c.text_pair {
                Some(p) => format!("{} || {p}", c.text),
                None => c.text.clone(),
            },
            Body::Ner(s, _) => s.tokens.join(" "),
            Body::Qa(q) => q.question.clone(),
        }
    }

    /// The labels the example is given: classification labels, NER tags; none for QA.
    pub fn labels(&self) -> Vec<String> {
        match &self.body {
            Body::Classify(c) => c.labels.clone(),
            Body::Ner(s, _) => s.tags.clone(),
            Body::Qa(_) => vec![],
        }
    }
}

/// The first `n` characters of `s` on one line, with `…` when cut.
pub fn shorten(s: &str, n: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() > n {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    } else {
        one_line
    }
}

/// Reads every split with the task's training reader.
pub fn read(opts: &InspectOptions) -> Result<Data> {
    let mut data = Data::default();
    for (s, (split, path)) in opts.splits.iter().enumerate() {
        data.splits.push(split.clone());
        data.files.push(path.display().to_string());
        match opts.task {
            TextTaskKind::Classify => {
                for (c, line) in read_classify_lines(path, &opts.columns, true)? {
                    data.examples.push(Example { split: s, line, body: Body::Classify(c) });
                }
            }
            TextTaskKind::Ner => {
                for (sentence, lines) in read_ner_lines(path)? {
                    let line = lines.first().copied().unwrap_or(0) as u64;
                    data.examples.push(Example { split: s, line, body: Body::Ner(sentence, lines) });
                }
            }
            TextTaskKind::Qa => {
                let (examples, refused) = read_qa(path)?;
                data.refused.extend(refused.into_iter().map(|(line, reason)| Refused { split: s, line, reason }));
                for (q, line) in examples {
                    data.examples.push(Example { split: s, line, body: Body::Qa(q) });
                }
            }
            TextTaskKind::Sft => bail!("suite inspect text checks classify, ner and qa data"),
        }
    }
    Ok(data)
}

/// What [`read_qa`] returns: each question with its line, and `(line, reason)` of each refused answer or id.
pub type QaRead = (Vec<(QaExample, u64)>, Vec<(u64, String)>);

/// `(question id, reason)` of each refused answer or id.
type Refusals = Vec<(String, String)>;

/// SQuAD questions with the line of each question id. The file is read by `suite finetune`'s reader; when that
/// refuses it, a lenient second reading lists every answer that does not match its context (and every repeated
/// id) as a refusal, keeping the rest, so that all of them are reported at once. A file that is not SQuAD JSON
/// at all stays the reader's error.
pub fn read_qa(path: &Path) -> Result<QaRead> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines = id_lines(&text);
    let line_of = |id: &str| lines.get(id).copied().unwrap_or(0);
    match read_squad(path) {
        Ok(examples) => Ok((with_lines(examples, &line_of), vec![])),
        Err(e) => {
            let Some((examples, refused)) = lenient_squad(&text) else { return Err(e) };
            if refused.is_empty() {
                return Err(e);
            }
            let refused = refused.into_iter().map(|(id, why)| (line_of(&id), why)).collect();
            Ok((with_lines(examples, &line_of), refused))
        }
    }
}

fn with_lines(examples: Vec<QaExample>, line_of: &dyn Fn(&str) -> u64) -> Vec<(QaExample, u64)> {
    examples
        .into_iter()
        .map(|q| {
            let line = line_of(&q.id);
            (q, line)
        })
        .collect()
}

/// The questions of SQuAD JSON with the answers that match their context at `answer_start` (characters), and
/// `(id, reason)` for each answer that does not and each repeated id; `None` when the text is not SQuAD JSON.
fn lenient_squad(text: &str) -> Option<(Vec<QaExample>, Refusals)> {
    let squad: SquadFile = serde_json::from_str(text.trim_start_matches('\u{feff}')).ok()?;
    let (mut out, mut refused, mut seen) = (vec![], vec![], HashSet::new());
    for paragraph in squad.data.into_iter().flat_map(|a| a.paragraphs) {
        let chars: Vec<char> = paragraph.context.chars().collect();
        for q in paragraph.qas {
            if !seen.insert(q.id.clone()) {
                refused.push((q.id.clone(), format!("question id `{}` appears twice; ids must be unique", q.id)));
                continue;
            }
            let mut answers = vec![];
            for (k, a) in q.answers.into_iter().enumerate() {
                let end = a.answer_start + a.text.chars().count();
                let found: Option<String> = (end <= chars.len()).then(|| chars[a.answer_start..end].iter().collect());
                if found.as_deref() == Some(a.text.as_str()) {
                    answers.push(QaAnswer { text: a.text, start: a.answer_start });
                } else {
                    let at = match found {
                        Some(f) => format!("`{}`", shorten(&f, 40)),
                        None => format!("the end of the context ({} characters)", chars.len()),
                    };
                    refused.push((
                        q.id.clone(),
                        format!(
                            "question `{}`: answer {k} `{}` is not at its answer_start {}: the context has {at} there",
                            q.id,
                            shorten(&a.text, 40),
                            a.answer_start
                        ),
                    ));
                }
            }
            out.push(QaExample {
                id: q.id,
                question: q.question,
                context: paragraph.context.clone(),
                answers,
                is_impossible: q.is_impossible,
            });
        }
    }
    Some((out, refused))
}

/// The line of each `"id": "…"` in JSON text (the first one of each id), found in one pass.
pub fn id_lines(text: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let (mut line, mut counted) = (1u64, 0usize);
    for (at, _) in text.match_indices("\"id\"") {
        line += text[counted..at].bytes().filter(|&b| b == b'\n').count() as u64;
        counted = at;
        let rest = text[at + 4..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else { continue };
        let mut values = serde_json::Deserializer::from_str(rest.trim_start()).into_iter::<String>();
        if let Some(Ok(id)) = values.next() {
            out.entry(id).or_insert(line);
        }
    }
    out
}
