//! Rotation prediction (Gidaris et al. 2018, "RotNet") as a Pretext plugin.
//!
//! Every image is shown at 0°, 90°, 180° and 270° (counter-clockwise quarter turns, as
//! `torch.rot90`), after the standard augmentation of the paper (a random shift within
//! `crop_padding` pixels and a horizontal flip, the same for all four views), and the
//! network classifies which rotation it sees: a 4-way cross-entropy on the backbone's
//! features through a linear head.

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};
use pretext_core::augment::{Image, hflip, pad_crop, rot90};
use pretext_core::data::{ByteImages, FloatImages};
use pretext_core::task::losses::classification;
use pretext_core::task::{InputSpec, PretextTask, Sample, TaskError, TaskInfo, TaskOutput, Views};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// The four rotations, in quarter turns; the class of a view is its index here.
pub const ROTATIONS: [i32; 4] = [0, 1, 2, 3];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotationConfig {
    /// Probability of a horizontal flip before rotating (the same flip for all four views).
    pub flip_p: f32,
    /// Random crop with this much zero padding before rotating (torchvision's
    /// `RandomCrop(size, padding)`, as RotNet's CIFAR training): the image moves by up to
    /// this many pixels along each axis. 0 turns it off.
    pub crop_padding: usize,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self { flip_p: 0.5, crop_padding: 0 }
    }
}

pub struct Rotation {
    config: RotationConfig,
}

impl Rotation {
    /// The four rotated views of image `i`, in the order of [`ROTATIONS`].
    fn rotations(&self, batch: &ByteImages, i: usize, rng: &mut StdRng) -> Vec<Image> {
        let mut img = pad_crop(&Image::from_bytes(batch, i), self.config.crop_padding, rng);
        if rng.random::<f32>() < self.config.flip_p {
            img = hflip(&img);
        }
        ROTATIONS.iter().map(|&k| rot90(&img, k)).collect()
    }
}

impl PretextTask for Rotation {
    type Config = RotationConfig;
    type Head = Linear;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "rotation".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "RotNet: predict which of four rotations was applied".into(),
            samples: "each image at 0°, 90°, 180° and 270°".into(),
        }
    }

    fn new(config: RotationConfig, input: InputSpec) -> Result<Self, TaskError> {
        if input.height != input.width {
            return Err(TaskError::Config(format!(
                "rotation needs square images (a quarter turn must keep the shape), got {}×{}",
                input.height, input.width
            )));
        }
        Ok(Self { config })
    }

    fn make_views(&self, batch: &ByteImages, rng: &mut StdRng) -> Result<Views, TaskError> {
        let mut images = FloatImages::empty(batch.c, batch.h, batch.w);
        let mut targets = Vec::with_capacity(4 * batch.n);
        for i in 0..batch.n {
            for (class, view) in self.rotations(batch, i, rng).iter().enumerate() {
                view.push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
                targets.push(u32::try_from(class).unwrap_or(0));
            }
        }
        Ok(Views { images, targets })
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
        candle_nn::linear(feature_dim, ROTATIONS.len(), vb.pp("fc"))
    }

    fn loss(
        &self,
        head: &Linear,
        features: &Tensor,
        targets: Option<&Tensor>,
        _train: bool,
    ) -> candle_core::Result<TaskOutput> {
        let Some(targets) = targets else { candle_core::bail!("rotation views come with targets") };
        classification(&head.forward(features)?, targets)
    }

    fn samples(&self, batch: &ByteImages, rng: &mut StdRng) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            for (k, view) in self.rotations(batch, i, rng).into_iter().enumerate() {
                out.push(Sample { group: i, caption: format!("{}°", 90 * k), image: view.into_batch() });
            }
        }
        Ok(out)
    }
}

pretext_core::export_plugin!(Rotation);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn four_views_per_image_labelled_by_quarter_turns() {
        let task = Rotation::new(
            RotationConfig { flip_p: 0.0, crop_padding: 0 },
            InputSpec { channels: 1, height: 2, width: 2 },
        )
        .unwrap();
        // One 2×2 image [[10, 20], [30, 40]]; counter-clockwise quarter turn: [[20, 40], [10, 30]].
        let batch = ByteImages::new(1, 1, 2, 2, vec![10, 20, 30, 40]).unwrap();
        let views = task.make_views(&batch, &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(views.targets, vec![0, 1, 2, 3]);
        let as_bytes = |i: usize| views.images.one(i).to_bytes().data;
        assert_eq!(as_bytes(0), vec![10, 20, 30, 40]);
        assert_eq!(as_bytes(1), vec![20, 40, 10, 30]);
        assert_eq!(as_bytes(2), vec![40, 30, 20, 10]);
        assert_eq!(as_bytes(3), vec![30, 10, 40, 20]);
    }

    #[test]
    fn the_four_views_share_one_shift() {
        let config = RotationConfig { flip_p: 0.0, crop_padding: 3 };
        let task = Rotation::new(config, InputSpec { channels: 1, height: 8, width: 8 }).unwrap();
        let batch = ByteImages::new(1, 1, 8, 8, (1..=64).collect()).unwrap();
        let mut moved = 0;
        for seed in 0..10 {
            let views = task.make_views(&batch, &mut StdRng::seed_from_u64(seed)).unwrap();
            let upright = Image::from_floats(&views.images, 0);
            for (k, &turns) in ROTATIONS.iter().enumerate() {
                assert_eq!(Image::from_floats(&views.images, k), rot90(&upright, turns));
            }
            moved += usize::from(upright.to_bytes() != batch.data);
        }
        assert!(moved > 5, "the shift should usually move the image ({moved} of 10)");
    }

    #[test]
    fn non_square_images_are_refused() {
        assert!(Rotation::new(RotationConfig::default(), InputSpec { channels: 1, height: 2, width: 3 }).is_err());
    }
}
