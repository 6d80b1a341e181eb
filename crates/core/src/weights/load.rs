//! Copying named checkpoint tensors into a `VarStore`, and reading safetensors files (memory-mapped, sharded).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use safetensors::{Dtype, SafeTensors};
use tch::{nn::VarStore, Kind, Tensor};

/// How names of a checkpoint are matched against the variables of a model, and which differences are tolerated.
///
/// A checkpoint name matches a variable when it is equal to the variable's dotted name (`layer1.0.conv1.weight`)
/// or becomes equal after removing one of [`strip_prefixes`](Self::strip_prefixes). Everything that does not match
/// is an error unless a prefix list allows it. The default is strict: every variable must be loaded, every
/// checkpoint tensor must be used, shapes must agree.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Variable-name prefixes that may stay at their initial value, such as a new classification head `fc.`.
    /// A checkpoint tensor of the wrong shape for such a variable (the old 1000-class head) is reported in
    /// [`LoadReport::mismatched`] and left out instead of failing.
    pub allow_missing: Vec<String>,
    /// Checkpoint-name prefixes that may be left unused, such as a pretraining head `cls.` or `pooler.`.
    pub allow_unexpected: Vec<String>,
    /// Prefixes removed from a checkpoint name that matches no variable as it is, tried in order: `bert.`,
    /// `roberta.`, `backbone.`, `module.`…
    pub strip_prefixes: Vec<String>,
    /// Prefixes put in front of a checkpoint name that matches no variable as it is nor after stripping, tried in
    /// order: the original GPT-2 checkpoints name `h.0.attn.c_attn.weight` what `GPT2LMHeadModel` calls
    /// `transformer.h.0.attn.c_attn.weight`.
    pub add_prefixes: Vec<String>,
    /// Variable names, or dotted suffixes of them (`attn.c_attn.weight`), whose checkpoint tensors are stored
    /// transposed: GPT-2's `Conv1D` keeps its weight `[in, out]` where a [`crate::nn::Linear`] has `[out, in]`.
    /// Such 2-D tensors are matched by their transposed shape and transposed as they are copied; whoever writes
    /// the checkpoint format back must transpose them again.
    pub transposed: Vec<String>,
    /// Checkpoint names, or name prefixes, that are ignored before matching (`embeddings.position_ids`).
    pub skip: Vec<String>,
    /// Report missing and unexpected names without failing; shape and dtype mismatches still fail unless the
    /// variable is in [`allow_missing`](Self::allow_missing).
    pub lenient: bool,
}

fn owned<I, S>(items: I) -> impl Iterator<Item = String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into)
}

impl LoadOptions {
    /// Every variable loaded, every checkpoint tensor used, every shape equal.
    pub fn strict() -> Self {
        Self::default()
    }

    /// For fine-tuning: the variables under `new_head` prefixes (for example `fc.` or `classifier.`) are new and
    /// may be missing or of another shape in the checkpoint, and the checkpoint's own tensors under those
    /// prefixes may go unused.
    pub fn new_head<I, S>(new_head: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let head: Vec<String> = owned(new_head).collect();
        Self { allow_missing: head.clone(), allow_unexpected: head, ..Self::default() }
    }

    /// Missing and unexpected names are only reported (see [`LoadOptions::lenient`]).
    pub fn lenient() -> Self {
        Self { lenient: true, ..Self::default() }
    }

