//! The pretext-task SDK: what a plugin author implements, and how it becomes a plugin.
//!
//! An author implements [`PretextTask`] — views and targets from a batch, a head built from
//! a `VarBuilder`, a loss over a [`Step`] — and writes `pretext_sdk::export_plugin!(MyTask);`.
//! A task that needs more declares it: a momentum teacher, gradient clipping or frozen
//! parameters ([`Training`]), state kept across steps and in checkpoints
//! ([`PretextTask::init_state`]), several crop sizes (view groups in [`Views`]), work after
//! the optimizer step ([`PretextTask::after_step`]). The macro wraps the task in a
//! [`Session`] (backbone, head, teacher, optimizer, state I/O) and exposes that through the C
//! ABI in [`abi`]. Tensors never cross that boundary: the host and each plugin carry their
//! own copy of candle, whose tensor ids would collide (see DESIGN.md).

pub mod abi;
mod crops;
mod ddp;
mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod export;
pub mod heads;
#[cfg(not(target_arch = "wasm32"))]
mod inplace;
pub mod losses;
mod optim;
mod rngs;
mod session;
mod step;
mod teacher;
mod training;
pub mod wire;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::images::{ByteImages, FloatImages};

pub use crops::{CropGroup, MultiCrop, PairAugment};
pub use ddp::BUCKET_FLOATS;
pub use error::TaskError;
pub use optim::{LrDecay, Optimizer, OptimizerConfig, OptimizerKind, named_vars};
pub use rngs::{ImageRngs, mix};
pub use session::{Description, Normalize, Session, SessionConfig, StepMetrics, merge_settings};
pub use step::{AfterStep, Schedule, Step};
pub use teacher::ema;
pub use training::{Freeze, GradClip, Momentum, Training};

/// What a task tells the host and the viewers about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Short name used on the command line (`--task simclr`).
    pub name: String,
    pub version: String,
    /// One line for `pretext plugins`.
    pub description: String,
    /// What `samples/` shows, e.g. "pairs of augmented views".
    pub samples: String,
}

/// The shape of the images a task will be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The side of the backbone's square patches when it is a ViT: a task that works on
    /// patches (MAE's masking) needs it, and views whose sides are multiples of it waste no
    /// padding. `None` for convolutional backbones.
    #[serde(default)]
    pub patch_size: Option<usize>,
}

/// The pretext inputs and targets a task made from one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Views {
    /// What the backbone encodes, values in `0.0..=1.0` (the session normalises them), in
    /// groups: one for most tasks; one per view for tasks that encode each view on its own
    /// (BYOL: view 1 of every image, then view 2); one per crop size for multi-crop (DINO:
    /// the global crops, then the local ones). Images within a group share a size.
    pub groups: Vec<FloatImages>,
    /// Class targets of the pretext task, if it has any (empty for contrastive tasks).
    pub targets: Vec<u32>,
}

impl Views {
    /// Views in one group.
    pub fn new(images: FloatImages, targets: Vec<u32>) -> Self {
        Self { groups: vec![images], targets }
    }

    /// Every view image, group after group.
    pub fn count(&self) -> usize {
        self.groups.iter().map(|g| g.n).sum()
    }

    /// View image `i` counted across groups, as one image.
    pub fn image(&self, i: usize) -> Option<FloatImages> {
        let mut i = i;
        for g in &self.groups {
            if i < g.n {
                return Some(g.one(i));
            }
            i -= g.n;
        }
        None
    }
}

/// The loss of one step and any task metrics (scalars), still on the device.
pub struct TaskOutput {
    pub loss: Tensor,
    pub metrics: Vec<(String, Tensor)>,
}

/// One image of the task's pretext inputs, for `samples/` and the viewers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Which source image of the batch this belongs to.
    pub group: usize,
    pub caption: String,
    /// One image, values in `0.0..=1.0`.
    pub image: FloatImages,
}

