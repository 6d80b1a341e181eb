//! Long-form transcription with timestamps, after openai-whisper's `transcribe()` and faster-whisper's
//! `generate_segments`: each recording is read window by window from a seek position that moves to the last
//! timestamp the model wrote (not in fixed 30-s cuts), every window decoded with temperature fallback, silent
//! windows skipped, each window prompted with the previous text. Several recordings advance in lock-step rounds,
//! their current windows stacked into one encoder forward.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::Tensor;

use super::align::{alignment_heads, find_alignment};
use super::language::detect_language;
use super::rules::{compression_ratio, TimestampRules};
use super::timed_search::{Choice, Decoded, Group};
use super::transcription::{Segment, TranscribeOptions, Transcription};
use super::words::{
    assign_words, limit_sentence_edges, merge_punctuations, word_timings, SegmentSpan, Word, APPEND_PUNCTUATIONS,
    PREPEND_PUNCTUATIONS,
};
use crate::audio::LogMel;
use crate::models::Whisper;
use crate::tokenizer::WhisperTokenizer;

/// Windows encoded in one forward: bounds the encoder's activation memory on large batches.
const ENCODE_BATCH: usize = 8;

/// Above this temperature the previous text stops prompting the next window (openai-whisper's
/// `prompt_reset_on_temperature`).
const PROMPT_RESET_ON_TEMPERATURE: f64 = 0.5;

/// Mel frames per timestamp step (0.02 s / 10 ms).
const FRAMES_PER_TIMESTAMP: i64 = 2;

/// Where one recording stands.
struct Recording {
    /// Log-mel of the whole recording, `[n_mels, content_frames + 1]`.
    features: Tensor,
    content_frames: i64,
    duration: f64,
    seek: i64,
    language: Option<String>,
    /// Tokens of the initial prompt and of every segment so far (the conditioning text).
    all_tokens: Vec<i64>,
    prompt_reset_since: usize,
    segments: Vec<Segment>,
    /// End of the last word so far (word timestamps), for the pause rule of the next window's first word.
    last_speech: f64,
}

/// A window's chosen decode, with what fallback measured on it.
#[derive(Debug, Clone)]
struct Attempt {
    decoded: Decoded,
    temperature: f64,
    compression_ratio: f64,
}

