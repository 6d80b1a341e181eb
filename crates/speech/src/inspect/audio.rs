//! The audio sections: readable files and their formats, durations against Whisper's window, silence and clipping.

use std::collections::BTreeMap;

use suite_core::quality::report::{histogram, Chart, ChartSeries, Section, Severity, Table};

use super::{pct, Scanned, CLIPPED_SHARE, SHORT_S, SILENT_SHARE, WINDOW_S};

/// A clip lasts noticeably less than its WAV header declares when it is this much shorter.
const TRUNCATED_SLACK_S: f64 = 0.05;
/// Clips at least this silent are "silent throughout".
const ALL_SILENT: f64 = 0.99;
/// One sample rate holding this share of the clips makes the others worth a look.
const MAIN_RATE_SHARE: f64 = 0.9;

/// A histogram of `(split, value)` pairs, one series per split.
pub(super) fn split_histogram(
    data: &Scanned,
    values: &[(usize, f64)],
    edges: &[f64],
    title: &str,
    x: &str,
    y: &str,
) -> Chart {
    let mut labels = vec![];
    let series = data
        .splits
        .iter()
        .enumerate()
        .map(|(s, name)| {
            let v: Vec<f64> = values.iter().filter(|(sp, _)| *sp == s).map(|(_, v)| *v).collect();
            let (l, counts) = histogram(&v, edges);
            labels = l;
            ChartSeries { name: name.clone(), values: counts }
        })
        .collect();
    Chart { title: title.into(), x_label: x.into(), y_label: y.into(), labels, series }
}

/// A bar chart of counts by key and split.
pub(super) fn split_counts<K: Ord + ToString>(
    data: &Scanned,
    keys: &[(usize, K)],
    title: &str,
    x: &str,
    y: &str,
) -> Chart {
    let mut by_key: BTreeMap<&K, Vec<f64>> = BTreeMap::new();
    for (s, k) in keys {
        by_key.entry(k).or_insert_with(|| vec![0.0; data.splits.len()])[*s] += 1.0;
    }
    let labels = by_key.keys().map(|k| k.to_string()).collect();
    let series = data
        .splits
        .iter()
        .enumerate()
        .map(|(s, name)| ChartSeries { name: name.clone(), values: by_key.values().map(|v| v[s]).collect() })
        .collect();
    Chart { title: title.into(), x_label: x.into(), y_label: y.into(), labels, series }
}

/// A table of listed clips: split, row, audio, then `extra` columns.
pub(super) fn clip_table(data: &Scanned, title: &str, extra: &[&str], rows: Vec<(usize, Vec<String>)>) -> Table {
    let mut columns: Vec<String> = ["split", "row", "audio"].map(String::from).to_vec();
    columns.extend(extra.iter().map(|c| c.to_string()));
    let rows = rows
        .into_iter()
        .map(|(i, more)| {
            let c = &data.clips[i];
            let mut r = vec![data.splits[c.split].clone(), c.row.to_string(), c.name.clone()];
            r.extend(more);
            r
        })
        .collect();
    Table { title: title.into(), columns, rows }
}

/// Readable and unreadable clips, truncated WAVs, sample rates and channel counts.
pub(super) fn files_section(data: &Scanned) -> Section {
    let mut s = Section::new("files", "Audio files");
    let n = data.clips.len();
    let unreadable: Vec<(usize, Vec<String>)> =
        data.audio.iter().enumerate().filter_map(|(i, a)| a.as_ref().err().map(|e| (i, vec![e.clone()]))).collect();
    s.stat("clips", n).stat("readable", n - unreadable.len()).stat("unreadable", unreadable.len());
    if unreadable.is_empty() {
        s.note(Severity::Ok, format!("all {n} clips decode"));
    } else {
        s.advise(
            Severity::Problem,
            format!("{} of {n} clips cannot be read ({})", unreadable.len(), pct(unreadable.len(), n)),
            "fix or remove these rows: `suite finetune speech` probes every clip first and refuses the data set \
             while one is unreadable",
        );
        s.tables.push(clip_table(data, "unreadable clips", &["reason"], unreadable));
    }
    let truncated: Vec<(usize, Vec<String>)> = data
        .readable()
        .filter_map(|(i, _, a)| {
            let d = a.declared_s?;
            (d - a.duration_s > TRUNCATED_SLACK_S).then(|| (i, vec![format!("{d:.2}"), format!("{:.2}", a.duration_s)]))
        })
        .collect();
    s.stat("truncated_wav", truncated.len());
    if !truncated.is_empty() {
        s.advise(
            Severity::Warning,
            format!(
                "{} WAV file(s) hold less audio than their header declares (cut while writing or copying)",
                truncated.len()
            ),
            "re-export or re-copy these files: the transcript may describe audio that is no longer there",
        );
        s.tables.push(clip_table(
            data,
            "WAV files shorter than their header says",
            &["declared s", "decoded s"],
            truncated,
        ));
    }
    let rates: Vec<(usize, u32)> = data.readable().map(|(_, c, a)| (c.split, a.sample_rate)).collect();
    let channels: Vec<(usize, usize)> = data.readable().map(|(_, c, a)| (c.split, a.channels)).collect();
    let mut rate_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in &rates {
        *rate_counts.entry(r.to_string()).or_default() += 1;
    }
    let mut channel_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, c) in &channels {
        *channel_counts.entry(c.to_string()).or_default() += 1;
    }
    s.stat("sample_rates", &rate_counts).stat("channels", &channel_counts);
    let not_16k = rates.iter().filter(|(_, r)| *r != 16_000).count();
    if not_16k > 0 {
        s.advise(
            Severity::Info,
            format!("{not_16k} clip(s) are not at 16 kHz; they are resampled every time a batch reads them"),
            "converting the data to 16 kHz once saves that work in every epoch (the model sees the same samples)",
        );
    }
    rare_rates(data, &rates, &mut s);
    let multi = channels.iter().filter(|(_, c)| *c > 1).count();
    if multi > 0 {
        s.note(Severity::Info, format!("{multi} clip(s) have two or more channels; they are averaged to mono"));
    }
    s.charts.push(split_counts(data, &rates, "sample rates of the files", "Hz", "clips"));
    s.charts.push(split_counts(data, &channels, "channels of the files", "channels", "clips"));
    s
}

