//! Learning-rate schedule: linear warmup, then cosine decay to zero (or the peak held), per
//! step.

pub use crate::task::LrDecay;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub base: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: LrDecay,
}

impl LrSchedule {
    /// The learning rate for step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let (s, w, t) = (step as f64, self.warmup_steps as f64, self.total_steps.max(1) as f64);
        if step < self.warmup_steps {
            return self.base * (s + 1.0) / w;
        }
        if self.decay == LrDecay::Constant {
            return self.base;
        }
        let progress = ((s - w) / (t - w).max(1.0)).clamp(0.0, 1.0);
        self.base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule { base: 1.0, warmup_steps: 4, total_steps: 104, decay: LrDecay::Cosine };
        assert!((s.at(0) - 0.25).abs() < 1e-12);
        assert!((s.at(3) - 1.0).abs() < 1e-12);
        assert!((s.at(4) - 1.0).abs() < 1e-12);
        assert!((s.at(54) - 0.5).abs() < 1e-12);
        assert!(s.at(103) < 0.001);
        assert!(s.at(200) >= 0.0);
    }

    #[test]
    fn warmup_then_constant() {
        let s = LrSchedule { base: 2.0, warmup_steps: 2, total_steps: 10, decay: LrDecay::Constant };
        let rates: Vec<f64> = (0..10).map(|i| s.at(i)).collect();
        assert_eq!(rates, [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!("Constant".parse::<LrDecay>(), Ok(LrDecay::Constant));
        assert!("step".parse::<LrDecay>().unwrap_err().contains("cosine or constant"));
    }
}