/// Transcribes each recording of `audio` (16 kHz mono samples) into timed segments, as openai-whisper's
/// `transcribe()` with `opts` (faster-whisper's `WhisperModel.transcribe` with `vad_filter=False` and no word
/// timestamps, whose results it reproduces).
///
/// Several recordings are transcribed together in rounds: each round stacks the current 30-s window of every
/// unfinished recording into one encoder forward and decodes them together, in groups of equal prompt length (the
/// decoder has no padding mask). Sampling above temperature 0 is seeded from `opts.seed`, the window's start and
/// the temperature, so each recording's result does not depend on the others in the batch.
pub fn transcribe_timed(
    model: &Whisper,
    tok: &WhisperTokenizer,
    mel: &LogMel,
    audio: &[&[f32]],
    opts: &TranscribeOptions,
) -> Result<Vec<Transcription>> {
    opts.validate()?;
    if mel.config().n_mels != model.config.num_mel_bins {
        bail!("mel features have {} bins, the model expects {}", mel.config().n_mels, model.config.num_mel_bins);
    }
    if tok.eot() >= model.config.vocab_size {
        bail!("{}: special tokens beyond the model's vocabulary; a tokenizer of another model?", tok.path().display());
    }
    let rules = TimestampRules::new(model, tok)?;
    let heads = match opts.word_timestamps {
        true => Some(alignment_heads(&model.config).context(
            "word timestamps: this model's architecture has no known cross-attention alignment heads (only the \
             tiny, base, small and medium Whisper checkpoints and models fine-tuned from them have)",
        )?),
        false => None,
    };
    let language = match &opts.language {
        Some(code) => {
            tok.prompt(code, opts.task)?;
            Some(if tok.is_multilingual() {
                tok.language_of(tok.language_token(code)?).unwrap_or(code).to_string()
            } else {
                "en".to_string()
            })
        }
        None if !tok.is_multilingual() => Some("en".to_string()),
        None => None,
    };
    let initial: Vec<i64> = match opts.initial_prompt.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => tok.encode_text(p).context("initial_prompt")?,
        None => Vec::new(),
    };
    let hop = mel.config().hop_length as f64;
    let rate = mel.config().sample_rate as f64;
    let mut recs: Vec<Recording> = audio
        .iter()
        .map(|samples| {
            let features = mel.recording(samples);
            let content_frames = (features.size()[1] - 1).max(0);
            Recording {
                features,
                content_frames,
                duration: samples.len() as f64 / rate,
                seek: 0,
                language: language.clone(),
                all_tokens: initial.clone(),
                prompt_reset_since: 0,
                segments: Vec::new(),
                last_speech: 0.0,
            }
        })
        .collect();
    let window_frames = mel.config().n_frames();
    let frames_per_second = rate / hop;
    tch::no_grad(|| -> Result<()> {
        loop {
            // Recordings with audio left, and those whose language is still to be detected (on the first window,
            // even an empty one, as faster-whisper does).
            let wanted: Vec<usize> = (0..recs.len())
                .filter(|&i| recs[i].seek < recs[i].content_frames || recs[i].language.is_none())
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            let sizes: Vec<i64> =
                wanted.iter().map(|&i| (recs[i].content_frames - recs[i].seek).clamp(0, window_frames)).collect();
            let windows: Vec<Tensor> = wanted
                .iter()
                .zip(&sizes)
                .map(|(&i, &size)| mel.window_at(&recs[i].features, recs[i].seek, size))
                .collect();
            // Peak memory is the encoder's activations on top of the model: the previous window's decoding
            // leaves freed blocks scattered through the heap, and the encoder's own are freed once it is done.
            suite_core::device::release_free_memory();
            let encoder_states = encode(model, &windows)?;
            suite_core::device::release_free_memory();
            let undetected: Vec<usize> = (0..wanted.len()).filter(|&w| recs[wanted[w]].language.is_none()).collect();
            if !undetected.is_empty() {
                let rows = Tensor::from_slice(&undetected.iter().map(|&w| w as i64).collect::<Vec<_>>());
                let states = encoder_states.index_select(0, &rows.to_device(encoder_states.device()));
                for (&w, (code, _)) in undetected.iter().zip(detect_language(model, tok, &states)?) {
                    recs[wanted[w]].language = Some(code);
                }
            }
            // The windows that hold audio.
            let live: Vec<usize> = (0..wanted.len()).filter(|&w| sizes[w] > 0).collect();
            let prompts: Vec<(Vec<i64>, usize)> =
                live.iter().map(|&w| prompt_of(model, tok, &recs[wanted[w]], opts)).collect::<Result<_>>()?;
            let results =
                decode_with_fallback(model, tok, &rules, &encoder_states, &live, &prompts, &recs, &wanted, opts)?;
            for (&w, attempt) in live.iter().zip(results) {
                let words = heads.as_ref().map(|heads| WordContext {
                    model,
                    heads,
                    encoder_states: encoder_states.narrow(0, w as i64, 1),
                });
                advance(&mut recs[wanted[w]], tok, &rules, attempt, sizes[w], frames_per_second, opts, words)?;
            }
        }
    })?;
    Ok(recs
        .into_iter()
        .map(|r| {
            let text: String = r.segments.iter().map(|s| s.text.as_str()).collect();
            Transcription {
                language: r.language.unwrap_or_else(|| "en".to_string()),
                duration: r.duration,
                text: text.trim().to_string(),
                segments: r.segments,
            }
        })
        .collect())
}

/// Encoder states of the windows `[n, n_mels, frames]` each, `ENCODE_BATCH` at a time.
fn encode(model: &Whisper, windows: &[Tensor]) -> Result<Tensor> {
    let device = model.device();
    let mut parts = Vec::new();
    for chunk in windows.chunks(ENCODE_BATCH) {
        let mel = Tensor::stack(chunk, 0).to_device(device);
        model.check_mel(&mel)?;
        parts.push(model.encode(&mel, false));
    }
    Ok(Tensor::cat(&parts, 0))
}