/// A self-supervised pretext task. Implement this and call [`export_plugin!`](crate::export_plugin).
///
/// `make_views` runs on the host's loader threads while another batch trains, so it must
/// not touch the device; everything after it runs on the session's device.
pub trait PretextTask: Sized + Send + Sync + 'static {
    /// The task's own settings; `Default` is what `pretext plugins --json` shows.
    type Config: Serialize + DeserializeOwned + Default + Clone + Send + Sync;
    /// The module trained on top of the backbone's features.
    type Head: Send;

    fn info() -> TaskInfo;

    /// The peak AdamW learning rate (at batch 256) the task's defaults were chosen with,
    /// used when a run names neither `--lr` nor another optimizer. `None`, the default,
    /// keeps the host's 1e-3.
    fn adamw_lr() -> Option<f64> {
        None
    }

    /// What the AdamW rate does after the warmup in the runs the task's defaults were chosen
    /// with, used (like [`PretextTask::adamw_lr`]) when a run names no `--lr-schedule` and
    /// keeps AdamW. `None`, the default, keeps the host's cosine decay.
    fn adamw_lr_decay() -> Option<LrDecay> {
        None
    }

    fn new(config: Self::Config, input: InputSpec) -> Result<Self, TaskError>;

    /// Makes the pretext inputs and targets of one batch (CPU only). Everything drawn for
    /// image `i` must come from `rngs.image(i)`: then an image's views do not depend on its
    /// batch, and a data-parallel run augments exactly as a one-process run.
    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError>;

    /// Builds the head; `vb` is already under the prefix `head.`.
    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Self::Head>;

    /// The loss of one training step. `step` has the views on the device, the student
    /// ([`Step::features`] for the backbone's features of every view, [`Step::head`]), the
    /// teacher if [`PretextTask::training`] asked for one, the task's state and the schedule.
    fn loss(&self, step: &mut Step<'_, Self::Head>) -> candle_core::Result<TaskOutput>;

    /// What the session does around the loss besides the optimizer step: a momentum teacher,
    /// gradient clipping, frozen parameters. The default is none of them.
    fn training(&self) -> Training {
        Training::default()
    }

    /// Named tensors the task keeps across steps and in checkpoints (DINO's centre, a queue
    /// of negatives), with their initial values; read and replaced through [`Step::state`]
    /// and [`Step::set_state`]. `feature_dim` is the backbone's. The default is none.
    fn init_state(&self, feature_dim: usize, device: &Device) -> candle_core::Result<Vec<(String, Tensor)>> {
        let _ = (feature_dim, device);
        Ok(Vec::new())
    }

    /// Runs after the optimizer step and the teacher's update of every step.
    fn after_step(&self, step: &mut AfterStep<'_>) -> candle_core::Result<()> {
        let _ = step;
        Ok(())
    }

    /// What the networks make of the sample views as they are now, shown after
    /// [`PretextTask::samples`]' images: MAE's reconstructions, say. `step` holds the views
    /// `make_views` draws with the samples' seed (so the same crops and masks), the current
    /// networks and state, and the schedule of the last training step; nothing computed here
    /// is trained, and [`Step::to_images`] turns network input back into images. The host
    /// asks at the run's start and after each checkpoint. The default adds nothing.
    fn predicted_samples(&self, step: &mut Step<'_, Self::Head>) -> candle_core::Result<Vec<Sample>> {
        let _ = step;
        Ok(Vec::new())
    }

    /// The pretext inputs of a few images, captioned, for `samples/`. The default shows each
    /// view image with its target and assumes each source image's views are consecutive (one
    /// group, as rotation and Jigsaw make them); tasks with crop-major groups return
    /// [`MultiCrop::samples`] instead.
    /// `rngs` are seeded as the ones [`PretextTask::predicted_samples`]' views are made with.
    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        let views = self.make_views(batch, rngs)?;
        let count = views.count();
        let per_source = (count / batch.n.max(1)).max(1);
        Ok((0..count)
            .filter_map(|i| {
                Some(Sample {
                    group: i / per_source,
                    caption: views.targets.get(i).map_or_else(|| format!("view {i}"), |t| format!("target {t}")),
                    image: views.image(i)?,
                })
            })
            .collect())
    }
}
