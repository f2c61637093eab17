//! Datasets and batches: everything about getting labelled images into memory and out in
//! shuffled batches. Nothing here knows about devices, tensors or tasks.
//!
//! The types (`Images`, `Dataset`, `DataError`) and the procedural `shapes` set compile
//! everywhere, the browser viewer included; reading files and running loader threads is
//! native-only.

mod dataset;
mod error;
mod images;
pub mod shapes;

#[cfg(not(target_arch = "wasm32"))]
pub mod cifar;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
#[cfg(not(target_arch = "wasm32"))]
pub mod idx;
#[cfg(not(target_arch = "wasm32"))]
pub mod loader;
#[cfg(not(target_arch = "wasm32"))]
pub mod spec;

pub use dataset::{DataSplits, Dataset, channel_stats};
pub use error::DataError;
pub use images::{ByteImages, FloatImages, Images, ShapeError};
#[cfg(not(target_arch = "wasm32"))]
pub use loader::{Prefetch, batches, epoch_order};
#[cfg(not(target_arch = "wasm32"))]
pub use spec::{DATA_ENV, OpenOptions, SHAPES_TEST, SHAPES_TRAIN, SYSTEM_DATA, open};
