//! seqeval's strict chunker (`seqeval.scheme`: `Token` subclasses and `Tokens.entities`): a chunk counts only when
//! the scheme's start, inside and end patterns all hold, and a tag whose prefix the scheme does not allow is an
//! error.

use super::{Entity, Scheme};

/// The first tag a scheme rejects: its index in the sentence and what is wrong with it.
pub(super) type BadTag = (usize, String);

/// One prefix letter as a bit, so a pattern can name a set of prefixes (`Prefix.ANY`) as a mask.
type Prefix = u8;
const I: Prefix = 1;
const O: Prefix = 2;
const B: Prefix = 4;
const E: Prefix = 8;
const S: Prefix = 16;
const U: Prefix = 32;
const L: Prefix = 64;
const ANY: Prefix = I | O | B | E | S | U | L;

/// How the types of the previous and the current token must relate for a pattern to match.
#[derive(Clone, Copy)]
enum TagCond {
    Any,
    Same,
    Diff,
}
use TagCond::{Any, Diff, Same};

/// `(previous prefixes, current prefixes, type condition)`, seqeval's pattern triples.
type Pattern = (Prefix, Prefix, TagCond);

/// One scheme's allowed prefixes and its three pattern sets, copied from `seqeval/scheme.py`.
struct Rules {
    allowed: Prefix,
    start: &'static [Pattern],
    inside: &'static [Pattern],
    end: &'static [Pattern],
}

fn rules(scheme: Scheme) -> Rules {
    match scheme {
        Scheme::Iob1 => Rules {
            allowed: I | O | B,
            start: &[(O, I, Any), (I, I, Diff), (B, I, Any), (I, B, Same), (B, B, Same)],
            inside: &[(B, I, Same), (I, I, Same)],
            end: &[(I, I, Diff), (I, O, Any), (I, B, Any), (B, O, Any), (B, I, Diff), (B, B, Same)],
        },
        Scheme::Ioe1 => Rules {
            allowed: I | O | E,
            start: &[(O, I, Any), (I, I, Diff), (E, I, Any), (E, E, Same)],
            inside: &[(I, I, Same), (I, E, Same)],
            end: &[(I, I, Diff), (I, O, Any), (I, E, Diff), (E, I, Same), (E, E, Same)],
        },
        Scheme::Iob2 => Rules {
            allowed: I | O | B,
            start: &[(ANY, B, Any)],
            inside: &[(B, I, Same), (I, I, Same)],
            end: &[(I, O, Any), (I, I, Diff), (I, B, Any), (B, O, Any), (B, I, Diff), (B, B, Any)],
        },
        Scheme::Ioe2 => Rules {
            allowed: I | O | E,
            start: &[(O, I, Any), (O, E, Any), (E, I, Any), (E, E, Any), (I, I, Diff), (I, E, Diff)],
            inside: &[(I, E, Same), (I, I, Same)],
            end: &[(E, ANY, Any)],
        },
        Scheme::Iobes => Rules {
            allowed: I | O | B | E | S,
            start: &[(ANY, B, Any), (ANY, S, Any)],
            inside: &[(B, I, Same), (B, E, Same), (I, I, Same), (I, E, Same)],
            end: &[(S, ANY, Any), (E, ANY, Any)],
        },
        Scheme::Bilou => Rules {
            allowed: B | I | L | O | U,
            start: &[(ANY, B, Any), (ANY, U, Any)],
            inside: &[(B, I, Same), (B, L, Same), (I, I, Same), (I, L, Same)],
            end: &[(U, ANY, Any), (L, ANY, Any)],
        },
    }
}

/// Letters of a prefix mask, for messages (`I, O, B`).
fn letters(mask: Prefix) -> String {
    [(I, 'I'), (O, 'O'), (B, 'B'), (E, 'E'), (S, 'S'), (U, 'U'), (L, 'L')]
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, c)| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A tag as seqeval's `Token` reads it: prefix from the first character, type from the rest with `-` stripped
/// from both ends (`_` when nothing is left).
struct Token<'a> {
    prefix: Prefix,
    kind: &'a str,
}

impl<'a> Token<'a> {
    const OUTSIDE: Token<'static> = Token { prefix: O, kind: "_" };

