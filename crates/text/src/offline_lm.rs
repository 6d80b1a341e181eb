//! `fortunes-lm`: everything the offline decoder-only recipe needs, from the Debian `fortunes` package alone (no
//! decoder-only weights are in the registries): a plain-text pretraining corpus, an instruction task held out by
//! prompt (name the category of a quotation), and a model folder without weights — a byte-level BPE tokenizer
//! trained here on the corpus, a ChatML chat template and a small Llama-shaped `config.json` — that
//! `suite finetune text --task sft --init scratch` pretrains.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::offline::FORTUNES_CATEGORIES;

/// Quotations per category in the instruction task (the smallest of the four, `love`, has about 150).
const PER_CATEGORY: usize = 150;
/// Fraction of the instruction prompts held out for the test file.
const TEST_FRACTION: f64 = 0.2;
/// Vocabulary of the trained tokenizer, special tokens included.
const VOCAB_SIZE: usize = 4096;
/// Tokens of the special vocabulary, in id order: the document separator and ChatML's turn markers.
const SPECIAL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// ChatML, as Qwen2.5 and SmolLM2 write it (without their default system prompts).
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + \
                      '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' \
                      }}{% endif %}";

/// The instruction of the held-out task.
pub const FORTUNES_INSTRUCTION: &str =
    "Which fortune category is this quotation from: computers, food, love or politics?";

/// Files written by [`fortunes_lm`].
#[derive(Debug)]
pub struct PreparedLm {
    /// Plain-text pretraining corpus (`{"text"}` JSONL), without the held-out quotations.
    pub pretrain: PathBuf,
    /// Instruction training conversations (`{"messages"}` JSONL).
    pub instruct_train: PathBuf,
    /// Held-out instruction conversations: their quotations are in no other file.
    pub instruct_test: PathBuf,
    /// The model folder without weights (config.json, tokenizer.json, tokenizer_config.json,
    /// generation_config.json).
    pub model: PathBuf,
    /// Documents in the corpus, training and test conversations.
    pub sizes: (usize, usize, usize),
    /// Parameters of the model `config.json` describes.
    pub parameters: usize,
}

/// One quotation per `%`-separated block of a fortunes file, whitespace runs collapsed to one space, at least
/// 20 characters.
fn quotations(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: not found; run `scripts/fetch_assets.sh fortunes`", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut seen = HashSet::new();
    Ok(text
        .split("\n%\n")
        .map(|q| q.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|q| q.len() >= 20 && seen.insert(q.clone()))
        .collect())
}

/// Every fortunes file of `dir` (the ones without an extension; `.dat` are indexes, `.u8` links).
fn fortune_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: not found; run `scripts/fetch_assets.sh fortunes`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none())
        .collect();
    files.sort();
    Ok(files)
}

/// Writes the `fortunes-lm` data and model folder under `out` (see the module doc).
pub fn fortunes_lm(asset_root: &Path, out: &Path, seed: u64) -> Result<PreparedLm> {
    let dir = asset_root.join("usr/share/games/fortunes");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // The instruction task: a balanced sample of the four categories, split per category.
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for cat in FORTUNES_CATEGORIES {
        let mut quotes = quotations(&dir.join(cat))?;
        quotes.retain(|q| q.len() <= 400);
        quotes.shuffle(&mut rng);
        quotes.truncate(PER_CATEGORY);
        let n_test = (quotes.len() as f64 * TEST_FRACTION).round() as usize;
        test.extend(quotes[..n_test].iter().map(|q| (q.clone(), cat)));
        train.extend(quotes[n_test..].iter().map(|q| (q.clone(), cat)));
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    let held_out: HashSet<&str> = test.iter().map(|(q, _)| q.as_str()).collect();

    // The corpus: every quotation of every file but the held-out ones.
    let mut corpus = Vec::new();
    for file in fortune_files(&dir)? {
        corpus.extend(quotations(&file)?.into_iter().filter(|q| !held_out.contains(q.as_str())));
    }
    corpus.shuffle(&mut rng);

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let pretrain = out.join("pretrain.jsonl");
    write_jsonl(&pretrain, corpus.iter().map(|q| json!({ "text": q })))?;
    let conversation = |(q, cat): &(String, &str)| {
        json!({ "messages": [
            { "role": "user", "content": format!("{FORTUNES_INSTRUCTION}\n{q}") },
            { "role": "assistant", "content": cat },
        ] })
    };
    let instruct_train = out.join("instruct_train.jsonl");
    write_jsonl(&instruct_train, train.iter().map(conversation))?;
    let instruct_test = out.join("instruct_test.jsonl");
    write_jsonl(&instruct_test, test.iter().map(conversation))?;

    let model = out.join("model");
    std::fs::create_dir_all(&model).with_context(|| format!("creating {}", model.display()))?;
    let vocab = train_tokenizer(&corpus, &model.join("tokenizer.json"))?;
    let parameters = write_model_config(&model, vocab)?;
    Ok(PreparedLm {
        pretrain,
        instruct_train,
        instruct_test,
        model,
        sizes: (corpus.len(), train.len(), test.len()),
        parameters,
    })
}

fn write_jsonl(path: &Path, rows: impl Iterator<Item = serde_json::Value>) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A byte-level BPE (GPT-2's pre-tokenizer and decoder, as Qwen2 and SmolLM2 use) trained on `corpus`, with
/// [`SPECIAL`] as ids 0, 1, 2. Returns the vocabulary size.
fn train_tokenizer(corpus: &[String], path: &Path) -> Result<usize> {
    let specials: Vec<AddedToken> = SPECIAL.iter().map(|t| AddedToken::from(*t, true)).collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(VOCAB_SIZE)
        .min_frequency(2)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.with_post_processor(Some(ByteLevel::new(false, false, true)));
    tok.train(&mut trainer, corpus.iter()).map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    tok.add_special_tokens(&specials);
    tok.save(path, false).map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(tok.get_vocab_size(true))
}

/// config.json (a ~4 M-parameter Llama: 4 layers of width 256, grouped-query attention with 2 key/value heads,
/// 256 positions, tied embeddings), tokenizer_config.json (ChatML, `<|im_end|>` ends a turn) and
/// generation_config.json. Returns the parameter count.
fn write_model_config(model: &Path, vocab: usize) -> Result<usize> {
    let (hidden, inter, layers, heads, kv_heads) = (256usize, 688usize, 4usize, 4usize, 2usize);
    let (eos, pad) = (2, 0);
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": true,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": null,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
    });
    let added: serde_json::Map<String, serde_json::Value> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = json!({ "content": t, "special": true, "lstrip": false, "rstrip": false, "normalized": false,
                            "single_word": false });
            (i.to_string(), v)
        })
        .collect();
    let tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null,
        "eos_token": SPECIAL[2],
        "pad_token": SPECIAL[0],
        "unk_token": null,
        "model_max_length": 256,
        "chat_template": CHATML,
        "added_tokens_decoder": added,
    });
    let generation = json!({ "eos_token_id": eos, "pad_token_id": pad });
    for (name, v) in
        [("config.json", config), ("tokenizer_config.json", tokenizer_config), ("generation_config.json", generation)]
    {
        let path = model.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let per_layer = hidden * (hidden + 2 * (hidden / heads * kv_heads) + hidden) + 3 * hidden * inter + 2 * hidden;
    Ok(vocab * hidden + layers * per_layer + hidden)
}
