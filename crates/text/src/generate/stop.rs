//! When generation stops: a stop token, a stop string in the decoded text, or the maximum number of new tokens.

/// Why a sequence stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced one of the stop token ids (end of turn, end of text).
    Token(i64),
    /// The decoded text contains this stop string.
    String(String),
    /// `max_new_tokens` were generated.
    MaxNewTokens,
}

impl StopReason {
    /// OpenAI's `finish_reason`: `length` when the budget ran out, `stop` otherwise.
    pub fn finish_reason(&self) -> &'static str {
        match self {
            StopReason::MaxNewTokens => "length",
            StopReason::Token(_) | StopReason::String(_) => "stop",
        }
    }
}

/// A decision to stop, with where the output text ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Why.
    pub reason: StopReason,
    /// The byte length of the text to return: the stop string and whatever follows it are cut (as OpenAI's API
    /// does); for a stop token or the token budget, the whole text given.
    pub text_len: usize,
}

/// The stopping rules of one sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopCriteria {
    /// Token ids that end the sequence (the stop token itself is not part of the text).
    pub stop_token_ids: Vec<i64>,
    /// Strings that end the sequence where they first appear in the decoded text.
    pub stop_strings: Vec<String>,
    /// The most tokens to generate; `None` for no limit (the model's context still is one).
    pub max_new_tokens: Option<usize>,
}

impl StopCriteria {
    /// Criteria with these stop tokens, no stop string and no token budget.
    pub fn new(stop_token_ids: Vec<i64>) -> Self {
        StopCriteria { stop_token_ids, ..Default::default() }
    }

    /// Decides after each new token. `generated` are the new token ids so far (the newest last) and `text` their
    /// decoded text without the stop tokens. A stop token wins over a stop string, which wins over the budget;
    /// among stop strings, the earliest in the text (the longest at the same place).
    pub fn check(&self, generated: &[i64], text: &str) -> Option<Stop> {
        if let Some(&last) = generated.last() {
            if self.stop_token_ids.contains(&last) {
                return Some(Stop { reason: StopReason::Token(last), text_len: text.len() });
            }
        }
        if let Some((at, s)) = self.find_stop_string(text) {
            return Some(Stop { reason: StopReason::String(s.to_string()), text_len: at });
        }
        match self.max_new_tokens {
            Some(max) if generated.len() >= max => {
                Some(Stop { reason: StopReason::MaxNewTokens, text_len: text.len() })
            }
            _ => None,
        }
    }

    /// The earliest occurrence of a stop string: its byte offset and the string.
    fn find_stop_string(&self, text: &str) -> Option<(usize, &str)> {
        let mut best: Option<(usize, &str)> = None;
        for s in self.stop_strings.iter().filter(|s| !s.is_empty()) {
            if let Some(at) = text.find(s.as_str()) {
                let better = match best {
                    None => true,
                    Some((b, bs)) => at < b || (at == b && s.len() > bs.len()),
                };
                if better {
                    best = Some((at, s.as_str()));
                }
            }
        }
        best
    }

    /// How many bytes of `text` may be streamed to a client now: all of it but a tail that could be the start of a
    /// stop string still being generated (`"Hello <|"` holds back `"<|"` while `"<|end|>"` is a stop string).
    /// Always a character boundary.
    pub fn streamable_len(&self, text: &str) -> usize {
        if let Some((at, _)) = self.find_stop_string(text) {
            return at;
        }
        let mut hold = 0;
        for s in self.stop_strings.iter().filter(|s| !s.is_empty()) {
            // The longest proper prefix of `s` that ends `text`.
            for (end, _) in s.char_indices().skip(1) {
                if end > hold && text.ends_with(&s[..end]) {
                    hold = end;
                }
            }
        }
        text.len() - hold
    }
}

#[cfg(test)]
#[path = "stop_tests.rs"]
mod tests;
