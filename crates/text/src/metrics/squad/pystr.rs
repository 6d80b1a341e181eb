//! The three pieces of Python's `str` that SQuAD's `normalize_answer` relies on, with Python's Unicode
//! definitions rather than Rust's where the two differ.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// `str.lower()`: full Unicode lowercasing with the final-sigma rule, which Rust's `str::to_lowercase` shares.
pub(crate) fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// `str.isspace()` for one character: Unicode `White_Space` plus the four information separators U+001C–U+001F,
/// which Python counts as whitespace (bidirectional class B/S) and Rust's `char::is_whitespace` does not.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.split()` without arguments: runs of [`is_space`] separate, and empty pieces are dropped.
pub(crate) fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// A word character of Python's `re` on `str` patterns (`\w`, and so `\b`): `str.isalnum()` or `_`, that is letters
/// (L*) and numbers (N*). Rust's `char::is_alphanumeric` also admits the `Other_Alphabetic` marks and symbols
/// (Devanagari vowel signs, circled letters), which Python does not.
pub(crate) fn is_word(c: char) -> bool {
    c == '_'
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
        )
}
