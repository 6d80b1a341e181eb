//! The speech job (Whisper fine-tuning), `suite transcribe`, and speech evaluation from a run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use suite_core::data::{DataLoader, Dataset, LoaderConfig};
use suite_core::device::{parse_device, seed_torch};
use suite_core::metrics::Metrics;
use suite_core::runs::{atomic_write, summary_table, RunDir};
use suite_core::train::{FitObserver, FitSummary, TrainModel, Trainer};
use suite_speech::audio::{load_audio, LogMel, MelConfig};
use suite_speech::data::read_speech_data;
use suite_speech::decode::{
    render, transcribe_long, transcribe_timed, DecodeOptions, ResponseFormat, TranscribeOptions, Transcription,
};
use suite_speech::task::{
    is_model_dir, labelled_clips, load_for_inference, load_for_inference_as, prepare, score, speech_splits,
    LoadedWhisper, Prediction, SpeechConfig, SpeechDataset, SpeechJob, SpeechSaver, SpeechTaskKind, WhisperTask,
};

use crate::args::{EvalArgs, TranscribeArgs};
use crate::job::JobFile;

/// Evaluation batch size cap: encoder attention over 1500 frames needs ~70 MB per clip and head.
const MAX_EVAL_BATCH: usize = 8;

/// Trains the job into `out` (a new run, or an existing one with `resume`).
pub fn finetune(mut job: JobFile, out: PathBuf, resume: bool, observers: Vec<Box<dyn FitObserver>>) -> Result<()> {
    let scfg = job.speech.clone().context("the job has no [speech] table")?;
    if job.train.metric == "auto" {
        job.train.metric = "wer".into();
    }
    job.train.validate()?;
    scfg.validate()?;
    let device = parse_device(&job.train.device)?;
    suite_core::device::set_threads(job.train.threads);
    seed_torch(job.train.seed);
    // The run folder appears only once the data and model are known to be valid.
    let mut prepared = prepare(&scfg, &job.peft, &job.train, device)?;
    if let Some(r) = &prepared.peft_report {
        eprintln!("{}", r.summary_line());
    }
    let (run, main) = super::finetune::open_run(&out, resume, &job)?;
    if main {
        write_job_notes(&run, &prepared, &scfg)?;
    }
    let trainer = Trainer::new(job.train.clone(), run)?.with_observers(observers);
    let summary = trainer.fit(&mut prepared.task, &prepared.train, Some(&prepared.val), resume)?;
    if !main {
        return Ok(());
    }
    report(trainer.run(), &mut prepared, &summary)
}

fn write_job_notes(run: &RunDir, job: &SpeechJob, cfg: &SpeechConfig) -> Result<()> {
    let (tr, va) = (job.train.dataset().len(), job.val.dataset().len());
    let mut notes = format!(
        "task: {:?}\nmodel: {} ({})\nexamples: {tr} training, {va} validation\nfreeze_encoder: {}\nspec_augment: {}\n",
        cfg.task,
        cfg.model,
        job.files.dir.display(),
        cfg.freeze_encoder,
        cfg.spec_augment
    );
    if let Some(r) = &job.peft_report {
        notes.push_str(&format!("peft: {}\n", r.summary_line()));
    }
    eprintln!("{tr} training and {va} validation clips");
    atomic_write(&run.root().join("report.txt"), notes.as_bytes())
}

/// The folder of a run's `best` or `final` model (hub layout or adapter).
fn speech_model_dir(run: &Path, which: &str) -> Result<PathBuf> {
    let dir = match which {
        "best" => run.join("best"),
        "final" => run.join("final"),
        _ => bail!("--which {which:?}: expected best or final"),
    };
    if !is_model_dir(&dir) {
        bail!("{}: no saved model (has the run finished an evaluation?)", dir.display());
    }
    Ok(dir)
}

