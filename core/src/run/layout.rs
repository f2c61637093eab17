//! Where each file of a run lives. Paths are computed here and nowhere else, so the
//! trainer, the CLI and the viewers cannot disagree about names.

use std::path::{Path, PathBuf};

/// The file stem of the checkpoint written after `epoch`: `epoch-0005`.
pub fn checkpoint_stem(epoch: u64) -> String {
    format!("epoch-{epoch:04}")
}

/// The paths of one run directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    pub fn checkpoint_weights(&self, epoch: u64) -> PathBuf {
        self.checkpoints().join(format!("{}.safetensors", checkpoint_stem(epoch)))
    }

    pub fn checkpoint_meta(&self, epoch: u64) -> PathBuf {
        self.checkpoints().join(format!("{}.json", checkpoint_stem(epoch)))
    }

    pub fn latest(&self) -> PathBuf {
        self.checkpoints().join("latest.json")
    }

    pub fn embeddings(&self) -> PathBuf {
        self.root.join("embeddings")
    }

    /// The embedding written for `epoch`'s checkpoint, and its thumbnail atlas.
    pub fn embedding(&self, epoch: u64) -> PathBuf {
        self.embeddings().join(format!("{}.json", checkpoint_stem(epoch)))
    }

    pub fn embedding_atlas(&self, epoch: u64) -> PathBuf {
        self.embeddings().join(format!("{}-atlas.png", checkpoint_stem(epoch)))
    }

    /// The last block's attention maps of a ViT's embedding (see `AttentionAtlas`).
    pub fn embedding_attention(&self, epoch: u64) -> PathBuf {
        self.embeddings().join(format!("{}-attention.png", checkpoint_stem(epoch)))
    }

    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
}
