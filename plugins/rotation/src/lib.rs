//! Rotation prediction (Gidaris et al. 2018, "RotNet") as a Pretext plugin.
//!
//! Every image is shown at 0°, 90°, 180° and 270° (counter-clockwise quarter turns, as
//! `torch.rot90`), after one augmentation shared by the four views (RotNet's random shift
//! within `crop_padding` pixels, a random resized crop, a horizontal flip), and the
//! network classifies which rotation it sees: a 4-way cross-entropy on the backbone's
//! features through an MLP head (`hidden_dim`; 0 gives the paper's linear head), which
//! takes the rotation-specific last layer off the backbone.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use pretext_sdk::augment::{Image, check_crop_scale, hflip, pad_crop, random_zoom, rot90};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::model::{Linear, linear};
use pretext_sdk::task::heads::Mlp;
use pretext_sdk::task::losses::classification;
use pretext_sdk::task::{ImageRngs, InputSpec, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views};
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
    /// Area range of a random resized crop (aspect ratio 3/4 to 4/3, back to full size)
    /// before rotating, so the rotation must be told from a part of the object;
    /// `[1.0, 1.0]` turns it off (the paper's setting). On Fashion-MNIST `[0.4, 1.0]`
    /// kept the task from saturating and scored a little higher on validation.
    pub crop_scale: (f32, f32),
    /// Hidden size of the MLP head (Linear → BatchNorm → ReLU → Linear); 0 gives the
    /// paper's linear head. With the MLP the rotation-specific layer is the head's, not the
    /// backbone's last: Fashion-MNIST kNN on validation rose from 78.3% to 81.6%.
    pub hidden_dim: usize,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self { flip_p: 0.5, crop_padding: 0, crop_scale: (0.4, 1.0), hidden_dim: 512 }
    }
}

pub struct Rotation {
    config: RotationConfig,
}

/// The rotation classifier: the paper's linear layer (`fc`) or an MLP.
pub enum RotationHead {
    Linear(Linear),
    Mlp(Mlp),
}

impl RotationHead {
    /// The cross-entropy of the rotation from the views' backbone features.
    fn loss(&self, features: &Tensor, targets: &Tensor) -> candle_core::Result<TaskOutput> {
        let logits = match self {
            Self::Linear(fc) => fc.forward(features)?,
            Self::Mlp(mlp) => mlp.forward_t(features, true)?,
        };
        classification(&logits, targets)
    }
}

impl Rotation {
    /// The four rotated views of image `i`, in the order of [`ROTATIONS`].
    fn rotations(&self, batch: &ByteImages, i: usize, rng: &mut StdRng) -> Vec<Image> {
        let shifted = pad_crop(&Image::from_bytes(batch, i), self.config.crop_padding, rng);
        let mut img = random_zoom(shifted, self.config.crop_scale, rng);
        if rng.random::<f32>() < self.config.flip_p {
            img = hflip(&img);
        }
        ROTATIONS.iter().map(|&k| rot90(&img, k)).collect()
    }
}

impl PretextTask for Rotation {
    type Config = RotationConfig;
    type Head = RotationHead;

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
        check_crop_scale(config.crop_scale).map_err(TaskError::Config)?;
        Ok(Self { config })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let mut images = FloatImages::empty(batch.c, batch.h, batch.w);
        let mut targets = Vec::with_capacity(4 * batch.n);
        for i in 0..batch.n {
            for (class, view) in self.rotations(batch, i, rngs.image(i)).iter().enumerate() {
                view.push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
                targets.push(u32::try_from(class).unwrap_or(0));
            }
        }
        Ok(Views::new(images, targets))
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<RotationHead> {
        let classes = ROTATIONS.len();
        Ok(match self.config.hidden_dim {
            0 => RotationHead::Linear(linear(feature_dim, classes, &vb.pp("fc"))?),
            hidden => RotationHead::Mlp(Mlp::new(feature_dim, hidden, classes, true, vb.pp("mlp"))?),
        })
    }

    fn loss(&self, step: &mut Step<'_, RotationHead>) -> candle_core::Result<TaskOutput> {
        step.head().loss(&step.features()?, step.targets()?)
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            for (k, view) in self.rotations(batch, i, rngs.image(i)).into_iter().enumerate() {
                out.push(Sample { group: i, caption: format!("{}°", 90 * k), image: view.into_batch() });
            }
        }
        Ok(out)
    }
}

