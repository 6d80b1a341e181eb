//! Words and their times from an [`Alignment`], after faster-whisper's `add_word_timestamps` (openai-whisper's
//! `timing.add_word_timestamps` with the same rules): tokens grouped into words at spaces (or at whole characters
//! for languages written without spaces), punctuation merged into its neighbour, a word's probability the mean of
//! its tokens', and the adjustments of too-long words at sentence and segment edges.

use anyhow::Result;
use serde::Serialize;

use super::align::Alignment;
use crate::tokenizer::WhisperTokenizer;

/// Punctuation joined to the word after it (openai-whisper's `prepend_punctuations` default).
pub const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
/// Punctuation joined to the word before it (openai-whisper's `append_punctuations` default).
pub const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";

/// Python's `string.punctuation`: a piece of text counts as punctuation when it is a substring of this.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Languages whose words are not separated by spaces: split at whole characters instead.
const NO_SPACE_LANGUAGES: [&str; 6] = ["zh", "ja", "th", "lo", "my", "yue"];

/// One timed word, as openai-whisper's and faster-whisper's word timestamps and OpenAI's `verbose_json` `words`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Word {
    /// The word with its leading space and merged punctuation.
    pub word: String,
    /// Start in seconds from the start of the recording.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Mean probability of its tokens.
    pub probability: f64,
}

/// A word of the alignment before its segment is known: times from the window's start.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub word: String,
    pub tokens: Vec<i64>,
    pub start: f64,
    pub end: f64,
    pub probability: f64,
}

/// Splits text tokens into words with their tokens, as openai-whisper's `split_to_word_tokens`.
pub(crate) fn split_to_word_tokens(
    tok: &WhisperTokenizer,
    tokens: &[i64],
    language: &str,
) -> Result<(Vec<String>, Vec<Vec<i64>>)> {
    if NO_SPACE_LANGUAGES.contains(&language) {
        return split_on_unicode(tok, tokens);
    }
    let (subwords, subword_tokens) = split_on_unicode(tok, tokens)?;
    let mut words: Vec<String> = Vec::new();
    let mut word_tokens: Vec<Vec<i64>> = Vec::new();
    for (sub, toks) in subwords.into_iter().zip(subword_tokens) {
        let special = toks[0] >= tok.eot();
        let with_space = sub.starts_with(' ');
        // Python's `str in string.punctuation` is a substring test, so the empty string counts too.
        let punctuation = ASCII_PUNCTUATION.contains(sub.trim());
        if special || with_space || punctuation || words.is_empty() {
            words.push(sub);
            word_tokens.push(toks);
        } else {
            words.last_mut().expect("not empty").push_str(&sub);
            word_tokens.last_mut().expect("not empty").extend(toks);
        }
    }
    Ok((words, word_tokens))
}

/// Splits tokens where the decoded text ends on a whole character, as openai-whisper's `split_tokens_on_unicode`:
/// a token that ends inside a multi-byte character joins the next ones. Trailing tokens that never complete a
/// character are dropped (in openai-whisper they join `<|endoftext|>`, which is not a word).
fn split_on_unicode(tok: &WhisperTokenizer, tokens: &[i64]) -> Result<(Vec<String>, Vec<Vec<i64>>)> {
    const REPLACEMENT: char = '\u{fffd}';
    let full: Vec<char> = tok.decode_text(tokens)?.chars().collect();
    let (mut words, mut word_tokens, mut current) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0;
    for &t in tokens {
        current.push(t);
        let decoded = tok.decode_text(&current)?;
        let chars: Vec<char> = decoded.chars().collect();
        let complete = match chars.iter().position(|&c| c == REPLACEMENT) {
            None => true,
            // A replacement character that is really in the text is not a cut character.
            Some(at) => full.get(offset + at) == Some(&REPLACEMENT),
        };
        if complete {
            offset += chars.len();
            words.push(decoded);
            word_tokens.push(std::mem::take(&mut current));
        }
    }
    Ok((words, word_tokens))
}

/// Words of an alignment with their times from the window's start, as faster-whisper's `find_alignment`.
pub(crate) fn word_timings(
    tok: &WhisperTokenizer,
    text_tokens: &[i64],
    alignment: &Alignment,
    language: &str,
) -> Result<Vec<Timing>> {
    let (words, word_tokens) = split_to_word_tokens(tok, text_tokens, language)?;
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let jumps = alignment.jump_times();
    let mut out = Vec::with_capacity(words.len());
    let mut at = 0;
    for (word, tokens) in words.into_iter().zip(word_tokens) {
        let end_at = at + tokens.len();
        let probs = &alignment.token_probs[at..end_at];
        out.push(Timing {
            word,
            start: jumps[at],
            end: jumps[end_at],
            probability: probs.iter().sum::<f64>() / probs.len() as f64,
            tokens,
        });
        at = end_at;
    }
    Ok(out)
}

