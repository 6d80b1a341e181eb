//! seqeval's default chunker (`seqeval.metrics.sequence_labeling.get_entities` with `suffix=False`), the
//! conlleval-compatible lenient reading: an `I-` without a `B-` starts a chunk, a type change ends one, and tags of
//! other schemes (`E-`, `S-`) are understood too.

use super::Entity;

/// The two parts seqeval reads from a tag: its first character and the type after it.
struct Parsed<'a> {
    prefix: char,
    kind: &'a str,
}

/// `tag = chunk[0]`, `type_ = chunk[1:].split('-', maxsplit=1)[-1] or '_'`. An empty tag (seqeval raises on it) is
/// read as `O`, which callers that want an error check beforehand.
fn parse(chunk: &str) -> Parsed<'_> {
    let mut chars = chunk.chars();
    let Some(prefix) = chars.next() else {
        return Parsed { prefix: 'O', kind: "_" };
    };
    let rest = chars.as_str();
    let kind = rest.split_once('-').map_or(rest, |(_, after)| after);
    Parsed { prefix, kind: if kind.is_empty() { "_" } else { kind } }
}

fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, type_: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != type_)
}

fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, type_: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != type_)
}

/// Chunks of a tag stream as `(type, start, end_exclusive)`, in the order seqeval reports them.
///
/// The stream is read as seqeval reads it, a closing `O` appended; the caller provides the `O` that seqeval puts
/// between sentences when it flattens a list of sentences (that separator leaves a different state behind than the
/// start of the stream, which matters for some malformed tags).
pub(super) fn chunks<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<Entity> {
    let mut prev_tag = 'O';
    // seqeval starts from an empty type, whereas an `O` leaves `_` behind.
    let mut prev_type: &str = "";
    let mut begin = 0;
    let mut out = Vec::new();
    for (i, chunk) in tags.into_iter().chain(std::iter::once("O")).enumerate() {
        let Parsed { prefix: tag, kind: type_ } = parse(chunk);
        if end_of_chunk(prev_tag, tag, prev_type, type_) {
            out.push((prev_type.to_string(), begin, i));
        }
        if start_of_chunk(prev_tag, tag, prev_type, type_) {
            begin = i;
        }
        prev_tag = tag;
        prev_type = type_;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunks;

    fn run(tags: &[&str]) -> Vec<(String, usize, usize)> {
        chunks(tags.iter().copied())
    }

    #[test]
    fn reads_the_docstring_examples_and_lenient_cases() {
        let e = |t: &str, s, x| (t.to_string(), s, x);
        assert_eq!(run(&["B-PER", "I-PER", "O", "B-LOC"]), vec![e("PER", 0, 2), e("LOC", 3, 4)]);
        // I- without B- starts a chunk; a type change inside ends one.
        assert_eq!(run(&["I-PER", "I-PER", "I-LOC"]), vec![e("PER", 0, 2), e("LOC", 2, 3)]);
        assert_eq!(run(&["S-PER", "B-LOC", "E-LOC"]), vec![e("PER", 0, 1), e("LOC", 1, 3)]);
        // A bare prefix has type `_`.
        assert_eq!(run(&["B", "I"]), vec![e("_", 0, 2)]);
        assert_eq!(run(&[]), vec![]);
    }
}
