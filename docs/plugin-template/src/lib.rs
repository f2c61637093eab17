//! A Pretext plugin, and the template of `docs/writing-a-plugin.md`: **flip prediction**.
//!
//! Every image is shown twice, as it is and mirrored (upside down by default), and the
//! network learns to tell which is which: a 2-way cross-entropy on the backbone's features
//! through a linear head. Like rotation prediction (which it simplifies), it can only be
//! solved by noticing how objects are usually oriented.

use candle_nn::VarBuilder;
use pretext_sdk::augment::{Image, grayscale, hflip, vflip};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::model::{Linear, linear};
use pretext_sdk::task::losses::classification;
use pretext_sdk::task::{ImageRngs, InputSpec, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Which mirror image the network has to recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// Upside down (mirrored top to bottom).
    Vertical,
    /// Mirrored left to right.
    Horizontal,
}

/// The task's settings: `[task_config]` in a `--config` file. Every field has a default,
/// so a user can set just one; unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlipConfig {
    pub axis: Axis,
    /// Probability of turning both views of an image gray, so colour gives nothing away.
    pub grayscale_p: f32,
}

impl Default for FlipConfig {
    fn default() -> Self {
        Self { axis: Axis::Vertical, grayscale_p: 0.2 }
    }
}

pub struct Flip {
    config: FlipConfig,
}

impl Flip {
    /// Image `i` of the batch and its mirror, in class order (0: as is, 1: mirrored).
    fn pair(&self, batch: &ByteImages, i: usize, rng: &mut StdRng) -> [Image; 2] {
        let mut image = Image::from_bytes(batch, i);
        if image.c == 3 && rng.random::<f32>() < self.config.grayscale_p {
            image = grayscale(&image);
        }
        let mirrored = match self.config.axis {
            Axis::Vertical => vflip(&image),
            Axis::Horizontal => hflip(&image),
        };
        [image, mirrored]
    }
}

impl PretextTask for Flip {
    type Config = FlipConfig;
    type Head = Linear;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "flip".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "predict whether an image was mirrored".into(),
            samples: "each image as it is and mirrored".into(),
        }
    }

    fn new(config: FlipConfig, _input: InputSpec) -> Result<Self, TaskError> {
        if !(0.0..=1.0).contains(&config.grayscale_p) {
            return Err(TaskError::Config(format!("grayscale_p must be in [0, 1], not {}", config.grayscale_p)));
        }
        Ok(Self { config })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let mut images = FloatImages::empty(batch.c, batch.h, batch.w);
        let mut targets = Vec::with_capacity(2 * batch.n);
        for i in 0..batch.n {
            for (class, view) in (0u32..).zip(self.pair(batch, i, rngs.image(i))) {
                view.push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
                targets.push(class);
            }
        }
        Ok(Views::new(images, targets))
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
        linear(feature_dim, 2, &vb.pp("fc"))
    }

    fn loss(&self, step: &mut Step<'_, Linear>) -> candle_core::Result<TaskOutput> {
        classification(&step.head().forward(&step.features()?)?, step.targets()?)
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            for (caption, view) in ["as is", "mirrored"].into_iter().zip(self.pair(batch, i, rngs.image(i))) {
                out.push(Sample { group: i, caption: caption.into(), image: view.into_batch() });
            }
        }
        Ok(out)
    }
}

pretext_sdk::export_plugin!(Flip);
