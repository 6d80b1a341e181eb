//! The CTranslate2 reader and the model against transformers 5.23.0 on the real whisper-base weights (the offline
//! asset), run in suite's pinned Python environment. Tensors travel as safetensors files in a temporary folder.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use suite_core::python::run_python;
use tch::{nn, Device, Kind, Tensor};

use super::*;
use crate::decode::{detect_language, transcribe_batch, DecodeOptions};
use crate::tokenizer::{Task, WhisperTokenizer};

const JOINED_SHA256: &str = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

fn asset() -> (Vec<PathBuf>, PathBuf) {
    offline_whisper_base()
        .expect("whisper-base asset readable")
        .expect("the whisper-base asset is unpacked (scripts/setup.sh)")
}

pub(crate) fn librivox_dir() -> PathBuf {
    suite_core::cache::asset("pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox")
}

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

#[test]
fn joined_parts_are_the_published_model_bin() -> Result<()> {
    let (parts, _) = asset();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in &parts {
        let mut f = std::fs::File::open(p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, JOINED_SHA256);
    assert_eq!(ct2_variable_count(&parts)?, 212);
    Ok(())
}

#[test]
fn derived_config_is_openai_whisper_base() -> Result<()> {
    let files = resolve_whisper("whisper-base")?;
    assert!(matches!(files.weights, WhisperWeights::Ct2(ref p) if p.len() == 2));
    let c = &files.config;
    let dims = (
        c.vocab_size,
        c.num_mel_bins,
        c.d_model,
        (c.encoder_layers, c.encoder_attention_heads, c.encoder_ffn_dim),
        (c.decoder_layers, c.decoder_attention_heads, c.decoder_ffn_dim),
        (c.max_source_positions, c.max_target_positions),
    );
    assert_eq!(dims, (51865, 80, 512, (6, 8, 2048), (6, 8, 2048), (1500, 448)));
    let ids = (c.decoder_start_token_id, c.eos_token_id, c.bos_token_id, c.pad_token_id);
    assert_eq!(ids, (50258, 50257, 50257, 50257));
    assert_eq!(c.begin_suppress_tokens, [220, 50257]);
    assert_eq!(c.suppress_tokens.len(), 88);
    assert_eq!(c.suppress_tokens[..4], [1, 2, 7, 8]);
    // Round trip through JSON keeps everything, unknown fields included.
    let back = WhisperConfig::from_json_str(&c.to_json().to_string())?;
    assert_eq!(&back, c);
    Ok(())
}

#[test]
fn reader_errors_name_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"PK\x03\x04 definitely not ctranslate2")?;
    let err = format!("{:#}", read_ct2_model(std::slice::from_ref(&junk)).unwrap_err());
    assert!(err.contains("junk.bin") && err.contains("not a CTranslate2 model"), "{err}");

    // A valid header of another spec.
    let other = dir.path().join("other.bin");
    let mut bytes = 6u32.to_le_bytes().to_vec();
    let spec = b"TransformerSpec\0";
    bytes.extend((spec.len() as u16).to_le_bytes());
    bytes.extend(spec);
    bytes.extend(1u32.to_le_bytes());
    std::fs::write(&other, &bytes)?;
    let err = format!("{:#}", read_ct2_model(&[other]).unwrap_err());
    assert!(err.contains("other.bin") && err.contains("TransformerSpec") && err.contains("WhisperSpec"), "{err}");

    // Part 1 alone: cut in the middle of a variable.
    let (parts, _) = asset();
    let err = format!("{:#}", read_ct2_model(&parts[..1]).unwrap_err());
    assert!(err.contains("model.bin.part1") && err.contains("truncated"), "{err}");
    // Parts in the wrong order are not a model either.
    let err = format!("{:#}", read_ct2_model(&[parts[1].clone(), parts[0].clone()]).unwrap_err());
    assert!(err.contains("model.bin.part2"), "{err}");
    Ok(())
}