/// Joins prepended punctuation to the following word and appended punctuation to the preceding one, as
/// openai-whisper's `merge_punctuations`: the absorbed entry keeps no text and no tokens, the times stay the main
/// word's.
pub(crate) fn merge_punctuations(alignment: &mut [Timing], prepended: &str, appended: &str) {
    if alignment.len() < 2 {
        return;
    }
    let (mut i, mut j) = (alignment.len() as i64 - 2, alignment.len() - 1);
    while i >= 0 {
        let iu = i as usize;
        let previous = &alignment[iu];
        if previous.word.starts_with(' ') && prepended.contains(previous.word.trim()) {
            let (word, tokens) = (std::mem::take(&mut alignment[iu].word), std::mem::take(&mut alignment[iu].tokens));
            let following = &mut alignment[j];
            following.word = word + &following.word;
            following.tokens = [tokens, std::mem::take(&mut following.tokens)].concat();
        } else {
            j = iu;
        }
        i -= 1;
    }
    let (mut i, mut j) = (0, 1);
    while j < alignment.len() {
        if !alignment[i].word.ends_with(' ') && appended.contains(alignment[j].word.as_str()) {
            let (word, tokens) = (std::mem::take(&mut alignment[j].word), std::mem::take(&mut alignment[j].tokens));
            alignment[i].word.push_str(&word);
            alignment[i].tokens.extend(tokens);
        } else {
            i = j;
        }
        j += 1;
    }
}

/// Python's `round(x, 2)` (correctly rounded, ties to even): through the shortest decimal that reads back as `x`.
pub(crate) fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// The median word duration (capped at 0.7 s) and twice it, after shortening words longer than that next to a
/// sentence end, as faster-whisper does before merging punctuation.
pub(crate) fn limit_sentence_edges(alignment: &mut [Timing]) -> (f64, f64) {
    let mut durations: Vec<f64> = alignment.iter().map(|w| w.end - w.start).filter(|&d| d != 0.0).collect();
    let median = if durations.is_empty() {
        0.0
    } else {
        durations.sort_by(|a, b| a.total_cmp(b));
        let n = durations.len();
        if n % 2 == 1 {
            durations[n / 2]
        } else {
            (durations[n / 2 - 1] + durations[n / 2]) / 2.0
        }
    };
    let median = median.min(0.7);
    let max = median * 2.0;
    if !durations.is_empty() {
        const SENTENCE_END: &str = ".。!！?？";
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max {
                if SENTENCE_END.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max;
                } else if SENTENCE_END.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max;
                }
            }
        }
    }
    (median, max)
}

/// A segment of a window, for [`assign_words`]: its times (seconds), which the words may move, and its text tokens.
#[derive(Debug, Clone)]
pub(crate) struct SegmentSpan {
    pub start: f64,
    pub end: f64,
    pub text_tokens: usize,
}

/// Hands the words of a window (`alignment`, merged) to its segments in order and applies faster-whisper's edge
/// rules: the first word after a pause is shortened when too long, a segment starts or ends at its words unless
/// the word overshoots the segment's own timestamp by more than half a second. Times become seconds from the
/// start of the recording (`time_offset` is the window's start), rounded to 10 ms. Returns each segment's words
/// and the new last-speech time.
pub(crate) fn assign_words(
    alignment: &[Timing],
    spans: &mut [SegmentSpan],
    time_offset: f64,
    median: f64,
    max: f64,
    mut last_speech: f64,
) -> (Vec<Vec<Word>>, f64) {
    let mut word_index = 0;
    let mut out = Vec::with_capacity(spans.len());
    for span in spans.iter_mut() {
        let mut saved_tokens = 0;
        let mut words: Vec<Word> = Vec::new();
        while word_index < alignment.len() && saved_tokens < span.text_tokens {
            let timing = &alignment[word_index];
            if !timing.word.is_empty() {
                words.push(Word {
                    word: timing.word.clone(),
                    start: round2(time_offset + timing.start),
                    end: round2(time_offset + timing.end),
                    probability: timing.probability,
                });
            }
            saved_tokens += timing.tokens.len();
            word_index += 1;
        }
        if !words.is_empty() {
            let n = words.len();
            let first_too_long =
                words[0].end - words[0].start > max || (n > 1 && words[1].end - words[0].start > max * 2.0);
            if words[0].end - last_speech > median * 4.0 && first_too_long {
                if n > 1 && words[1].end - words[1].start > max {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max).max(0.0);
            }
            if span.start < words[0].end && span.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median).min(span.start).max(0.0);
            } else {
                span.start = words[0].start;
            }
            let last = n - 1;
            if span.end > words[last].start && span.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median).max(span.end);
            } else {
                span.end = words[last].end;
            }
            last_speech = span.end;
        }
        out.push(words);
    }
    (out, last_speech)
}