    /// Adds variable prefixes that may stay unloaded.
    pub fn allow_missing<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_missing.extend(owned(prefixes));
        self
    }

    /// Adds checkpoint prefixes that may stay unused.
    pub fn allow_unexpected<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_unexpected.extend(owned(prefixes));
        self
    }

    /// Adds prefixes to strip from checkpoint names that do not match as they are.
    pub fn strip_prefixes<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.strip_prefixes.extend(owned(prefixes));
        self
    }

    /// Adds prefixes to put in front of checkpoint names that do not match otherwise.
    pub fn add_prefixes<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.add_prefixes.extend(owned(prefixes));
        self
    }

    /// Adds variable names or dotted name suffixes whose checkpoint tensors are stored transposed.
    pub fn transposed<I, S>(mut self, suffixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.transposed.extend(owned(suffixes));
        self
    }

    /// Whether the variable `name` is stored transposed in the checkpoint (see [`LoadOptions::transposed`]).
    fn is_transposed(&self, name: &str) -> bool {
        self.transposed
            .iter()
            .any(|s| name.strip_suffix(s.as_str()).is_some_and(|rest| rest.is_empty() || rest.ends_with('.')))
    }

    /// Adds checkpoint names or prefixes to ignore.
    pub fn skip<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.skip.extend(owned(names));
        self
    }
}

fn has_prefix(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p.as_str()))
}

/// A checkpoint tensor whose shape or dtype does not fit the variable its name matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The variable name.
    pub name: String,
    /// The checkpoint name (differs from `name` when a prefix was stripped).
    pub checkpoint_name: String,
    /// Shape of the model's variable.
    pub expected: Vec<i64>,
    /// Shape in the checkpoint.
    pub found: Vec<i64>,
    /// Dtype of the model's variable.
    pub expected_dtype: String,
    /// Dtype in the checkpoint.
    pub found_dtype: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: model {:?} {}, checkpoint {:?} {}",
            self.name, self.expected, self.expected_dtype, self.found, self.found_dtype
        )
    }
}

/// What a load did: which variables were filled, and which names did not line up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Variables that received a checkpoint tensor, sorted.
    pub loaded: Vec<String>,
    /// Variables left at their initial value (not counting mismatched ones), sorted.
    pub missing: Vec<String>,
    /// Checkpoint names that matched no variable, or matched one already loaded, in checkpoint order.
    pub unexpected: Vec<String>,
    /// Name matches whose shape or dtype differ; those variables keep their initial value.
    pub mismatched: Vec<Mismatch>,
    /// Checkpoint names ignored through [`LoadOptions::skip`].
    pub skipped: Vec<String>,
}

/// Up to `n` items, then "… and K more".
fn first_few<T: fmt::Display>(items: &[T], n: usize) -> String {
    let shown: Vec<String> = items.iter().take(n).map(|x| x.to_string()).collect();
    let mut s = shown.join(", ");
    if items.len() > n {
        s.push_str(&format!(", … and {} more", items.len() - n));
    }
    s
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.loaded.len() + self.missing.len() + self.mismatched.len();
        write!(f, "loaded {}/{} variables", self.loaded.len(), total)?;
        if !self.missing.is_empty() {
            write!(f, "; {} missing ({})", self.missing.len(), first_few(&self.missing, 5))?;
        }
        if !self.mismatched.is_empty() {
            write!(f, "; {} mismatched ({})", self.mismatched.len(), first_few(&self.mismatched, 3))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; {} unexpected ({})", self.unexpected.len(), first_few(&self.unexpected, 5))?;
        }
        if !self.skipped.is_empty() {
            write!(f, "; {} skipped", self.skipped.len())?;
        }
        Ok(())
    }
}

/// Name, shape and dtype of one checkpoint tensor, enough to plan a load before any data is read.
struct Entry {
    name: String,
    shape: Vec<i64>,
    /// `None` for a dtype libtorch cannot hold (reported as a mismatch if the name is used).
    kind: Option<Kind>,
    dtype_name: String,
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half
            | Kind::Float
            | Kind::Double
            | Kind::BFloat16
            | Kind::Float8e5m2
            | Kind::Float8e4m3fn
            | Kind::Float8e5m2fnuz
            | Kind::Float8e4m3fnuz
    )
}

fn is_integral(kind: Kind) -> bool {
    matches!(kind, Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 | Kind::Bool)
}

/// Whether `copy_` from `src` into `dst` keeps the meaning of the values: float widths convert freely (F16,
/// BF16, F64 into an F32 model), integers among themselves, but a float never lands in an integer buffer or the
/// reverse.
fn kinds_compatible(dst: Kind, src: Kind) -> bool {
    (is_float(dst) && is_float(src)) || (is_integral(dst) && is_integral(src)) || dst == src
}

