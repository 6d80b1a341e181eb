//! `suite tune DOMAIN`: a hyperparameter study. Trials are `suite finetune` child processes, each an ordinary run
//! folder under OUT/trials; the study journal OUT/study.jsonl records everything needed to resume; each trial's
//! ASHA observer ([`trial_observer`]) reports its rungs to that journal and stops the trial when it falls behind.

mod journal;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use suite_core::metrics::Metrics;
use suite_core::runs::{read_metrics, MetricRecord, RunDir};
use suite_core::train::{FitObserver, MetricMode, TrainConfig, Verdict};
use suite_tune::{Asha, Observation, Params, RungDecision, Sampler, SamplerKind, Space};

use self::journal::{budget_spent, seconds_to_first_rung, Journal, Record, Settings, Status};
use crate::args::{Domain, FinetuneArgs, TuneArgs};
use crate::job::{load_recipe, JobFile};

/// A trial as the journal knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trial {
    pub number: u64,
    pub params: Params,
    pub end: Option<End>,
    /// Rung results: (rung, evals, value, promoted).
    pub rungs: Vec<(usize, usize, Option<f64>, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct End {
    pub status: Status,
    pub objective: Option<f64>,
    pub evals: usize,
    pub seconds: f64,
}

/// The trials of a journal's records, by number.
pub(crate) fn trials(records: &[Record]) -> BTreeMap<u64, Trial> {
    let mut out: BTreeMap<u64, Trial> = BTreeMap::new();
    for r in records {
        match r {
            Record::Propose { trial, params, .. } => {
                out.entry(*trial).or_insert(Trial {
                    number: *trial,
                    params: params.clone(),
                    end: None,
                    rungs: Vec::new(),
                });
            }
            Record::Rung { trial, rung, evals, value, promoted, .. } => {
                if let Some(t) = out.get_mut(trial) {
                    if !t.rungs.iter().any(|x| x.0 == *rung) {
                        t.rungs.push((*rung, *evals, *value, *promoted));
                    }
                }
            }
            Record::End { trial, status, objective, evals, seconds, .. } => {
                if let Some(t) = out.get_mut(trial) {
                    t.end = Some(End { status: *status, objective: *objective, evals: *evals, seconds: *seconds });
                }
            }
            Record::Study(_) | Record::BudgetSpent { .. } | Record::BudgetStop { .. } => {}
        }
    }
    out
}

fn direction(s: &Settings) -> MetricMode {
    if s.direction == "min" {
        MetricMode::Min
    } else {
        MetricMode::Max
    }
}

/// Parses a duration as humantime writes it (`90s`, `30m`, `2h`, `1h30m`, `1h 30min`) or a bare number of seconds.
fn parse_budget(s: &str) -> Result<Duration> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err("a positive duration".to_string()),
        Err(_) => humantime::parse_duration(t).map_err(|e| e.to_string()),
    };
    match d {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => bail!("--budget {s:?}: expected a positive duration such as 90s, 30m, 2h or 1h30m"),
        Err(e) => bail!("--budget {s:?}: {e}; expected a duration such as 90s, 30m, 2h or 1h30m"),
    }
}

/// The default objective of a job: its selection metric, or for `auto` the task's usual one.
fn default_objective(job: &JobFile) -> String {
    let m = job.train.metric.as_str();
    if m != "auto" {
        return m.to_string();
    }
    match &job.text {
        Some(t) => match format!("{:?}", t.task).to_ascii_lowercase().as_str() {
            "classify" => "accuracy".into(),
            "ner" | "qa" => "f1".into(),
            _ => "loss".into(),
        },
        None => "loss".into(),
    }
}

