//! Whisper tokenizer: tokenizer.json plus the special tokens of the decoder prompt.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use tokenizers::Tokenizer;

/// What the decoder is asked to do after the language token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Write what is said, in the spoken language.
    #[default]
    Transcribe,
    /// Write it in English.
    Translate,
}

impl Task {
    /// `transcribe` or `translate`, as transformers' `generate(task=…)` names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        }
    }
}

/// A Whisper `tokenizer.json` (byte-level BPE) with the ids of the special tokens that build the decoder prompt.
#[derive(Debug, Clone)]
pub struct WhisperTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    sot: i64,
    eot: i64,
    no_timestamps: i64,
    transcribe: i64,
    translate: i64,
    start_of_prev: Option<i64>,
    start_of_lm: Option<i64>,
    no_speech: Option<i64>,
    /// `(code, id)` in id order: `en` first, as in OpenAI's list.
    languages: Vec<(String, i64)>,
}

impl WhisperTokenizer {
    /// Reads a Whisper `tokenizer.json` (the hub's, or the one a CTranslate2 folder carries).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a readable tokenizer.json: {e}", path.display()))?;
        let id = |token: &str| -> Result<i64> {
            inner.token_to_id(token).map(i64::from).ok_or_else(|| {
                anyhow!("{}: has no {token} token; is this the tokenizer of a Whisper model?", path.display())
            })
        };
        let sot = id("<|startoftranscript|>")?;
        let translate = id("<|translate|>")?;
        // The language tokens sit between <|startoftranscript|> and <|translate|> in every Whisper vocabulary.
        let mut languages: Vec<(String, i64)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(id, _)| (sot + 1..translate).contains(&i64::from(*id)))
            .filter_map(|(id, t)| {
                let code = t.content.strip_prefix("<|")?.strip_suffix("|>")?;
                Some((code.to_string(), i64::from(id)))
            })
            .collect();
        languages.sort_by_key(|(_, id)| *id);
        Ok(Self {
            sot,
            eot: id("<|endoftext|>")?,
            no_timestamps: id("<|notimestamps|>")?,
            transcribe: id("<|transcribe|>")?,
            translate,
            start_of_prev: id("<|startofprev|>").ok(),
            start_of_lm: id("<|startoflm|>").ok(),
            // Named `<|nocaptions|>` in the original vocabularies, `<|nospeech|>` in large-v3's.
            no_speech: id("<|nospeech|>").or_else(|_| id("<|nocaptions|>")).ok(),
            languages,
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The file this tokenizer was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<|startoftranscript|>`.
    pub fn sot(&self) -> i64 {
        self.sot
    }

    /// `<|endoftext|>`, which ends a transcript.
    pub fn eot(&self) -> i64 {
        self.eot
    }

    /// `<|notimestamps|>`.
    pub fn no_timestamps(&self) -> i64 {
        self.no_timestamps
    }

    /// `<|transcribe|>`.
    pub fn transcribe(&self) -> i64 {
        self.transcribe
    }

    /// `<|translate|>`.
    pub fn translate(&self) -> i64 {
        self.translate
    }

    /// `<|startofprev|>`, which introduces a text prompt (absent from some tokenizers).
    pub fn start_of_prev(&self) -> Option<i64> {
        self.start_of_prev
    }

    /// `<|startoflm|>` (absent from some tokenizers).
    pub fn start_of_lm(&self) -> Option<i64> {
        self.start_of_lm
    }

    /// `<|nospeech|>` (`<|nocaptions|>` before large-v3), whose probability after `<|startoftranscript|>` says
    /// whether a window holds speech at all.
    pub fn no_speech(&self) -> Option<i64> {
        self.no_speech
    }

    /// `<|0.00|>`, the first timestamp token: timestamps are every id from here on, 0.02 s apart. They are not
    /// listed in tokenizer.json; they follow `<|notimestamps|>` in every Whisper vocabulary.
    pub fn timestamp_begin(&self) -> i64 {
        self.no_timestamps + 1
    }

    /// The id of `<|task|>`.
    pub fn task_token(&self, task: Task) -> i64 {
        match task {
            Task::Transcribe => self.transcribe,
            Task::Translate => self.translate,
        }
    }

    /// The token of a language code (`en`, `de`, …; `<|en|>` and any letter case are accepted too).
    pub fn language_token(&self, code: &str) -> Result<i64> {
        let wanted = code.trim().trim_start_matches("<|").trim_end_matches("|>").to_ascii_lowercase();
        if let Some((_, id)) = self.languages.iter().find(|(c, _)| *c == wanted) {
            return Ok(*id);
        }
        let known: Vec<&str> = self.languages.iter().map(|(c, _)| c.as_str()).collect();
        if known.is_empty() {
            bail!("{code:?}: {} is an English-only Whisper tokenizer (no language tokens)", self.path.display());
        }
        bail!("{code:?} is not a Whisper language; known: {}", known.join(", "))
    }

    /// Every language code with its token id, in id order.
    pub fn language_tokens(&self) -> Vec<(String, i64)> {
        self.languages.clone()
    }

    /// The code of a language token id, if it is one.
    pub fn language_of(&self, id: i64) -> Option<&str> {
        self.languages.iter().find(|(_, i)| *i == id).map(|(c, _)| c.as_str())
    }

    /// Whether the vocabulary has language tokens (false for the English-only `.en` models).
    pub fn is_multilingual(&self) -> bool {
        !self.languages.is_empty()
    }

    /// `<|startoftranscript|><|lang|><|transcribe or translate|><|notimestamps|>`; English-only tokenizers have no
    /// language or task token, so their prompt is `<|startoftranscript|><|notimestamps|>` and `language` must be
    /// `en`.
    pub fn prompt(&self, language: &str, task: Task) -> Result<Vec<i64>> {
        if !self.is_multilingual() {
            if !language.trim().eq_ignore_ascii_case("en") {
                bail!("{language:?}: {} is an English-only Whisper tokenizer", self.path.display());
            }
            return Ok(vec![self.sot, self.no_timestamps]);
        }
        Ok(vec![self.sot, self.language_token(language)?, self.task_token(task), self.no_timestamps])
    }

    /// The prompt of timestamped decoding: [`prompt`](Self::prompt) without its final `<|notimestamps|>`
    /// (`<|startoftranscript|><|lang|><|task|>`).
    pub fn sot_sequence(&self, language: &str, task: Task) -> Result<Vec<i64>> {
        let mut p = self.prompt(language, task)?;
        p.pop();
        Ok(p)
    }

    /// Text → token ids, without special tokens. A leading space is added when the text has none, because
    /// Whisper's decoder writes every transcript after a space (`" Hello"`, not `"Hello"`).
    pub fn encode_text(&self, text: &str) -> Result<Vec<i64>> {
        let spaced;
        let text = if text.starts_with(char::is_whitespace) || text.is_empty() {
            text
        } else {
            spaced = format!(" {text}");
            &spaced
        };
        let enc =
            self.inner.encode(text, false).map_err(|e| anyhow!("{}: encoding {text:?}: {e}", self.path.display()))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Token ids → text, leaving out special and timestamp tokens (every id from `<|endoftext|>` on).
    pub fn decode_text(&self, ids: &[i64]) -> Result<String> {
        let mut text_ids = Vec::with_capacity(ids.len());
        for &id in ids {
            if id < 0 {
                bail!("token id {id} is negative");
            }
            // Every special token (and every timestamp, which tokenizer.json does not even list) comes after
            // the text vocabulary.
            if id < self.eot {
                text_ids.push(id as u32);
            }
        }
        self.inner.decode(&text_ids, true).map_err(|e| anyhow!("{}: decoding: {e}", self.path.display()))
    }
}
