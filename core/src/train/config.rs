//! The configuration of a training run: what the CLI flags, a `--config` TOML file and the
//! GUI's Train view fill in, and what `run.json` records.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{CacheMode, OpenOptions};
use crate::model::BackboneKind;
use crate::steps::LrDecay;
use crate::task::OptimizerKind;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// A plugin name (`simclr`) or a path to a plugin library.
    pub task: String,
    /// `shapes`, `fashion-mnist`, `mnist`, `cifar10` or a path.
    pub data: String,
    /// Train at N×N; `None` keeps the data's own square size (or 64 for image files of
    /// mixed sizes).
    pub image_size: Option<usize>,
    /// Treat class folders and label columns as unlabeled images.
    pub no_labels: bool,
    /// Stop at the first image file that cannot be used instead of skipping it.
    pub strict_data: bool,
    /// Where image files' pixel cache lives; `None` is the default cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Decode image files into memory on every run instead of using the pixel cache.
    pub no_cache: bool,
    /// A labelled dataset for the kNN monitor when the training data has no labels or no
    /// test split.
    pub knn_data: Option<String>,
    pub backbone: BackboneKind,
    /// Base channel width (a ViT's embedding width); `None` takes the backbone's default.
    pub width: Option<usize>,
    /// A ViT's patch side; `None` takes 4.
    pub patch_size: Option<usize>,
    pub epochs: u64,
    pub batch_size: usize,
    /// Peak learning rate; `None` takes the optimizer's usual value for the batch size.
    pub lr: Option<f64>,
    pub optimizer: OptimizerKind,
    pub weight_decay: Option<f64>,
    /// Linear warmup length; `None` is a tenth of the run, at most ten epochs.
    pub warmup_epochs: Option<f64>,
    /// After the warmup: a cosine decay to zero, or the peak rate held; `None` takes the
    /// task's choice for AdamW ([`crate::task::PretextTask::adamw_lr_decay`]), else cosine.
    pub lr_schedule: Option<LrDecay>,
    pub device: String,
    pub seed: u64,
    /// Train on the first N images only.
    pub limit: Option<usize>,
    /// The run directory; `None` is `runs/<task>-<seed>`.
    pub out: Option<PathBuf>,
    /// Write a checkpoint every N epochs (and always after the last).
    pub checkpoint_every: u64,
    /// Append a metrics line every N steps besides the one per epoch (0: per epoch only).
    pub log_every: u64,
    /// Threads preparing batches ahead of the training step.
    pub workers: usize,
    /// Measure kNN accuracy every N epochs on held-out labelled images (0: never).
    pub knn_every: u64,
    /// In a data-parallel run, normalise batch norm with the global batch's statistics
    /// (`SyncBatchNorm`) instead of each rank's share.
    pub sync_batch_norm: bool,
    /// The task's own settings, passed to the plugin (`[task]` in a config file).
    pub task_config: serde_json::Value,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            task: "simclr".into(),
            data: "shapes".into(),
            image_size: None,
            no_labels: false,
            strict_data: false,
            cache_dir: None,
            no_cache: false,
            knn_data: None,
            backbone: BackboneKind::Convnet,
            width: None,
            patch_size: None,
            epochs: 5,
            batch_size: 128,
            lr: None,
            optimizer: OptimizerKind::Adamw,
            weight_decay: None,
            warmup_epochs: None,
            lr_schedule: None,
            device: "cpu".into(),
            seed: 0,
            limit: None,
            out: None,
            checkpoint_every: 1,
            log_every: 20,
            workers: 2,
            knn_every: 0,
            sync_batch_norm: false,
            task_config: serde_json::Value::Null,
        }
    }
}

impl TrainConfig {
    /// Checks what can be checked before anything is loaded; one sentence per problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("--batch-size must be at least 1".into());
        }
        if self.epochs == 0 {
            return Err("--epochs must be at least 1".into());
        }
        if self.checkpoint_every == 0 {
            return Err("checkpoint_every must be at least 1".into());
        }
        if self.width == Some(0) {
            return Err("--width must be at least 1".into());
        }
        if self.patch_size == Some(0) {
            return Err("--patch-size must be at least 1".into());
        }
        if self.patch_size.is_some() && !self.backbone.is_vit() {
            return Err(format!("--patch-size applies to ViT backbones, not to `{}`", self.backbone));
        }
        if self.limit == Some(0) {
            return Err("--limit must be at least 1".into());
        }
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(format!("--lr must be a positive number, not {lr}"));
        }
        if self.warmup_epochs.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
            return Err("warmup_epochs must be zero or positive".into());
        }
        self.open_options().validate()
    }

    /// How the training data is opened.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            limit: self.limit,
            seed: self.seed,
            image_size: self.image_size,
            no_labels: self.no_labels,
            strict: self.strict_data,
            cache: match (&self.cache_dir, self.no_cache) {
                (_, true) => CacheMode::Off,
                (Some(dir), false) => CacheMode::Dir(dir.clone()),
                (None, false) => CacheMode::Default,
            },
        }
    }

    /// The peak learning rate: the given one, or the optimizer's usual value (SGD and
    /// LARS scale linearly with the batch size, as in SimCLR).
    pub fn base_lr(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let scale = self.batch_size as f64 / 256.0;
        self.lr.unwrap_or(match self.optimizer {
            OptimizerKind::Adamw => 1e-3,
            OptimizerKind::Sgd => 0.05 * scale,
            OptimizerKind::Lars => 0.3 * scale,
        })
    }

    pub fn warmup_epochs(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        self.warmup_epochs.unwrap_or((self.epochs as f64 / 10.0).min(10.0))
    }

    /// The run directory this config writes to.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let stem = std::path::Path::new(&self.task)
                .file_stem()
                .map(|s| s.to_string_lossy().trim_start_matches("libpretext_").to_string())
                .unwrap_or_else(|| "run".into());
            PathBuf::from("runs").join(format!("{stem}-{}", self.seed))
        })
    }
}
