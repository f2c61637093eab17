//! Training orchestration on the host side: epochs, prefetching batches through the plugin,
//! checkpoints, metrics, the monitors and the run directory; the LR schedule and batch seeds
//! are in `steps`, shared with evaluation.
//!
//! The plugin owns the learning step; this module owns everything around it and is what
//! both the CLI and the GUI drive. It reports progress through [`Event`]s and never prints.

mod config;
mod error;
mod monitor;
mod samples;
mod summary;
mod trainer;

pub use config::TrainConfig;
pub use error::TrainError;
pub use summary::DataSummary;
pub use trainer::{Event, Summary, train, train_ranked};
