//! Views made crop by crop, in groups of one size: two views of every image for BYOL, Barlow
//! Twins and VICReg (one group each, so each view gets its own batch statistics), global and
//! local crops for DINO's multi-crop.
//!
//! A group lists one augmentation per crop; crop `k` of every image comes before crop `k + 1`
//! (so a group of two crops of N images holds rows `0..N` and `N..2N`, the layout the losses
//! split on). This only composes the `augment` transforms: no tensors, no device.

use serde::{Deserialize, Serialize};

use super::{ImageRngs, Sample, TaskError, Views};
use crate::augment::{Image, SimclrAugment, check_crop_scale};
use crate::images::{ByteImages, FloatImages};

/// The two views of BYOL, Barlow Twins and VICReg: SimCLR's transforms plus solarisation,
/// with blur and solarisation set per view. The defaults are solo-learn's CIFAR recipe
/// (`scripts/pretrain/cifar/augmentations/asymmetric.yaml` in vturrisi/solo-learn): crops of
/// 8–100% of the area, jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale p 0.2, no blur at 32 px,
/// solarisation on the second view only (p 0.2), BYOL's asymmetry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairAugment {
    /// Area range of the random resized crop.
    pub crop_scale: (f32, f32),
    /// Colour jitter (brightness, contrast, saturation, hue) and its probability.
    pub jitter: (f32, f32, f32, f32),
    pub jitter_p: f32,
    pub gray_p: f32,
    /// Blur and solarisation probabilities of the first and the second view.
    pub blur_p: (f32, f32),
    pub solarize_p: (f32, f32),
}

impl Default for PairAugment {
    fn default() -> Self {
        Self {
            crop_scale: (0.08, 1.0),
            jitter: (0.4, 0.4, 0.2, 0.1),
            jitter_p: 0.8,
            gray_p: 0.2,
            blur_p: (0.0, 0.0),
            solarize_p: (0.0, 0.2),
        }
    }
}

impl PairAugment {
    /// The two views at `size`×`size`, one group each.
    pub fn crops(&self, size: usize) -> Result<MultiCrop, TaskError> {
        check_crop_scale(self.crop_scale).map_err(TaskError::Config)?;
        let view = |blur_p, solarize_p| SimclrAugment {
            size,
            crop_scale: self.crop_scale,
            jitter: self.jitter,
            jitter_p: self.jitter_p,
            gray_p: self.gray_p,
            blur_p,
            solarize_p,
            ..SimclrAugment::default()
        };
        let crops = MultiCrop::pairs([view(self.blur_p.0, self.solarize_p.0), view(self.blur_p.1, self.solarize_p.1)]);
        crops.check()?;
        Ok(crops)
    }
}

/// Crops of one size, one augmentation per crop of each image.
#[derive(Clone, Debug, PartialEq)]
pub struct CropGroup {
    /// What the samples call these crops ("view 1", "global", "local").
    pub name: String,
    pub augments: Vec<SimclrAugment>,
}

/// The groups of crops a task makes from every image.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiCrop {
    pub groups: Vec<CropGroup>,
}

impl MultiCrop {
    /// One group per view, one crop per group: `views` as BYOL, Barlow Twins and VICReg use
    /// them (each view encoded on its own).
    pub fn pairs(views: [SimclrAugment; 2]) -> Self {
        let [a, b] = views;
        Self {
            groups: vec![
                CropGroup { name: "view 1".into(), augments: vec![a] },
                CropGroup { name: "view 2".into(), augments: vec![b] },
            ],
        }
    }

    /// Checks that every group has crops of one size.
    pub fn check(&self) -> Result<(), TaskError> {
        for g in &self.groups {
            let Some(first) = g.augments.first() else {
                return Err(TaskError::Config(format!("the crop group `{}` has no crops", g.name)));
            };
            if first.size == 0 || g.augments.iter().any(|a| a.size != first.size) {
                return Err(TaskError::Config(format!("the crops of group `{}` must share one non-zero size", g.name)));
            }
        }
        Ok(())
    }

    /// The views of a batch: one [`Views::groups`] entry per crop group, crop-major.
    pub fn views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let size = g.augments.first().map_or(0, |a| a.size);
            let mut images = FloatImages::empty(batch.c, size, size);
            images.data.reserve(g.augments.len() * batch.n * images.image_len());
            for augment in &g.augments {
                for i in 0..batch.n {
                    augment
                        .apply(&Image::from_bytes(batch, i), rngs.image(i))
                        .push_to(&mut images)
                        .map_err(|e| TaskError::Input(e.to_string()))?;
                }
            }
            groups.push(images);
        }
        Ok(Views { groups, targets: Vec::new() })
    }

    /// Every crop of every image, captioned with its group ("global 2"), grouped by image.
    pub fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Vec<Sample> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            let image = Image::from_bytes(batch, i);
            for g in &self.groups {
                for (k, augment) in g.augments.iter().enumerate() {
                    let caption = if g.augments.len() == 1 { g.name.clone() } else { format!("{} {}", g.name, k + 1) };
                    out.push(Sample { group: i, caption, image: augment.apply(&image, rngs.image(i)).into_batch() });
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;

    #[test]
    fn groups_hold_their_crops_crop_major_at_their_size() {
        let global = SimclrAugment::with_size(8);
        let local = SimclrAugment { crop_scale: (0.05, 0.4), ..SimclrAugment::with_size(4) };
        let crops = MultiCrop {
            groups: vec![
                CropGroup { name: "global".into(), augments: vec![global.clone(), global] },
                CropGroup { name: "local".into(), augments: vec![local; 3] },
            ],
        };
        crops.check().unwrap();
        let batch = ByteImages::new(5, 3, 8, 8, (0..5 * 3 * 64).map(|v| (v % 253) as u8).collect()).unwrap();
        let views = crops.views(&batch, &mut ImageRngs::from_seed(3, batch.n)).unwrap();
        let shapes: Vec<_> = views.groups.iter().map(|g| (g.n, g.c, g.h, g.w)).collect();
        assert_eq!(shapes, [(10, 3, 8, 8), (15, 3, 4, 4)]);
        assert_eq!(views.count(), 25);
        let samples = crops.samples(&batch, &mut ImageRngs::from_seed(3, batch.n));
        assert_eq!(samples.len(), 25);
        let captions: Vec<&str> = samples[..5].iter().map(|s| s.caption.as_str()).collect();
        assert_eq!(captions, ["global 1", "global 2", "local 1", "local 2", "local 3"]);
        assert!(samples[..5].iter().all(|s| s.group == 0) && samples[5].group == 1);
        assert_eq!((samples[2].image.h, samples[0].image.h), (4, 8));
    }

    #[test]
    fn a_group_of_mixed_sizes_is_refused() {
        let crops = MultiCrop {
            groups: vec![CropGroup {
                name: "bad".into(),
                augments: vec![SimclrAugment::with_size(8), SimclrAugment::with_size(4)],
            }],
        };
        assert!(crops.check().is_err());
    }
}
