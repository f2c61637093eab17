//! What a task's loss and its after-step hook see of one training step: the views on the
//! device, the student's backbone and head, the momentum teacher, the task's own state and
//! where the step sits in the run ([`Schedule`]).
//!
//! [`Step`] must not let a task change anything the session owns behind its back: the
//! student is read-only here (the optimizer changes it), the teacher only answers without a
//! gradient (the EMA changes it), and state writes wait in `updates` until the session has
//! seen a finite loss, so a failed step leaves the checkpointable state as it was.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

use crate::features::InputNorm;
use crate::images::FloatImages;
use crate::model::Backbone;

/// Where a step sits in the run. `step` counts from 0 over the whole run and `epoch` from 1,
/// so `step / total_steps` is the fraction of training done before this step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: u64,
    pub epochs: u64,
    /// The learning rate of this step (after warm-up and decay).
    pub lr: f64,
}

impl Schedule {
    /// The fraction of the run done before this step, in `0..1`.
    #[allow(clippy::cast_precision_loss)]
    pub fn progress(&self) -> f64 {
        (self.step as f64 / self.total_steps.max(1) as f64).clamp(0.0, 1.0)
    }

    /// A cosine ramp from `start` (first step) to `end` (after the last), the shape of BYOL's
    /// and DINO's momentum schedules: `end - (end - start)·(1 + cos(π·progress))/2`.
    pub fn cosine(&self, start: f64, end: f64) -> f64 {
        end - (end - start) * (1.0 + (std::f64::consts::PI * self.progress()).cos()) / 2.0
    }

    /// DINO's teacher-temperature warm-up: `np.linspace(start, end, warmup_epochs)` over the
    /// first epochs (both ends included), then `end`.
    #[allow(clippy::cast_precision_loss)]
    pub fn warmup_by_epoch(&self, start: f64, end: f64, warmup_epochs: u64) -> f64 {
        let done = self.epoch.saturating_sub(1);
        match warmup_epochs {
            w if done >= w => end,
            1 => start,
            w => start + (end - start) * done as f64 / (w - 1) as f64,
        }
    }
}

/// The networks behind a [`Step`]: the student's backbone and head, the teacher's.
pub(crate) struct Nets<'a, H> {
    pub backbone: &'a Backbone,
    pub head: &'a H,
    pub teacher: Option<(&'a Backbone, &'a H)>,
}

/// A task's view of one training step, handed to [`PretextTask::loss`](super::PretextTask::loss).
pub struct Step<'a, H> {
    nets: Nets<'a, H>,
    views: &'a [Tensor],
    targets: Option<&'a Tensor>,
    schedule: Schedule,
    state: &'a BTreeMap<String, Tensor>,
    updates: BTreeMap<String, Tensor>,
    norm: &'a InputNorm,
}

impl<'a, H> Step<'a, H> {
    pub(crate) fn new(
        nets: Nets<'a, H>,
        views: &'a [Tensor],
        targets: Option<&'a Tensor>,
        schedule: Schedule,
        state: &'a BTreeMap<String, Tensor>,
        norm: &'a InputNorm,
    ) -> Self {
        Self { nets, views, targets, schedule, state, updates: BTreeMap::new(), norm }
    }

    /// The view groups the task made, normalised, on the device: one `(N, C, H, W)` tensor
    /// per group of [`Views::groups`](super::Views::groups), in the same order.
    pub fn views(&self) -> &[Tensor] {
        self.views
    }

    /// View group `i`, or an error naming how many there are.
    pub fn view(&self, i: usize) -> candle_core::Result<&Tensor> {
        self.views.get(i).ok_or_else(|| {
            candle_core::Error::Msg(format!("the task asked for view group {i} but made {}", self.views.len()))
        })
    }

    /// The views' targets as a `u32` tensor; an error if the task made none.
    pub fn targets(&self) -> candle_core::Result<&Tensor> {
        self.targets.ok_or_else(|| candle_core::Error::Msg("this task's views have no targets".into()))
    }

    pub fn head(&self) -> &H {
        self.nets.head
    }

    /// The student backbone itself, for tasks that drive it on more than images (MAE feeds
    /// a ViT the visible patch tokens through [`Backbone::as_vit`]).
    pub fn backbone(&self) -> &Backbone {
        self.nets.backbone
    }

    /// The student backbone's features of `x` (training mode: batch statistics).
    pub fn encode(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.nets.backbone.forward_t(x, true)
    }

    /// The student's features of every view group, each group encoded on its own (its own
    /// batch statistics), rows concatenated in group order.
    pub fn features(&self) -> candle_core::Result<Tensor> {
        match self.views {
            [one] => self.encode(one),
            groups => Tensor::cat(&groups.iter().map(|g| self.encode(g)).collect::<candle_core::Result<Vec<_>>>()?, 0),
        }
    }