/// The domain's default search space for a base job.
fn default_space(domain: Domain, job: &JobFile) -> String {
    let e = job.train.epochs.max(1);
    let epochs = if e > 1 {
        format!("epochs = {{ type = \"int\", low = {}, high = {e} }}\n", e.div_ceil(2))
    } else {
        String::new()
    };
    let common = |lr: (f64, f64), batches: &str| {
        format!(
            "[train]\nlr = {{ type = \"log_uniform\", low = {:?}, high = {:?} }}\n\
             weight_decay = {{ type = \"uniform\", low = 0.0, high = 0.1 }}\n\
             batch_size = {{ type = \"choice\", values = {batches} }}\n{epochs}\
             [train.schedule]\nwarmup_ratio = {{ type = \"uniform\", low = 0.0, high = 0.2 }}\n",
            lr.0, lr.1
        )
    };
    match domain {
        Domain::Vision => {
            common((1e-4, 1e-2), "[16, 32, 64]")
                + "[vision]\ntune = { type = \"choice\", values = [\"head\", \"last:1\", \"last:2\", \"full\"] }\n\
                   label_smoothing = { type = \"uniform\", low = 0.0, high = 0.2 }\n\
                   augment = { type = \"choice\", values = [\"none\", \"light\", \"strong\"] }\n"
        }
        Domain::Text => {
            let classify = job.text.as_ref().is_some_and(|t| format!("{:?}", t.task).eq_ignore_ascii_case("classify"));
            let mut s = common((1e-5, 5e-4), "[8, 16, 32]");
            if classify {
                s += "[text]\nlabel_smoothing = { type = \"uniform\", low = 0.0, high = 0.2 }\n";
            }
            s + "[peft]\nmethod = { type = \"choice\", values = [\"none\", \"lora\"] }\n\
                 r = { type = \"choice\", values = [4, 8, 16] }\n"
        }
        Domain::Speech => {
            common((3e-6, 1e-4), "[4, 8, 16]")
                + "[peft]\nmethod = { type = \"choice\", values = [\"none\", \"lora\"] }\n\
                   r = { type = \"choice\", values = [8, 16, 32] }\n"
        }
    }
}

