//! Asynchronous successive halving (ASHA, Li et al. 2020), as Optuna's `SuccessiveHalvingPruner`: a trial's
//! resource is the number of evaluations it has done; rung `k` sits at `min_resource · η^k` evaluations. A trial
//! reaching a rung goes on only if its value is among the top `⌊n/η⌋` (at least 1) of the `n` values recorded at
//! that rung so far, its own included; otherwise it stops there. Promotion is asynchronous: a trial is judged
//! against whatever has reached the rung before it, never waits for others.

use suite_core::train::MetricMode;

/// The rung schedule and reduction factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asha {
    /// Evaluations before the first rung (`r`).
    pub min_resource: usize,
    /// Reduction factor `η` (keep the top `1/η` at each rung).
    pub reduction: usize,
}

/// What a rung decides for a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RungDecision {
    /// Go on to the next rung.
    Promote,
    /// Stop the trial here.
    Stop,
}

impl Default for Asha {
    fn default() -> Self {
        Self { min_resource: 1, reduction: 3 }
    }
}

impl Asha {
    /// The rung at `evals` evaluations, if one sits there.
    pub fn rung_at(&self, evals: usize) -> Option<usize> {
        let (r, eta) = (self.min_resource.max(1), self.reduction.max(2));
        let mut at = r;
        let mut k = 0;
        while at <= evals {
            if at == evals {
                return Some(k);
            }
            at = at.saturating_mul(eta);
            k += 1;
        }
        None
    }

    /// The decision for a trial whose value at a rung is `value`, given the values `others` recorded there before
    /// it. A value that is not a number (a diverged run) never goes on.
    pub fn decide(&self, value: f64, others: &[f64], mode: MetricMode) -> RungDecision {
        if value.is_nan() {
            return RungDecision::Stop;
        }
        let mut all: Vec<f64> = others.iter().copied().filter(|v| !v.is_nan()).collect();
        all.push(value);
        // Best first.
        all.sort_by(|a, b| match mode {
            MetricMode::Max => b.total_cmp(a),
            MetricMode::Min => a.total_cmp(b),
        });
        let keep = (all.len() / self.reduction.max(2)).max(1);
        let threshold = all[keep - 1];
        let good = match mode {
            MetricMode::Max => value >= threshold,
            MetricMode::Min => value <= threshold,
        };
        if good {
            RungDecision::Promote
        } else {
            RungDecision::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RungDecision::*;

    #[test]
    fn rungs_sit_at_r_times_powers_of_eta() {
        let a = Asha { min_resource: 1, reduction: 3 };
        let rungs: Vec<(usize, usize)> = (0..30).filter_map(|e| a.rung_at(e).map(|k| (e, k))).collect();
        assert_eq!(rungs, [(1, 0), (3, 1), (9, 2), (27, 3)]);
        let b = Asha { min_resource: 2, reduction: 2 };
        let rungs: Vec<usize> = (0..20).filter(|&e| b.rung_at(e).is_some()).collect();
        assert_eq!(rungs, [2, 4, 8, 16]);
    }

    #[test]
    fn promotion_keeps_the_top_third_asynchronously() {
        let a = Asha::default();
        let max = MetricMode::Max;
        // The first trial at a rung has nothing to beat.
        assert_eq!(a.decide(0.1, &[], max), Promote);
        // With fewer than η values, only the best so far goes on (ties go on).
        assert_eq!(a.decide(0.5, &[0.6], max), Stop);
        assert_eq!(a.decide(0.6, &[0.6], max), Promote);
        assert_eq!(a.decide(0.7, &[0.6, 0.5], max), Promote);
        // Six values: the top two go on.
        let others = [0.9, 0.8, 0.3, 0.2, 0.1];
        assert_eq!(a.decide(0.85, &others, max), Promote);
        assert_eq!(a.decide(0.7, &others, max), Stop);
        assert_eq!(a.decide(0.95, &others, max), Promote);
        // Smaller is better for losses.
        assert_eq!(a.decide(0.15, &[0.9, 0.8, 0.3, 0.2, 0.1], MetricMode::Min), Promote);
        assert_eq!(a.decide(0.25, &[0.9, 0.8, 0.3, 0.2, 0.1], MetricMode::Min), Stop);
        // A diverged run stops; diverged neighbours do not count.
        assert_eq!(a.decide(f64::NAN, &[], max), Stop);
        assert_eq!(a.decide(0.1, &[f64::NAN], max), Promote);
    }

    #[test]
    fn reduction_factor_two_keeps_half() {
        let a = Asha { min_resource: 1, reduction: 2 };
        let others = [1.0, 2.0, 3.0];
        assert_eq!(a.decide(2.5, &others, MetricMode::Max), Promote);
        assert_eq!(a.decide(1.5, &others, MetricMode::Max), Stop);
    }
}
