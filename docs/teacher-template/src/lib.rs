//! A Pretext plugin with a momentum teacher and task state: the example of "Teachers,
//! multi-crop and task state" in `docs/writing-a-plugin.md`, a small BYOL with a centre.
//!
//! Two augmented views of every image. The student (backbone, projector, predictor) predicts
//! the teacher's projection of the other view; the teacher is an exponential moving average
//! of the student that gets no gradient. A running mean of the teacher's projections is kept
//! as task state (saved in checkpoints) and subtracted from its targets, as DINO centres its
//! teacher, to show how state is declared, read and replaced.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use pretext_sdk::dist::mean_over_ranks;
use pretext_sdk::images::ByteImages;
use pretext_sdk::task::heads::Mlp;
// BYOL's `2 − 2·cos(p, z)`, averaged over the rows.
use pretext_sdk::task::losses::normalized_mse;
use pretext_sdk::task::{
    ImageRngs, InputSpec, Momentum, MultiCrop, PairAugment, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput,
    Training, Views,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeanTeacherConfig {
    /// Width of the projection (and of the predictor's hidden layer, times four).
    pub dim: usize,
    /// Teacher momentum at the first step; it rises to 1 on a cosine.
    pub momentum: f64,
    /// Momentum of the running centre.
    pub center_momentum: f64,
}

impl Default for MeanTeacherConfig {
    fn default() -> Self {
        Self { dim: 64, momentum: 0.99, center_momentum: 0.9 }
    }
}

pub struct MeanTeacher {
    config: MeanTeacherConfig,
    views: MultiCrop,
}

pub struct Head {
    projector: Mlp,
    predictor: Mlp,
}

impl PretextTask for MeanTeacher {
    type Config = MeanTeacherConfig;
    type Head = Head;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "mean-teacher".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "predict a momentum teacher's centred projection of another view".into(),
            samples: "pairs of augmented views".into(),
        }
    }

    fn new(config: MeanTeacherConfig, input: InputSpec) -> Result<Self, TaskError> {
        if config.dim == 0 || !(0.0..=1.0).contains(&config.momentum) || !(0.0..=1.0).contains(&config.center_momentum) {
            return Err(TaskError::Config("dim must be positive and the momenta in 0..1".into()));
        }
        // Two views of the input's size, one view group each (BYOL's recipe).
        let views = PairAugment::default().crops(input.height)?;
        Ok(Self { config, views })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        self.views.views(batch, rngs)
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Head> {
        let d = self.config.dim;
        Ok(Head {
            projector: Mlp::new(feature_dim, 4 * d, d, true, vb.pp("projector"))?,
            predictor: Mlp::new(d, 4 * d, d, true, vb.pp("predictor"))?,
        })
    }

    /// Ask the session for a teacher: a copy of backbone and head, moved towards the student
    /// after every optimizer step with this momentum schedule.
    fn training(&self) -> Training {
        Training { teacher: Some(Momentum { start: self.config.momentum, end: 1.0 }), ..Training::default() }
    }

    /// Declare the state and its initial value; checkpoints carry it as `state.center`.
    fn init_state(&self, _feature_dim: usize, device: &Device) -> candle_core::Result<Vec<(String, Tensor)>> {
        Ok(vec![("center".into(), Tensor::zeros((1, self.config.dim), DType::F32, device)?)])
    }

    fn loss(&self, step: &mut Step<'_, Head>) -> candle_core::Result<TaskOutput> {
        let (v1, v2) = (step.view(0)?, step.view(1)?);
        let student = |v: &Tensor| {
            let head = step.head();
            head.predictor.forward_t(&head.projector.forward_t(&step.encode(v)?, true)?, true)
        };
        // `teacher` runs the teacher's backbone, then this closure with the teacher's head,
        // and detaches the result: no gradient reaches the teacher.
        let teacher = |v: &Tensor| step.teacher(v, |head, features| head.projector.forward_t(features, true));
        let (p1, p2, z1, z2) = (student(v1)?, student(v2)?, teacher(v1)?, teacher(v2)?);

        let center = step.state("center")?.clone();
        let loss = (normalized_mse(&p1, &z2.broadcast_sub(&center)?)? + normalized_mse(&p2, &z1.broadcast_sub(&center)?)?)?;
        // The new centre is kept only if this step's loss is finite.
        let m = self.config.center_momentum;
        // Over the global batch when the run is data-parallel (this rank's batch otherwise).
        let batch_mean = mean_over_ranks(&Tensor::cat(&[&z1, &z2], 0)?.mean_keepdim(0)?)?;
        step.set_state("center", &((center * m)? + (batch_mean * (1.0 - m))?)?)?;
        Ok(TaskOutput { loss, metrics: Vec::new() })
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        Ok(self.views.samples(batch, rngs))
    }
}

pretext_sdk::export_plugin!(MeanTeacher);
