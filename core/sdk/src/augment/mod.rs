//! Image transforms used by pretext tasks: random resized crops, flips and quarter-turn
//! rotations, colour jitter, grayscale and blur, jigsaw tiles, and the SimCLR pipeline.
//!
//! Every transform works on one [`Image`] (CHW floats in `0..=1`) and draws its randomness
//! from a caller-supplied [`rand::Rng`], so a seeded RNG gives reproducible views. This module
//! is plain Rust: it must not touch candle, threads or files, because it also compiles for
//! `wasm32-unknown-unknown` and runs on loader threads owned by someone else.

mod color;
mod crop;
mod flip;
mod image;
mod pipeline;
mod tiles;

pub use color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, color_jitter, gaussian_blur,
    gaussian_blur_with_kernel, gaussian_kernel_size, grayscale, solarize,
};
pub use crop::{
    CropBox, DEFAULT_CROP_RATIO, check_crop_scale, crop, pad_crop, random_resized_crop, random_resized_crop_params,
    random_zoom, resize_bilinear, resized_crop,
};
pub use flip::{hflip, rot90, vflip};
pub use image::Image;
pub use pipeline::{Normalize, SimclrAugment};
pub use tiles::{channel_mean_std, normalize_tiles, standardize, tiles, tiles_centered};
