//! Pretext's runtime library and plugin SDK.
//!
//! The layout follows the architecture: `data` (datasets, batches, the loader), `augment`
//! (image transforms used by pretext tasks), `model` (backbones), `task` (the SDK a plugin
//! author implements, the C ABI types and the `export_plugin!` macro), `host` (finding and
//! loading plugins), `train` (epochs, LR schedule, checkpoints, metrics) and `run` (the
//! run-directory format). Everything a browser viewer needs (`run`, `model`) compiles for
//! `wasm32-unknown-unknown`; modules that touch files, threads or dynamic libraries are
//! native-only.

pub mod augment;
pub mod data;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod export;
pub mod model;
pub mod run;
pub mod task;

#[cfg(not(target_arch = "wasm32"))]
pub mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

/// Version of this crate; a plugin reports the one it was built against and the host
/// refuses a different one.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
