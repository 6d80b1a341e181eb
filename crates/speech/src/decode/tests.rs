//! Decoding the five LibriVox utterances of pocketsphinx's test data with the real whisper-base weights: word
//! error rates of greedy and beam search, language detection, and the long-form path on their concatenation.

use anyhow::{Context, Result};
use tch::{nn, Device, Tensor};

use super::*;
use crate::audio::{load_audio, LogMel, MelConfig};
use crate::metrics::{normalize_english, wer};
use crate::models::{load_whisper, resolve_whisper};
use crate::tokenizer::WhisperTokenizer;

/// `(file stem, reference)` from the `transcription` file (`<s> text </s> (stem)` per line).
pub(super) fn references() -> Result<Vec<(String, String)>> {
    let dir = crate::models::parity_tests::librivox_dir();
    let text = std::fs::read_to_string(dir.join("transcription"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (body, id) = l.rsplit_once('(').context("a transcription line ends with (id)")?;
            let words = body.replace("<s>", "").replace("</s>", "");
            Ok((id.trim_end_matches(')').trim().to_string(), words.trim().to_string()))
        })
        .collect()
}

fn corpus_wer(refs: &[String], hyps: &[Transcript]) -> Result<f64> {
    let refs: Vec<String> = refs.iter().map(|r| normalize_english(r)).collect();
    let hyps: Vec<String> = hyps.iter().map(|h| normalize_english(&h.text)).collect();
    Ok(wer(&refs, &hyps)?.rate())
}

#[test]
fn librivox_word_error_rates() -> Result<()> {
    let files = resolve_whisper("whisper-base")?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = load_whisper(&mut vs, &files)?;
    let tok = WhisperTokenizer::from_file(&files.tokenizer)?;
    let dir = crate::models::parity_tests::librivox_dir();
    let mel = LogMel::new(MelConfig::whisper(80));
    let refs = references()?;
    assert_eq!(refs.len(), 5);
    let audio: Vec<Vec<f32>> =
        refs.iter().map(|(id, _)| load_audio(&dir.join(format!("{id}.wav")))).collect::<Result<_>>()?;
    let windows: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
    let features = mel.batch(&windows);
    let texts: Vec<String> = refs.iter().map(|(_, t)| t.clone()).collect();

    // Language detection on the whole batch (no language given).
    let greedy = transcribe_batch(&model, &tok, &features, &DecodeOptions::default())?;
    assert!(greedy.iter().all(|t| t.language == "en"), "{:?}", greedy.iter().map(|t| &t.language).collect::<Vec<_>>());
    let greedy_wer = corpus_wer(&texts, &greedy)?;
    let beam_opts = DecodeOptions { language: Some("en".into()), beam_size: 5, ..Default::default() };
    let beam = transcribe_batch(&model, &tok, &features, &beam_opts)?;
    let beam_wer = corpus_wer(&texts, &beam)?;
    for ((r, g), b) in texts.iter().zip(&greedy).zip(&beam) {
        println!("ref:    {r}\ngreedy: {}\nbeam 5: {}", g.text, b.text);
    }
    println!("WER (normalize_english): greedy {:.2} %, beam 5 {:.2} %", 100.0 * greedy_wer, 100.0 * beam_wer);
    assert!(greedy_wer < 0.12, "greedy WER {greedy_wer}");
    assert!(beam_wer < 0.12, "beam WER {beam_wer}");

    // The five utterances back to back (about 34 s): two windows, joined.
    let joined: Vec<f32> = audio.concat();
    let long = transcribe_long(&model, &tok, &joined, &mel, &DecodeOptions::default())?;
    let long_wer = wer(&[normalize_english(&texts.join(" "))], &[normalize_english(&long.text)])?.rate();
    println!("long form ({:.1} s): WER {:.2} %: {}", joined.len() as f64 / 16000.0, 100.0 * long_wer, long.text);
    assert_eq!(long.language, "en");
    assert!(long_wer < 0.2, "long-form WER {long_wer}");
    Ok(())
}

#[test]
fn bad_options_and_inputs_are_errors() -> Result<()> {
    let files = resolve_whisper("whisper-base")?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = load_whisper(&mut vs, &files)?;
    let tok = WhisperTokenizer::from_file(&files.tokenizer)?;
    let mel = Tensor::zeros([1, 80, 3000], (tch::Kind::Float, Device::Cpu));
    let err =
        transcribe_batch(&model, &tok, &mel, &DecodeOptions { language: Some("xx".into()), ..Default::default() })
            .unwrap_err()
            .to_string();
    assert!(err.contains("\"xx\" is not a Whisper language; known: en, "), "{err}");
    let err = transcribe_batch(&model, &tok, &mel, &DecodeOptions { beam_size: 0, ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("beam_size = 0"), "{err}");
    let wrong = Tensor::zeros([1, 128, 3000], (tch::Kind::Float, Device::Cpu));
    let err = transcribe_batch(&model, &tok, &wrong, &DecodeOptions::default()).unwrap_err().to_string();
    assert!(err.contains("expected [batch, 80, 3000]"), "{err}");
    Ok(())
}
