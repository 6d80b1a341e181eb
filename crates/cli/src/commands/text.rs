//! The text job: prepare data and model, train, then write the evaluation report of the best model; and text
//! evaluation and prediction from a run folder.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use suite_core::data::{DataLoader, LoaderConfig};
use suite_core::device::{parse_device, seed_torch};
use suite_core::metrics::Metrics;
use suite_core::runs::{model_dir, plot_confusion, summary_table, RunDir};
use suite_core::train::{FitObserver, FitSummary, TrainModel, Trainer};
use suite_text::data::{
    read_classify_checked, read_ner_checked, read_squad, ClassifyColumns, ClassifyDataset, LabelSet, NerDataset,
    QaDataset, TextTokenizer,
};
use suite_text::metrics::{Mode, Scheme};
use suite_text::predict::{TextInput, TextPrediction, TextPredictor};
use suite_text::task::{
    classify_splits, default_metric, gold_answers, load_sft_eval, load_trained, ner_splits, prepare, qa_splits,
    span_settings, HubSaver, NerEval, QaEval, SequenceReport, SequenceTask, SftTask, SpanTask, TextConfig, TextData,
    TextJob, TextTask, TextTaskKind,
};

use crate::args::{EvalArgs, PredictArgs};
use crate::job::JobFile;

/// Trains the job into `out` (a new run, or an existing one with `resume`).
pub fn finetune(mut job: JobFile, out: PathBuf, resume: bool, observers: Vec<Box<dyn FitObserver>>) -> Result<()> {
    let tcfg = job.text.clone().context("the job has no [text] table")?;
    if job.train.metric == "auto" {
        job.train.metric = default_metric(&tcfg).into();
    }
    job.train.validate()?;
    let device = parse_device(&job.train.device)?;
    suite_core::device::set_threads(job.train.threads);
    seed_torch(job.train.seed);
    // The run folder appears only once the job is known to be valid.
    let mut prepared = prepare(&tcfg, &job.peft, &job.train, device, resume)?;
    let (run, main) = super::finetune::open_run(&out, resume, &job)?;
    if main {
        write_job_notes(&run, &prepared, &tcfg)?;
    }
    let trainer =
        Trainer::new(job.train.clone(), run)?.with_observers(observers).with_group_rules(prepared.rules.clone());
    let summary = match (&mut prepared.task, &prepared.data) {
        (TextTask::Sequence(t), TextData::Classify { train, val }) => trainer.fit(t, train, Some(val), resume)?,
        (TextTask::Sequence(t), TextData::Ner { train, val }) => trainer.fit(t, train, Some(val), resume)?,
        (TextTask::Span(t), TextData::Qa { train, val }) => trainer.fit(t, train, Some(val), resume)?,
        (TextTask::Sft(t), TextData::Sft { train, val }) => trainer.fit(&mut **t, train, Some(val), resume)?,
        _ => bail!("internal error: task and data of different kinds"),
    };
    if !main {
        return Ok(());
    }
    report(trainer.run(), &mut prepared, &summary)
}

fn write_job_notes(run: &RunDir, job: &TextJob, cfg: &TextConfig) -> Result<()> {
    let mut notes = format!(
        "task: {:?}\nmodel: {} ({})\nexamples: {} training, {} validation\n",
        cfg.task,
        cfg.model,
        job.files.dir.display(),
        job.sizes.0,
        job.sizes.1
    );
    if let Some(r) = &job.load_report {
        notes.push_str(&format!("weight load: {r}\n"));
        eprintln!("weights from {}: {r}", job.files.dir.display());
    }
    if let Some(p) = &job.peft {
        notes.push_str(&format!("peft: {}\n", p.summary_line()));
    }
    for line in &job.notes {
        notes.push_str(line);
        notes.push('\n');
    }
    eprintln!("{} training and {} validation examples", job.sizes.0, job.sizes.1);
    suite_core::runs::atomic_write(&run.root().join("report.txt"), notes.as_bytes())
}