/// Sets `value` at the dotted `path` of a TOML table, creating tables on the way.
fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().context("empty key")?;
    let mut t = table;
    for p in parts {
        let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().with_context(|| format!("{p} is a value, not a table"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// The recipe of a trial: the base with the trial's parameters; LoRA keys are dropped when the sampled PEFT method
/// has none.
fn trial_recipe(base: &toml::Table, params: &Params, domain: Domain) -> Result<(toml::Table, JobFile)> {
    let mut t = base.clone();
    for (k, v) in params {
        set_path(&mut t, k, v.clone()).with_context(|| format!("key {k}"))?;
    }
    if let Some(peft) = t.get_mut("peft").and_then(|p| p.as_table_mut()) {
        let method = peft.get("method").and_then(|m| m.as_str()).unwrap_or("none").to_string();
        if !matches!(method.as_str(), "lora" | "dora") {
            for k in ["r", "alpha", "dropout", "rslora", "targets"] {
                peft.remove(k);
            }
        }
    }
    let job: JobFile = t.clone().try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
    job.train.validate()?;
    job.peft.validate()?;
    let _ = domain;
    Ok((t, job))
}

/// Entry point.
pub fn run(args: TuneArgs) -> Result<()> {
    let out = args.out.clone();
    let journal = Journal::new(&out);
    let existing = journal.path().exists();
    if !existing && out.exists() && std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!(
            "--out {}: the folder exists, is not empty and holds no study.jsonl; choose another --out",
            out.display()
        );
    }
    if args.resume && !existing {
        bail!("--resume: {} holds no study (no study.jsonl)", out.display());
    }
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let budget = args.budget.as_deref().map(parse_budget).transpose()?;
    let sampler_kind: SamplerKind = args.sampler.parse().map_err(anyhow::Error::msg)?;

    // The base recipe.
    let mut job = match &args.config {
        Some(p) => load_recipe(p, args.domain)?,
        None => JobFile::defaults(args.domain),
    };
    let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    if let Some(v) = job.vision.as_mut() {
        v.data = args.data.as_ref().or(v.data.as_ref()).map(abs);
        v.val_data = args.val_data.as_ref().or(v.val_data.as_ref()).map(abs);
    }
    if let Some(v) = job.text.as_mut() {
        v.data = args.data.as_ref().or(v.data.as_ref()).map(abs);
        v.val_data = args.val_data.as_ref().or(v.val_data.as_ref()).map(abs);
    }
    if let Some(v) = job.speech.as_mut() {
        v.data = args.data.as_ref().or(v.data.as_ref()).map(abs);
        v.val_data = args.val_data.as_ref().or(v.val_data.as_ref()).map(abs);
    }
    if let Some(w) = args.workers {
        job.train.workers = w;
    }
    // Threads of the whole study, split among the parallel trials.
    let total_threads = args
        .threads
        .or_else(|| (args.parallel > 1).then(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)));
    if let Some(n) = total_threads {
        job.train.threads = (n / args.parallel).max(1);
    }
    let space_text = match &args.space {
        Some(p) => {
            let s = Space::load(p)?;
            check_space(&s, &job, args.domain).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            s.to_toml()
        }
        None => {
            let s = Space::parse(&default_space(args.domain, &job)).context("the default space")?;
            check_space(&s, &job, args.domain).context("the default space")?;
            s.to_toml()
        }
    };
    let space = Space::parse(&space_text)?;
    let objective = args.objective.clone().unwrap_or_else(|| default_objective(&job));
    let mode = match args.direction.as_deref() {
        None => MetricMode::for_metric(&objective),
        Some("max") => MetricMode::Max,
        Some("min") => MetricMode::Min,
        Some(d) => bail!("--direction {d:?}: expected max or min"),
    };
    let recipe_text = toml::to_string(&job)?;
    let settings = Settings {
        domain: format!("{:?}", args.domain).to_lowercase(),
        seed: args.seed,
        sampler: args.sampler.clone(),
        startup_trials: args.startup_trials,
        objective: objective.clone(),
        direction: if mode == MetricMode::Max { "max" } else { "min" }.into(),
        min_resource: args.min_resource,
        reduction_factor: args.reduction_factor.max(2),
        space: space_text.clone(),
        recipe: recipe_text,
    };

    std::fs::create_dir_all(out.join("trials")).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("space.toml"), &space_text)?;
    journal.transact(|records| {
        let found = records.iter().find_map(|r| match r {
            Record::Study(s) => Some(s.clone()),
            _ => None,
        });
        match found {
            None => Ok(((), vec![Record::Study(settings.clone())])),
            Some(old) if old == settings => Ok(((), Vec::new())),
            Some(old) => {
                let a = serde_json::to_value(&old)?;
                let b = serde_json::to_value(&settings)?;
                let differ: Vec<String> = a
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                    .map(|(k, _)| k.clone())
                    .collect();
                bail!(
                    "{}: this study was started with other settings ({}); resume it with the same command, or \
                     choose another --out",
                    journal.path().display(),
                    differ.join(", ")
                )
            }
        }
    })?;
    let base: toml::Table = toml::from_str(&settings.recipe)?;

    let records = journal.read()?;
    let known = trials(&records);
    let mut pending: VecDeque<u64> = known.values().filter(|t| t.end.is_none()).map(|t| t.number).collect();
    let mut next = known.keys().next_back().map_or(0, |n| n + 1);
    let limit = args.trials.unwrap_or(if budget.is_some() { usize::MAX } else { 20 }) as u64;
    let sampler = Sampler { n_startup: args.startup_trials, ..Sampler::new(sampler_kind, args.seed) };
    let exe = std::env::current_exe().context("locating the suite executable")?;
    let devices = cuda_devices(args.device.as_deref());

    // The budget counts every session of the study: a resumed study goes on from the time its journal says was
    // spent, instead of granting itself a fresh budget.
    let spent_before = Duration::from_secs_f64(budget_spent(&records));
    let started = Instant::now();
    let spent = || (spent_before + started.elapsed()).as_secs_f64();
    // Seconds of the budget left (negative once over); None without a budget.
    let left = || budget.map(|b| b.as_secs_f64() - spent());
    let done_before = known.values().filter(|t| t.end.is_some()).count() as u64;
    let bar = indicatif::ProgressBar::new(if limit == u64::MAX as usize as u64 { 0 } else { limit });
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} trials {pos}/{len} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_position(done_before);
    struct Running {
        trial: u64,
        child: Child,
        slot: usize,
        start: Instant,
        /// Killed because the budget ran out.
        stopped: bool,
    }
    let mut running: Vec<Running> = Vec::new();
    let mut budget_told = records.iter().any(|r| matches!(r, Record::BudgetSpent { .. }));
    loop {
        while running.len() < args.parallel {
            // A new trial starts only if the budget left covers the time trials so far took to their first
            // rung: one that could not report a value before the budget ends would only make the study late.
            let fits = || {
                // The journal is read only while some budget is left.
                left().is_none_or(|l| {
                    l > 0.0 && l > seconds_to_first_rung(&journal.read().unwrap_or_default()).unwrap_or(0.0)
                })
            };
            let (trial, resume) = if let Some(t) = pending.pop_front() {
                if left().is_some_and(|l| l <= 0.0) {
                    // A trial a killed study left mid-way, and no budget left to finish it: it ends as stopped.
                    journal.append(vec![Record::BudgetStop { trial: t }])?;
                    finish(&out, &journal, &settings, t, false, 0.0, spent())?;
                    continue;
                }
                (t, true)
            } else if next < limit && fits() {
                let t = next;
                next += 1;
                (t, false)
            } else {
                break;
            };
            let params = if resume {
                trials(&journal.read()?)[&trial].params.clone()
            } else {
                journal.transact(|records| {
                    let history = observations(&trials(records), &settings.objective, direction(&settings));
                    let params = sampler.propose(&space, trial, &history);
                    let seed = sampler.trial_seed(trial);
                    Ok((params.clone(), vec![Record::Propose { trial, seed, params, spent: Some(spent()) }]))
                })?
            };
            let slot = (0..args.parallel).find(|s| running.iter().all(|r| r.slot != *s)).unwrap_or(0);
            let child = launch(&exe, &out, &base, args.domain, trial, &params, resume, slot, &devices, &args)?;
            running.push(Running { trial, child, slot, start: Instant::now(), stopped: false });
            bar.set_message(format!(
                "running {}",
                running.iter().map(|r| format!("#{}", r.trial)).collect::<Vec<_>>().join(" ")
            ));
        }
        if running.is_empty() {
            break;
        }
        if left().is_some_and(|l| l <= 0.0) && running.iter().any(|r| !r.stopped) {
            // The budget is a wall-clock limit: trials still training are stopped now. What they evaluated so far
            // (metrics.jsonl, the best checkpoint) stays, and the leaderboard ranks them as `stopped`.
            let mut recs = Vec::new();
            if !budget_told {
                recs.push(Record::BudgetSpent { spent: spent() });
                budget_told = true;
            }
            recs.extend(running.iter().filter(|r| !r.stopped).map(|r| Record::BudgetStop { trial: r.trial }));
            journal.append(recs)?;
            for r in running.iter_mut().filter(|r| !r.stopped) {
                r.stopped = true;
                let _ = r.child.kill();
            }
            bar.println(format!(
                "the budget is spent: stopped {} (their evaluations so far are kept)",
                running.iter().map(|r| format!("#{}", r.trial)).collect::<Vec<_>>().join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
        bar.tick();
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].child.try_wait()? {
                let r = running.swap_remove(i);
                let seconds = r.start.elapsed().as_secs_f64();
                let end = finish(&out, &journal, &settings, r.trial, status.success(), seconds, spent())?;
                bar.inc(1);
                bar.println(format!(
                    "trial {:04} {} {} = {}",
                    r.trial,
                    end.status.as_str(),
                    settings.objective,
                    end.objective.map_or("-".into(), |v| format!("{v:.4}"))
                ));
            } else {
                i += 1;
            }
        }
    }
    bar.finish_and_clear();
    report::write(&out, &settings, &trials(&journal.read()?))
}

