//! Finding a model's files: a local folder, or a Hugging Face hub repository through the cache that Python's
//! `huggingface_hub` shares (same location, same `refs/` + `snapshots/` layout), downloading only when online.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::load::{is_plain_relative, shard_names};

/// Where the files of a model came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A folder given on the command line.
    Local {
        /// The folder.
        dir: PathBuf,
    },
    /// A hub repository, resolved to one commit of it.
    Hub {
        /// `org/name`.
        repo: String,
        /// The revision asked for: a branch, a tag or a commit (`main` by default).
        revision: String,
        /// The 40-hex commit the revision pointed to.
        commit: String,
        /// The hub cache the files live in.
        cache_dir: PathBuf,
    },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Local { dir } => write!(f, "{}", dir.display()),
            ModelSource::Hub { repo, revision, commit, .. } => {
                write!(f, "{repo}@{revision} (commit {})", &commit[..commit.len().min(12)])
            }
        }
    }
}

/// Hub access settings; [`HubSettings::from_env`] reads them as `huggingface_hub` does.
#[derive(Debug, Clone, PartialEq)]
pub struct HubSettings {
    /// The hub cache (`…/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Use the cache only, never the network.
    pub offline: bool,
    /// The hub's address (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
}

fn expand_home(p: String) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if p == "~" => home(),
        None => PathBuf::from(p),
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into()))
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home(env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match env("HF_HOME") {
        Some(h) => expand_home(h),
        None => match env("XDG_CACHE_HOME") {
            Some(x) => expand_home(x).join("huggingface"),
            None => home().join(".cache/huggingface"),
        },
    }
}

/// The hub cache as `huggingface_hub` computes it: `HF_HUB_CACHE`, else the older `HUGGINGFACE_HUB_CACHE`, else
/// `HF_HOME/hub` (see `hf_home`). `~` is expanded; `$VAR` references inside the values are not.
fn hub_cache_dir_from(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    match env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        Some(c) => expand_home(c),
        None => hf_home(&env).join("hub"),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The hub cache folder, located exactly as Python's `huggingface_hub` does.
pub fn hub_cache_dir() -> PathBuf {
    hub_cache_dir_from(env_var)
}

impl HubSettings {
    /// Settings from the environment: the cache of [`hub_cache_dir`], offline when `HF_HUB_OFFLINE` (or
    /// `TRANSFORMERS_OFFLINE`) is 1/ON/YES/TRUE, and `HF_ENDPOINT`.
    pub fn from_env() -> Self {
        Self {
            cache_dir: hub_cache_dir(),
            offline: truthy(env_var("HF_HUB_OFFLINE").or_else(|| env_var("TRANSFORMERS_OFFLINE"))),
            endpoint: env_var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
        }
    }

    /// Cache-only settings for `cache_dir`.
    pub fn offline_in(cache_dir: impl Into<PathBuf>) -> Self {
        Self { cache_dir: cache_dir.into(), offline: true, endpoint: "https://huggingface.co".into() }
    }
}

/// The files of a model, found in a local folder or the hub cache.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Each requested file that exists, by the name it was asked under (`config.json`, `model.safetensors`…).
    pub files: BTreeMap<String, PathBuf>,
    /// Where they came from.
    pub source: ModelSource,
    /// Why the hub was not asked although the settings were online (the network error), when the files came
    /// from the cache as a fallback.
    pub offline_fallback: Option<String>,
    settings: HubSettings,
}

impl ModelFiles {
    /// The path of `name`, if it was found.
    pub fn get(&self, name: &str) -> Option<&Path> {
        self.files.get(name).map(PathBuf::as_path)
    }

    /// The path of `name`, or an error naming the model and the file.
    pub fn require(&self, name: &str) -> Result<&Path> {
        self.get(name).ok_or_else(|| anyhow!("{}: has no {name}", self.source))
    }