/// Puts the weights of a saved model folder back into the job's task.
fn reload(task: &mut WhisperTask, dir: &Path) -> Result<()> {
    match &task.saver {
        SpeechSaver::Hub => {
            let opts = suite_core::weights::LoadOptions::strict().skip(["proj_out.weight"]);
            suite_core::weights::load_safetensors(&task.vs, &[dir.join("model.safetensors")], &opts)?;
        }
        SpeechSaver::Adapter { base_checksum, .. } => {
            let file = suite_core::peft::read_adapter(&dir.join("adapter.safetensors"))?;
            let sum = base_checksum.clone();
            suite_core::peft::load_adapter(&mut task.vs, &file, None, &sum)?;
        }
    }
    Ok(())
}

/// Reloads the best model, evaluates it on the validation data and writes `eval/`.
fn report(run: &RunDir, job: &mut SpeechJob, summary: &FitSummary) -> Result<()> {
    let best = if is_model_dir(&run.best_dir()) { run.best_dir() } else { run.final_dir() };
    reload(&mut job.task, &best).with_context(|| format!("reloading {}", best.display()))?;
    let metrics = evaluate(&mut job.task, &job.val)?;
    let dir = run.root().join("eval");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_eval(&dir, &metrics, &job.task.last_predictions)?;
    let mut rows = super::report::summary_rows(run, summary, &metrics);
    rows.push(("report".into(), dir.display().to_string()));
    rows.push(("curves".into(), run.curves_path().display().to_string()));
    println!("{}", summary_table(&rows));
    Ok(())
}

fn evaluate(task: &mut WhisperTask, loader: &DataLoader<SpeechDataset>) -> Result<Metrics> {
    let mut it = loader.iter_epoch(0, 0);
    tch::no_grad(|| task.evaluate(&mut it))
}

/// `metrics.json` and `predictions.jsonl` (audio, language, reference, hypothesis, per-clip WER).
fn write_eval(dir: &Path, metrics: &Metrics, predictions: &[Prediction]) -> Result<()> {
    atomic_write(&dir.join("metrics.json"), serde_json::to_string_pretty(metrics)?.as_bytes())?;
    let mut lines = String::new();
    for p in predictions {
        lines.push_str(&serde_json::to_string(p)?);
        lines.push('\n');
    }
    atomic_write(&dir.join("predictions.jsonl"), lines.as_bytes())
}

/// The run's recorded job, with its `[speech]` table.
fn speech_job(run: &Path) -> Result<(JobFile, SpeechConfig)> {
    let job: JobFile = suite_core::config::load_toml(&run.join("config.toml"))
        .with_context(|| format!("--run {}: not a run folder", run.display()))?;
    let cfg = job.speech.clone().context("not a speech run")?;
    Ok((job, cfg))
}

/// `load_for_inference` at `precision`: int8 quantizes layer by layer while loading (refused off the CPU).
fn load_at(spec: &str, device: tch::Device, precision: crate::args::InferPrecision) -> Result<LoadedWhisper> {
    let mut out = None;
    precision.apply(device, || {
        let (loaded, summary) = load_for_inference_as(spec, device, true)?;
        out = Some(loaded);
        Ok(summary.unwrap_or_default())
    })?;
    let r = match out {
        Some(loaded) => Ok(loaded),
        None => load_for_inference(spec, device),
    };
    suite_core::device::release_free_memory();
    r
}

fn task_for_inference(loaded: LoadedWhisper, cfg: &SpeechConfig) -> WhisperTask {
    let mut task = WhisperTask::new(
        loaded.vs,
        loaded.model,
        loaded.tokenizer,
        loaded.tokenizer_path,
        cfg.task,
        true,
        SpeechSaver::Hub,
    );
    task.eval_beam = cfg.eval_beam;
    task.normalizer = cfg.normalizer;
    task
}

