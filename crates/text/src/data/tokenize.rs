//! Tokenization through Hugging Face's own `tokenizers` library, reading the model's `tokenizer.json`, so ids,
//! offsets and word ids are those of `transformers`' fast tokenizers. Truncation and padding follow the caller's
//! lengths, never the settings saved in the file (a `tokenizer.json` often carries a fixed 128-token padding).

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};
use tokenizers::{EncodeInput, Encoding, InputSequence, PostProcessor, Tokenizer};

/// Truncation settings: (max_len including specials, strategy, stride).
type TruncationKey = (usize, TruncationStrategy, usize);

/// A tokenizer loaded from a `tokenizer.json`, with padding and truncation under the caller's control.
pub struct TextTokenizer {
    base: Tokenizer,
    /// Copies of `base` with a truncation setting, made on first use. The library applies truncation, special
    /// tokens and overflowing windows in one `post_process` that reads the setting from the tokenizer, so each
    /// setting gets its own copy rather than reimplementing that step; a run uses one or two settings.
    truncating: Mutex<Vec<(TruncationKey, Arc<Tokenizer>)>>,
    pad_id: i64,
    cls_id: Option<i64>,
}

impl Clone for TextTokenizer {
    fn clone(&self) -> Self {
        Self { base: self.base.clone(), truncating: Mutex::default(), pad_id: self.pad_id, cls_id: self.cls_id }
    }
}

/// One encoded sequence or pair, special tokens included, not padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<i64>,
    /// Segment ids: 0 for the first sequence (and its specials), 1 for the second.
    pub type_ids: Vec<i64>,
    /// Character (not byte) offsets of each token in its source text: the first text for sequence 0, the pair
    /// text for sequence 1; `(0, 0)` for special tokens. For pre-tokenized input, offsets are within each word.
    pub offsets: Vec<(usize, usize)>,
    /// Which input each token comes from: `Some(0)`, `Some(1)`, or `None` for special tokens.
    pub sequence_ids: Vec<Option<usize>>,
    /// The word each token belongs to (the index into the word list for pre-tokenized input); `None` for specials.
    pub word_ids: Vec<Option<usize>>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn from_encoding(e: &Encoding) -> Self {
        Self {
            ids: e.get_ids().iter().map(|&i| i as i64).collect(),
            type_ids: e.get_type_ids().iter().map(|&i| i as i64).collect(),
            offsets: e.get_offsets().to_vec(),
            sequence_ids: e.get_sequence_ids(),
            word_ids: e.get_word_ids().iter().map(|w| w.map(|w| w as usize)).collect(),
        }
    }
}

/// Pad token names tried, in order, when the file sets no padding: BERT's, then RoBERTa/XLM-R/T5's.
const PAD_TOKENS: [&str; 2] = ["[PAD]", "<pad>"];
/// Classifier token names tried, in order: BERT's, then RoBERTa's.
const CLS_TOKENS: [&str; 2] = ["[CLS]", "<s>"];

