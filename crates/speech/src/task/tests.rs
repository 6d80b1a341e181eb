//! The speech task on the real whisper-base asset and LibriVox clips: label rows, row errors, SpecAugment, and the
//! teacher-forced loss and its gradients against transformers 5.23.0's own `labels=` loss.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::sync::Arc;

use suite_core::data::{DataLoader, LoaderConfig};
use suite_core::python::run_python;
use suite_core::train::TrainModel;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::*;
use crate::data::SpeechExample;
use crate::models::parity_tests::librivox_dir;
use crate::models::{load_whisper, resolve_whisper, save_whisper_hub};
use crate::tokenizer::{Task, WhisperTokenizer};

fn tokenizer() -> WhisperTokenizer {
    let files = resolve_whisper("whisper-base").expect("the whisper-base asset is unpacked (scripts/setup.sh)");
    WhisperTokenizer::from_file(&files.tokenizer).unwrap()
}

/// Two LibriVox clips with their transcripts (pocketsphinx's `transcription` file).
fn librivox_examples() -> Vec<SpeechExample> {
    let dir = librivox_dir();
    [
        ("sense_and_sensibility_01_austen_64kb-0880", "he was not an ill disposed young man"),
        ("sense_and_sensibility_01_austen_64kb-0930", "he might even have been made amiable himself"),
    ]
    .iter()
    .map(|(id, text)| SpeechExample { audio: dir.join(format!("{id}.wav")), text: text.to_string(), language: None })
    .collect()
}

fn config(language: Option<&str>) -> SpeechConfig {
    SpeechConfig { language: language.map(String::from), data: Some("x".into()), ..SpeechConfig::default() }
}

fn batch(clips: Vec<LabelledClip>) -> Result<SpeechBatch> {
    let n = clips.len();
    let ds = Arc::new(SpeechDataset::new(clips, 80, 50257, SpeechTaskKind::Transcribe));
    let loader = DataLoader::sequential(ds, LoaderConfig { batch_size: n, workers: 0, ..LoaderConfig::default() });
    let mut it = loader.iter_epoch(0, 0);
    it.next().context("one batch")?
}

#[test]
fn labels_are_next_tokens_with_prompt_and_padding_ignored() -> Result<()> {
    let tok = tokenizer();
    let clips = labelled_clips(&librivox_examples(), Path::new("m.jsonl"), &tok, &config(Some("en")))?;
    let prompt = tok.prompt("en", Task::Transcribe)?;
    let text0 = tok.encode_text("he was not an ill disposed young man")?;
    assert_eq!(clips[0].tokens[..4], prompt[..]);
    assert_eq!(clips[0].tokens[4..4 + text0.len()], text0[..]);
    assert_eq!(*clips[0].tokens.last().unwrap(), tok.eot());
    let (n0, n1) = (clips[0].tokens.len(), clips[1].tokens.len());
    let b = batch(clips.clone())?;
    let t = n0.max(n1) as i64 - 1;
    assert_eq!(b.mel.size(), [2, 80, 3000]);
    assert_eq!(b.tokens.size(), [2, t]);
    for (row, clip) in clips.iter().enumerate() {
        let tokens = Vec::<i64>::try_from(b.tokens.get(row as i64))?;
        let labels = Vec::<i64>::try_from(b.labels.get(row as i64))?;
        let n = clip.tokens.len();
        assert_eq!(tokens[..n - 1], clip.tokens[..n - 1], "decoder input = all but the last token");
        assert!(tokens[n - 1..].iter().all(|&x| x == 50257), "padded with <|endoftext|>");
        assert!(labels[..3].iter().all(|&x| x == IGNORE_INDEX), "prompt tokens are not predicted: {labels:?}");
        assert_eq!(labels[3..n - 1], clip.tokens[4..], "position i predicts token i + 1");
        assert!(labels[n - 1..].iter().all(|&x| x == IGNORE_INDEX), "padding ignored");
    }
    // About 2-3 s of audio each: 10 ms frames.
    assert!(b.frames.iter().all(|&f| (150..400).contains(&f)), "{:?}", b.frames);

    // Truncation keeps the prompt and cuts the rest.
    let short = SpeechConfig { max_label_tokens: 8, ..config(Some("en")) };
    let cut = labelled_clips(&librivox_examples(), Path::new("m.jsonl"), &tok, &short)?;
    assert!(cut.iter().all(|c| c.tokens.len() == 8 && c.prompt_len == 4));
    Ok(())
}

#[test]
fn rows_need_a_known_language() {
    let tok = tokenizer();
    let mut ex = librivox_examples();
    let e = labelled_clips(&ex, Path::new("data/m.jsonl"), &tok, &config(None)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("data/m.jsonl: row 1") && msg.contains("--language"), "{msg}");
    ex[1].language = Some("xx".into());
    let e = labelled_clips(&ex, Path::new("data/m.jsonl"), &tok, &config(Some("en"))).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("row 2") && msg.contains("\"xx\" is not a Whisper language"), "{msg}");
    // The row's language wins over the job's.
    ex[1].language = Some("de".into());
    let clips = labelled_clips(&ex, Path::new("m.jsonl"), &tok, &config(Some("en"))).unwrap();
    assert_eq!((clips[0].language.as_str(), clips[1].language.as_str()), ("en", "de"));
    assert_eq!(clips[1].tokens[1], tok.language_token("de").unwrap());
}