    fn parse(tag: &'a str, rules: &Rules, scheme: Scheme) -> Result<Self, String> {
        let mut chars = tag.chars();
        let first = chars.next().ok_or_else(|| "empty tag".to_string())?;
        let prefix = match first {
            'I' => I,
            'O' => O,
            'B' => B,
            'E' => E,
            'S' => S,
            'U' => U,
            'L' => L,
            _ => return Err(format!("tag `{tag}` has no prefix I, O, B, E, S, U or L")),
        };
        if prefix & rules.allowed == 0 {
            return Err(format!(
                "tag `{tag}` is not valid in scheme {scheme:?} (allowed prefixes: {})",
                letters(rules.allowed)
            ));
        }
        let kind = chars.as_str().trim_matches('-');
        Ok(Token { prefix, kind: if kind.is_empty() { "_" } else { kind } })
    }

    fn matches(&self, prev: &Token<'_>, patterns: &[Pattern]) -> bool {
        patterns.iter().any(|&(p, c, cond)| {
            prev.prefix & p != 0
                && self.prefix & c != 0
                && match cond {
                    Any => true,
                    Same => prev.kind == self.kind,
                    Diff => prev.kind != self.kind,
                }
        })
    }
}

/// Entities of one sentence under `scheme` as `(type, start, end_exclusive)`; `Err((token index, message))` for
/// the first tag the scheme does not allow (seqeval raises `KeyError` or `ValueError` there).
pub(super) fn entities<S: AsRef<str>>(tags: &[S], scheme: Scheme) -> Result<Vec<Entity>, BadTag> {
    let rules = rules(scheme);
    let mut ext: Vec<Token<'_>> = Vec::with_capacity(tags.len() + 1);
    for (i, t) in tags.iter().enumerate() {
        ext.push(Token::parse(t.as_ref(), &rules, scheme).map_err(|m| (i, m))?);
    }
    ext.push(Token::OUTSIDE);

    // Tokens.entities: find a start, walk the inside tokens, and keep the chunk only if its end pattern holds.
    let forward = |start: usize, mut prev: usize| -> usize {
        for (j, tok) in ext.iter().enumerate().skip(start) {
            if tok.matches(&ext[prev], rules.inside) {
                prev = j;
            } else {
                return j;
            }
        }
        // Unreachable: the closing `O` is never inside a chunk in any scheme.
        ext.len() - 1
    };
    let mut out = Vec::new();
    let mut i = 0;
    // The previous token, `None` for the outside token seqeval starts from.
    let mut prev: Option<usize> = None;
    while i < ext.len() {
        let p = prev.map_or(&Token::OUTSIDE, |k| &ext[k]);
        if ext[i].matches(p, rules.start) {
            let end = forward(i + 1, i);
            if ext[end].matches(&ext[end - 1], rules.end) {
                out.push((ext[i].kind.to_string(), i, end));
            }
            i = end;
        } else {
            i += 1;
        }
        prev = Some(i - 1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tags: &[&str], scheme: Scheme) -> Result<Vec<Entity>, BadTag> {
        entities(tags, scheme)
    }

    #[test]
    fn strict_chunks_need_a_proper_start_and_end() {
        let e = |t: &str, s, x| (t.to_string(), s, x);
        assert_eq!(run(&["B-PER", "I-PER", "O", "B-LOC"], Scheme::Iob2).unwrap(), vec![e("PER", 0, 2), e("LOC", 3, 4)]);
        // An I- without B- is no entity in strict IOB2, unlike the default mode.
        assert_eq!(run(&["I-PER", "I-PER", "O"], Scheme::Iob2).unwrap(), vec![]);
        assert_eq!(run(&["B-PER", "I-LOC"], Scheme::Iob2).unwrap(), vec![e("PER", 0, 1)]);
        // IOBES: B- must close with E-.
        assert_eq!(run(&["B-PER", "I-PER", "O", "S-LOC"], Scheme::Iobes).unwrap(), vec![e("LOC", 3, 4)]);
        assert_eq!(run(&["B-PER", "E-PER"], Scheme::Iobes).unwrap(), vec![e("PER", 0, 2)]);
        assert_eq!(run(&["U-X", "B-Y", "L-Y"], Scheme::Bilou).unwrap(), vec![e("X", 0, 1), e("Y", 1, 3)]);
        let err = run(&["O", "E-PER"], Scheme::Iob2).unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("`E-PER`") && err.1.contains("I, O, B"), "{}", err.1);
        assert!(run(&["X-PER"], Scheme::Iobes).unwrap_err().1.contains("no prefix"));
        assert!(run(&[""], Scheme::Iob2).is_err());
    }
}