/// Reloads the best model into the job's task, evaluates it on the validation data and writes `eval/`.
fn report(run: &RunDir, job: &mut TextJob, summary: &FitSummary) -> Result<()> {
    let best = run.best_dir();
    let dir = run.root().join("eval");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let base_sum = job.peft.as_ref().map(|p| p.base_checksum.clone());
    // The best model goes back into the job's own (adapted) model, so evaluation sees exactly what was saved.
    let reload = |vs: &mut tch::nn::VarStore| -> Result<()> {
        match &base_sum {
            Some(sum) => suite_text::task::load_text_adapter(vs, &best, None, sum),
            None => suite_core::weights::load_safetensors(
                vs,
                &[best.join("model.safetensors")],
                &suite_core::weights::LoadOptions::strict(),
            )
            .map(|_| ()),
        }
    };
    let metrics = match (&mut job.task, &job.data) {
        (TextTask::Sequence(t), TextData::Classify { val, .. }) => {
            reload(&mut t.vs)?;
            let m = evaluate(t, val)?;
            write_sequence_report(&dir, t, &m)?;
            m
        }
        (TextTask::Sequence(t), TextData::Ner { val, .. }) => {
            reload(&mut t.vs)?;
            let m = evaluate(t, val)?;
            write_sequence_report(&dir, t, &m)?;
            m
        }
        (TextTask::Span(t), TextData::Qa { val, .. }) => {
            reload(&mut t.vs)?;
            let m = evaluate(t, val)?;
            write_qa_report(&dir, t, &m)?;
            m
        }
        (TextTask::Sft(t), TextData::Sft { val, .. }) => {
            // The task's saver knows the layout it wrote (GPT-2's transposed Conv1D weights, adapters).
            t.reload_saved(&best)?;
            let m = evaluate(&mut **t, val)?;
            write_sft_report(&dir, t, &m)?;
            m
        }
        _ => bail!("internal error: task and data of different kinds"),
    };
    let mut rows = super::report::summary_rows(run, summary, &metrics);
    if let Some(p) = &job.peft {
        rows.push(("peft".into(), p.summary_line()));
        let size = std::fs::metadata(best.join(suite_text::task::ADAPTER_FILE)).map(|m| m.len()).unwrap_or(0);
        rows.push(("adapter file".into(), format!("{:.2} MB", size as f64 / 1e6)));
    }
    rows.push(("report".into(), dir.display().to_string()));
    rows.push(("curves".into(), run.curves_path().display().to_string()));
    println!("{}", summary_table(&rows));
    Ok(())
}

fn evaluate<M: TrainModel, D: suite_core::data::Dataset<Batch = M::Batch>>(
    task: &mut M,
    loader: &DataLoader<D>,
) -> Result<Metrics> {
    let mut it = loader.iter_epoch(0, 0);
    tch::no_grad(|| task.evaluate(&mut it))
}

fn write_metrics(dir: &Path, metrics: &Metrics) -> Result<()> {
    suite_core::runs::atomic_write(&dir.join("metrics.json"), serde_json::to_string_pretty(metrics)?.as_bytes())
}

/// Classification: confusion matrix (CSV + PNG) and per-class scores; NER: entity scores per type.
fn write_sequence_report(dir: &Path, task: &SequenceTask, metrics: &Metrics) -> Result<()> {
    write_metrics(dir, metrics)?;
    match &task.last_report {
        Some(SequenceReport::Classes(report)) => {
            report.write_confusion_csv(&dir.join("confusion.csv"))?;
            plot_confusion(&report.confusion, &task.labels.names, &dir.join("confusion.png"))?;
            let mut per_class = String::from("class,precision,recall,f1,support\n");
            for (name, s) in task.labels.names.iter().zip(report.per_class()) {
                per_class.push_str(&format!("{name},{:.6},{:.6},{:.6},{}\n", s.precision, s.recall, s.f1, s.support));
            }
            suite_core::runs::atomic_write(&dir.join("per_class.csv"), per_class.as_bytes())?;
        }
        Some(SequenceReport::Entities { report, truth, pred }) => {
            let mut per_type = String::from("type,precision,recall,f1,support\n");
            for (name, s) in &report.per_type {
                per_type.push_str(&format!("{name},{:.6},{:.6},{:.6},{}\n", s.precision, s.recall, s.f1, s.support));
            }
            suite_core::runs::atomic_write(&dir.join("per_type.csv"), per_type.as_bytes())?;
            let mut lines = String::new();
            for (t, p) in truth.iter().zip(pred) {
                lines.push_str(&serde_json::json!({"gold": t, "pred": p}).to_string());
                lines.push('\n');
            }
            suite_core::runs::atomic_write(&dir.join("predictions.jsonl"), lines.as_bytes())?;
        }
        _ => {}
    }
    Ok(())
}

fn write_qa_report(dir: &Path, task: &SpanTask, metrics: &Metrics) -> Result<()> {
    write_metrics(dir, metrics)?;
    // The official SQuAD evaluation scripts read {id: answer}.
    let preds: serde_json::Map<String, serde_json::Value> =
        task.last_predictions.iter().map(|p| (p.id.clone(), serde_json::Value::String(p.text.clone()))).collect();
    suite_core::runs::atomic_write(&dir.join("predictions.json"), serde_json::to_string_pretty(&preds)?.as_bytes())
}