pretext_sdk::export_plugin!(Rotation);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;

    #[test]
    fn four_views_per_image_labelled_by_quarter_turns() {
        let task = Rotation::new(
            RotationConfig { flip_p: 0.0, crop_scale: (1.0, 1.0), ..RotationConfig::default() },
            InputSpec { channels: 1, height: 2, width: 2, patch_size: None },
        )
        .unwrap();
        // One 2×2 image [[10, 20], [30, 40]]; counter-clockwise quarter turn: [[20, 40], [10, 30]].
        let batch = ByteImages::new(1, 1, 2, 2, vec![10, 20, 30, 40]).unwrap();
        let views = task.make_views(&batch, &mut ImageRngs::from_seed(0, batch.n)).unwrap();
        assert_eq!(views.targets, vec![0, 1, 2, 3]);
        let as_bytes = |i: usize| views.groups[0].one(i).to_bytes().data;
        assert_eq!(as_bytes(0), vec![10, 20, 30, 40]);
        assert_eq!(as_bytes(1), vec![20, 40, 10, 30]);
        assert_eq!(as_bytes(2), vec![40, 30, 20, 10]);
        assert_eq!(as_bytes(3), vec![30, 10, 40, 20]);
    }

    #[test]
    fn the_four_views_share_one_shift_or_crop() {
        let shift =
            RotationConfig { flip_p: 0.0, crop_padding: 3, crop_scale: (1.0, 1.0), ..RotationConfig::default() };
        let crop = RotationConfig { flip_p: 0.0, crop_scale: (0.3, 1.0), ..RotationConfig::default() };
        for config in [shift, crop] {
            let task = Rotation::new(config, InputSpec { channels: 1, height: 8, width: 8, patch_size: None }).unwrap();
            let batch = ByteImages::new(1, 1, 8, 8, (1..=64).collect()).unwrap();
            let mut moved = 0;
            for seed in 0..10 {
                let views = task.make_views(&batch, &mut ImageRngs::from_seed(seed, batch.n)).unwrap();
                let upright = Image::from_floats(&views.groups[0], 0);
                assert_eq!((upright.h, upright.w), (8, 8));
                for (k, &turns) in ROTATIONS.iter().enumerate() {
                    assert_eq!(Image::from_floats(&views.groups[0], k), rot90(&upright, turns));
                }
                moved += usize::from(upright.to_bytes() != batch.data);
            }
            assert!(moved > 5, "the augmentation should usually change the image ({moved} of 10)");
        }
    }

    #[test]
    fn bad_crop_scales_are_refused() {
        let input = InputSpec { channels: 1, height: 8, width: 8, patch_size: None };
        for crop_scale in [(0.0, 1.0), (0.8, 0.5), (0.5, 1.5), (f32::NAN, 1.0)] {
            let config = RotationConfig { crop_scale, ..RotationConfig::default() };
            assert!(Rotation::new(config, input).is_err(), "{crop_scale:?}");
        }
    }

    #[test]
    fn the_mlp_head_classifies_four_rotations() {
        use candle_core::{DType, Device};
        use candle_nn::VarMap;

        let config = RotationConfig { hidden_dim: 8, ..RotationConfig::default() };
        let task = Rotation::new(config, InputSpec { channels: 1, height: 8, width: 8, patch_size: None }).unwrap();
        let map = VarMap::new();
        let head = task.build_head(6, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
        assert!(matches!(head, RotationHead::Mlp(_)));
        let features = (Tensor::arange(0f32, 48.0, &Device::Cpu).unwrap().reshape((8, 6)).unwrap() / 48.0).unwrap();
        let targets = Tensor::new(&[0u32, 1, 2, 3, 0, 1, 2, 3], &Device::Cpu).unwrap();
        let out = head.loss(&features, &targets).unwrap();
        assert!(out.loss.to_scalar::<f32>().unwrap().is_finite());
        assert_eq!(out.metrics[0].0, "pretext_acc");
        let mut names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names.first().map(String::as_str), Some("mlp.0.bias"));
    }

    #[test]
    fn non_square_images_are_refused() {
        assert!(
            Rotation::new(RotationConfig::default(), InputSpec { channels: 1, height: 2, width: 3, patch_size: None })
                .is_err()
        );
    }
}