/// A window's prompt (`<|startofprev|>` and the last 223 conditioning tokens when there are any, then
/// `<|startoftranscript|><|lang|><|task|>`) and the position of `<|startoftranscript|>` in it.
fn prompt_of(
    model: &Whisper,
    tok: &WhisperTokenizer,
    rec: &Recording,
    opts: &TranscribeOptions,
) -> Result<(Vec<i64>, usize)> {
    let language = rec.language.as_deref().unwrap_or("en");
    let previous = &rec.all_tokens[rec.prompt_reset_since..];
    let mut prompt = Vec::new();
    if let (Some(sot_prev), false) = (tok.start_of_prev(), previous.is_empty()) {
        let keep = (model.config.max_target_positions as usize / 2).saturating_sub(1);
        prompt.push(sot_prev);
        prompt.extend_from_slice(&previous[previous.len().saturating_sub(keep)..]);
    }
    let sot_index = prompt.len();
    prompt.extend(tok.sot_sequence(language, opts.task)?);
    Ok((prompt, sot_index))
}

/// Decodes the `live` windows (indices into `encoder_states`, with `prompts`) at each temperature of the ladder in
/// turn, until each passes the thresholds; a window that never does keeps its most likely decode (among those
/// not too repetitive), tagged with the last temperature, as faster-whisper's `generate_with_fallback`.
#[allow(clippy::too_many_arguments)]
fn decode_with_fallback(
    model: &Whisper,
    tok: &WhisperTokenizer,
    rules: &TimestampRules,
    encoder_states: &Tensor,
    live: &[usize],
    prompts: &[(Vec<i64>, usize)],
    recs: &[Recording],
    wanted: &[usize],
    opts: &TranscribeOptions,
) -> Result<Vec<Attempt>> {
    let mut chosen: Vec<Option<Attempt>> = vec![None; live.len()];
    let mut tried: Vec<Vec<Attempt>> = vec![Vec::new(); live.len()];
    let mut pending: Vec<usize> = (0..live.len()).collect();
    let n_ctx = model.config.max_target_positions as usize;
    for (rank, &temperature) in opts.temperatures.iter().enumerate() {
        if pending.is_empty() {
            break;
        }
        // Equal prompt lengths decode together (the decoder has no padding mask); each group in order of length.
        let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for &p in &pending {
            groups.entry((prompts[p].0.len(), prompts[p].1)).or_default().push(p);
        }
        for ((len, sot_index), members) in groups {
            let rows: Vec<i64> = members.iter().map(|&p| live[p] as i64).collect();
            let states = encoder_states.index_select(0, &Tensor::from_slice(&rows).to_device(encoder_states.device()));
            let group_prompts: Vec<Vec<i64>> = members.iter().map(|&p| prompts[p].0.clone()).collect();
            let max_new = (n_ctx / 2).min(n_ctx.saturating_sub(len));
            if max_new == 0 {
                bail!("the decoder has {n_ctx} positions, no room after a {len}-token prompt");
            }
            let choice = if temperature > 0.0 {
                let seeds = members.iter().map(|&p| sample_seed(opts.seed, recs[wanted[live[p]]].seek, rank)).collect();
                Choice::Sample { temperature, best_of: opts.best_of, seeds }
            } else if opts.beam_size > 1 {
                Choice::Beam(opts.beam_size)
            } else {
                Choice::Greedy
            };
            let group = Group {
                model,
                rules,
                encoder_states: &states,
                prompts: &group_prompts,
                sot_index,
                eot: tok.eot(),
                no_speech: tok.no_speech(),
                max_new,
            };
            for (&p, decoded) in members.iter().zip(group.run(&choice)?) {
                let text = tok.decode_text(&decoded.tokens)?;
                let attempt = Attempt { compression_ratio: compression_ratio(text.trim()), decoded, temperature };
                if !needs_fallback(&attempt, opts) {
                    chosen[p] = Some(attempt);
                } else {
                    tried[p].push(attempt);
                }
            }
        }
        pending.retain(|&p| chosen[p].is_none());
    }
    let last_temperature = opts.temperatures.last().copied().unwrap_or(0.0);
    Ok(chosen
        .into_iter()
        .zip(tried)
        .map(|(c, tried)| {
            c.unwrap_or_else(|| {
                let not_repetitive: Vec<&Attempt> = match opts.compression_ratio_threshold {
                    Some(limit) => tried.iter().filter(|a| a.compression_ratio <= limit).collect(),
                    None => Vec::new(),
                };
                let pool: Vec<&Attempt> =
                    if not_repetitive.is_empty() { tried.iter().collect() } else { not_repetitive };
                // The first of equal ones, as Python's max.
                let best =
                    pool.iter().fold(pool[0], |b, a| if a.decoded.avg_logprob > b.decoded.avg_logprob { a } else { b });
                Attempt { temperature: last_temperature, ..best.clone() }
            })
        })
        .collect())
}