/// `suite eval` of a speech run: WER, CER and loss of its `best`/`final` model (or, with `--which base`, of the
/// base model it was fine-tuned from) on its validation split (recomputed from the recorded config and seed) or on
/// `--data`; per-language WER/CER when there are several languages.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let (job, cfg) = speech_job(&args.run)?;
    let device = parse_device(&args.device)?;
    let spec = match args.which.as_str() {
        "base" => cfg.model.clone(),
        which => speech_model_dir(&args.run, which)?.display().to_string(),
    };
    let loaded = load_at(&spec, device, args.precision)?;
    eprintln!("model: {}", loaded.description);
    let clips = match &args.data {
        Some(d) => labelled_clips(&read_speech_data(d, None)?, d, &loaded.tokenizer, &cfg)?,
        None => speech_splits(&cfg, &loaded.tokenizer, job.train.seed)?.1,
    };
    let c = &loaded.model.config;
    let ds = Arc::new(SpeechDataset::new(clips, c.num_mel_bins, c.pad_token_id, cfg.task));
    let lc =
        LoaderConfig { batch_size: args.batch_size.clamp(1, MAX_EVAL_BATCH), workers: 1, ..LoaderConfig::default() };
    let mut task = task_for_inference(loaded, &cfg);
    let metrics = evaluate(&mut task, &DataLoader::sequential(ds, lc))?;
    println!("{:>16}  {}", "clips", task.last_predictions.len());
    for (k, v) in &metrics {
        println!("{k:>16}  {v:.4}");
    }
    let mut by_lang: BTreeMap<&str, Vec<&Prediction>> = BTreeMap::new();
    for p in &task.last_predictions {
        by_lang.entry(p.language.as_str()).or_default().push(p);
    }
    if by_lang.len() > 1 {
        for (lang, preds) in by_lang {
            let langs: Vec<String> = preds.iter().map(|p| p.language.clone()).collect();
            let refs: Vec<String> = preds.iter().map(|p| p.reference.clone()).collect();
            let hyps: Vec<String> = preds.iter().map(|p| p.hypothesis.clone()).collect();
            let (w, c, _) = score(task.normalizer, &langs, &refs, &hyps)?;
            println!("{:>16}  wer {w:.4}  cer {c:.4}  ({} clips)", format!("[{lang}]"), preds.len());
        }
    }
    Ok(())
}

/// What `suite transcribe --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    /// `FILE<TAB>LANGUAGE<TAB>TEXT` lines, or the text alone in a file.
    Txt,
    /// One `{"file", "language", "text", "duration_s"}` object per line, or OpenAI's `{"text"}` in a file.
    Json,
    /// One of OpenAI's subtitle or verbose formats.
    Openai(ResponseFormat),
}

impl OutputFormat {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "txt" => Self::Txt,
            "json" => Self::Json,
            "srt" => Self::Openai(ResponseFormat::Srt),
            "vtt" => Self::Openai(ResponseFormat::Vtt),
            "verbose_json" => Self::Openai(ResponseFormat::VerboseJson),
            _ => bail!("--format {name}: expected txt, json, srt, vtt or verbose_json"),
        })
    }

    /// The extension of the file written under `--output-dir`.
    fn extension(self) -> &'static str {
        match self {
            Self::Txt => "txt",
            Self::Json => "json",
            Self::Openai(ResponseFormat::Srt) => "srt",
            Self::Openai(ResponseFormat::Vtt) => "vtt",
            Self::Openai(_) => "verbose.json",
        }
    }
}

/// `--temperature`: one number starts openai-whisper's fallback ladder there (+0.2 up to 1.0, as its CLI's
/// `temperature_increment_on_fallback`); a comma-separated list is the ladder.
fn temperature_ladder(arg: &str) -> Result<Vec<f64>> {
    let values: Vec<f64> = arg
        .split(',')
        .map(|v| v.trim().parse::<f64>().ok().filter(|t| t.is_finite() && *t >= 0.0))
        .collect::<Option<_>>()
        .with_context(|| format!("--temperature {arg}: expected a number ≥ 0 or a comma-separated list of them"))?;
    if values.len() > 1 {
        return Ok(values);
    }
    Ok(TranscribeOptions::fallback_temperatures(values[0]))
}

