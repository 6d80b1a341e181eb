//! Spoken-language identification from the decoder's first step, as OpenAI's `detect_language`.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::models::{KvCache, Whisper};
use crate::tokenizer::WhisperTokenizer;

/// For each audio item of `encoder_states` `[b, frames, d]`: the most likely language and its probability, from a
/// softmax over the language tokens of the logits that follow `<|startoftranscript|>`. An English-only tokenizer
/// has no language tokens and answers `("en", 1.0)`.
pub fn detect_language(model: &Whisper, tok: &WhisperTokenizer, encoder_states: &Tensor) -> Result<Vec<(String, f64)>> {
    let b = encoder_states.size()[0];
    let languages = tok.language_tokens();
    if languages.is_empty() {
        return Ok(vec![("en".to_string(), 1.0); b as usize]);
    }
    let vocab = model.config.vocab_size;
    if let Some((code, id)) = languages.iter().find(|(_, id)| *id >= vocab) {
        bail!("{}: language token <|{code}|> = {id} is outside the model's vocabulary ({vocab})", tok.path().display());
    }
    let device = encoder_states.device();
    let sot = Tensor::full([b, 1], tok.sot(), (Kind::Int64, device));
    let logits = tch::no_grad(|| model.decoder_step(&sot, encoder_states, &mut KvCache::new()));
    let ids: Vec<i64> = languages.iter().map(|(_, id)| *id).collect();
    let probs = logits.index_select(1, &Tensor::from_slice(&ids).to_device(device)).softmax(-1, Kind::Float);
    let (p, best) = probs.max_dim(-1, false);
    let p: Vec<f64> = Vec::<f64>::try_from(p.to_kind(Kind::Double).to_device(tch::Device::Cpu))?;
    let best: Vec<i64> = Vec::<i64>::try_from(best.to_device(tch::Device::Cpu))?;
    Ok(best.iter().zip(p).map(|(&i, p)| (languages[i as usize].0.clone(), p)).collect())
}
