//! What a task asks of the session's step beyond "backbone, head, loss, optimizer": a
//! momentum teacher, gradient clipping, parameters frozen for the first epochs.
//!
//! These are declarations, applied by the session in a fixed order — backward, clip, freeze
//! (DINO's loop's order), optimizer, teacher EMA, after-step hook — and never run by a task
//! itself, so two tasks that declare the same thing train the same way.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// The session-side settings of a task, from [`PretextTask::training`](super::PretextTask::training).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Training {
    /// An exponential-moving-average copy of the backbone and head (BYOL's target network,
    /// DINO's teacher), updated after every optimizer step.
    pub teacher: Option<Momentum>,
    pub clip: Option<GradClip>,
    /// Parameters whose gradients are dropped for the first epochs (DINO's last layer).
    pub freeze: Vec<Freeze>,
}

/// The teacher's momentum `m` in `teacher ← m·teacher + (1 − m)·student`, following a cosine
/// from `start` at the first step to `end` after the last ([`Schedule::cosine`](super::Schedule::cosine)),
/// as in BYOL (0.996 → 1) and DINO (0.996 → 1). `start == end` keeps it constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    pub start: f64,
    pub end: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradClip {
    /// Each parameter's gradient scaled to an L2 norm of at most this (DINO's
    /// `clip_gradients`: coefficient `max / (norm + 1e-6)` where below 1).
    PerParameter(f64),
    /// All gradients scaled together to a global L2 norm of at most this (PyTorch's
    /// `clip_grad_norm_`: coefficient `max / (norm + 1e-6)` where below 1).
    Global(f64),
}

/// Drop the gradients of every parameter whose name starts with `prefix` (e.g.
/// `head.last_layer`) during epochs `1..=epochs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Freeze {
    pub prefix: String,
    pub epochs: u64,
}

/// `momentum` in `0..=1`, clip limits positive, freeze prefixes non-empty.
pub(crate) fn check(training: &Training) -> Result<(), String> {
    if let Some(m) = training.teacher
        && !((0.0..=1.0).contains(&m.start) && (0.0..=1.0).contains(&m.end))
    {
        return Err(format!("the teacher momentum must lie in 0..1, got {} → {}", m.start, m.end));
    }
    if let Some(GradClip::PerParameter(max) | GradClip::Global(max)) = training.clip
        && !(max > 0.0 && max.is_finite())
    {
        return Err(format!("the gradient clip must be a positive number, got {max}"));
    }
    if training.freeze.iter().any(|f| f.prefix.is_empty()) {
        return Err("a frozen parameter prefix must not be empty".into());
    }
    Ok(())
}

/// Drops the gradients of parameters frozen in `epoch`.
pub(crate) fn freeze(grads: &mut GradStore, params: &[(String, Var)], rules: &[Freeze], epoch: u64) {
    for rule in rules.iter().filter(|r| epoch <= r.epochs) {
        for (_, var) in params.iter().filter(|(name, _)| name.starts_with(&rule.prefix)) {
            grads.remove(var.as_tensor());
        }
    }
}

/// Scales gradients as `clip` says.
pub(crate) fn clip(grads: &mut GradStore, params: &[(String, Var)], clip: GradClip) -> candle_core::Result<()> {
    let present: Vec<(&Var, Tensor)> =
        params.iter().filter_map(|(_, v)| grads.get(v.as_tensor()).map(|g| (v, g.clone()))).collect();
    let scale = |norm: f64, max: f64| {
        let coef = max / (norm + 1e-6);
        (coef < 1.0).then_some(coef)
    };
    match clip {
        GradClip::PerParameter(max) => {
            for (var, g) in present {
                let norm = f64::from(g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?);
                if let Some(coef) = scale(norm, max) {
                    grads.insert(var.as_tensor(), (g * coef)?);
                }
            }
        }
        GradClip::Global(max) => {
            let mut total = 0.0;
            for (_, g) in &present {
                total += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
            if let Some(coef) = scale(total.sqrt(), max) {
                for (var, g) in present {
                    grads.insert(var.as_tensor(), (g * coef)?);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Two parameters with gradients (3, 4) (norm 5) and (0, 12) (norm 12).
    fn setup() -> (Vec<(String, Var)>, GradStore) {
        let a = Var::new(&[1.5f32, 2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[0.0f32, 6.0], &Device::Cpu).unwrap();
        // loss = a·a + b·b gives gradients 2a = (3, 4) and 2b = (0, 12).
        let loss = (a.as_tensor().sqr().unwrap().sum_all().unwrap() + b.as_tensor().sqr().unwrap().sum_all().unwrap())
            .unwrap();
        let grads = loss.backward().unwrap();
        (vec![("head.a".into(), a), ("head.last.b".into(), b)], grads)
    }

    fn grad(grads: &GradStore, v: &Var) -> Option<Vec<f32>> {
        grads.get(v.as_tensor()).map(|g| g.to_vec1().unwrap())
    }

    #[test]
    fn per_parameter_clip_scales_each_gradient_on_its_own() {
        let (params, mut grads) = setup();
        clip(&mut grads, &params, GradClip::PerParameter(6.0)).unwrap();
        // (3, 4) has norm 5 < 6: untouched; (0, 12) scaled by 6 / (12 + 1e-6).
        assert_eq!(grad(&grads, &params[0].1).unwrap(), vec![3.0, 4.0]);
        let b = grad(&grads, &params[1].1).unwrap();
        assert!((b[1] - 12.0 * 6.0 / (12.0 + 1e-6)).abs() < 1e-5, "{b:?}");
    }

    #[test]
    fn global_clip_scales_all_gradients_together() {
        let (params, mut grads) = setup();
        clip(&mut grads, &params, GradClip::Global(6.5)).unwrap();
        // Global norm √(25 + 144) = 13, coefficient 6.5 / 13 = 1/2 (to 1e-6).
        let a = grad(&grads, &params[0].1).unwrap();
        let b = grad(&grads, &params[1].1).unwrap();
        assert!((a[0] - 1.5).abs() < 1e-5 && (a[1] - 2.0).abs() < 1e-5 && (b[1] - 6.0).abs() < 1e-5);
    }

    #[test]
    fn frozen_parameters_lose_their_gradient_only_in_their_epochs() {
        let rules = [Freeze { prefix: "head.last".into(), epochs: 1 }];
        let (params, mut grads) = setup();
        freeze(&mut grads, &params, &rules, 1);
        assert!(grad(&grads, &params[0].1).is_some());
        assert!(grad(&grads, &params[1].1).is_none());
        let (params, mut grads) = setup();
        freeze(&mut grads, &params, &rules, 2);
        assert!(grad(&grads, &params[1].1).is_some());
    }

    #[test]
    fn bad_settings_are_refused_in_words() {
        let t = Training { teacher: Some(Momentum { start: 0.99, end: 1.5 }), ..Training::default() };
        assert!(check(&t).unwrap_err().contains("momentum"));
        let t = Training { clip: Some(GradClip::Global(0.0)), ..Training::default() };
        assert!(check(&t).unwrap_err().contains("clip"));
        assert!(check(&Training::default()).is_ok());
    }
}