/// The sampler's view of the finished trials: the objective as a loss; pruned trials rank after every complete
/// one (by the rung they reached, then their value), failed ones last.
fn observations(trials: &BTreeMap<u64, Trial>, _objective: &str, mode: MetricMode) -> Vec<Observation> {
    let sign = if mode == MetricMode::Max { -1.0 } else { 1.0 };
    trials
        .values()
        .filter_map(|t| {
            let e = t.end.as_ref()?;
            let v = e.objective.map(|v| sign * v).filter(|v| v.is_finite());
            let loss = match (e.status, v) {
                (Status::Complete, Some(v)) => v,
                (Status::Pruned | Status::Stopped, Some(v)) => {
                    let reached = t.rungs.iter().map(|r| r.0).max().unwrap_or(0) as f64;
                    // Above any complete trial's loss: large offset, fewer rungs worse.
                    1e12 - reached * 1e9 + v
                }
                _ => f64::INFINITY,
            };
            Some(Observation { params: t.params.clone(), loss })
        })
        .collect()
}

/// Every space key must be a key of the recipe the trials run.
fn check_space(space: &Space, job: &JobFile, domain: Domain) -> Result<()> {
    let base = toml::Table::try_from(job)?;
    for p in &space.params {
        for x in [0.0, 1.0] {
            let internal = match p.dist.internal_bounds() {
                Some((lo, hi)) => lo + x * (hi - lo),
                None => x.min((p.dist.n_choices().unwrap_or(1) - 1) as f64),
            };
            let mut params = Params::new();
            params.insert(p.name.clone(), p.dist.to_value(internal));
            if p.name.starts_with("peft.") && p.name != "peft.method" {
                // Method options need a method that has them.
                params.insert("peft.method".into(), "lora".into());
            }
            trial_recipe(&base, &params, domain)
                .map_err(|e| anyhow::anyhow!("key {}: the recipe does not take {}: {e:#}", p.name, params[&p.name]))?;
        }
    }
    Ok(())
}

