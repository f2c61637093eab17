//! Training orchestration on the host side: epochs, the LR schedule, prefetching batches
//! through the plugin, checkpoints, metrics and the run directory.
//!
//! The plugin owns the learning step; this module owns everything around it and is what
//! both the CLI and the GUI drive. It reports progress through [`Event`]s and never prints.

mod config;
mod error;
mod monitor;
mod samples;
mod schedule;
mod seeds;
mod summary;
mod trainer;

pub use config::TrainConfig;
pub use error::TrainError;
pub use samples::encode_png;
pub use schedule::LrSchedule;
pub use seeds::batch_seed;
pub use summary::DataSummary;
pub use trainer::{Event, Summary, train};