/// The result of matching checkpoint entries with variables: what to copy where, and the report.
struct Plan {
    /// (entry index, variable name, whether the tensor is transposed on the way).
    copies: Vec<(usize, String, bool)>,
    report: LoadReport,
}

fn plan(vars: &HashMap<String, Tensor>, entries: &[Entry], opts: &LoadOptions, source: &str) -> Result<Plan> {
    let mut report = LoadReport::default();
    let mut copies = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut mismatched_vars: HashSet<String> = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        if has_prefix(&e.name, &opts.skip) {
            report.skipped.push(e.name.clone());
            continue;
        }
        let target = if vars.contains_key(&e.name) {
            Some(e.name.as_str())
        } else {
            let stripped = || {
                opts.strip_prefixes
                    .iter()
                    .find_map(|p| e.name.strip_prefix(p.as_str()).filter(|r| vars.contains_key(*r)))
            };
            let added = || {
                let names = opts.add_prefixes.iter().map(|p| format!("{p}{}", e.name));
                names.into_iter().find_map(|n| vars.get_key_value(&n).map(|(k, _)| k.as_str()))
            };
            stripped().or_else(added)
        };
        let Some(target) = target else {
            report.unexpected.push(e.name.clone());
            continue;
        };
        if taken.contains(target) || mismatched_vars.contains(target) {
            report.unexpected.push(e.name.clone());
            continue;
        }
        let var = &vars[target];
        let transpose = e.shape.len() == 2 && opts.is_transposed(target);
        let stored: Vec<i64> = if transpose { e.shape.iter().rev().copied().collect() } else { e.shape.clone() };
        let shape_ok = var.size() == stored;
        let kind_ok = e.kind.is_some_and(|k| kinds_compatible(var.kind(), k));
        if !(shape_ok && kind_ok) {
            report.mismatched.push(Mismatch {
                name: target.to_string(),
                checkpoint_name: e.name.clone(),
                expected: var.size(),
                found: e.shape.clone(),
                expected_dtype: format!("{:?}", var.kind()),
                found_dtype: e.dtype_name.clone(),
            });
            mismatched_vars.insert(target.to_string());
            continue;
        }
        taken.insert(target.to_string());
        copies.push((i, target.to_string(), transpose));
    }
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        if taken.contains(name.as_str()) {
            report.loaded.push(name.clone());
        } else if !mismatched_vars.contains(name.as_str()) {
            report.missing.push(name.clone());
        }
    }

    let bad_missing: Vec<&String> = if opts.lenient {
        Vec::new()
    } else {
        report.missing.iter().filter(|n| !has_prefix(n, &opts.allow_missing)).collect()
    };
    let bad_unexpected: Vec<&String> = if opts.lenient {
        Vec::new()
    } else {
        report.unexpected.iter().filter(|n| !has_prefix(n, &opts.allow_unexpected)).collect()
    };
    let bad_mismatched: Vec<&Mismatch> =
        report.mismatched.iter().filter(|m| !has_prefix(&m.name, &opts.allow_missing)).collect();
    if bad_missing.is_empty() && bad_unexpected.is_empty() && bad_mismatched.is_empty() {
        return Ok(Plan { copies, report });
    }

    let mut parts = Vec::new();
    if !bad_missing.is_empty() {
        parts.push(format!("{} model variable(s) missing from it ({})", bad_missing.len(), first_few(&bad_missing, 5)));
    }
    if !bad_unexpected.is_empty() {
        parts.push(format!(
            "{} checkpoint tensor(s) match no variable ({})",
            bad_unexpected.len(),
            first_few(&bad_unexpected, 5)
        ));
    }
    if !bad_mismatched.is_empty() {
        parts.push(format!("{} shape/dtype mismatch(es) ({})", bad_mismatched.len(), first_few(&bad_mismatched, 3)));
    }
    let hint = if copies.is_empty() && !entries.is_empty() {
        "no checkpoint name matched a model variable: is this a checkpoint for another architecture, or do its \
         names need strip_prefixes (such as `bert.` or `backbone.`)?"
    } else {
        "allow new layers with allow_missing, unused checkpoint tensors with allow_unexpected"
    };
    bail!("{source}: checkpoint does not fit the model: {} ({hint})", parts.join("; "))
}