#[test]
fn unknown_language_is_a_clear_error() -> Result<()> {
    let (_, dir) = asset();
    let tok = WhisperTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let err = tok.prompt("xx", Task::Transcribe).unwrap_err().to_string();
    assert!(err.starts_with("\"xx\" is not a Whisper language; known: en, zh, de"), "{err}");
    assert_eq!(tok.prompt("EN", Task::Transcribe)?, [50258, 50259, 50359, 50363]);
    assert_eq!(tok.prompt("de", Task::Translate)?, [50258, 50261, 50358, 50363]);
    assert_eq!(tok.language_tokens().len(), 99);
    let ids = tok.encode_text("Hello world")?;
    assert_eq!(ids, tok.encode_text(" Hello world")?);
    assert_eq!(tok.decode_text(&[&[tok.sot(), 50259][..], &ids, &[tok.eot(), 50400]].concat())?, " Hello world");
    Ok(())
}

/// Exports the converted model with `save_whisper_hub`, loads it in transformers (strict), and computes the
/// reference: features of a LibriVox file, encoder states, teacher-forced logits, greedy and beam generations.
const TRANSFORMERS_REFERENCE: &str = r#"
import sys, wave, torch, numpy as np
from safetensors.torch import save_file, load_file
from transformers import WhisperForConditionalGeneration, WhisperFeatureExtractor
hub, wav, out = sys.argv[1:4]
model, info = WhisperForConditionalGeneration.from_pretrained(hub, output_loading_info=True)
bad = {k: v for k, v in info.items() if v}
assert not bad, bad
assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
sd = load_file(hub + "/model.safetensors")
sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
WhisperForConditionalGeneration(model.config).load_state_dict(sd, strict=True)
model.eval()
w = wave.open(wav)
assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
fe = WhisperFeatureExtractor(feature_size=80)
feats = fe(x, sampling_rate=16000, return_tensors="pt").input_features
with torch.no_grad():
    enc = model.model.encoder(feats).last_hidden_state
    greedy = model.generate(feats, language="en", task="transcribe", num_beams=1, do_sample=False, max_new_tokens=120)
    beam = model.generate(feats, language="en", task="transcribe", num_beams=4, do_sample=False, max_new_tokens=120)
    g = model.generation_config
    prompt = [g.decoder_start_token_id, g.lang_to_id["<|en|>"], g.task_to_id["transcribe"], g.no_timestamps_token_id]
    # generate returns the new tokens only (transformers 5); the teacher-forced input is the prompt plus six.
    text = [t for t in greedy[0].tolist() if t < g.eos_token_id]
    tokens = torch.tensor([prompt + text[:6]])
    logits = model(encoder_outputs=(enc,), decoder_input_ids=tokens).logits
save_file({"features": feats.contiguous(), "encoder": enc.contiguous(), "tokens": tokens.contiguous(),
           "logits": logits.contiguous(), "greedy": greedy.contiguous(), "beam": beam.contiguous()}, out)
"#;

