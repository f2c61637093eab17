//! The flags that choose which weights of a run to read, shared by `eval`, `embed` and `export`.

use std::path::{Path, PathBuf};

use clap::Args;
use pretext_core::eval::Weights;

#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// The run directory.
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// A checkpoint of the run (its .json or .safetensors); default: the newest complete one.
    #[arg(long, value_name = "FILE", conflicts_with = "random_init")]
    pub checkpoint: Option<PathBuf>,
    /// Use the run's seeded initial weights instead of a checkpoint (the random-init baseline).
    #[arg(long)]
    pub random_init: bool,
}

impl WeightsArgs {
    pub fn run_dir(&self) -> anyhow::Result<&Path> {
        self.run.as_deref().ok_or_else(|| anyhow::anyhow!("--run DIR is required: the run directory to read"))
    }

    pub fn weights(&self) -> Weights {
        match (&self.checkpoint, self.random_init) {
            (_, true) => Weights::RandomInit,
            (Some(path), false) => Weights::Checkpoint(path.clone()),
            (None, false) => Weights::Latest,
        }
    }
}