    /// The safetensors weights: `model.safetensors`, or the shards its `model.safetensors.index.json` lists
    /// (fetched from the hub like the other files if they are not cached yet). Either name must have been among
    /// the requested files.
    pub fn weight_files(&self) -> Result<Vec<PathBuf>> {
        if let Some(p) = self.get("model.safetensors") {
            return Ok(vec![p.to_path_buf()]);
        }
        let Some(index) = self.get("model.safetensors.index.json") else {
            bail!("{}: holds neither model.safetensors nor model.safetensors.index.json", self.source);
        };
        let shards = shard_names(index)?;
        match &self.source {
            ModelSource::Local { dir } => {
                let missing: Vec<&String> = shards.iter().filter(|s| !dir.join(s).is_file()).collect();
                if !missing.is_empty() {
                    bail!(
                        "{}: the index names shard(s) that are not in the folder: {}",
                        dir.display(),
                        join_names(&missing)
                    );
                }
                Ok(shards.iter().map(|s| dir.join(s)).collect())
            }
            ModelSource::Hub { repo, commit, .. } => {
                let names: Vec<&str> = shards.iter().map(String::as_str).collect();
                // Pinned to the commit the other files came from, so the shards match the index.
                let more = resolve_hub(&self.settings, repo, commit, &names, &[])?;
                Ok(shards.iter().map(|s| more.files[s].clone()).collect())
            }
        }
    }
}

fn join_names<S: AsRef<str>>(names: &[S]) -> String {
    names.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", ")
}

/// What a model spec names.
#[derive(Debug, PartialEq)]
enum Spec {
    Local(PathBuf),
    Hub { repo: String, revision: String },
}