/// Copies `src` into the variable `name`, converting dtype and device, without recording autograd history.
fn copy_into(vars: &HashMap<String, Tensor>, name: &str, src: &Tensor, source: &str) -> Result<()> {
    let mut dst = vars[name].shallow_clone();
    tch::no_grad(|| dst.f_copy_(src)).map_err(|e| anyhow!("{source}: copying tensor {name}: {e}"))
}

fn entry_of(name: String, t: &Tensor) -> Entry {
    let kind = t.f_kind().ok();
    Entry { name, shape: t.size(), dtype_name: kind.map_or_else(|| "unknown".into(), |k| format!("{k:?}")), kind }
}

/// Copies checkpoint tensors into the variables of `vs` by name (see [`LoadOptions`] for the matching rules),
/// converting dtype and device.
///
/// Nothing is copied unless the whole checkpoint fits: a missing, unexpected or mismatched name that the
/// options do not allow is an error listing them all, and the model keeps its initial values.
pub fn load_named(
    vs: &VarStore,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    load_named_from(vs, tensors, opts, "checkpoint")
}

/// [`load_named`], naming `source` (usually the file) in errors.
pub fn load_named_from(
    vs: &VarStore,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    opts: &LoadOptions,
    source: &str,
) -> Result<LoadReport> {
    load_named_each(vs, tensors, opts, source, &mut |_| Ok(()))
}

/// [`load_named_from`] that calls `loaded` with each variable's name as soon as its values are in, so that a
/// caller can transform the model while it fills (int8 quantization layer by layer, see
/// [`crate::quant::LoadQuantizer`]) instead of after the whole fp32 model exists. An error from `loaded` stops the
/// load.
pub fn load_named_each(
    vs: &VarStore,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    opts: &LoadOptions,
    source: &str,
    loaded: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<LoadReport> {
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
    let entries: Vec<Entry> = tensors.iter().map(|(n, t)| entry_of(n.clone(), t)).collect();
    let vars = vs.variables();
    let plan = plan(&vars, &entries, opts, source)?;
    // Each checkpoint tensor is dropped after its last copy, so that its memory goes back while the variables
    // fill (see `nn::init::without_init` for variables that are not resident before their copy).
    let mut uses = vec![0usize; tensors.len()];
    for (i, _, _) in &plan.copies {
        uses[*i] += 1;
    }
    let mut tensors: Vec<Option<Tensor>> = tensors.into_iter().map(|(_, t)| Some(t)).collect();
    for (i, var, transpose) in &plan.copies {
        let t = tensors[*i].as_ref().expect("dropped only after its last use");
        copy_into(&vars, var, &if *transpose { t.tr() } else { t.shallow_clone() }, source)?;
        uses[*i] -= 1;
        if uses[*i] == 0 {
            tensors[*i] = None;
        }
        loaded(var)?;
    }
    Ok(plan.report)
}

/// Reads a torch pickle (`.pth`/`.pt`/`.bin`, see [`super::read_torch_pickle`]) into the variables of `vs`.
pub fn load_torch_pickle(vs: &VarStore, path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
    let tensors = super::read_torch_pickle(path)?;
    load_named_from(vs, tensors, opts, &path.display().to_string())
}

/// The libtorch kind of a safetensors dtype, or `None` for one libtorch cannot hold (unsigned 16–64 bit, 4- and
/// 6-bit floats).
pub(crate) fn kind_of_dtype(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F8_E5M2 => Kind::Float8e5m2,
        Dtype::F8_E4M3 => Kind::Float8e4m3fn,
        _ => return None,
    })
}

/// A memory-mapped safetensors file.
struct Mapped {
    path: PathBuf,
    map: memmap2::Mmap,
}

