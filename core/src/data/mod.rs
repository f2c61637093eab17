//! Datasets and batches: everything about getting images (labelled or not) out of files and
//! into shuffled batches. Nothing here knows about devices, tensors or tasks.
//!
//! A dataset is an index (paths or records, labels optional) plus a [`PixelStore`] at the
//! training size: in memory for the small built-in and IDX/CIFAR sets, memory-mapped from
//! the pixel cache (`cache.rs`) for folders and lists of image files, so the process's own
//! memory stays bounded whatever the dataset's size. The types (`Images`, `Dataset`,
//! `DataError`, `DataReport`) and the procedural `shapes` set compile everywhere, the
//! browser viewer included; reading files and running loader threads is native-only.

mod dataset;
mod error;
mod pixels;
mod report;
pub mod shapes;
mod splitmix;

#[cfg(not(target_arch = "wasm32"))]
pub mod cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod cifar;
#[cfg(not(target_arch = "wasm32"))]
pub mod decode;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
#[cfg(not(target_arch = "wasm32"))]
pub mod idx;
#[cfg(not(target_arch = "wasm32"))]
pub mod imagefiles;
#[cfg(not(target_arch = "wasm32"))]
pub mod listfile;
#[cfg(not(target_arch = "wasm32"))]
pub mod listing;
#[cfg(not(target_arch = "wasm32"))]
pub mod loader;
#[cfg(not(target_arch = "wasm32"))]
mod png;
#[cfg(not(target_arch = "wasm32"))]
pub mod spec;

pub use dataset::{DataSplits, Dataset, channel_stats};
pub use error::DataError;
#[cfg(not(target_arch = "wasm32"))]
pub use loader::{Prefetch, batches, epoch_order};
pub use pixels::PixelStore;
#[cfg(not(target_arch = "wasm32"))]
pub use png::encode_png;
pub use pretext_sdk::images::{ByteImages, FloatImages, ImageSource, Images, ShapeError};
pub use report::{CacheUse, DataReport, SKIPPED_LISTED, SizeSource, SkippedFile};
#[cfg(not(target_arch = "wasm32"))]
pub use spec::{CacheMode, DATA_ENV, OpenOptions, SHAPES_TEST, SHAPES_TRAIN, SYSTEM_DATA, open, open_with};

/// How far a long open (reading headers, decoding into the cache) has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being done, e.g. `decoding`.
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}
