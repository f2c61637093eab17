//! BYOL (Grill et al. 2020, "Bootstrap your own latent") as a Pretext plugin.
//!
//! Two augmented views of every image. The online network (backbone, projector, predictor)
//! predicts the target network's projection of the other view; the target network is an
//! exponential moving average of the online backbone and projector and gets no gradient.
//! The loss is the normalised MSE `2 − 2·cos(p, z)` of both directions, summed.
//!
//! Defaults are solo-learn's CIFAR settings (`scripts/pretrain/cifar/byol.yaml` in
//! vturrisi/solo-learn): projector 4096 → 256 and predictor 4096 → 256 (Linear-BN-ReLU-Linear,
//! as the paper), target momentum τ from 0.99 to 1 on a cosine (`solo/utils/momentum.py`; the
//! paper's ImageNet runs start at 0.996), and its asymmetric two-view recipe
//! ([`PairAugment`]'s defaults: solarisation on the second view only).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use pretext_sdk::images::ByteImages;
use pretext_sdk::task::heads::Mlp;
use pretext_sdk::task::losses::normalized_mse;
use pretext_sdk::task::{
    ImageRngs, InputSpec, Momentum, MultiCrop, PairAugment, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput,
    Training, Views,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ByolConfig {
    /// Hidden and output size of the projector.
    pub proj_hidden_dim: usize,
    pub proj_output_dim: usize,
    /// Hidden size of the predictor (its output is the projector's).
    pub pred_hidden_dim: usize,
    /// Target momentum τ at the first step and after the last (cosine in between).
    pub base_tau: f64,
    pub final_tau: f64,
    #[serde(flatten)]
    pub views: PairAugment,
}

impl Default for ByolConfig {
    fn default() -> Self {
        Self {
            proj_hidden_dim: 4096,
            proj_output_dim: 256,
            pred_hidden_dim: 4096,
            base_tau: 0.99,
            final_tau: 1.0,
            views: PairAugment::default(),
        }
    }
}

pub struct Byol {
    config: ByolConfig,
    crops: MultiCrop,
}

/// The online network's layers on top of the backbone. The target network is a copy of the
/// whole head and uses only its projector.
pub struct ByolHead {
    projector: Mlp,
    predictor: Mlp,
}

impl PretextTask for Byol {
    type Config = ByolConfig;
    type Head = ByolHead;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "byol".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "BYOL: predict a momentum target network's projection of another view".into(),
            samples: "pairs of augmented views (the second one sometimes solarised)".into(),
        }
    }

    fn new(config: ByolConfig, input: InputSpec) -> Result<Self, TaskError> {
        if input.height != input.width {
            return Err(TaskError::Config(format!("BYOL needs square images, got {}×{}", input.height, input.width)));
        }
        if [config.proj_hidden_dim, config.proj_output_dim, config.pred_hidden_dim].contains(&0) {
            return Err(TaskError::Config("the projector and predictor sizes must be positive".into()));
        }
        if !(0.0..=1.0).contains(&config.base_tau) || !(0.0..=1.0).contains(&config.final_tau) {
            return Err(TaskError::Config("base_tau and final_tau must lie in 0..1".into()));
        }
        let crops = config.views.crops(input.height)?;
        Ok(Self { config, crops })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        self.crops.views(batch, rngs)
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<ByolHead> {
        let c = &self.config;
        Ok(ByolHead {
            projector: Mlp::new(feature_dim, c.proj_hidden_dim, c.proj_output_dim, true, vb.pp("projector"))?,
            predictor: Mlp::new(c.proj_output_dim, c.pred_hidden_dim, c.proj_output_dim, true, vb.pp("predictor"))?,
        })
    }

    fn training(&self) -> Training {
        Training {
            teacher: Some(Momentum { start: self.config.base_tau, end: self.config.final_tau }),
            ..Training::default()
        }
    }

    fn loss(&self, step: &mut Step<'_, ByolHead>) -> candle_core::Result<TaskOutput> {
        let (v1, v2) = (step.view(0)?, step.view(1)?);
        // Online: q_θ(g_θ(f_θ(v))).
        let online = |v: &Tensor| -> candle_core::Result<Tensor> {
            let head = step.head();
            head.predictor.forward_t(&head.projector.forward_t(&step.encode(v)?, true)?, true)
        };
        // Target: g_ξ(f_ξ(v)), no gradient.
        let target = |v: &Tensor| step.teacher(v, |head, y| head.projector.forward_t(y, true));
        let (p1, p2) = (online(v1)?, online(v2)?);
        let (z1, z2) = (target(v1)?, target(v2)?);
        let loss = (normalized_mse(&p1, &z2)? + normalized_mse(&p2, &z1)?)?;
        // τ of the EMA that follows this step, so the schedule shows in the curves.
        #[allow(clippy::cast_possible_truncation)]
        let tau = step.schedule().cosine(self.config.base_tau, self.config.final_tau) as f32;
        Ok(TaskOutput { loss, metrics: vec![("target_momentum".into(), Tensor::new(tau, p1.device())?)] })
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        Ok(self.crops.samples(batch, rngs))
    }
}

pretext_sdk::export_plugin!(Byol);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;

    #[test]
    fn views_are_two_groups_of_the_input_size_and_the_task_has_a_teacher() {
        let task =
            Byol::new(ByolConfig::default(), InputSpec { channels: 3, height: 8, width: 8, patch_size: None }).unwrap();
        let batch = ByteImages::new(3, 3, 8, 8, (0..3 * 3 * 64).map(|v| (v % 251) as u8).collect()).unwrap();
        let views = task.make_views(&batch, &mut ImageRngs::from_seed(1, batch.n)).unwrap();
        let shapes: Vec<_> = views.groups.iter().map(|g| (g.n, g.c, g.h, g.w)).collect();
        assert_eq!(shapes, [(3, 3, 8, 8), (3, 3, 8, 8)]);
        let teacher = task.training().teacher.unwrap();
        assert_eq!((teacher.start, teacher.end), (0.99, 1.0));
    }
}