/// The CUDA devices trials may use, when they run on CUDA.
fn cuda_devices(device: Option<&str>) -> Vec<String> {
    match device {
        Some(d) if d == "cpu" || d.starts_with("cuda:") => Vec::new(),
        _ if tch::Cuda::is_available() => (0..tch::Cuda::device_count()).map(|i| format!("cuda:{i}")).collect(),
        _ => Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn launch(
    exe: &Path,
    out: &Path,
    base: &toml::Table,
    domain: Domain,
    trial: u64,
    params: &Params,
    resume: bool,
    slot: usize,
    devices: &[String],
    args: &TuneArgs,
) -> Result<Child> {
    let name = format!("{trial:04}");
    let dir = out.join("trials").join(&name);
    let recipe = out.join("trials").join(format!("{name}.toml"));
    let (table, _) = trial_recipe(base, params, domain).with_context(|| format!("trial {name}"))?;
    let header = format!(
        "# suite tune: trial {name} of the study {}\n# parameters: {}\n",
        out.display(),
        params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
    );
    std::fs::write(&recipe, header + &toml::to_string(&table)?)?;
    let dom = format!("{domain:?}").to_lowercase();
    let mut cmd = Command::new(exe);
    cmd.arg("finetune").arg(&dom);
    if resume && dir.join("config.toml").exists() {
        cmd.arg("--resume").arg(&dir);
    } else {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        cmd.arg("--config").arg(&recipe).arg("--out").arg(&dir);
    }
    cmd.arg("--tune-study").arg(out).arg("--tune-trial").arg(trial.to_string());
    let device = if devices.is_empty() { args.device.clone() } else { Some(devices[slot % devices.len()].clone()) };
    if let Some(d) = device {
        cmd.arg("--device").arg(d);
    }
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(out.join("trials").join(format!("{name}.log")))?;
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    cmd.spawn().with_context(|| format!("starting trial {name}"))
}

/// Evaluations of a run folder: (step, metrics) in order, one per step.
fn evals(run: &Path) -> Vec<(u64, Metrics)> {
    let mut out: Vec<(u64, Metrics)> = Vec::new();
    for r in read_metrics(&run.join("metrics.jsonl")).unwrap_or_default() {
        if let MetricRecord::Eval(e) = r {
            out.retain(|(s, _)| *s != e.step);
            out.push((e.step, e.metrics));
        }
    }
    out
}

/// Records a finished trial's end: its best objective value, whether ASHA stopped it.
fn finish(out: &Path, journal: &Journal, s: &Settings, trial: u64, ok: bool, seconds: f64, spent: f64) -> Result<End> {
    let run = out.join("trials").join(format!("{trial:04}"));
    let ev = evals(&run);
    let mode = direction(s);
    let values = ev.iter().filter_map(|(_, m)| m.get(&s.objective).copied()).filter(|v| v.is_finite());
    let objective = match mode {
        MetricMode::Max => values.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v)))),
        MetricMode::Min => values.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v)))),
    };
    journal.transact(|records| {
        let t = trials(records);
        let pruned = t.get(&trial).is_some_and(|t| t.rungs.iter().any(|r| !r.3));
        let stopped = records.iter().any(|r| matches!(r, Record::BudgetStop { trial: x, .. } if *x == trial));
        // A trial the budget stopped was killed: its exit status says nothing.
        let status = match (ok, pruned, stopped) {
            (_, _, true) => Status::Stopped,
            (false, _, false) => Status::Failed,
            (true, true, false) => Status::Pruned,
            (true, false, false) => Status::Complete,
        };
        let end = End { status, objective, evals: ev.len(), seconds };
        let rec = Record::End { trial, status, objective, evals: ev.len(), seconds, spent: Some(spent) };
        Ok((end, vec![rec]))
    })
}

