//! libtorch's operator profiler (Kineto), as `torch.profiler.profile` runs it from Python, and the op-by-op table
//! of a Chrome trace that it saves — so that a suite run and a PyTorch run of the same job can be compared operator
//! by operator (`suite bench … --profile DIR`). The profiler itself is libtorch's (csrc/profiler.cpp).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CString};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

extern "C" {
    fn suite_profiler_start(cuda: c_int, err: *mut c_char, n: c_int) -> c_int;
    fn suite_profiler_stop(path: *const c_char, err: *mut c_char, n: c_int) -> c_int;
}

fn call(f: impl FnOnce(*mut c_char, c_int) -> c_int) -> Result<()> {
    let mut err = vec![0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len() as c_int) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated message into the buffer.
    Err(anyhow!("{}", unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy()))
}

/// A running profiler, started by [`Profiler::start`] on this thread; [`Profiler::save`] stops it.
#[must_use = "the profiler records until saved"]
pub struct Profiler {
    running: bool,
}

impl Profiler {
    /// Starts recording every libtorch operator this thread (and the autograd engine working for it) runs; CUDA
    /// kernels too when `cuda`.
    pub fn start(cuda: bool) -> Result<Self> {
        // SAFETY: plain call into the shim; errors come back as a message.
        call(|e, n| unsafe { suite_profiler_start(cuda as c_int, e, n) }).context("starting libtorch's profiler")?;
        Ok(Self { running: true })
    }

    /// Stops recording and writes the Chrome trace (`chrome://tracing`, Perfetto) to `path`.
    pub fn save(mut self, path: &Path) -> Result<()> {
        self.running = false;
        let c = CString::new(path.to_string_lossy().as_bytes()).context("a trace path with a NUL byte")?;
        // SAFETY: `c` outlives the call.
        call(|e, n| unsafe { suite_profiler_stop(c.as_ptr(), e, n) })
            .with_context(|| format!("saving the profile to {}", path.display()))
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.running {
            // A profiler left running would slow everything after it; the trace of an abandoned profile is dropped.
            let tmp = std::env::temp_dir().join(format!("suite-profile-dropped-{}.json", std::process::id()));
            // SAFETY: as in `save`.
            let c = CString::new(tmp.to_string_lossy().as_bytes()).unwrap_or_default();
            let _ = call(|e, n| unsafe { suite_profiler_stop(c.as_ptr(), e, n) });
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// One operator's share of a profile.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OpTime {
    /// Calls of the operator.
    pub calls: u64,
    /// Microseconds spent in the operator itself, its child operators' time taken out.
    pub self_us: f64,
    /// Microseconds from its start to its end, children included.
    pub total_us: f64,
}

/// Per-operator times of one Chrome trace, by operator name (`aten::addmm`,
/// `autograd::engine::evaluate_function: AddmmBackward0`, …).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpTable {
    pub ops: BTreeMap<String, OpTime>,
    /// Sum of the self times: the time spent in operators.
    pub op_us: f64,
}

impl OpTable {
    /// Reads a Chrome trace saved by libtorch's profiler (from either side: [`Profiler::save`] or Python's
    /// `export_chrome_trace`).
    pub fn from_trace(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not a JSON trace", path.display()))?;
        let Some(events) = v.get("traceEvents").and_then(Value::as_array) else {
            bail!("{}: no traceEvents array", path.display())
        };
        Ok(Self::from_events(events))
    }

    /// The table of a trace's complete (`"ph": "X"`) CPU operator events. Self time is an event's duration less
    /// that of the events directly nested in it on the same thread.
    pub fn from_events(events: &[Value]) -> Self {
        // (thread, start, duration, name) of each operator event.
        let mut ops: Vec<(String, f64, f64, &str)> = events
            .iter()
            .filter(|e| e.get("ph").and_then(Value::as_str) == Some("X"))
            .filter(|e| e.get("cat").and_then(Value::as_str) == Some("cpu_op"))
            .filter_map(|e| {
                let tid = e.get("tid").map(|t| t.to_string())?;
                Some((tid, e.get("ts")?.as_f64()?, e.get("dur")?.as_f64()?, e.get("name")?.as_str()?))
            })
            .collect();
        // Parents before their children: by thread, start, then the longer first.
        ops.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(b.2.total_cmp(&a.2)));
        let mut table = OpTable::default();
        let mut selfs = vec![0.0; ops.len()];
        // Indices of the open events on the current thread, innermost last.
        let mut stack: Vec<usize> = Vec::new();
        for i in 0..ops.len() {
            let (tid, ts, dur, _) = &ops[i];
            if i > 0 && ops[i - 1].0 != *tid {
                stack.clear();
            }
            while let Some(&top) = stack.last() {
                if ops[top].1 + ops[top].2 <= *ts {
                    stack.pop();
                } else {
                    break;
                }
            }
            if let Some(&parent) = stack.last() {
                selfs[parent] -= dur;
            }
            selfs[i] += dur;
            stack.push(i);
        }
        for (i, (_, _, dur, name)) in ops.iter().enumerate() {
            let t = table.ops.entry((*name).to_string()).or_default();
            t.calls += 1;
            t.self_us += selfs[i].max(0.0);
            t.total_us += dur;
            table.op_us += selfs[i].max(0.0);
        }
        table
    }
}