fn valid_repo_part(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn parse_spec(spec: &str) -> Result<Spec> {
    let spec = spec.trim();
    if spec.is_empty() {
        bail!("empty model name: expected a local folder or a hub id such as org/name[@revision]");
    }
    let path = Path::new(spec);
    if path.exists() {
        return Ok(Spec::Local(path.to_path_buf()));
    }
    let (id, revision) = match spec.split_once('@') {
        Some((id, rev)) => (id, rev),
        None => (spec, "main"),
    };
    let looks_like_path =
        spec.starts_with(['/', '.', '~']) || spec.contains('\\') || spec.ends_with('/') || id.matches('/').count() > 1;
    if looks_like_path {
        bail!("model folder {spec} does not exist");
    }
    if !id.split('/').all(valid_repo_part) {
        bail!("{spec:?}: not an existing folder, nor a hub id of the form org/name[@revision]");
    }
    if revision.is_empty()
        || revision.contains('\\')
        || revision.starts_with('/')
        || revision.split('/').any(|p| p.is_empty() || p == "." || p == "..")
    {
        bail!("{spec:?}: bad revision {revision:?} (expected a branch, tag or commit after @)");
    }
    Ok(Spec::Hub { repo: id.to_string(), revision: revision.to_string() })
}

/// Resolves `spec` with the settings of the environment: see [`resolve_model_with`].
pub fn resolve_model(spec: &str, required: &[&str], optional: &[&str]) -> Result<ModelFiles> {
    resolve_model_with(&HubSettings::from_env(), spec, required, optional)
}

/// Finds the `required` and `optional` files of a model.
///
/// `spec` is a local folder (it must exist and hold every required file), or a hub id `org/name` with an optional
/// `@revision` (branch, tag or commit, default `main`). For a hub id, files already in the cache are used as they
/// are; when online, the hub is asked which commit the revision is and what it holds, and missing files are
/// downloaded into the cache. Offline, or when the hub cannot be reached, the cache alone answers:
/// `refs/<revision>` gives the commit, and `snapshots/<commit>/<file>` the file.
pub fn resolve_model_with(
    settings: &HubSettings,
    spec: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<ModelFiles> {
    for f in required.iter().chain(optional) {
        if !is_plain_relative(f) {
            bail!("model file name {f:?} must be a relative path inside the model folder");
        }
    }
    match parse_spec(spec)? {
        Spec::Local(dir) => resolve_local(settings, &dir, required, optional),
        Spec::Hub { repo, revision } => resolve_hub(settings, &repo, &revision, required, optional),
    }
}

fn resolve_local(settings: &HubSettings, dir: &Path, required: &[&str], optional: &[&str]) -> Result<ModelFiles> {
    if !dir.is_dir() {
        bail!("{}: is a file, expected a model folder holding {}", dir.display(), join_names(required));
    }
    let missing: Vec<&str> = required.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        bail!("model folder {} lacks {} (it must hold {})", dir.display(), join_names(&missing), join_names(required));
    }
    let files = required
        .iter()
        .chain(optional)
        .filter(|f| dir.join(f).is_file())
        .map(|f| (f.to_string(), dir.join(f)))
        .collect();
    Ok(ModelFiles {
        files,
        source: ModelSource::Local { dir: dir.to_path_buf() },
        offline_fallback: None,
        settings: settings.clone(),
    })
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The repository's folder in the cache, as `huggingface_hub` names it.
fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// What the cache knows of one revision of a repository.
struct Cached {
    commit: String,
    snapshot: PathBuf,
    /// `.no_exist/<commit>/`, where `huggingface_hub` records files the hub said it does not have.
    no_exist: PathBuf,
}

/// The commit a revision points to in the cache: `refs/<revision>` when it exists (branches and tags), else the
/// revision itself (a commit), as `huggingface_hub.try_to_load_from_cache` does.
fn cached_revision(cache: &Path, repo: &str, revision: &str) -> Option<Cached> {
    let dir = repo_dir(cache, repo);
    let commit = match std::fs::read_to_string(dir.join("refs").join(revision)) {
        Ok(c) => c.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let snapshot = dir.join("snapshots").join(&commit);
    snapshot.is_dir().then(|| Cached { no_exist: dir.join(".no_exist").join(&commit), commit, snapshot })
}

fn resolve_hub(
    settings: &HubSettings,
    repo: &str,
    revision: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<ModelFiles> {
    let cache = &settings.cache_dir;
    let source = |commit: &str| ModelSource::Hub {
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit: commit.to_string(),
        cache_dir: cache.clone(),
    };
    let cached = cached_revision(cache, repo, revision);
    let found_in = |c: &Cached| -> BTreeMap<String, PathBuf> {
        required
            .iter()
            .chain(optional)
            .filter(|f| c.snapshot.join(f).is_file())
            .map(|f| (f.to_string(), c.snapshot.join(f)))
            .collect()
    };
    // Everything asked for is settled by the cache alone (present, or known to be absent from the hub):
    // no network needed, as with hf-hub's `get`.
    if let Some(c) = &cached {
        let files = found_in(c);
        let settled = |f: &&str| files.contains_key(*f) || c.no_exist.join(f).is_file();
        if required.iter().all(|f| files.contains_key(*f)) && optional.iter().all(settled) {
            return Ok(ModelFiles {
                files,
                source: source(&c.commit),
                offline_fallback: None,
                settings: settings.clone(),
            });
        }
    }

    let mut fallback = None;
    if !settings.offline {
        match download(settings, repo, revision, required, optional) {
            Ok(Online::Files(commit, files)) => {
                return Ok(ModelFiles {
                    files,
                    source: source(&commit),
                    offline_fallback: None,
                    settings: settings.clone(),
                })
            }
            Ok(Online::Lacks(msg)) => bail!("{msg}"),
            Err(e) => fallback = Some(format!("{e:#}")),
        }
    }

    let why = match &fallback {
        None => "HF_HUB_OFFLINE is set".to_string(),
        Some(e) => format!("the hub could not be reached ({e})"),
    };
    let rev_flag = if revision == "main" { String::new() } else { format!(" --revision {revision}") };
    let how = format!(
        "fetch it with `huggingface-cli download {repo}{rev_flag}` where there is network (then copy {} here), or \
         pass a local folder holding {}",
        repo_dir(cache, repo).display(),
        join_names(required)
    );
    let Some(c) = cached else {
        bail!("model {repo}@{revision} is not in the hub cache {} and {why}: {how}", cache.display());
    };
    let files = found_in(&c);
    let missing: Vec<&str> = required.iter().copied().filter(|f| !files.contains_key(*f)).collect();
    if !missing.is_empty() {
        bail!(
            "model {repo}@{revision}: the cached snapshot {} lacks {} and {why}: {how}",
            c.snapshot.display(),
            join_names(&missing)
        );
    }
    Ok(ModelFiles { files, source: source(&c.commit), offline_fallback: fallback, settings: settings.clone() })
}

/// The hub's answer.
enum Online {
    /// The commit and the files, now in the cache.
    Files(String, BTreeMap<String, PathBuf>),
    /// The repository is there but lacks required files: a definite answer, not a reason to try the cache.
    Lacks(String),
}

/// The hub token as huggingface_hub finds it: `HF_TOKEN`, else the file `HF_TOKEN_PATH` or `HF_HOME/token`.
fn token() -> Option<String> {
    if let Some(t) = env_var("HF_TOKEN") {
        return Some(t);
    }
    let path = env_var("HF_TOKEN_PATH").map(expand_home).unwrap_or_else(|| hf_home(&env_var).join("token"));
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// Asks the hub which commit `revision` is and which files it has, then downloads the wanted ones that the
/// cache lacks. Errors here mean the hub could not be asked (network, authentication, unknown repository).
fn download(
    settings: &HubSettings,
    repo: &str,
    revision: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<Online> {
    use std::io::IsTerminal;
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(token())
        .with_progress(std::io::stderr().is_terminal())
        .build()
        .context("starting the hub client")?;
    let info = api
        .repo(Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()))
        .info()
        .with_context(|| format!("asking {} about {repo}@{revision}", settings.endpoint))?;
    let commit = info.sha;
    if !is_commit(&commit) {
        bail!("the hub answered an invalid commit id {commit:?} for {repo}@{revision}");
    }
    let listed: std::collections::HashSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let lacking: Vec<&str> = required.iter().copied().filter(|f| !listed.contains(f)).collect();
    if !lacking.is_empty() {
        return Ok(Online::Lacks(format!(
            "hub repository {repo}@{revision} (commit {commit}) has no {}",
            join_names(&lacking)
        )));
    }
    // Downloads go to the resolved commit, so that every file comes from the same snapshot even if the branch
    // moves meanwhile.
    let pinned = api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, commit.clone()));
    let snapshot = repo_dir(&settings.cache_dir, repo).join("snapshots").join(&commit);
    let mut files = BTreeMap::new();
    for f in required.iter().chain(optional).filter(|f| listed.contains(**f)) {
        let local = snapshot.join(f);
        let path = if local.is_file() {
            local
        } else {
            pinned.download(f).with_context(|| format!("downloading {f} of {repo}@{commit}"))?
        };
        files.insert(f.to_string(), path);
    }
    // Record the branch or tag → commit mapping as huggingface_hub does, so that a later offline run finds it.
    if revision != commit {
        let r = repo_dir(&settings.cache_dir, repo).join("refs").join(revision);
        if let Some(parent) = r.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(r, &commit);
    }
    Ok(Online::Files(commit, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_MAIN: &str = "1111111111111111111111111111111111111111";
    const SHA_V2: &str = "2222222222222222222222222222222222222222";

    /// A cache holding org/tiny at two commits: `main` → SHA_MAIN (config + weights), `v2` → SHA_V2 (config only,
    /// plus a `.no_exist` record for tokenizer.json).
    fn fake_cache() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--org--tiny");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), SHA_MAIN).unwrap();
        std::fs::write(repo.join("refs/v2"), format!("{SHA_V2}\n")).unwrap();
        for (sha, files) in [(SHA_MAIN, &["config.json", "model.safetensors"][..]), (SHA_V2, &["config.json"][..])] {
            let snap = repo.join("snapshots").join(sha);
            std::fs::create_dir_all(&snap).unwrap();
            for f in files {
                std::fs::write(snap.join(f), format!("{sha}/{f}")).unwrap();
            }
        }
        std::fs::create_dir_all(repo.join(".no_exist").join(SHA_V2)).unwrap();
        std::fs::write(repo.join(".no_exist").join(SHA_V2).join("tokenizer.json"), "").unwrap();
        dir
    }

    fn content(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn offline_resolves_branches_and_commits_from_the_cache() {
        let cache = fake_cache();
        let s = HubSettings::offline_in(cache.path());
        let m = resolve_model_with(&s, "org/tiny", &["config.json"], &["model.safetensors", "tokenizer.json"]).unwrap();
        assert_eq!(content(m.require("config.json").unwrap()), format!("{SHA_MAIN}/config.json"));
        assert_eq!(content(m.get("model.safetensors").unwrap()), format!("{SHA_MAIN}/model.safetensors"));
        assert!(m.get("tokenizer.json").is_none());
        assert!(m.require("tokenizer.json").unwrap_err().to_string().contains("has no tokenizer.json"));
        assert_eq!(
            m.source,
            ModelSource::Hub {
                repo: "org/tiny".into(),
                revision: "main".into(),
                commit: SHA_MAIN.into(),
                cache_dir: cache.path().to_path_buf()
            }
        );

        let v2 = resolve_model_with(&s, "org/tiny@v2", &["config.json"], &["model.safetensors"]).unwrap();
        assert_eq!(content(v2.get("config.json").unwrap()), format!("{SHA_V2}/config.json"));
        assert!(v2.get("model.safetensors").is_none());
        assert!(matches!(&v2.source, ModelSource::Hub { commit, .. } if commit == SHA_V2));

        let pinned = resolve_model_with(&s, &format!("org/tiny@{SHA_V2}"), &["config.json"], &[]).unwrap();
        assert!(matches!(&pinned.source, ModelSource::Hub { commit, revision, .. }
            if commit == SHA_V2 && revision == SHA_V2));
        assert_eq!(content(pinned.get("config.json").unwrap()), format!("{SHA_V2}/config.json"));
    }

    #[test]
    fn offline_errors_name_the_model_the_cache_and_the_remedy() {
        let cache = fake_cache();
        let s = HubSettings::offline_in(cache.path());
        let err =
            resolve_model_with(&s, "org/tiny@v2", &["config.json", "model.safetensors"], &[]).unwrap_err().to_string();
        assert!(err.contains("model org/tiny@v2"), "{err}");
        assert!(err.contains(&format!("snapshots/{SHA_V2} lacks model.safetensors")), "{err}");
        assert!(err.contains("huggingface-cli download org/tiny --revision v2"), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");

        let err = resolve_model_with(&s, "other/model", &["config.json"], &[]).unwrap_err().to_string();
        assert!(err.contains("model other/model@main is not in the hub cache"), "{err}");
        assert!(err.contains(&cache.path().display().to_string()), "{err}");
        assert!(err.contains("`huggingface-cli download other/model`"), "{err}");
        assert!(err.contains("or pass a local folder holding config.json"), "{err}");
        assert!(!err.contains('\n'));

        let err = resolve_model_with(&s, "org/tiny@nobranch", &["config.json"], &[]).unwrap_err().to_string();
        assert!(err.contains("org/tiny@nobranch is not in the hub cache"), "{err}");
    }

    #[test]
    fn unreachable_hub_falls_back_to_the_cache() {
        // A port that was just free: connecting is refused at once, on loopback only.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cache = fake_cache();
        let s = HubSettings {
            offline: false,
            endpoint: format!("http://127.0.0.1:{port}"),
            ..HubSettings::offline_in(cache.path())
        };
        // Fully cached: answered without asking the hub at all.
        let m = resolve_model_with(&s, "org/tiny", &["config.json"], &["model.safetensors"]).unwrap();
        assert!(m.offline_fallback.is_none());
        // An optional file the cache cannot settle makes it ask; the failure falls back to the cache.
        let m = resolve_model_with(&s, "org/tiny", &["config.json"], &["vocab.txt"]).unwrap();
        assert!(m.offline_fallback.is_some());
        assert!(m.get("vocab.txt").is_none());
        // `.no_exist` settles tokenizer.json for v2, so no network either.
        let m = resolve_model_with(&s, "org/tiny@v2", &["config.json"], &["tokenizer.json"]).unwrap();
        assert!(m.offline_fallback.is_none());
        let err = resolve_model_with(&s, "org/absent", &["config.json"], &[]).unwrap_err().to_string();
        assert!(err.contains("the hub could not be reached"), "{err}");
    }

    #[test]
    fn local_folders_must_hold_the_required_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let s = HubSettings::offline_in(dir.path().join("unused-cache"));
        let spec = dir.path().to_str().unwrap();
        let m = resolve_model_with(&s, spec, &["config.json"], &["tokenizer.json"]).unwrap();
        assert_eq!(m.get("config.json").unwrap(), dir.path().join("config.json"));
        assert!(m.get("tokenizer.json").is_none());
        assert_eq!(m.source, ModelSource::Local { dir: dir.path().to_path_buf() });

        let err = resolve_model_with(&s, spec, &["config.json", "model.safetensors"], &[]).unwrap_err().to_string();
        assert!(err.contains(&format!("model folder {spec} lacks model.safetensors")), "{err}");
        let missing = format!("{spec}/nope");
        let err = resolve_model_with(&s, &missing, &["config.json"], &[]).unwrap_err().to_string();
        assert_eq!(err, format!("model folder {missing} does not exist"));
    }

    #[test]
    fn sharded_weights_are_found_through_the_index() {
        let cache = fake_cache();
        let snap = repo_dir(cache.path(), "org/tiny").join("snapshots").join(SHA_MAIN);
        std::fs::remove_file(snap.join("model.safetensors")).unwrap();
        let index =
            r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors", "c": "model-1.safetensors"}}"#;
        std::fs::write(snap.join("model.safetensors.index.json"), index).unwrap();
        std::fs::write(snap.join("model-1.safetensors"), "").unwrap();
        let s = HubSettings::offline_in(cache.path());
        let opt = ["model.safetensors", "model.safetensors.index.json"];
        let m = resolve_model_with(&s, "org/tiny", &["config.json"], &opt).unwrap();
        let err = m.weight_files().unwrap_err().to_string();
        assert!(err.contains("lacks model-2.safetensors"), "{err}");
        std::fs::write(snap.join("model-2.safetensors"), "").unwrap();
        let files = m.weight_files().unwrap();
        assert_eq!(files, vec![snap.join("model-1.safetensors"), snap.join("model-2.safetensors")]);
    }

    #[test]
    fn specs_parse_strictly() {
        assert_eq!(parse_spec("org/name").unwrap(), Spec::Hub { repo: "org/name".into(), revision: "main".into() });
        assert_eq!(parse_spec("gpt2@v1.0").unwrap(), Spec::Hub { repo: "gpt2".into(), revision: "v1.0".into() });
        assert_eq!(
            parse_spec("org/name@refs/pr/1").unwrap(),
            Spec::Hub { repo: "org/name".into(), revision: "refs/pr/1".into() }
        );
        assert!(parse_spec("org/name@../../x").unwrap_err().to_string().contains("bad revision"));
        assert!(parse_spec("org/name@").is_err());
        assert!(parse_spec("org name").unwrap_err().to_string().contains("not an existing folder"));
        assert!(parse_spec("./missing/dir").unwrap_err().to_string().contains("does not exist"));
        assert!(parse_spec("a/b/c").unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn cache_location_follows_huggingface_hub() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let h = home();
        assert_eq!(hub_cache_dir_from(env(&[])), h.join(".cache/huggingface/hub"));
        assert_eq!(hub_cache_dir_from(env(&[("XDG_CACHE_HOME", "/x")])), PathBuf::from("/x/huggingface/hub"));
        assert_eq!(hub_cache_dir_from(env(&[("HF_HOME", "~/hf"), ("XDG_CACHE_HOME", "/x")])), h.join("hf/hub"));
        assert_eq!(
            hub_cache_dir_from(env(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old")])),
            PathBuf::from("/old")
        );
        assert_eq!(
            hub_cache_dir_from(env(&[("HF_HUB_CACHE", "/new"), ("HUGGINGFACE_HUB_CACHE", "/old")])),
            PathBuf::from("/new")
        );
        assert!(truthy(Some("yes".into())) && truthy(Some("1".into())) && !truthy(Some("0".into())));
        assert!(!truthy(None));
    }

    #[test]
    fn cache_location_agrees_with_python() {
        let code = "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)";
        let py = crate::python::run_python(code, &[]).unwrap();
        assert_eq!(PathBuf::from(py.trim()), hub_cache_dir());
    }
}
