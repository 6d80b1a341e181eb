//! Parity tests against the Python references, each on hundreds of random cases made by a seeded generator in the
//! oracle script (one Python run per test): seqeval 1.2.2, the official SQuAD scripts, scikit-learn 1.9 and
//! CPython's own `str`/`re` Unicode rules.

mod multilabel_parity;
mod seqeval_parity;
mod squad_parity;
mod unicode_parity;

use serde_json::Value;
use suite_core::python::run_python;

/// Runs an oracle script and parses the one JSON document it prints.
fn oracle(code: &str, args: &[&str]) -> Value {
    let out = run_python(code, args).expect("Python reference (scripts/setup.sh installs seqeval, scikit-learn)");
    serde_json::from_str(&out).expect("oracle output is JSON")
}

/// Largest absolute difference seen between our numbers and the reference's, with a hard limit.
struct MaxDiff {
    what: &'static str,
    tol: f64,
    max: f64,
    compared: usize,
}

impl MaxDiff {
    fn new(what: &'static str, tol: f64) -> Self {
        Self { what, tol, max: 0.0, compared: 0 }
    }

    /// Compares one number; `context` says which case and field, for the failure message.
    fn check(&mut self, context: impl FnOnce() -> String, ours: f64, theirs: f64) {
        let d = (ours - theirs).abs();
        assert!(
            d <= self.tol,
            "{}: {}: ours {ours:e}, reference {theirs:e} (|Δ| {d:e} > {:e})",
            self.what,
            context(),
            self.tol
        );
        self.max = self.max.max(d);
        self.compared += 1;
    }

    fn report(&self) {
        eprintln!(
            "{}: {} numbers compared, max |Δ| = {:e} (tolerance {:e})",
            self.what, self.compared, self.max, self.tol
        );
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_string()).collect()
}

fn sentences(v: &Value) -> Vec<Vec<String>> {
    v.as_array().expect("array of sentences").iter().map(strings).collect()
}