fn map_file(path: &Path) -> Result<Mapped> {
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{}: cannot open: {e}", path.display()))?;
    // SAFETY: the map is read-only and private to this process; a checkpoint rewritten by another process while
    // it is read is outside what any reader can guard against (torch and the safetensors crate map it the same
    // way). Writers in this crate replace files by rename, which leaves existing maps intact.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| anyhow!("{}: cannot map: {e}", path.display()))?;
    Ok(Mapped { path: path.to_path_buf(), map })
}

fn parse(m: &Mapped) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(&m.map).map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", m.path.display()))
}

/// A CPU tensor holding a copy of a safetensors view.
fn view_to_tensor(name: &str, view: &safetensors::tensor::TensorView<'_>, path: &Path) -> Result<Tensor> {
    let kind = kind_of_dtype(view.dtype()).ok_or_else(|| {
        anyhow!("{}: tensor {name} has dtype {:?}, which libtorch cannot hold", path.display(), view.dtype())
    })?;
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let numel: usize = view.shape().iter().product();
    let data = view.data();
    // from_data_size reads numel·size bytes from the pointer without checking: the length check is what keeps a
    // malformed header from reading past the map.
    if data.len() != numel * kind.elt_size_in_bytes() {
        bail!(
            "{}: tensor {name} holds {} bytes, but shape {shape:?} of {kind:?} needs {}",
            path.display(),
            data.len(),
            numel * kind.elt_size_in_bytes()
        );
    }
    Tensor::f_from_data_size(data, &shape, kind).map_err(|e| anyhow!("{}: tensor {name}: {e}", path.display()))
}

/// Every tensor of a safetensors file, sorted by name, as CPU tensors of the stored dtype.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let m = map_file(path.as_ref())?;
    let st = parse(&m)?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    names
        .into_iter()
        .map(|n| {
            let view = st.tensor(n).map_err(|e| anyhow!("{}: tensor {n}: {e}", m.path.display()))?;
            Ok((n.to_string(), view_to_tensor(n, &view, &m.path)?))
        })
        .collect()
}