#[test]
fn whisper_base_matches_transformers() -> Result<()> {
    let files = resolve_whisper("whisper-base")?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = load_whisper(&mut vs, &files)?;
    let tok = WhisperTokenizer::from_file(&files.tokenizer)?;
    let tmp = tempfile::tempdir()?;
    let hub = tmp.path().join("hub");
    save_whisper_hub(&model, &vs, &hub, &files.tokenizer)?;
    let io = tmp.path().join("io.safetensors");
    let wav = librivox_dir().join("sense_and_sensibility_01_austen_64kb-0870.wav");
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    run_python(TRANSFORMERS_REFERENCE, &[&s(&hub), &s(&wav), &s(&io)])?;

    let feats = read(&io, "features")?;
    tch::no_grad(|| -> Result<()> {
        let enc = model.encode(&feats, false);
        let d = max_abs_diff(&enc, &read(&io, "encoder")?);
        println!("encoder states: max |Δ| {d:.3e}");
        ensure!(d < 1e-3, "encoder states differ by {d}");

        let tokens = read(&io, "tokens")?;
        let expected = read(&io, "logits")?;
        let logits = model.decode(&tokens, &enc, false);
        let d = max_abs_diff(&logits, &expected);
        println!("teacher-forced logits ({} tokens): max |Δ| {d:.3e}", tokens.size()[1]);
        ensure!(d < 1e-3, "decoder logits differ by {d}");

        // The cached path: the prompt in one step, then one token at a time.
        let mut cache = KvCache::new();
        let mut worst: f64 = 0.0;
        let t = tokens.size()[1];
        let first = model.decoder_step(&tokens.narrow(1, 0, 4), &enc, &mut cache);
        worst = worst.max(max_abs_diff(&first, &expected.select(1, 3)));
        for i in 4..t {
            let step = model.decoder_step(&tokens.narrow(1, i, 1), &enc, &mut cache);
            worst = worst.max(max_abs_diff(&step, &expected.select(1, i)));
        }
        println!("cached decoder steps: max |Δ| {worst:.3e}");
        ensure!(worst < 1e-3, "cached decoding differs by {worst}");

        let lang = detect_language(&model, &tok, &enc)?;
        println!("detected language: {lang:?}");
        ensure!(lang[0].0 == "en", "detected {:?}", lang[0]);
        Ok(())
    })?;

    let text_tokens = |t: &Tensor| -> Vec<i64> {
        Vec::<i64>::try_from(t.flatten(0, -1)).unwrap().into_iter().filter(|&i| i < tok.eot()).collect()
    };
    let greedy_ref = read(&io, "greedy")?;
    let prompt: Vec<i64> = Vec::<i64>::try_from(read(&io, "tokens")?.narrow(1, 0, 4).flatten(0, -1))?;
    assert_eq!(prompt, tok.prompt("en", Task::Transcribe)?, "transformers' prompt");
    let opts = DecodeOptions { language: Some("en".into()), max_new_tokens: 120, ..Default::default() };
    let greedy = transcribe_batch(&model, &tok, &feats, &opts)?.remove(0);
    println!("greedy: {:?} (avg logprob {:.3})", greedy.text, greedy.avg_logprob);
    assert_eq!(greedy.tokens, text_tokens(&greedy_ref), "greedy token ids");

    let beam_ref = tok.decode_text(&text_tokens(&read(&io, "beam")?))?;
    let beam = transcribe_batch(&model, &tok, &feats, &DecodeOptions { beam_size: 4, ..opts })?.remove(0);
    println!("beam 4: {:?}; transformers: {:?}", beam.text, beam_ref.trim());
    assert_eq!(beam.text, beam_ref.trim(), "beam-search text");
    Ok(())
}

/// A small random model: the cached path with beams sharing one encoder state, and a reorder, equals the
/// teacher-forced decoder on the reordered sequences.
#[test]
fn cached_beams_equal_teacher_forcing() -> Result<()> {
    tch::manual_seed(0);
    let config = WhisperConfig::from_json_str(
        r#"{"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
            "decoder_attention_heads": 4, "encoder_ffn_dim": 96, "decoder_ffn_dim": 96, "vocab_size": 300,
            "max_source_positions": 20, "max_target_positions": 16, "decoder_start_token_id": 1,
            "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "begin_suppress_tokens": [0],
            "num_mel_bins": 8}"#,
    )?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Whisper::new(&vs.root(), &config)?;
    let mel = Tensor::randn([2, 8, 40], (Kind::Float, Device::Cpu));
    tch::no_grad(|| -> Result<()> {
        let enc = model.encode(&mel, false);
        // 2 audio items × 3 beams; rows 0..3 belong to item 0, rows 3..6 to item 1.
        let seqs = Tensor::randint(300, [6, 5], (Kind::Int64, Device::Cpu));
        let mut cache = KvCache::new();
        let _ = model.decoder_step(&seqs.narrow(1, 0, 3), &enc, &mut cache);
        let order = Tensor::from_slice(&[2i64, 2, 0, 4, 3, 3]);
        cache.reorder(&order);
        let seqs = Tensor::cat(&[seqs.narrow(1, 0, 3).index_select(0, &order), seqs.narrow(1, 3, 2)], 1);
        let last = model.decoder_step(&seqs.narrow(1, 3, 2), &enc, &mut cache);
        let enc_rows = enc.repeat_interleave_self_int(3, Some(0), None::<i64>);
        let full = model.decode(&seqs, &enc_rows, false).select(1, 4);
        let d = max_abs_diff(&last, &full);
        ensure!(d < 1e-5, "cached beams differ from teacher forcing by {d}");
        Ok(())
    })
}