/// SFT: the metrics and each held-out prompt's reference and greedy answer.
fn write_sft_report(dir: &Path, task: &SftTask, metrics: &Metrics) -> Result<()> {
    write_metrics(dir, metrics)?;
    let mut lines = String::new();
    for g in &task.last_generations {
        lines.push_str(&serde_json::to_string(g)?);
        lines.push('\n');
    }
    suite_core::runs::atomic_write(&dir.join("generations.jsonl"), lines.as_bytes())
}

/// The run's recorded job, with its `[text]` table.
fn text_job(run: &Path) -> Result<(JobFile, TextConfig)> {
    let job: JobFile = suite_core::config::load_toml(&run.join("config.toml"))
        .with_context(|| format!("--run {}: not a run folder", run.display()))?;
    let cfg = job.text.clone().context("not a text run")?;
    Ok((job, cfg))
}

fn loader_config(batch_size: usize) -> LoaderConfig {
    LoaderConfig { batch_size, workers: 0, ..LoaderConfig::default() }
}

/// `suite eval` of a text run: the run's validation data, or `data`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let (job, mut cfg) = text_job(&args.run)?;
    let device = parse_device(&args.device)?;
    let dir = model_dir(&args.run, &args.which)?;
    if cfg.task == TextTaskKind::Sft {
        if args.precision == crate::args::InferPrecision::Int8 {
            bail!("--precision int8 is not available for language models (SFT runs) yet");
        }
        if let Some(n) = args.eval_generate {
            cfg.eval_generate = n;
        }
        let (mut task, data) =
            load_sft_eval(&cfg, &dir, args.data.as_deref(), job.train.seed, args.batch_size, device)?;
        let metrics = evaluate(&mut task, &data)?;
        for (k, v) in &metrics {
            println!("{k:>16}  {v:.4}");
        }
        return Ok(());
    }
    if args.eval_generate.is_some() {
        bail!("--eval-generate applies to SFT runs; {} is a {:?} run", args.run.display(), cfg.task);
    }
    let (vs, mut model, labels, multi_label) = load_trained(&dir, cfg.task, device)?;
    args.precision.apply(device, || {
        suite_core::quant::quantize_dynamic(&mut model, suite_core::quant::WeightScheme::PerChannel)
    })?;
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let lc = loader_config(args.batch_size);
    let metrics = match cfg.task {
        TextTaskKind::Classify => {
            let labels = LabelSet::from_names(labels);
            let examples = match &args.data {
                Some(d) => read_classify_checked(d, &columns(&cfg), &labels)?,
                None => classify_splits(&cfg, job.train.seed)?.1,
            };
            let ds = Arc::new(ClassifyDataset::new(&examples, &tok, Some(&labels), cfg.max_len, multi_label)?);
            let mut task = sequence_task(vs, model, TextTaskKind::Classify, labels, multi_label, &dir, None);
            evaluate(&mut task, &DataLoader::sequential(ds, lc))?
        }
        TextTaskKind::Ner => {
            let labels = LabelSet::from_names(labels);
            let sents = match &args.data {
                Some(d) => read_ner_checked(d, &labels)?,
                None => ner_splits(&cfg, job.train.seed)?.1,
            };
            let ds = Arc::new(NerDataset::new(&sents, &tok, Some(&labels), cfg.max_len, cfg.subword_labels.into())?);
            let ev = NerEval { dataset: ds.clone(), tags: sents.iter().map(|s| s.tags.clone()).collect() };
            let mut task = sequence_task(vs, model, TextTaskKind::Ner, labels, false, &dir, Some(ev));
            if cfg.strict {
                let scheme = suite_text::data::detect_scheme(&sents)?;
                task.ner_mode = (Mode::Strict, suite_text::task::seqeval_scheme(scheme));
            }
            evaluate(&mut task, &DataLoader::sequential(ds, lc))?
        }
        TextTaskKind::Qa => {
            let examples = match &args.data {
                Some(d) => read_squad(d)?,
                None => qa_splits(&cfg, job.train.seed)?.1,
            };
            let ds = Arc::new(QaDataset::new(&examples, &tok, cfg.max_len, cfg.doc_stride)?);
            let mut task = SpanTask {
                vs,
                model,
                settings: span_settings(&cfg),
                eval: Some(QaEval { dataset: ds.clone(), gold: gold_answers(&examples) }),
                tokenizer_dir: dir.clone(),
                saver: Box::new(HubSaver),
                last_predictions: Vec::new(),
            };
            evaluate(&mut task, &DataLoader::sequential(ds, lc))?
        }
        TextTaskKind::Sft => unreachable!("evaluated above"),
    };
    for (k, v) in &metrics {
        println!("{k:>16}  {v:.4}");
    }
    Ok(())
}