/// The observer `suite finetune --tune-study OUT --tune-trial N` installs.
pub fn trial_observer(args: &FinetuneArgs, main: bool) -> Result<Option<Box<dyn FitObserver>>> {
    let (Some(study), Some(trial)) = (&args.tune_study, args.tune_trial) else {
        return Ok(None);
    };
    if !main {
        return Ok(None);
    }
    let journal = Journal::new(study);
    let settings = journal
        .read()?
        .into_iter()
        .find_map(|r| match r {
            Record::Study(s) => Some(s),
            _ => None,
        })
        .with_context(|| format!("--tune-study {}: no study settings in its journal", study.display()))?;
    Ok(Some(Box::new(AshaObserver { journal, trial, settings, run: None, started: Instant::now() })))
}

/// Reports a trial's objective at each rung to the study journal and stops the trial when ASHA says so.
struct AshaObserver {
    journal: Journal,
    trial: u64,
    settings: Settings,
    run: Option<PathBuf>,
    /// When the trial (or its resumption) started.
    started: Instant,
}

impl FitObserver for AshaObserver {
    fn name(&self) -> &str {
        "asha"
    }

    fn on_start(&mut self, run: &RunDir, _config: &TrainConfig) -> Result<()> {
        self.run = Some(run.root().to_path_buf());
        Ok(())
    }

    fn on_eval(&mut self, step: usize, metrics: &Metrics, _last: bool) -> Result<Verdict> {
        let s = &self.settings;
        if s.min_resource == 0 {
            return Ok(Verdict::Continue);
        }
        let Some(&value) = metrics.get(&s.objective) else {
            let names: Vec<&str> = metrics.keys().map(String::as_str).collect();
            bail!(
                "the study's objective {:?} is not among the evaluation's metrics ({})",
                s.objective,
                names.join(", ")
            );
        };
        let n = match &self.run {
            Some(r) => evals(r).iter().filter(|(st, _)| *st <= step as u64).count(),
            None => 0,
        };
        let asha = Asha { min_resource: s.min_resource, reduction: s.reduction_factor };
        let Some(rung) = asha.rung_at(n) else {
            return Ok(Verdict::Continue);
        };
        let trial = self.trial;
        let mode = direction(s);
        let promoted = self.journal.transact(|records| {
            // A resumed trial meets its rungs again: the recorded decision stands.
            for r in records {
                if let Record::Rung { trial: t, rung: k, promoted, .. } = r {
                    if *t == trial && *k == rung {
                        return Ok((*promoted, Vec::new()));
                    }
                }
            }
            let others: Vec<f64> = records
                .iter()
                .filter_map(|r| match r {
                    Record::Rung { trial: t, rung: k, value, .. } if *t != trial && *k == rung => {
                        Some(value.unwrap_or(f64::NAN))
                    }
                    _ => None,
                })
                .collect();
            let promoted = asha.decide(value, &others, mode) == RungDecision::Promote;
            let value = value.is_finite().then_some(value);
            let seconds = Some(self.started.elapsed().as_secs_f64());
            Ok((promoted, vec![Record::Rung { trial, rung, evals: n, step, value, promoted, seconds }]))
        })?;
        if promoted {
            Ok(Verdict::Continue)
        } else {
            eprintln!("asha: trial {trial} stopped at rung {rung} ({n} evaluations, {} = {value})", s.objective);
            Ok(Verdict::Stop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_budget("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_budget("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_budget("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_budget("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_budget("1h 30min").unwrap(), Duration::from_secs(5400));
        assert!(parse_budget("soon").is_err() && parse_budget("0m").is_err() && parse_budget("-5").is_err());
    }

    #[test]
    fn default_spaces_fit_their_domains() {
        for d in [Domain::Vision, Domain::Text, Domain::Speech] {
            let job = JobFile::defaults(d);
            let s = Space::parse(&default_space(d, &job)).unwrap();
            check_space(&s, &job, d).unwrap_or_else(|e| panic!("{d:?}: {e:#}"));
        }
    }

    #[test]
    fn a_space_key_the_recipe_lacks_is_refused() {
        let job = JobFile::defaults(Domain::Vision);
        let s = Space::parse("[train]\nlrate = { type = \"uniform\", low = 0.1, high = 0.2 }\n").unwrap();
        let e = format!("{:#}", check_space(&s, &job, Domain::Vision).unwrap_err());
        assert!(e.contains("train.lrate") && e.contains("lrate"), "{e}");
    }
}