    /// The teacher's answer for `x`: its backbone's features (training mode, as BYOL's and
    /// DINO's teachers run) passed through `f` with the teacher's head, without a gradient.
    /// An error if the task asked for no teacher in [`Training`](super::Training).
    pub fn teacher(
        &self,
        x: &Tensor,
        f: impl FnOnce(&H, &Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (backbone, head) = self
            .nets
            .teacher
            .ok_or_else(|| candle_core::Error::Msg("the task has no teacher (see `Training::teacher`)".into()))?;
        let features = backbone.forward_t(x, true)?.detach();
        Ok(f(head, &features)?.detach())
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Network input `(N, C, H, W)`, normalised as [`Step::views`] are, back to images in
    /// `0..=1`: what [`PretextTask::predicted_samples`](super::PretextTask::predicted_samples)
    /// returns.
    pub fn to_images(&self, x: &Tensor) -> candle_core::Result<FloatImages> {
        self.norm.invert(x)
    }

    /// The current value of task state `name` (this step's update if it made one).
    pub fn state(&self, name: &str) -> candle_core::Result<&Tensor> {
        lookup(&self.updates, self.state, name)
    }

    /// Replaces task state `name` (same shape); kept only if the step's loss is finite.
    pub fn set_state(&mut self, name: &str, value: &Tensor) -> candle_core::Result<()> {
        check_shape(self.state, name, value)?;
        self.updates.insert(name.to_string(), value.detach());
        Ok(())
    }

    pub(crate) fn into_updates(self) -> BTreeMap<String, Tensor> {
        self.updates
    }
}

/// What [`PretextTask::after_step`](super::PretextTask::after_step) sees once the optimizer
/// (and the teacher's EMA) have run: the student's parameters by name, the task's state and
/// the schedule. Parameters may be changed in place (e.g. SwAV renormalises its prototypes).
pub struct AfterStep<'a> {
    pub(crate) params: &'a [(String, Var)],
    pub(crate) state: &'a mut BTreeMap<String, Tensor>,
    pub(crate) schedule: Schedule,
}

impl AfterStep<'_> {
    /// Student parameter `name` (`backbone.…` or `head.…`), if it exists.
    pub fn param(&self, name: &str) -> Option<&Var> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn state(&self, name: &str) -> candle_core::Result<&Tensor> {
        declared(self.state, name)
    }

    pub fn set_state(&mut self, name: &str, value: &Tensor) -> candle_core::Result<()> {
        check_shape(self.state, name, value)?;
        self.state.insert(name.to_string(), value.detach());
        Ok(())
    }
}

fn lookup<'s>(
    updates: &'s BTreeMap<String, Tensor>,
    state: &'s BTreeMap<String, Tensor>,
    name: &str,
) -> candle_core::Result<&'s Tensor> {
    updates.get(name).map_or_else(|| declared(state, name), Ok)
}

fn declared<'s>(state: &'s BTreeMap<String, Tensor>, name: &str) -> candle_core::Result<&'s Tensor> {
    state.get(name).ok_or_else(|| {
        candle_core::Error::Msg(format!("the task has no state `{name}` (declare it in `PretextTask::init_state`)"))
    })
}

/// State keeps the shape it was declared with, so checkpoints stay loadable.
fn check_shape(state: &BTreeMap<String, Tensor>, name: &str, value: &Tensor) -> candle_core::Result<()> {
    let old = declared(state, name)?;
    if old.dims() != value.dims() {
        candle_core::bail!(
            "task state `{name}` has shape {:?}; a value of shape {:?} cannot replace it",
            old.dims(),
            value.dims()
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(step: u64, total_steps: u64, epoch: u64) -> Schedule {
        Schedule { step, total_steps, epoch, epochs: 10, lr: 0.1 }
    }

    #[test]
    fn cosine_runs_from_start_to_end() {
        assert!((at(0, 100, 1).cosine(0.996, 1.0) - 0.996).abs() < 1e-12);
        // Halfway the cosine term is 1/2: 1 - 0.004·(1 + 0)/2.
        assert!((at(50, 100, 5).cosine(0.996, 1.0) - 0.998).abs() < 1e-12);
        assert!((at(100, 100, 10).cosine(0.996, 1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn warmup_is_linear_per_epoch_then_constant() {
        // DINO: np.linspace(0.04, 0.07, 3) = 0.04, 0.055, 0.07 for epochs 1..3, then 0.07.
        let t = |epoch| at(0, 1, epoch).warmup_by_epoch(0.04, 0.07, 3);
        for (epoch, want) in [(1, 0.04), (2, 0.055), (3, 0.07), (4, 0.07), (9, 0.07)] {
            assert!((t(epoch) - want).abs() < 1e-12, "epoch {epoch}: {}", t(epoch));
        }
        assert!((at(0, 1, 1).warmup_by_epoch(0.04, 0.07, 0) - 0.07).abs() < 1e-12);
        assert!((at(0, 1, 1).warmup_by_epoch(0.04, 0.07, 1) - 0.04).abs() < 1e-12);
    }
}