/// The metadata (`__metadata__`) of a safetensors file, empty when it has none.
pub fn read_safetensors_metadata(path: impl AsRef<Path>) -> Result<HashMap<String, String>> {
    let m = map_file(path.as_ref())?;
    let (_, meta) = SafeTensors::read_metadata(&m.map)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", m.path.display()))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

fn describe_files(files: &[PathBuf]) -> String {
    match files {
        [] => "no files".into(),
        [one] => one.display().to_string(),
        [first, rest @ ..] => format!("{} (+{} more shard(s))", first.display(), rest.len()),
    }
}

/// Loads safetensors files (one, or the shards of a sharded checkpoint) into `vs` by name, as [`load_named`]
/// does. The files are memory-mapped and the load is planned from their headers first, so a checkpoint that does
/// not fit fails before any data is read, and at most one tensor at a time is copied out of the map.
pub fn load_safetensors(vs: &VarStore, files: &[PathBuf], opts: &LoadOptions) -> Result<LoadReport> {
    load_safetensors_each(vs, files, opts, &mut |_| Ok(()))
}

/// [`load_safetensors`] calling `loaded` after each variable is filled, as [`load_named_each`].
pub fn load_safetensors_each(
    vs: &VarStore,
    files: &[PathBuf],
    opts: &LoadOptions,
    loaded: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<LoadReport> {
    if files.is_empty() {
        bail!("load_safetensors: no files given");
    }
    let source = describe_files(files);
    let maps: Vec<Mapped> = files.iter().map(|f| map_file(f)).collect::<Result<_>>()?;
    let parsed: Vec<SafeTensors<'_>> = maps.iter().map(parse).collect::<Result<_>>()?;
    // (file index, name) for each entry, so the copy step can find the view again.
    let mut origin = Vec::new();
    let mut entries = Vec::new();
    for (fi, st) in parsed.iter().enumerate() {
        let mut names = st.names();
        names.sort_unstable();
        for name in names {
            let view = st.tensor(name).map_err(|e| anyhow!("{}: tensor {name}: {e}", files[fi].display()))?;
            let kind = kind_of_dtype(view.dtype());
            entries.push(Entry {
                name: name.to_string(),
                shape: view.shape().iter().map(|&d| d as i64).collect(),
                kind,
                dtype_name: format!("{:?}", view.dtype()),
            });
            origin.push((fi, name));
        }
    }
    let vars = vs.variables();
    let plan = plan(&vars, &entries, opts, &source)?;
    for (i, var, transpose) in &plan.copies {
        let (fi, name) = origin[*i];
        let view = parsed[fi].tensor(name).map_err(|e| anyhow!("{}: tensor {name}: {e}", files[fi].display()))?;
        let t = view_to_tensor(name, &view, &files[fi])?;
        let t = if *transpose { t.tr() } else { t };
        copy_into(&vars, var, &t, &files[fi].display().to_string())?;
        loaded(var)?;
    }
    Ok(plan.report)
}

/// Whether `name` is a plain relative path inside its folder (no `..`, not absolute), as a shard name taken
/// from a downloaded index must be before it is joined to a folder.
pub(crate) fn is_plain_relative(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty() && !name.contains('\\') && p.components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The shard files named by a `model.safetensors.index.json` (its `weight_map` values), without repeats,
/// sorted, as paths next to the index.
pub fn safetensors_index_shards(index: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let index = index.as_ref();
    Ok(shard_names(index)?.into_iter().map(|s| index.parent().unwrap_or(Path::new(".")).join(s)).collect())
}

/// The shard file names of a safetensors index, without repeats, sorted.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| anyhow!("{}: cannot read: {e}", index.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", index.display()))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
        anyhow!("{}: expected an object field \"weight_map\" (tensor name → shard file)", index.display())
    })?;
    let mut shards = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| anyhow!("{}: weight_map[{tensor:?}] should be a file name", index.display()))?;
        if !is_plain_relative(file) {
            bail!(
                "{}: weight_map[{tensor:?}] = {file:?} is not a file name inside the checkpoint folder",
                index.display()
            );
        }
        shards.push(file.to_string());
    }
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        bail!("{}: weight_map names no shard files", index.display());
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::save_safetensors;
    use tch::{nn, Device};

    /// A model with a `body` Linear(3→4), a BatchNorm-like int buffer and a `head` Linear(4→2).
    fn model() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = root.sub("body").var("weight", &[4, 3], nn::Init::Const(0.0));
        let _ = root.sub("body").var("bias", &[4], nn::Init::Const(0.0));
        let _ = root.sub("body").add("steps", Tensor::zeros([], (Kind::Int64, Device::Cpu)), false);
        let _ = root.sub("head").var("weight", &[2, 4], nn::Init::Const(-1.0));
        vs
    }

    fn full_checkpoint(prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}body.weight"), Tensor::arange(12, (Kind::Double, Device::Cpu)).view([4, 3])),
            (format!("{prefix}body.bias"), Tensor::from_slice(&[1.0f32, 2., 3., 4.]).to_kind(Kind::Half)),
            (format!("{prefix}body.steps"), Tensor::from(7i64)),
            (format!("{prefix}head.weight"), Tensor::ones([2, 4], (Kind::BFloat16, Device::Cpu))),
        ]
    }

    #[test]
    fn loads_by_name_converting_dtypes() {
        let vs = model();
        let report = load_named(&vs, full_checkpoint(""), &LoadOptions::strict()).unwrap();
        assert_eq!(report.loaded.len(), 4);
        assert!(report.missing.is_empty() && report.unexpected.is_empty() && report.mismatched.is_empty());
        let v = vs.variables();
        assert_eq!(v["body.weight"].kind(), Kind::Float);
        let expect = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([4, 3]);
        assert!(v["body.weight"].equal(&expect));
        assert_eq!(Vec::<f32>::try_from(&v["body.bias"]).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(v["body.steps"].int64_value(&[]), 7);
        // Copied under no_grad: still a trainable leaf (an in-place copy with grad on would have failed).
        assert!(v["body.weight"].requires_grad() && v["body.weight"].is_leaf());
        assert_eq!(report.to_string(), "loaded 4/4 variables");
    }

    #[test]
    fn strips_prefixes_and_skips_buffers() {
        let vs = model();
        let mut ckpt = full_checkpoint("bert.");
        ckpt.push(("embeddings.position_ids".into(), Tensor::arange(5, (Kind::Int64, Device::Cpu))));
        let opts = LoadOptions::strict().strip_prefixes(["roberta.", "bert."]).skip(["embeddings.position_ids"]);
        let report = load_named(&vs, ckpt, &opts).unwrap();
        assert_eq!(report.loaded.len(), 4);
        assert_eq!(report.skipped, vec!["embeddings.position_ids".to_string()]);
        assert_eq!(vs.variables()["body.steps"].int64_value(&[]), 7);
    }

    #[test]
    fn adds_prefixes_and_transposes_conv1d_weights() {
        // GPT-2's layout: names without the model's `transformer.` prefix, a square weight and a non-square one
        // stored [in, out]. The square one would load silently wrong without the transpose.
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root().sub("transformer");
        let _ = root.sub("c_attn").var("weight", &[4, 3], nn::Init::Const(0.0));
        let _ = root.sub("c_proj").var("weight", &[3, 3], nn::Init::Const(0.0));
        let _ = root.sub("c_proj").var("bias", &[3], nn::Init::Const(0.0));
        let a = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]);
        let p = Tensor::arange(9, (Kind::Float, Device::Cpu)).view([3, 3]);
        let ckpt = vec![
            ("c_attn.weight".to_string(), a.shallow_clone()),
            ("transformer.c_proj.weight".to_string(), p.shallow_clone()),
            ("c_proj.bias".to_string(), Tensor::ones([3], (Kind::Float, Device::Cpu))),
        ];
        let opts = LoadOptions::strict().add_prefixes(["transformer."]).transposed(["c_attn.weight", "c_proj.weight"]);
        let report = load_named(&vs, ckpt, &opts).unwrap();
        assert_eq!(report.loaded.len(), 3);
        let v = vs.variables();
        assert!(v["transformer.c_attn.weight"].equal(&a.tr()));
        assert!(v["transformer.c_proj.weight"].equal(&p.tr()));
        // A dotted suffix only: `bias` is not transposed, and `xc_proj.weight` would not match `c_proj.weight`.
        assert!(!opts.is_transposed("transformer.xc_proj.weight") && opts.is_transposed("c_proj.weight"));
    }

    #[test]
    fn new_head_of_another_shape_is_allowed_and_left_alone() {
        let vs = model();
        let mut ckpt = full_checkpoint("");
        ckpt[3].1 = Tensor::ones([1000, 4], (Kind::Float, Device::Cpu));
        ckpt.push(("head.bias".into(), Tensor::ones([1000], (Kind::Float, Device::Cpu))));
        let err = load_named(&vs, ckpt.iter().map(|(n, t)| (n.clone(), t.shallow_clone())), &LoadOptions::strict())
            .unwrap_err()
            .to_string();
        assert!(err.contains("head.weight: model [2, 4] Float, checkpoint [1000, 4] Float"), "{err}");
        assert!(err.contains("1 checkpoint tensor(s) match no variable (head.bias)"), "{err}");
        // Nothing was copied by the failed attempt.
        assert_eq!(vs.variables()["body.steps"].int64_value(&[]), 0);

        let report = load_named(&vs, ckpt, &LoadOptions::new_head(["head."])).unwrap();
        assert_eq!(report.loaded, vec!["body.bias", "body.steps", "body.weight"]);
        assert_eq!(report.mismatched.len(), 1);
        assert_eq!(report.unexpected, vec!["head.bias"]);
        assert!(report.missing.is_empty());
        assert_eq!(vs.variables()["head.weight"].double_value(&[0, 0]), -1.0);
        let shown = report.to_string();
        assert!(shown.starts_with("loaded 3/4 variables; 1 mismatched (head.weight"), "{shown}");
    }

    #[test]
    fn other_architecture_gives_one_clear_error() {
        let vs = model();
        let ckpt: Vec<(String, Tensor)> = (0..9)
            .map(|i| (format!("_blocks.{i}._depthwise_conv.weight"), Tensor::zeros([3], (Kind::Float, Device::Cpu))))
            .collect();
        let err = load_named_from(&vs, ckpt, &LoadOptions::strict(), "effnet.pth").unwrap_err().to_string();
        assert!(err.starts_with("effnet.pth: checkpoint does not fit the model"), "{err}");
        assert!(err.contains("4 model variable(s) missing from it (body.bias, body.steps, body.weight, head.weight)"));
        assert!(err.contains("9 checkpoint tensor(s) match no variable (_blocks.0._depthwise_conv.weight"), "{err}");
        assert!(err.contains("… and 4 more"), "{err}");
        assert!(err.contains("another architecture"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn float_never_lands_in_an_integer_buffer() {
        let vs = model();
        let mut ckpt = full_checkpoint("");
        ckpt[2].1 = Tensor::from(7.5f32);
        let err = load_named(&vs, ckpt, &LoadOptions::lenient()).unwrap_err().to_string();
        assert!(err.contains("body.steps: model [] Int64, checkpoint [] Float"), "{err}");
    }

    #[test]
    fn lenient_reports_without_failing() {
        let vs = model();
        let ckpt = vec![
            ("head.weight".to_string(), Tensor::zeros([2, 4], (Kind::Float, Device::Cpu))),
            ("extra".to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu))),
        ];
        let report = load_named(&vs, ckpt, &LoadOptions::lenient()).unwrap();
        assert_eq!(report.loaded, vec!["head.weight"]);
        assert_eq!(report.missing, vec!["body.bias", "body.steps", "body.weight"]);
        assert_eq!(report.unexpected, vec!["extra"]);
    }

    #[test]
    fn safetensors_shards_load_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = full_checkpoint("");
        save_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), &ckpt[..2], None).unwrap();
        save_safetensors(&dir.path().join("model-00002-of-00002.safetensors"), &ckpt[2..], None).unwrap();
        let index = serde_json::json!({
            "metadata": {"total_size": 0},
            "weight_map": {
                "body.weight": "model-00001-of-00002.safetensors",
                "body.bias": "model-00001-of-00002.safetensors",
                "body.steps": "model-00002-of-00002.safetensors",
                "head.weight": "model-00002-of-00002.safetensors",
            }
        });
        let index_path = dir.path().join("model.safetensors.index.json");
        std::fs::write(&index_path, index.to_string()).unwrap();
        let shards = safetensors_index_shards(&index_path).unwrap();
        assert_eq!(shards.len(), 2);
        let vs = model();
        let report = load_safetensors(&vs, &shards, &LoadOptions::strict()).unwrap();
        assert_eq!(report.loaded.len(), 4);
        let v = vs.variables();
        assert!(v["head.weight"].equal(&Tensor::ones([2, 4], (Kind::Float, Device::Cpu))));
        assert_eq!(v["body.weight"].double_value(&[3, 2]), 11.0);

        let evil = dir.path().join("evil.index.json");
        std::fs::write(&evil, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
        let err = safetensors_index_shards(&evil).unwrap_err().to_string();
        assert!(err.contains("is not a file name inside the checkpoint folder"), "{err}");
    }

    #[test]
    fn corrupt_safetensors_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
        let err = read_safetensors(&p).unwrap_err().to_string();
        assert!(err.contains("bad.safetensors: not a valid safetensors file"), "{err}");
        let vs = model();
        assert!(load_safetensors(&vs, &[p], &LoadOptions::strict()).is_err());
        let err = read_safetensors(dir.path().join("absent.safetensors")).unwrap_err().to_string();
        assert!(err.contains("absent.safetensors: cannot open"), "{err}");
    }
}
