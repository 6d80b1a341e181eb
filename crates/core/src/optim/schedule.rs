use serde::{Deserialize, Serialize};

/// Shape of the learning-rate curve after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Constant after warmup.
    Constant,
    /// Linear decay to 0 at the last step.
    #[default]
    Linear,
    /// Half-cosine decay to 0 at the last step.
    Cosine,
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Self::Constant),
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            _ => Err(format!("unknown schedule {s:?}: expected constant, linear or cosine")),
        }
    }
}

/// A learning-rate multiplier per optimizer step, with linear warmup, following Hugging Face's
/// `get_{constant,linear,cosine}_schedule_with_warmup`: step `s` (0-based, the number of updates already made)
/// uses `lr · factor(s)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Curve after warmup.
    pub kind: ScheduleKind,
    /// Warmup length in optimizer steps.
    pub warmup_steps: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
}

impl Schedule {
    /// A schedule whose warmup is given in steps, or as a fraction of `total_steps` (rounded up, as Hugging Face).
    pub fn new(kind: ScheduleKind, total_steps: usize, warmup_steps: Option<usize>, warmup_ratio: f64) -> Self {
        let warmup_steps = warmup_steps.unwrap_or_else(|| (warmup_ratio * total_steps as f64).ceil() as usize);
        Self { kind, warmup_steps, total_steps }
    }

    /// The multiplier for step `step`.
    pub fn factor(&self, step: usize) -> f64 {
        let (s, w, t) = (step as f64, self.warmup_steps as f64, self.total_steps as f64);
        if step < self.warmup_steps {
            return s / w.max(1.0);
        }
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            ScheduleKind::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn values_at_given_steps() {
        let lin = Schedule::new(ScheduleKind::Linear, 100, Some(10), 0.0);
        assert!(close(lin.factor(0), 0.0));
        assert!(close(lin.factor(5), 0.5));
        assert!(close(lin.factor(10), 1.0));
        assert!(close(lin.factor(55), 0.5));
        assert!(close(lin.factor(100), 0.0));
        assert!(close(lin.factor(120), 0.0));

        let cos = Schedule::new(ScheduleKind::Cosine, 110, None, 0.1);
        assert_eq!(cos.warmup_steps, 11);
        assert!(close(cos.factor(11), 1.0));
        assert!(close(cos.factor(11 + 49), 0.5 * (1.0 + (std::f64::consts::PI * 49.0 / 99.0).cos())));
        assert!(close(cos.factor(110), 0.0));

        let cst = Schedule::new(ScheduleKind::Constant, 50, Some(4), 0.0);
        assert!(close(cst.factor(2), 0.5));
        assert!(close(cst.factor(4), 1.0));
        assert!(close(cst.factor(49), 1.0));

        let none = Schedule::new(ScheduleKind::Linear, 10, None, 0.0);
        assert!(close(none.factor(0), 1.0), "no warmup starts at the full rate");
    }

    #[test]
    fn parses_names() {
        assert_eq!("cosine".parse::<ScheduleKind>().unwrap(), ScheduleKind::Cosine);
        assert!("exp".parse::<ScheduleKind>().unwrap_err().contains("expected constant, linear or cosine"));
    }
}