#[test]
fn spec_augment_masks_within_bounds_and_repeats_with_the_seed() {
    let mel = Tensor::ones([3, 80, 3000], (Kind::Float, Device::Cpu));
    let frames = [3000, 250, 0];
    tch::manual_seed(11);
    let a = SpecAugment::LD.apply(&mel, &frames);
    tch::manual_seed(11);
    let b = SpecAugment::LD.apply(&mel, &frames);
    assert!(a.equal(&b), "same seed, same masks");
    let masked = a.eq(0.0);
    for (row, &f) in frames.iter().enumerate() {
        let m = masked.get(row as i64);
        // Frequency masks cover whole rows of bins, time masks whole columns within the audio.
        let bins = m.all_dim(1, false).to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
        let cols = m.all_dim(0, false);
        let n_cols = cols.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
        assert!(bins <= 2 * 27, "row {row}: {bins} masked bins");
        assert!(n_cols <= 2 * 100, "row {row}: {n_cols} masked frames");
        if f < 3000 {
            let after = cols.narrow(0, f, 3000 - f).any().int64_value(&[]);
            assert_eq!(after, 0, "row {row}: time masks stay within the {f} audio frames");
        }
        let total = m.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(total, bins * 3000 + n_cols * 80 - bins * n_cols, "row {row}: only whole bins and frames");
    }
    // Over many draws both kinds of mask appear.
    tch::manual_seed(3);
    let many = SpecAugment::LD.apply(&Tensor::ones([16, 80, 3000], (Kind::Float, Device::Cpu)), &[3000; 16]);
    assert!(many.eq(0.0).any().int64_value(&[]) == 1);
}

const HF_LOSS: &str = r#"
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import WhisperForConditionalGeneration
hub, io, out = sys.argv[1:4]
t = load_file(io)
model = WhisperForConditionalGeneration.from_pretrained(hub)
model.train()
r = model(input_features=t["mel"], decoder_input_ids=t["tokens"], labels=t["labels"])
r.loss.backward()
p = dict(model.named_parameters())
save_file({
    "loss": r.loss.detach().reshape(1),
    "g_fc2": p["model.decoder.layers.0.fc2.weight"].grad.contiguous(),
    "g_conv1": p["model.encoder.conv1.weight"].grad.contiguous(),
    "g_embed": p["model.decoder.embed_tokens.weight"].grad.contiguous(),
}, out)
"#;

fn read(path: &Path, name: &str) -> Result<Tensor> {
    Tensor::read_safetensors(path)?
        .into_iter()
        .find_map(|(n, t)| (n == name).then_some(t))
        .with_context(|| format!("{name} not in {}", path.display()))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// transformers computes `CrossEntropyLoss()(logits, labels)` over the same decoder input when `labels` and
/// `decoder_input_ids` are both given: our batch fed to it must give our loss and our gradients.
#[test]
fn loss_and_gradients_match_transformers() -> Result<()> {
    let files = resolve_whisper("whisper-base")?;
    let tok = WhisperTokenizer::from_file(&files.tokenizer)?;
    let mut vs = VarStore::new(Device::Cpu);
    let model = load_whisper(&mut vs, &files)?;
    let clips = labelled_clips(&librivox_examples(), Path::new("m.jsonl"), &tok, &config(Some("en")))?;
    let b = batch(clips)?;
    let tmp = tempfile::tempdir()?;
    let hub = tmp.path().join("hub");
    save_whisper_hub(&model, &vs, &hub, &files.tokenizer)?;
    let io = tmp.path().join("io.safetensors");
    let out = tmp.path().join("out.safetensors");
    Tensor::write_safetensors(&[("mel", &b.mel), ("tokens", &b.tokens), ("labels", &b.labels)], &io)?;
    let s = |p: &PathBuf| p.to_str().expect("UTF-8 path").to_string();
    run_python(HF_LOSS, &[&s(&hub), &s(&io), &s(&out)])?;

    let mut task =
        WhisperTask::new(vs, model, tok, files.tokenizer.clone(), SpeechTaskKind::Transcribe, false, SpeechSaver::Hub);
    let loss = task.loss(&b, true)?;
    loss.backward();
    let expected = read(&out, "loss")?.double_value(&[0]);
    let got = loss.double_value(&[]);
    println!("loss: suite {got:.7}, transformers {expected:.7}, |Δ| {:.2e}", (got - expected).abs());
    assert!((got - expected).abs() < 1e-5, "loss {got} vs {expected}");
    let vars = task.vs.variables();
    for (ours, theirs, tol) in [
        ("model.decoder.layers.0.fc2.weight", "g_fc2", 1e-5),
        ("model.encoder.conv1.weight", "g_conv1", 1e-5),
        ("model.decoder.embed_tokens.weight", "g_embed", 1e-5),
    ] {
        let g = vars[ours].grad();
        let r = read(&out, theirs)?;
        let d = max_abs_diff(&g, &r);
        let scale = r.abs().max().double_value(&[]);
        println!("grad {ours}: max |Δ| {d:.2e} (max |g| {scale:.2e})");
        assert!(d <= tol * scale.max(1.0), "{ours}: gradient differs by {d}");
    }
    Ok(())
}