fn columns(cfg: &TextConfig) -> ClassifyColumns {
    ClassifyColumns {
        text: cfg.columns.text.clone(),
        text_pair: cfg.columns.text_pair.clone(),
        label: cfg.columns.label.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn sequence_task(
    vs: tch::nn::VarStore,
    model: suite_text::models::TextModel,
    kind: TextTaskKind,
    labels: LabelSet,
    multi_label: bool,
    dir: &Path,
    eval_ner: Option<NerEval>,
) -> SequenceTask {
    SequenceTask {
        vs,
        model,
        kind,
        labels,
        multi_label,
        label_smoothing: 0.0,
        ner_mode: (Mode::Default, Scheme::Iob2),
        eval_ner,
        tokenizer_dir: dir.to_path_buf(),
        saver: Box::new(HubSaver),
        last_report: None,
    }
}

/// Inputs per forward pass: bounds memory on long files (the batch is padded to its longest input).
const PREDICT_BATCH: usize = 32;

/// Reads lines (plain text) or JSONL objects (`text`/`text_pair`, `tokens`, `question`/`context`, see
/// [`TextInput::from_json`]) from a file or stdin: the source's name, and each input with its line number.
pub(crate) fn read_inputs(path: Option<&Path>) -> Result<(String, Vec<usize>, Vec<TextInput>)> {
    let (name, reader): (String, Box<dyn BufRead>) = match path {
        None => ("<stdin>".into(), Box::new(std::io::BufReader::new(std::io::stdin()))),
        Some(p) if p.as_os_str() == "-" => ("<stdin>".into(), Box::new(std::io::BufReader::new(std::io::stdin()))),
        Some(p) => (
            p.display().to_string(),
            Box::new(std::io::BufReader::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            )),
        ),
    };
    let (mut lines, mut inputs) = (Vec::new(), Vec::new());
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i + 1;
        let bytes = line.with_context(|| format!("{name}: read error at line {line_no}"))?;
        let line = String::from_utf8(bytes)
            .map_err(|e| anyhow!("{name}, line {line_no}: not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let input = if line.trim_start().starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| anyhow!("{name}, line {line_no}: not a JSON object: {e}"))?;
            TextInput::from_json(&v).map_err(|e| anyhow!("{name}, line {line_no}: {e:#}"))?
        } else {
            TextInput::text(line)
        };
        lines.push(line_no);
        inputs.push(input);
    }
    if inputs.is_empty() {
        bail!("{name}: no input (empty)");
    }
    Ok((name, lines, inputs))
}

/// One `--json` line: the input's line number and its prediction.
#[derive(Serialize)]
struct Line<'a> {
    line: usize,
    #[serde(flatten)]
    prediction: &'a TextPrediction,
}

/// `suite predict text --run R [FILE|-]`: reads the inputs, then answers them through [`TextPredictor`] (the API
/// `suite serve` answers with), [`PREDICT_BATCH`] at a time.
pub fn predict(args: &PredictArgs) -> Result<()> {
    if args.inputs.len() > 1 {
        bail!("suite predict text reads one file (or stdin); got {} inputs", args.inputs.len());
    }
    let device = parse_device(&args.device)?;
    let mut predictor = TextPredictor::load_run(&args.run, &args.which, device)?;
    args.precision.apply(device, || predictor.quantize_int8())?;
    let (name, lines, inputs) = read_inputs(args.inputs.first().map(PathBuf::as_path))?;
    // Every input is checked before any is answered, so a bad line stops the job before it prints anything.
    for (line, input) in lines.iter().zip(&inputs) {
        predictor.check(input).map_err(|e| anyhow!("{name}, line {line}: {e:#}"))?;
    }
    for (lines, inputs) in lines.chunks(PREDICT_BATCH).zip(inputs.chunks(PREDICT_BATCH)) {
        for (&line, prediction) in lines.iter().zip(&predictor.predict(inputs, args.top_k)?) {
            if args.json {
                println!("{}", serde_json::to_string(&Line { line, prediction })?);
            } else {
                println!("{line}\t{}", plain(prediction));
            }
        }
    }
    Ok(())
}

/// The plain-text form of a prediction (after the line number and a tab).
fn plain(prediction: &TextPrediction) -> String {
    match prediction {
        TextPrediction::Labels { top } => {
            top.iter().map(|s| format!("{} {:.1}%", s.label, s.prob * 100.0)).collect::<Vec<_>>().join("  ")
        }
        TextPrediction::Entities { entities, .. } if entities.is_empty() => "(no entities)".into(),
        TextPrediction::Entities { entities, .. } => {
            entities.iter().map(|e| format!("{} [{}]", e.text, e.kind)).collect::<Vec<_>>().join("  ")
        }
        TextPrediction::Answer { answer, score, .. } => format!("{answer}\t{score:.3}"),
    }
}