/// Clips whose sample rate few others share, when one rate dominates: in a data set recorded one way, the odd
/// header is often a wrong one (speech then plays too fast or too slow, at the wrong pitch).
fn rare_rates(data: &Scanned, rates: &[(usize, u32)], s: &mut Section) {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for (_, r) in rates {
        *counts.entry(*r).or_default() += 1;
    }
    let Some((&main, &main_n)) = counts.iter().max_by_key(|(_, n)| **n) else { return };
    if (main_n as f64) < MAIN_RATE_SHARE * rates.len() as f64 || main_n == rates.len() {
        return;
    }
    let odd: Vec<(usize, Vec<String>)> = data
        .readable()
        .filter(|(_, _, a)| a.sample_rate != main)
        .map(|(i, _, a)| (i, vec![a.sample_rate.to_string(), format!("{:.2}", a.duration_s)]))
        .collect();
    s.stat("clips_at_other_rates", odd.len());
    s.advise(
        Severity::Info,
        format!("{} clip(s) differ from the {main} Hz of the other {main_n}", odd.len()),
        "if they were recorded like the rest, check their headers: a wrong sample rate makes speech play too fast \
         or too slow (listen, or compare the duration with the transcript)",
    );
    s.tables.push(clip_table(data, "clips at a rate other than the usual one", &["Hz", "seconds"], odd));
}

/// Durations: histogram, total hours, clips past 30 s and very short clips.
pub(super) fn durations_section(data: &Scanned) -> Section {
    let mut s = Section::new("durations", "Durations");
    let values: Vec<(usize, f64)> = data.readable().map(|(_, c, a)| (c.split, a.duration_s)).collect();
    let mut sorted: Vec<f64> = values.iter().map(|(_, d)| *d).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        s.note(Severity::Info, "no readable clip to measure");
        return s;
    }
    let total: f64 = sorted.iter().sum();
    let hours: BTreeMap<&str, f64> = data
        .splits
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (name.as_str(), values.iter().filter(|(sp, _)| *sp == i).map(|(_, d)| d).sum::<f64>() / 3600.0)
        })
        .collect();
    s.stat("total_hours", total / 3600.0)
        .stat("hours_by_split", &hours)
        .stat("mean_s", total / sorted.len() as f64)
        .stat("median_s", sorted[sorted.len() / 2])
        .stat("min_s", sorted[0])
        .stat("max_s", sorted[sorted.len() - 1]);
    let long: Vec<(usize, Vec<String>)> = data
        .readable()
        .filter(|(_, _, a)| a.duration_s > WINDOW_S)
        .map(|(i, _, a)| (i, vec![format!("{:.2}", a.duration_s)]))
        .collect();
    let short: Vec<(usize, Vec<String>)> = data
        .readable()
        .filter(|(_, _, a)| a.duration_s < SHORT_S)
        .map(|(i, _, a)| (i, vec![format!("{:.3}", a.duration_s)]))
        .collect();
    s.stat("over_30s", long.len()).stat("under_0_5s", short.len());
    let per_split: Vec<String> = hours.iter().map(|(k, h)| format!("{k} {:.2} h", h)).collect();
    s.note(
        Severity::Info,
        format!(
            "{} readable clips, {:.2} h ({}); {:.2}-{:.2} s, median {:.2} s",
            sorted.len(),
            total / 3600.0,
            per_split.join(", "),
            sorted[0],
            sorted[sorted.len() - 1],
            sorted[sorted.len() / 2]
        ),
    );
    if !long.is_empty() {
        s.advise(
            Severity::Warning,
            format!(
                "{} clip(s) last longer than Whisper's 30-s window (longest {:.1} s)",
                long.len(),
                sorted[sorted.len() - 1]
            ),
            "Whisper hears only the first 30 s of a clip while its whole transcript is taught: split these clips at \
             pauses into segments of at most 30 s, each with its own transcript, or drop them",
        );
        s.tables.push(clip_table(data, "clips longer than 30 s", &["seconds"], long));
    }
    if !short.is_empty() {
        s.advise(
            Severity::Warning,
            format!("{} clip(s) are shorter than {SHORT_S} s", short.len()),
            "listen to a few: a cut recording or a click with a transcript teaches the model to invent words",
        );
        s.tables.push(clip_table(data, "very short clips", &["seconds"], short));
    }
    let top = sorted[sorted.len() - 1];
    let mut edges = vec![0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0];
    if top > WINDOW_S {
        edges.push(top.max(60.0).ceil());
    }
    s.charts.push(split_histogram(data, &values, &edges, "clip durations", "seconds", "clips"));
    s
}

