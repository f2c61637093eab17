//! Composed augmentation pipelines and per-channel normalisation.
//!
//! `SimclrAugment` is the view generator of SimCLR (Chen et al. 2020) with its CIFAR
//! settings by default; `Normalize` is the last step before a network. Pipelines only
//! compose the single transforms of this module; they must not batch, convert to tensors or
//! hold an RNG of their own, so the caller decides seeding and threading.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::color::{color_jitter, gaussian_blur, grayscale, solarize};
use super::crop::{DEFAULT_CROP_RATIO, random_resized_crop};
use super::flip::hflip;
use super::image::Image;
use crate::images::FloatImages;

/// Blur sigma range of SimCLR's Gaussian blur, in pixels.
const BLUR_SIGMA: (f32, f32) = (0.1, 2.0);

/// SimCLR's view: random resized crop to `size`×`size`, horizontal flip with `flip_p`, colour
/// jitter `(brightness, contrast, saturation, hue)` with `jitter_p`, grayscale with `gray_p`,
/// Gaussian blur (sigma 0.1..2.0) with `blur_p` and solarisation (threshold 0.5, BYOL's
/// addition) with `solarize_p`, in that order. The output is in `0..=1`, not yet normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimclrAugment {
    pub size: usize,
    pub crop_scale: (f32, f32),
    pub flip_p: f32,
    pub jitter: (f32, f32, f32, f32),
    pub jitter_p: f32,
    pub gray_p: f32,
    pub blur_p: f32,
    #[serde(default)]
    pub solarize_p: f32,
}

impl Default for SimclrAugment {
    /// The CIFAR-10 settings of SimCLR: 32 px crops of 20–100% of the area, colour strength
    /// 0.5 (jitter 0.4, 0.4, 0.4, 0.1 with p 0.8), grayscale p 0.2 and no blur, which the
    /// paper drops for 32 px images.
    fn default() -> Self {
        Self {
            size: 32,
            crop_scale: (0.2, 1.0),
            flip_p: 0.5,
            jitter: (0.4, 0.4, 0.4, 0.1),
            jitter_p: 0.8,
            gray_p: 0.2,
            blur_p: 0.0,
            solarize_p: 0.0,
        }
    }
}

/// `true` with probability `p`; out-of-range `p` saturates instead of panicking.
fn chance(rng: &mut impl Rng, p: f32) -> bool {
    rng.random::<f32>() < p
}

impl SimclrAugment {
    /// The defaults with another output size (e.g. 28 for MNIST-sized images).
    pub fn with_size(size: usize) -> Self {
        Self { size, ..Self::default() }
    }

    /// One random view of `img`.
    pub fn apply(&self, img: &Image, rng: &mut impl Rng) -> Image {
        let mut out = random_resized_crop(img, self.size, self.size, self.crop_scale, DEFAULT_CROP_RATIO, rng);
        if chance(rng, self.flip_p) {
            out = hflip(&out);
        }
        if chance(rng, self.jitter_p) {
            let (b, c, s, h) = self.jitter;
            out = color_jitter(&out, b, c, s, h, rng);
        }
        if chance(rng, self.gray_p) {
            out = grayscale(&out);
        }
        if chance(rng, self.blur_p) {
            let sigma = BLUR_SIGMA.0 + (BLUR_SIGMA.1 - BLUR_SIGMA.0) * rng.random::<f32>();
            out = gaussian_blur(&out, sigma);
        }
        // No draw at p = 0, so pipelines without solarisation keep SimCLR's random stream.
        if self.solarize_p > 0.0 && chance(rng, self.solarize_p) {
            out = solarize(&out, 0.5);
        }
        out
    }
}

/// Per-channel `(x - mean) / std`. A single value applies to every channel; with fewer values
/// than channels the last one is reused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Self { mean, std }
    }

    /// CIFAR-10 training-set channel statistics.
    pub fn cifar10() -> Self {
        Self::new(vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616])
    }

    /// MNIST training-set statistics.
    pub fn mnist() -> Self {
        Self::new(vec![0.1307], vec![0.3081])
    }

    fn channel(&self, ch: usize) -> (f32, f32) {
        let pick = |v: &[f32], default: f32| v.get(ch).or(v.last()).copied().unwrap_or(default);
        (pick(&self.mean, 0.0), pick(&self.std, 1.0))
    }

    /// Normalises `img` in place.
    pub fn apply(&self, img: &mut Image) {
        for ch in 0..img.c {
            let (m, s) = self.channel(ch);
            for v in img.plane_mut(ch) {
                *v = (*v - m) / s;
            }
        }
    }

    /// Normalises every image of `batch` in place.
    pub fn apply_batch(&self, batch: &mut FloatImages) {
        let plane = batch.h * batch.w;
        if plane == 0 {
            return;
        }
        for (i, values) in batch.data.chunks_exact_mut(plane).enumerate() {
            let (m, s) = self.channel(i % batch.c);
            for v in values {
                *v = (*v - m) / s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn noise(c: usize, h: usize, w: usize, seed: u64) -> Image {
        let mut rng = StdRng::seed_from_u64(seed);
        Image { c, h, w, data: (0..c * h * w).map(|_| rng.random::<f32>()).collect() }
    }

    #[test]
    fn simclr_views_have_size_range_and_seed() {
        let aug = SimclrAugment { blur_p: 0.5, ..SimclrAugment::default() };
        let img = noise(3, 32, 32, 0);
        let mut rng = StdRng::seed_from_u64(1);
        let a = aug.apply(&img, &mut rng);
        let b = aug.apply(&img, &mut rng);
        assert_ne!(a, b);
        for v in [&a, &b] {
            assert_eq!((v.c, v.h, v.w), (3, 32, 32));
            assert!(v.data.iter().all(|x| (-1e-6..=1.0 + 1e-6).contains(x)));
        }
        let x = aug.apply(&img, &mut StdRng::seed_from_u64(2));
        let y = aug.apply(&img, &mut StdRng::seed_from_u64(2));
        assert_eq!(x, y);
        let mono = SimclrAugment::with_size(28).apply(&noise(1, 28, 28, 3), &mut rng);
        assert_eq!((mono.c, mono.h, mono.w), (1, 28, 28));
    }

    #[test]
    fn normalize_per_channel() {
        let mut img = Image { c: 2, h: 1, w: 2, data: vec![0.5, 1.0, 0.5, 1.0] };
        Normalize::new(vec![0.5, 0.0], vec![0.5, 2.0]).apply(&mut img);
        assert_eq!(img.data, vec![0.0, 1.0, 0.25, 0.5]);
        let mut batch = FloatImages::new(2, 3, 1, 1, vec![0.5; 6]).unwrap_or_else(|e| panic!("{e}"));
        Normalize::mnist().apply_batch(&mut batch);
        assert!(batch.data.iter().all(|v| (v - (0.5 - 0.1307) / 0.3081).abs() < 1e-6));
        let mut same = Image { c: 1, h: 1, w: 1, data: vec![0.3] };
        Normalize::new(vec![], vec![]).apply(&mut same);
        assert_eq!(same.data, vec![0.3]);
    }
}
