use serde::{Deserialize, Serialize};

use super::config::MetricMode;

/// Tracks the best value of the selection metric and the evaluations since it last improved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestTracker {
    /// Direction of the metric.
    pub mode: MetricMode,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Best value so far.
    pub best: Option<f64>,
    /// Optimizer step at which `best` was reached.
    pub best_step: Option<usize>,
    /// Evaluations since the last improvement.
    pub bad_evals: usize,
}

impl BestTracker {
    /// A tracker with no value yet.
    pub fn new(mode: MetricMode, min_delta: f64) -> Self {
        Self { mode, min_delta, best: None, best_step: None, bad_evals: 0 }
    }

    /// Records `value` seen at `step`; returns whether it is a new best.
    pub fn update(&mut self, value: f64, step: usize) -> bool {
        let improved = match self.best {
            None => true,
            Some(b) => match self.mode {
                MetricMode::Max => value > b + self.min_delta,
                MetricMode::Min => value < b - self.min_delta,
            },
        };
        if improved {
            self.best = Some(value);
            self.best_step = Some(step);
            self.bad_evals = 0;
        } else {
            self.bad_evals += 1;
        }
        improved
    }

    /// Whether `patience` evaluations in a row failed to improve.
    pub fn should_stop(&self, patience: usize) -> bool {
        self.bad_evals >= patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_and_min_delta() {
        let mut t = BestTracker::new(MetricMode::Max, 0.01);
        assert!(t.update(0.5, 1));
        assert!(!t.update(0.505, 2), "within min_delta is no improvement");
        assert!(t.update(0.52, 3));
        assert!(!t.update(0.4, 4));
        assert!(!t.should_stop(2));
        assert!(!t.update(0.52, 5));
        assert!(t.should_stop(2));
        assert_eq!((t.best, t.best_step), (Some(0.52), Some(3)));
        let mut m = BestTracker::new(MetricMode::Min, 0.0);
        assert!(m.update(1.0, 1) && m.update(0.9, 2) && !m.update(0.95, 3));
    }
}