impl TextTokenizer {
    /// Loads a `tokenizer.json` (the fast-tokenizer file of a Hugging Face model folder).
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("reading tokenizer {}", path.display()))?;
        let pad_from_file = inner.get_padding().map(|p| p.pad_id as i64);
        let pad_id =
            match pad_from_file.or_else(|| PAD_TOKENS.iter().find_map(|t| inner.token_to_id(t)).map(|i| i as i64)) {
                Some(id) => id,
                None => bail!(
                    "{}: no padding token: the file sets no padding and has none of the tokens {PAD_TOKENS:?}",
                    path.display()
                ),
            };
        let cls_id = CLS_TOKENS.iter().find_map(|t| inner.token_to_id(t)).map(|i| i as i64);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{}: clearing the saved truncation", path.display()))?;
        Ok(Self { base: inner, truncating: Mutex::default(), pad_id, cls_id })
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The classifier token's id (`[CLS]` or `<s>`), where the vocabulary has one; unanswerable QA windows point
    /// their start and end at it.
    pub fn cls_id(&self) -> Option<i64> {
        self.cls_id
    }

    /// The underlying `tokenizers` tokenizer (no truncation or padding set).
    pub fn inner(&self) -> &Tokenizer {
        &self.base
    }

    /// Number of special tokens the post-processor adds to a single sequence (`is_pair = false`) or a pair.
    pub fn n_special_tokens(&self, is_pair: bool) -> usize {
        self.base.get_post_processor().map_or(0, |p| p.added_tokens(is_pair))
    }

    /// Single text or pair, truncated to `max_len` tokens including specials (pairs: longest-first, as HF).
    ///
    /// An empty pair text encodes as a single text, as `transformers` does (it tests `if text_pair`).
    pub fn encode(&self, text: &str, pair: Option<&str>, max_len: usize) -> Result<Encoded> {
        let pair = pair.filter(|p| !p.is_empty());
        let input = match pair {
            Some(p) => EncodeInput::Dual(text.into(), p.into()),
            None => EncodeInput::Single(text.into()),
        };
        let enc = self.encode_with(input, pair.is_some(), (max_len, TruncationStrategy::LongestFirst, 0))?;
        Ok(Encoded::from_encoding(&enc))
    }

    /// Pre-tokenized words (NER): word_ids map sub-words to word indices.
    pub fn encode_words(&self, words: &[String], max_len: usize) -> Result<Encoded> {
        let input = EncodeInput::Single(InputSequence::from(words));
        let enc = self.encode_with(input, false, (max_len, TruncationStrategy::LongestFirst, 0))?;
        Ok(Encoded::from_encoding(&enc))
    }

    /// A question and a long context cut into overlapping windows of at most `max_len` tokens: the question is
    /// kept whole in every window and consecutive windows share `stride` context tokens (HF's
    /// `truncation="only_second", return_overflowing_tokens=True, stride=stride`). Errors when the question
    /// leaves no more room for the context than the stride.
    pub fn encode_windows(&self, question: &str, context: &str, max_len: usize, stride: usize) -> Result<Vec<Encoded>> {
        let q_len =
            self.base.encode_char_offsets(question, false).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?.len();
        let room = max_len.saturating_sub(self.n_special_tokens(true) + q_len);
        ensure!(
            room > stride,
            "the question takes {q_len} tokens, which leaves {room} of max_len {max_len} for the context: that must \
             exceed the stride {stride}"
        );
        let input = EncodeInput::Dual(question.into(), context.into());
        let mut enc = self.encode_with(input, true, (max_len, TruncationStrategy::OnlySecond, stride))?;
        let overflowing = enc.take_overflowing();
        let mut out = vec![Encoded::from_encoding(&enc)];
        out.extend(overflowing.iter().map(Encoded::from_encoding));
        Ok(out)
    }

    /// Ids back to text, without special tokens.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids = ids
            .iter()
            .map(|&i| u32::try_from(i).with_context(|| format!("token id {i} is not a vocabulary index")))
            .collect::<Result<Vec<u32>>>()?;
        self.base.decode(&ids, true).map_err(|e| anyhow::anyhow!("decoding {} ids: {e}", ids.len()))
    }

    fn encode_with(&self, input: EncodeInput, is_pair: bool, key: TruncationKey) -> Result<Encoding> {
        let (max_len, strategy, stride) = key;
        let specials = self.n_special_tokens(is_pair);
        let min = specials + if is_pair { 2 } else { 1 };
        ensure!(max_len >= min, "max_len {max_len} is too small: it must leave room for {specials} special tokens");
        let tokenizer = {
            let mut cache = self.truncating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match cache.iter().find(|(k, _)| *k == key) {
                Some((_, t)) => t.clone(),
                None => {
                    let mut t = self.base.clone();
                    let params = TruncationParams {
                        direction: TruncationDirection::Right,
                        max_length: max_len,
                        strategy,
                        stride,
                    };
                    t.with_truncation(Some(params)).map_err(|e| anyhow::anyhow!("truncation setting: {e}"))?;
                    let t = Arc::new(t);
                    cache.push((key, t.clone()));
                    t
                }
            }
        };
        tokenizer.encode_char_offsets(input, true).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))
    }
}