/// `suite transcribe FILES…`: each file as openai-whisper's `transcribe()` (timestamps, seeking, temperature
/// fallback); a file that fails is reported and skipped, and the exit status says whether any failed.
pub fn transcribe(args: TranscribeArgs) -> Result<()> {
    let task: SpeechTaskKind = args.task.parse().map_err(|e: String| anyhow!("--task: {e}"))?;
    if args.beam == 0 {
        bail!("--beam 0: expected 1 (greedy) or more (beam search)");
    }
    let format = if args.json { OutputFormat::Json } else { OutputFormat::parse(&args.format)? };
    let opts = TranscribeOptions {
        language: args.language.clone(),
        task: task.into(),
        beam_size: args.beam,
        temperatures: temperature_ladder(&args.temperature)?,
        initial_prompt: args.initial_prompt.clone(),
        condition_on_previous_text: !args.no_condition_on_previous_text,
        word_timestamps: args.word_timestamps,
        ..TranscribeOptions::default()
    };
    opts.validate()?;
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--output-dir {}: cannot create it", dir.display()))?;
    }
    let device = parse_device(&args.device)?;
    let started = std::time::Instant::now();
    let spec = match (&args.run, &args.model) {
        (Some(run), _) => speech_model_dir(run, &args.which)?.display().to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => "whisper-base".to_string(),
    };
    let loaded = load_at(&spec, device, args.precision)?;
    if let Some(lang) = &args.language {
        loaded.tokenizer.prompt(lang, task.into()).with_context(|| format!("--language {lang}"))?;
    }
    let mel = LogMel::new(MelConfig::whisper(loaded.model.config.num_mel_bins));
    let several = args.files.len() > 1;
    let mut failed = 0;
    let loaded_at = std::time::Instant::now();
    for file in &args.files {
        let shown = file.display().to_string();
        let result = load_audio(file).and_then(|samples| {
            if samples.is_empty() {
                bail!("{shown}: no audio in the file (0 samples)");
            }
            let mut t = transcribe_timed(&loaded.model, &loaded.tokenizer, &mel, &[&samples], &opts)?;
            let t = t.pop().context("no transcription")?;
            match &args.output_dir {
                Some(dir) => {
                    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    let out = dir.join(format!("{stem}.{}", format.extension()));
                    let body = match format {
                        OutputFormat::Txt => render(&t, ResponseFormat::Text, opts.task),
                        OutputFormat::Json => render(&t, ResponseFormat::Json, opts.task) + "\n",
                        OutputFormat::Openai(f) => render(&t, f, opts.task),
                    };
                    atomic_write(&out, body.as_bytes())?;
                    println!("{}", out.display());
                }
                None => print!("{}", printed(&shown, &t, format, opts.task, several)),
            }
            Ok(())
        });
        if let Err(e) = result {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let msg = chain.join(": ");
            if msg.contains(&shown) {
                eprintln!("error: {msg}");
            } else {
                eprintln!("error: {shown}: {msg}");
            }
            failed += 1;
        }
    }
    if args.timings {
        let (load, compute) = ((loaded_at - started).as_secs_f64(), loaded_at.elapsed().as_secs_f64());
        eprintln!("timings: {}", serde_json::json!({"load_s": load, "compute_s": compute}));
    }
    if failed > 0 {
        bail!("{failed} of {} file(s) could not be transcribed", args.files.len());
    }
    Ok(())
}

/// A file's result on stdout: a line for txt, json and verbose_json (which gains a `"file"` field), the subtitles
/// for srt and vtt — after a `==> FILE <==` line when there are several files.
fn printed(
    shown: &str,
    t: &Transcription,
    format: OutputFormat,
    task: suite_speech::tokenizer::Task,
    several: bool,
) -> String {
    match format {
        OutputFormat::Txt => format!("{shown}\t{}\t{}\n", t.language, t.text),
        OutputFormat::Json => {
            let mut v =
                serde_json::json!({"file": shown, "language": t.language, "text": t.text, "duration_s": t.duration});
            // With --word-timestamps, every word of the file in order (segments have theirs in verbose_json).
            if t.segments.iter().any(|s| s.words.is_some()) {
                let words: Vec<_> = t.segments.iter().flat_map(|s| s.words.iter().flatten()).collect();
                v["words"] = serde_json::json!(words);
            }
            format!("{v}\n")
        }
        OutputFormat::Openai(ResponseFormat::VerboseJson) => {
            let body = render(t, ResponseFormat::VerboseJson, task);
            // The body is an object: `{"file": …,` goes in front of its fields, which keep OpenAI's order.
            format!("{{\"file\":{},{}\n", serde_json::Value::from(shown), &body[1..])
        }
        OutputFormat::Openai(f) => {
            let subtitles = render(t, f, task);
            if several {
                format!("==> {shown} <==\n{subtitles}")
            } else {
                subtitles
            }
        }
    }
}

