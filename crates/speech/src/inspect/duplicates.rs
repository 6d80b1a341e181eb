//! Duplicates: the same decoded audio (exact, by a hash of the 16 kHz mono samples, so a WAV and its FLAC copy
//! match), and the same normalised transcript in different splits (sentence leakage: a held-out sentence the model
//! was trained on lowers held-out WER without any better hearing).

use std::collections::BTreeMap;

use suite_core::quality::duplicates::{exact_groups, report_groups, Items};
use suite_core::quality::minhash::normalize;
use suite_core::quality::report::{Section, Severity};

use super::Scanned;

/// Both kinds of duplicates.
pub(super) fn duplicates_section(data: &Scanned) -> Section {
    let mut s = Section::new("duplicates", "Duplicates");
    let split_of = data.split_of();
    let names = data.names();
    let items = Items { splits: &data.splits, split_of: &split_of, names: &names };

    // Unreadable clips get keys of their own so that they never group.
    let keys: Vec<(bool, u128)> =
        data.audio.iter().enumerate().map(|(i, a)| a.as_ref().map_or((false, i as u128), |a| (true, a.hash))).collect();
    let same_file = |a: usize, b: usize| data.clips[a].example.audio == data.clips[b].example.audio;
    let groups = exact_groups(&keys);
    let audio_counts = report_groups(&mut s, "exact", &items, &groups, &|a, b| {
        if same_file(a, b) {
            "the same file".to_string()
        } else {
            "identical 16 kHz samples".to_string()
        }
    });

    // Speakers reading the same sentence within a split is normal in speech corpora (Common Voice, read speech):
    // only groups that span splits are reported as duplicates; the rest is counted.
    let texts: Vec<String> = data.clips.iter().map(|c| normalize(&c.example.text)).collect();
    let text_keys: Vec<(bool, String)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| if t.is_empty() { (false, i.to_string()) } else { (true, t.clone()) })
        .collect();
    let (across, within): (Vec<Vec<usize>>, Vec<Vec<usize>>) =
        exact_groups(&text_keys).into_iter().partition(|g| g.iter().any(|&m| split_of[m] != split_of[g[0]]));
    let counts = report_groups(&mut s, "transcript", &items, &across, &|a, _| {
        let t = &texts[a];
        let short: String = t.chars().take(60).collect();
        if short.len() < t.len() {
            format!("same transcript: \"{short}…\"")
        } else {
            format!("same transcript: \"{short}\"")
        }
    });
    let repeated: usize = within.iter().map(|g| g.len() - 1).sum();
    s.stat("transcript_repeats_within_splits", repeated);
    if repeated > 0 {
        s.note(
            Severity::Info,
            format!(
                "{} sentence(s) are read more than once within a split ({repeated} extra readings); usual for read \
                 speech",
                within.len()
            ),
        );
    }
    if counts.groups_across == 0 && audio_counts.groups_across == 0 && audio_counts.groups_within == 0 {
        s.note(Severity::Ok, "no clip appears twice and no transcript is shared between splits");
    }
    if counts.groups_across > 0 {
        let mut by_pair: BTreeMap<String, usize> = BTreeMap::new();
        for g in &across {
            let mut in_splits: Vec<&str> = g.iter().map(|&m| data.splits[split_of[m]].as_str()).collect();
            in_splits.sort();
            in_splits.dedup();
            *by_pair.entry(in_splits.join("+")).or_default() += 1;
        }
        s.stat("transcript_groups_by_splits", &by_pair);
        s.note(
            Severity::Info,
            "a sentence shared across splits is leakage even when the speakers differ: the decoder has learnt the \
             word sequence, so held-out WER is too optimistic; split by sentence as well as by speaker",
        );
    }
    s
}
