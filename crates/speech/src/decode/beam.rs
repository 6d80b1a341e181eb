//! The selection step of Whisper's beam search, shared by the no-timestamps search and the timestamped one: after
//! openai-whisper's `BeamSearchDecoder.update` (patience 1).

use std::collections::HashMap;

/// A finished or unfinished hypothesis: generated tokens (no `<|endoftext|>`) and their summed log-probability
/// (including that of `<|endoftext|>` once finished).
#[derive(Debug, Clone, Default)]
pub(super) struct Hypothesis {
    pub(super) tokens: Vec<i64>,
    pub(super) sum_logprob: f64,
}

/// One step of beam selection for every item: `beams` holds `k` rows per item and `proposals[row]` that row's
/// candidate `(token, log-probability)` pairs, best first. Candidates are keyed by their token sequence (identical
/// beams — all of them at the first step — propose the same sequences, kept once with the last proposer, as
/// openai-whisper's dict does), ranked by summed log-probability (stable, so ties keep proposal order as Python's
/// `sorted` does); those ending in `eot` go to `finished` until an item has `k`, the best `k` others go on.
/// Returns the next beams and, per next beam, the row it continues (to reorder the KV cache).
pub(super) fn select(
    beams: &[Hypothesis],
    proposals: &[Vec<(i64, f64)>],
    finished: &mut [Vec<Hypothesis>],
    k: usize,
    eot: i64,
) -> (Vec<Hypothesis>, Vec<i64>) {
    let mut next: Vec<Hypothesis> = Vec::with_capacity(beams.len());
    let mut sources: Vec<i64> = Vec::with_capacity(beams.len());
    for (item, item_finished) in finished.iter_mut().enumerate() {
        let mut order: Vec<(Vec<i64>, f64, usize)> = Vec::new();
        let mut index: HashMap<Vec<i64>, usize> = HashMap::new();
        for row in item * k..(item + 1) * k {
            for &(token, lp) in &proposals[row] {
                let mut seq = beams[row].tokens.clone();
                seq.push(token);
                let score = beams[row].sum_logprob + lp;
                match index.get(&seq) {
                    Some(&i) => order[i] = (seq, score, row),
                    None => {
                        index.insert(seq.clone(), order.len());
                        order.push((seq, score, row));
                    }
                }
            }
        }
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut saved = 0;
        for (mut seq, score, row) in order {
            if seq.last() == Some(&eot) {
                if item_finished.len() < k {
                    seq.pop();
                    item_finished.push(Hypothesis { tokens: seq, sum_logprob: score });
                }
            } else {
                next.push(Hypothesis { tokens: seq, sum_logprob: score });
                sources.push(row as i64);
                saved += 1;
                if saved == k {
                    break;
                }
            }
        }
        // Only reachable when suppression or the timestamp rules left fewer than k open continuations: repeat the
        // last one to keep k rows.
        while saved < k {
            let (h, s) = match (next.last(), sources.last()) {
                (Some(h), Some(&s)) if saved > 0 => (h.clone(), s),
                _ => (beams[item * k].clone(), (item * k) as i64),
            };
            next.push(h);
            sources.push(s);
            saved += 1;
        }
    }
    (next, sources)
}
