//! Pretext's host runtime: what runs plugins, not what plugins are written against.
//!
//! The layout follows the architecture: `data` (datasets, the pixel cache, the loader),
//! `host` (finding and loading plugins), `dist` (the ranks of a data-parallel run and the
//! share of the data each trains on), `train` (epochs, LR schedule, checkpoints, metrics,
//! monitors), `eval` (kNN, linear probe, fine-tuning, projections), `steps` (learning-rate
//! schedule and batch seeds, shared by training and evaluation), `run` (the run-directory
//! format) and `export`. The plugin SDK — `task`, `model`, `augment` and the image batches —
//! is the crate `pretext-sdk` (`core/sdk`), re-exported here under the same names so the host
//! reads `crate::task` like any other module; the dependency only points from host to SDK.
//! Everything a browser viewer needs (`run`, `model`) compiles for `wasm32-unknown-unknown`;
//! modules that touch files, threads or dynamic libraries are native-only.

pub use pretext_sdk::{augment, model, task};

pub mod data;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod export;
pub mod run;
pub mod steps;

#[cfg(not(target_arch = "wasm32"))]
pub mod dist;
#[cfg(not(target_arch = "wasm32"))]
pub mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

/// The SDK version this host runs plugins of; a plugin reports the one it was built against
/// and the host refuses a different one.
pub use pretext_sdk::CORE_VERSION;
