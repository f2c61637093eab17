//! The pretext-task SDK: what a plugin author implements, and how it becomes a plugin.
//!
//! An author implements [`PretextTask`] — views and targets from a batch, a head built from
//! a `VarBuilder`, a loss — and writes `pretext_core::export_plugin!(MyTask);`. The macro
//! wraps the task in a [`Session`] (backbone, head, optimizer, state I/O) and exposes that
//! through the C ABI in [`abi`]. Tensors never cross that boundary: the host and each plugin
//! carry their own copy of candle, whose tensor ids would collide (see DESIGN.md).

pub mod abi;
mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod export;
pub mod heads;
pub mod losses;
mod optim;
mod session;
pub mod wire;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rand::rngs::StdRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::{ByteImages, FloatImages};

pub use error::TaskError;
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind, named_vars};
pub use session::{Description, Normalize, Session, SessionConfig, StepMetrics, merge_settings};

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
}

/// The pretext inputs and targets a task made from one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Views {
    /// What the backbone encodes, values in `0.0..=1.0` (the session normalises them).
    pub images: FloatImages,
    /// Class targets of the pretext task, if it has any (empty for contrastive tasks).
    pub targets: Vec<u32>,
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

    fn new(config: Self::Config, input: InputSpec) -> Result<Self, TaskError>;

    /// Makes the pretext inputs and targets of one batch (CPU only; seeded `rng`).
    fn make_views(&self, batch: &ByteImages, rng: &mut StdRng) -> Result<Views, TaskError>;

    /// Builds the head; `vb` is already under the prefix `head.`.
    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Self::Head>;

    /// The loss from the backbone's features of `views.images` (one row per view image) and
    /// the targets as a `u32` tensor when the views had any.
    fn loss(
        &self,
        head: &Self::Head,
        features: &Tensor,
        targets: Option<&Tensor>,
        train: bool,
    ) -> candle_core::Result<TaskOutput>;

    /// The pretext inputs of a few images, captioned, for `samples/`. The default shows each
    /// view image with its target.
    fn samples(&self, batch: &ByteImages, rng: &mut StdRng) -> Result<Vec<Sample>, TaskError> {
        let views = self.make_views(batch, rng)?;
        let per_source = (views.images.n / batch.n.max(1)).max(1);
        Ok((0..views.images.n)
            .map(|i| Sample {
                group: i / per_source,
                caption: views.targets.get(i).map_or_else(|| format!("view {i}"), |t| format!("target {t}")),
                image: views.images.one(i),
            })
            .collect())
    }
}
