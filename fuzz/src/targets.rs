//! The fuzz targets: each hands one input to the library function the `suite` command line calls on such a file,
//! through a file in a scratch folder where that function takes a path. An `Err` is the expected answer to a bad
//! input; only a panic, a hang or a runaway allocation is a finding.

use std::path::PathBuf;

use anyhow::Result;

/// The recipe loader of the command line (`crates/cli/src/job.rs`, a binary crate's module), compiled here as is.
#[path = "../../crates/cli/src/job.rs"]
#[allow(dead_code)]
mod job;

/// A fuzz target: its name (also its corpus and findings folder) and the call.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&Scratch, &[u8]) -> Result<()>,
}

/// A per-process scratch folder for the files the targets read.
pub struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let root = dir.path().to_path_buf();
        // A real clip for manifests to point at: the speech readers check that each audio file exists.
        std::fs::write(root.join("a.wav"), b"RIFF").unwrap();
        std::fs::create_dir_all(root.join("img")).unwrap();
        std::fs::write(root.join("img/x.png"), b"").unwrap();
        Scratch { _dir: dir, root }
    }

    /// Writes `bytes` to `name` in the scratch folder and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, bytes).expect("writing a scratch file");
        p
    }
}

/// The first byte of an input picks a variant (a file extension, a domain); the rest is the content.
fn pick<'a, T: Copy>(input: &'a [u8], options: &[T]) -> (T, &'a [u8]) {
    match input.split_first() {
        Some((b, rest)) => (options[*b as usize % options.len()], rest),
        None => (options[0], input),
    }
}

fn classify(s: &Scratch, input: &[u8]) -> Result<()> {
    let (ext, body) = pick(input, &["csv", "jsonl", "tsv"]);
    let path = s.file(&format!("data.{ext}"), body);
    let columns = suite_text::data::ClassifyColumns { text: "text".into(), text_pair: None, label: "label".into() };
    let rows = suite_text::data::read_classify(&path, &columns, true)?;
    // The validation split is checked against the labels of the training split.
    let mut names: Vec<String> = rows.iter().flat_map(|r| r.labels.iter().cloned()).collect();
    names.sort();
    names.dedup();
    let labels = suite_text::data::LabelSet::from_names(names.into_iter().skip(1).collect());
    let _ = suite_text::data::read_classify_checked(&path, &columns, &labels);
    Ok(())
}

fn conll(s: &Scratch, input: &[u8]) -> Result<()> {
    let path = s.file("train.conll", input);
    let sentences = suite_text::data::read_ner(&path)?;
    let mut tags: Vec<String> = sentences.iter().flat_map(|x| x.tags.iter().cloned()).collect();
    tags.sort();
    tags.dedup();
    let labels = suite_text::data::LabelSet::from_names(tags.into_iter().skip(1).collect());
    let _ = suite_text::data::read_ner_checked(&path, &labels);
    Ok(())
}

fn squad(s: &Scratch, input: &[u8]) -> Result<()> {
    suite_text::data::read_squad(&s.file("train.json", input)).map(drop)
}

fn speech_manifest(s: &Scratch, input: &[u8]) -> Result<()> {
    let (ext, body) = pick(input, &["jsonl", "csv", "tsv"]);
    suite_speech::data::read_speech_data(&s.file(&format!("manifest.{ext}"), body), None).map(drop)
}

fn vision_manifest(s: &Scratch, input: &[u8]) -> Result<()> {
    let (ext, body) = pick(input, &["csv", "jsonl"]);
    let path = s.file(&format!("manifest.{ext}"), body);
    let (classes, _) = suite_vision::data::load_manifest(&path, None)?;
    // The validation manifest is read against the training classes.
    let _ = suite_vision::data::load_manifest(&path, Some(&classes));
    Ok(())
}

fn image(s: &Scratch, input: &[u8]) -> Result<()> {
    // Training reads files (`decode_image`); `predict` and `serve` decode bytes under the server's limits.
    let path = s.file("x.img", input);
    let _ = suite_vision::data::decode_image(&path);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(suite_vision::predict::MAX_IMAGE_SIDE);
    limits.max_image_height = Some(suite_vision::predict::MAX_IMAGE_SIDE);
    limits.max_alloc = Some(suite_vision::predict::MAX_DECODE_BYTES);
    suite_vision::data::decode_bytes_limited(input, limits).map(drop)
}

fn audio(s: &Scratch, input: &[u8]) -> Result<()> {
    let (ext, body) = pick(input, &["wav", "flac", "mp3", "ogg", "bin"]);
    let path = s.file(&format!("clip.{ext}"), body);
    // `finetune speech` probes every clip first, then decodes and resamples to 16 kHz.
    let _ = suite_speech::audio::probe_file(&path);
    suite_speech::audio::load_audio(&path).map(drop)
}

fn safetensors(s: &Scratch, input: &[u8]) -> Result<()> {
    let path = s.file("model.safetensors", input);
    let _ = suite_core::weights::read_safetensors_metadata(&path);
    suite_core::weights::read_safetensors(&path).map(drop)
}

fn pickle(s: &Scratch, input: &[u8]) -> Result<()> {
    suite_core::weights::read_torch_pickle(s.file("model.pth", input)).map(drop)
}

fn ctranslate2(s: &Scratch, input: &[u8]) -> Result<()> {
    let dir = s.root.join("ct2");
    std::fs::create_dir_all(&dir)?;
    let files = [dir.join("model.bin")];
    std::fs::write(&files[0], input)?;
    let _ = suite_speech::models::ct2_variable_count(&files);
    suite_speech::models::read_ct2_model(&files).map(drop)
}

fn recipe(s: &Scratch, input: &[u8]) -> Result<()> {
    use crate::args::Domain;
    let (domain, body) = pick(input, &[Domain::Vision, Domain::Text, Domain::Speech]);
    let path = s.file("recipe.toml", body);
    // A recipe (`finetune --config`), then a run's saved config (`--resume`).
    let job = job::load_recipe(&path, domain)?;
    job.train.validate()?;
    let _: job::JobFile = suite_core::config::load_toml(&path)?;
    Ok(())
}

/// Every target, in the order `all` runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "classify", run: classify },
    Target { name: "conll", run: conll },
    Target { name: "squad", run: squad },
    Target { name: "speech_manifest", run: speech_manifest },
    Target { name: "vision_manifest", run: vision_manifest },
    Target { name: "image", run: image },
    Target { name: "audio", run: audio },
    Target { name: "safetensors", run: safetensors },
    Target { name: "pickle", run: pickle },
    Target { name: "ctranslate2", run: ctranslate2 },
    Target { name: "recipe", run: recipe },
];

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