/// One row of a side-by-side comparison of two profiles, per step.
#[derive(Debug, Clone, Serialize)]
pub struct OpRow {
    pub name: String,
    /// Self milliseconds per step and calls per step, on each side (0 where the side never ran it).
    pub a_ms: f64,
    pub b_ms: f64,
    pub a_calls: f64,
    pub b_calls: f64,
}

/// Compares two profiles of `steps_a` and `steps_b` steps: one row per operator either side ran, largest
/// difference in self time per step first.
pub fn compare(a: &OpTable, steps_a: usize, b: &OpTable, steps_b: usize) -> Vec<OpRow> {
    let (na, nb) = (steps_a.max(1) as f64, steps_b.max(1) as f64);
    let names: std::collections::BTreeSet<&String> = a.ops.keys().chain(b.ops.keys()).collect();
    let mut rows: Vec<OpRow> = names
        .into_iter()
        .map(|name| {
            let (x, y) = (a.ops.get(name).cloned().unwrap_or_default(), b.ops.get(name).cloned().unwrap_or_default());
            OpRow {
                name: name.clone(),
                a_ms: x.self_us / 1e3 / na,
                b_ms: y.self_us / 1e3 / nb,
                a_calls: x.calls as f64 / na,
                b_calls: y.calls as f64 / nb,
            }
        })
        .collect();
    rows.sort_by(|r, s| (s.a_ms - s.b_ms).abs().total_cmp(&(r.a_ms - r.b_ms).abs()));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(tid: u64, name: &str, ts: f64, dur: f64) -> Value {
        json!({"ph": "X", "cat": "cpu_op", "tid": tid, "name": name, "ts": ts, "dur": dur})
    }

    #[test]
    fn self_time_takes_out_direct_children_per_thread() {
        let events = vec![
            ev(1, "aten::linear", 0.0, 100.0),
            ev(1, "aten::t", 1.0, 10.0),
            ev(1, "aten::transpose", 2.0, 5.0),
            ev(1, "aten::addmm", 20.0, 70.0),
            // Another thread overlapping in time is not a child.
            ev(2, "aten::mul", 30.0, 40.0),
            // Not an operator event.
            json!({"ph": "X", "cat": "user_annotation", "tid": 1, "name": "step", "ts": 0.0, "dur": 1000.0}),
        ];
        let t = OpTable::from_events(&events);
        assert_eq!(t.ops["aten::linear"].self_us, 20.0);
        assert_eq!(t.ops["aten::t"].self_us, 5.0);
        assert_eq!(t.ops["aten::transpose"].self_us, 5.0);
        assert_eq!(t.ops["aten::addmm"].self_us, 70.0);
        assert_eq!(t.ops["aten::mul"].self_us, 40.0);
        assert_eq!(t.ops["aten::linear"].total_us, 100.0);
        assert_eq!(t.op_us, 140.0);
        assert!(!t.ops.contains_key("step"));
    }

    #[test]
    fn the_real_profiler_records_matmuls_of_a_tensor_program() {
        let dir = std::env::temp_dir().join(format!("suite-profile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.json");
        let p = Profiler::start(false).unwrap();
        let x = tch::Tensor::randn([64, 64], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let y = x.matmul(&x).relu().sum(tch::Kind::Float);
        y.backward();
        p.save(&path).unwrap();
        let t = OpTable::from_trace(&path).unwrap();
        assert!(t.ops.get("aten::mm").is_some_and(|o| o.calls >= 1), "{:?}", t.ops.keys().collect::<Vec<_>>());
        assert!(t.ops.keys().any(|k| k.contains("MmBackward0")), "{:?}", t.ops.keys().collect::<Vec<_>>());
        assert!(t.op_us > 0.0);
        let rows = compare(&t, 1, &OpTable::default(), 1);
        assert!(rows.iter().any(|r| r.name == "aten::mm" && r.a_ms > 0.0 && r.b_ms == 0.0));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