/// Silence (20-ms frames under −60 dBFS RMS) and clipping (|x| ≥ 0.999) per clip.
pub(super) fn signal_section(data: &Scanned) -> Section {
    let mut s = Section::new("signal", "Silence and clipping");
    s.stat("silence_definition", "share of 20-ms frames of the 16 kHz mono signal with RMS below -60 dBFS")
        .stat("clipping_definition", "share of mono samples at the file's rate with |x| >= 0.999");
    let readable: Vec<_> = data.readable().collect();
    if readable.is_empty() {
        return s;
    }
    let mean_silence = readable.iter().map(|(_, _, a)| a.silence).sum::<f64>() / readable.len() as f64;
    s.stat("mean_silence", mean_silence);
    let mostly: Vec<(usize, Vec<String>)> = readable
        .iter()
        .filter(|(_, _, a)| a.silence > SILENT_SHARE)
        .map(|(i, _, a)| (*i, vec![format!("{:.3}", a.silence)]))
        .collect();
    let silent_with_text: Vec<usize> = readable
        .iter()
        .filter(|(_, c, a)| a.silence >= ALL_SILENT && !c.example.text.trim().is_empty())
        .map(|(i, _, _)| *i)
        .collect();
    s.stat("mostly_silent", mostly.len()).stat("silent_with_transcript", silent_with_text.len());
    let mut quiet = mostly.is_empty() && silent_with_text.is_empty();
    if !silent_with_text.is_empty() {
        s.advise(
            Severity::Problem,
            format!("{} clip(s) are silent throughout but have a transcript", silent_with_text.len()),
            "check these files (an empty recording, or the wrong file): training on them teaches Whisper to \
             hallucinate text from silence",
        );
    }
    if !mostly.is_empty() {
        s.advise(
            Severity::Warning,
            format!("{} clip(s) are more than half silence", mostly.len()),
            "trim long leading and trailing silence (e.g. with a voice-activity detector): it costs compute and \
             makes the model more prone to hallucinate in pauses",
        );
        s.tables.push(clip_table(data, "mostly silent clips", &["silence share"], mostly));
    }
    let clipped: Vec<(usize, Vec<String>)> = readable
        .iter()
        .filter(|(_, _, a)| a.clipping > CLIPPED_SHARE)
        .map(|(i, _, a)| (*i, vec![format!("{:.4}", a.clipping), format!("{:.3}", a.peak)]))
        .collect();
    s.stat("clipped", clipped.len());
    quiet &= clipped.is_empty();
    if !clipped.is_empty() {
        s.advise(
            Severity::Warning,
            format!(
                "{} clip(s) have more than {}% of their samples at full scale (clipped)",
                clipped.len(),
                CLIPPED_SHARE * 100.0
            ),
            "clipping distorts speech: re-record or re-export at a lower gain, or drop the worst clips",
        );
        s.tables.push(clip_table(data, "clipped clips", &["clipped share", "peak"], clipped));
    }
    if quiet {
        s.note(
            Severity::Ok,
            format!("no clip is mostly silent or clipped (mean silence {:.1}% of frames)", 100.0 * mean_silence),
        );
    }
    let values: Vec<(usize, f64)> = readable.iter().map(|(_, c, a)| (c.split, a.silence)).collect();
    let edges: Vec<f64> = (0..=10).map(|i| f64::from(i) / 10.0).collect();
    s.charts.push(split_histogram(
        data,
        &values,
        &edges,
        "share of silent 20-ms frames per clip",
        "silence share",
        "clips",
    ));
    s
}