/// Whether a decode fails the thresholds: too repetitive or too unlikely, unless it is silence (likely
/// `<|nospeech|>` and unlikely text), which fallback would not fix.
fn needs_fallback(a: &Attempt, opts: &TranscribeOptions) -> bool {
    let lp = a.decoded.avg_logprob;
    let too_repetitive = opts.compression_ratio_threshold.is_some_and(|t| a.compression_ratio > t);
    let too_unlikely = opts.logprob_threshold.is_some_and(|t| lp < t);
    let silence = opts.no_speech_threshold.is_some_and(|t| a.decoded.no_speech_prob > t) && too_unlikely;
    (too_repetitive || too_unlikely) && !silence
}

/// The seed of one window's draws at one temperature: the run's seed, the window's start and the temperature's
/// rank, and nothing about the batch.
fn sample_seed(seed: u64, seek: i64, rank: usize) -> u64 {
    seed ^ (seek as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (rank as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// What a window's word alignment needs.
struct WordContext<'a> {
    model: &'a Whisper,
    heads: &'a [(i64, i64)],
    /// The window's encoder states, `[1, frames, d]`.
    encoder_states: Tensor,
}

/// Takes a window's decode into its recording: skipped as silence, or cut into segments at its timestamps (with
/// their words when `words` is given); the seek moves past what was transcribed.
#[allow(clippy::too_many_arguments)]
fn advance(
    rec: &mut Recording,
    tok: &WhisperTokenizer,
    rules: &TimestampRules,
    attempt: Attempt,
    size: i64,
    frames_per_second: f64,
    opts: &TranscribeOptions,
    words: Option<WordContext>,
) -> Result<()> {
    let d = &attempt.decoded;
    if let Some(limit) = opts.no_speech_threshold {
        let confident = opts.logprob_threshold.is_some_and(|t| d.avg_logprob > t);
        if d.no_speech_prob > limit && !confident {
            rec.seek += size;
            return Ok(());
        }
    }
    let window_start = rec.seek;
    let (pieces, mut next_seek) = split_at_timestamps(&d.tokens, rules.timestamp_begin(), window_start, size);
    let mut spans: Vec<SegmentSpan> = pieces
        .iter()
        .map(|p| SegmentSpan {
            start: p.start as f64 / frames_per_second,
            end: p.end as f64 / frames_per_second,
            text_tokens: p.tokens.iter().filter(|&&t| t < tok.eot()).count(),
        })
        .collect();
    let mut piece_words: Vec<Option<Vec<Word>>> = vec![None; pieces.len()];
    if let Some(ctx) = words {
        let time_offset = window_start as f64 / frames_per_second;
        let language = rec.language.as_deref().unwrap_or("en");
        let text: Vec<i64> = pieces.iter().flat_map(|p| p.tokens.iter().copied().filter(|&t| t < tok.eot())).collect();
        let mut timings = Vec::new();
        if !text.is_empty() {
            let alignment = find_alignment(
                ctx.model,
                ctx.heads,
                &ctx.encoder_states,
                &tok.sot_sequence(language, opts.task)?,
                tok.no_timestamps(),
                tok.eot(),
                &text,
                size,
            )?;
            timings = word_timings(tok, &text, &alignment, language)?;
        }
        let (median, max) = limit_sentence_edges(&mut timings);
        merge_punctuations(&mut timings, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);
        let (assigned, _) = assign_words(&timings, &mut spans, time_offset, median, max, rec.last_speech);
        // faster-whisper's `get_end`: the last word's end, else the last segment's.
        let last_end = assigned.iter().rev().find_map(|w| w.last().map(|w| w.end)).or(spans.last().map(|s| s.end));
        let n = d.tokens.len();
        let is_ts = |t: i64| t >= rules.timestamp_begin();
        let single_timestamp_ending = n >= 2 && !is_ts(d.tokens[n - 2]) && is_ts(d.tokens[n - 1]);
        if let (false, Some(end)) = (single_timestamp_ending, last_end) {
            if end > time_offset {
                next_seek = (end * frames_per_second).round_ties_even() as i64;
            }
        }
        if let Some(end) = last_end {
            rec.last_speech = end;
        }
        piece_words = assigned.into_iter().map(Some).collect();
    }
    // A window that ends where it began (a zero-length segment at 0) would be read again forever: move on.
    rec.seek = if next_seek > window_start { next_seek } else { window_start + size };
    for ((piece, span), words) in pieces.into_iter().zip(spans).zip(piece_words) {
        let text = tok.decode_text(&piece.tokens)?;
        if span.start == span.end || text.trim().is_empty() {
            continue;
        }
        rec.all_tokens.extend_from_slice(&piece.tokens);
        rec.segments.push(Segment {
            id: rec.segments.len(),
            seek: window_start as usize,
            // A division, not a product with 0.01, so that 332 frames is 3.32 and not 3.3200000000000003.
            start: span.start,
            end: span.end,
            text,
            tokens: piece.tokens,
            temperature: attempt.temperature,
            avg_logprob: d.avg_logprob,
            compression_ratio: attempt.compression_ratio,
            no_speech_prob: d.no_speech_prob,
            words,
        });
    }
    if !opts.condition_on_previous_text || attempt.temperature > PROMPT_RESET_ON_TEMPERATURE {
        rec.prompt_reset_since = rec.all_tokens.len();
    }
    Ok(())
}

/// A segment cut from a window's tokens, its times in mel frames from the start of the recording.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub start: i64,
    pub end: i64,
    pub tokens: Vec<i64>,
}

/// Cuts a window's tokens into segments at each pair of consecutive timestamps, as openai-whisper's
/// `transcribe()`: a window that ends with a single timestamp was transcribed to its end; otherwise the unfinished
/// last segment is dropped and the next window starts at the last timestamp. Without a timestamp pair the window is
/// one segment (ending at its last timestamp, if any). Returns the segments and the next seek (frames).
pub(crate) fn split_at_timestamps(tokens: &[i64], timestamp_begin: i64, seek: i64, size: i64) -> (Vec<Piece>, i64) {
    let is_ts = |t: i64| t >= timestamp_begin;
    let frames = |t: i64| if is_ts(t) { seek + (t - timestamp_begin) * FRAMES_PER_TIMESTAMP } else { seek };
    let n = tokens.len();
    let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
    let consecutive: Vec<usize> = (1..n).filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1])).collect();
    if consecutive.is_empty() {
        let timestamps: Vec<i64> = tokens.iter().copied().filter(|&t| is_ts(t)).collect();
        let end = match timestamps.last() {
            Some(&last) if last != timestamp_begin => frames(last),
            _ => seek + size,
        };
        return (vec![Piece { start: seek, end, tokens: tokens.to_vec() }], seek + size);
    }
    let mut cuts = consecutive;
    if single_timestamp_ending {
        cuts.push(n);
    }
    let mut pieces = Vec::new();
    let mut last = 0;
    for &cut in &cuts {
        let slice = &tokens[last..cut];
        pieces.push(Piece { start: frames(slice[0]), end: frames(slice[slice.len() - 1]), tokens: slice.to_vec() });
        last = cut;
    }
    let next = if single_timestamp_ending { seek + size } else { frames(tokens[last - 1]) };
    (pieces, next)
}