/// The LibriVox utterances of pocketsphinx's test data (16 kHz mono WAV) with their transcripts, in file order.
fn librivox_clips() -> Result<Vec<(PathBuf, String)>> {
    let dir = suite_core::cache::asset("pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox");
    let listing = dir.join("transcription");
    let text = std::fs::read_to_string(&listing)
        .with_context(|| format!("{}: LibriVox test data not found (run scripts/setup.sh)", listing.display()))?;
    // Lines are `<s> words </s> (file-id)`.
    let mut clips = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (words, id) = line
            .rsplit_once('(')
            .with_context(|| format!("{}: line {}: expected `<s> words </s> (id)`", listing.display(), i + 1))?;
        let words = words.replace("<s>", "").replace("</s>", "");
        clips.push((dir.join(format!("{}.wav", id.trim().trim_end_matches(')'))), words.trim().to_string()));
    }
    Ok(clips)
}

/// `suite bench whisper-step`: a batch of the first two LibriVox utterances (log-mels, transcripts as labels), and
/// the paths of all five.
pub(super) fn bench_batch() -> Result<(suite_speech::task::SpeechBatch, Vec<PathBuf>)> {
    let clips = librivox_clips()?;
    let files = suite_speech::models::resolve_whisper("whisper-base")?;
    let tok = suite_speech::tokenizer::WhisperTokenizer::from_file(&files.tokenizer)?;
    let examples: Vec<suite_speech::data::SpeechExample> = clips
        .iter()
        .take(2)
        .map(|(audio, text)| suite_speech::data::SpeechExample {
            audio: audio.clone(),
            text: text.clone(),
            language: Some("en".into()),
        })
        .collect();
    let cfg = SpeechConfig::default();
    let labelled = labelled_clips(&examples, Path::new("librivox/transcription"), &tok, &cfg)?;
    let c = &files.config;
    let ds = Arc::new(SpeechDataset::new(labelled, c.num_mel_bins, c.pad_token_id, SpeechTaskKind::Transcribe));
    let loader = DataLoader::sequential(ds, LoaderConfig { batch_size: 2, workers: 0, ..LoaderConfig::default() });
    let batch = loader.iter_epoch(0, 0).next().context("no batch")??;
    Ok((batch, clips.into_iter().map(|(p, _)| p).collect()))
}

/// `suite bench whisper-step`: exports whisper-base in hub layout to `hub` (the PyTorch side loads it) and returns
/// suite's real-time factor of greedy English transcription of `wavs` (features and decoding, not file reading).
pub(super) fn bench_rtf(wavs: &[PathBuf], hub: &Path, device: tch::Device) -> Result<f64> {
    let loaded = load_for_inference("whisper-base", device)?;
    suite_speech::models::save_whisper_hub(&loaded.model, &loaded.vs, hub, &loaded.tokenizer_path)?;
    let mel = LogMel::new(MelConfig::whisper(loaded.model.config.num_mel_bins));
    let opts = DecodeOptions { language: Some("en".into()), ..DecodeOptions::default() };
    let (mut audio_s, mut compute_s) = (0.0, 0.0);
    for wav in wavs {
        let samples = load_audio(wav)?;
        audio_s += samples.len() as f64 / 16_000.0;
        let t0 = std::time::Instant::now();
        let t = tch::no_grad(|| transcribe_long(&loaded.model, &loaded.tokenizer, &samples, &mel, &opts))?;
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        compute_s += t0.elapsed().as_secs_f64();
        eprintln!("  {}: {}", wav.file_name().unwrap_or_default().to_string_lossy(), t.text);
    }
    Ok(compute_s / audio_s)
}
