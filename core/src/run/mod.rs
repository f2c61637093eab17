//! The run directory: the one on-disk format that the trainer writes and the CLI, the
//! desktop app and the browser viewer read.
//!
//! ```text
//! runs/<name>/
//!   run.json                  RunInfo: config, task plugin, backbone, dataset, seed, status
//!   metrics.jsonl             one MetricRecord per line
//!   checkpoints/epoch-0005.safetensors + epoch-0005.json (CheckpointMeta) + latest.json
//!   embeddings/  samples/
//! ```
//!
//! The types here are plain serde data and compile for wasm32; reading and writing files
//! lives in [`store`] (native only). Every JSON file carries a `format_version` so readers
//! can refuse a format they do not know instead of misreading it.

mod layout;
mod types;

#[cfg(not(target_arch = "wasm32"))]
pub mod store;

pub use layout::{RunLayout, checkpoint_stem};
pub use types::{
    Atlas, AttentionAtlas, CheckpointMeta, DatasetInfo, EmbeddingFile, FORMAT_VERSION, Latest, MetricRecord, RunInfo,
    RunStatus, SampleEntry, SampleIndex, TaskRef, parse_metrics,
};
