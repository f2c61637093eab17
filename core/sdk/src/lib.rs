//! The Pretext plugin SDK: everything a pretext task is written against, and nothing of the
//! host that runs it.
//!
//! `task` is the trait a plugin implements ([`task::PretextTask`]) with the step it sees
//! ([`task::Step`]: views, student, teacher, state, schedule), the session that runs it, the
//! C ABI types and the `export_plugin!` macro; `model` the backbones; `augment` the image
//! transforms; `images` the plain image batches that cross the plugin boundary; `features`
//! the eval-mode feature extraction both sides share. The host runtime (datasets, loaders,
//! training loop, evaluation, run directories, plugin discovery) is `pretext-core`, which
//! depends on this crate; a plugin needs only this one. Everything here compiles for
//! `wasm32-unknown-unknown` except the plugin export glue.

pub mod augment;
pub mod dist;
pub mod features;
pub mod images;
pub mod model;
pub mod task;

/// Version of the SDK; a plugin reports the one it was built against and the host refuses
/// a different one.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
