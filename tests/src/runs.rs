//! Reading and checking run directories through `pretext_core::run`'s own types, so the
//! tests read them exactly as the CLI, `--resume` and the viewers do.

use std::path::{Path, PathBuf};

use pretext_core::host::{PluginSession, load};
use pretext_core::run::store::RunStore;
use pretext_core::run::{CheckpointMeta, MetricRecord, RunInfo, RunStatus, SampleIndex, parse_metrics};
use pretext_core::task::{InputSpec, OptimizerConfig, SessionConfig};
use pretext_core::train::TrainConfig;

/// The epoch-end records' mean losses, in file order, as `(epoch, loss)`.
pub fn epoch_losses(records: &[MetricRecord]) -> Vec<(u64, f64)> {
    records.iter().filter(|r| r.epoch_end).map(|r| (r.epoch, r.loss)).collect()
}

/// A run directory under test.
#[derive(Debug)]
pub struct RunCheck {
    pub dir: PathBuf,
    pub store: RunStore,
}

impl RunCheck {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), store: RunStore::open(dir) }
    }

    pub fn info(&self) -> RunInfo {
        self.store.read_info().unwrap_or_else(|e| panic!("run.json of {} does not read: {e}", self.dir.display()))
    }

    /// `metrics.jsonl` as the store's reader sees it (a torn last line is skipped).
    pub fn metrics(&self) -> Vec<MetricRecord> {
        let text = std::fs::read_to_string(self.store.layout.metrics()).unwrap_or_default();
        parse_metrics(&text).unwrap_or_else(|e| panic!("metrics.jsonl of {} does not parse: {e}", self.dir.display()))
    }

    /// Every `epoch-*.json` of `checkpoints/` (names that look final), each of which must
    /// parse and whose weights must match their recorded size and SHA-256.
    pub fn verified_checkpoints(&self) -> Vec<CheckpointMeta> {
        let dir = self.store.layout.checkpoints();
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut metas = Vec::new();
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // Temporary files of an interrupted write are dot-files and never read.
                assert!(name.contains(".tmp"), "unexpected hidden file {}", path.display());
                continue;
            }
            if name.starts_with("epoch-") && name.ends_with(".json") {
                let meta = self
                    .store
                    .read_checkpoint_meta(&path)
                    .unwrap_or_else(|e| panic!("checkpoint metadata {} is torn or invalid: {e}", path.display()));
                self.store
                    .read_checkpoint_weights(&meta)
                    .unwrap_or_else(|e| panic!("checkpoint {} does not verify: {e}", path.display()));
                metas.push(meta);
            } else {
                assert!(
                    name == "latest.json" || (name.starts_with("epoch-") && name.ends_with(".safetensors")),
                    "unexpected file in checkpoints/: {name}"
                );
            }
        }
        metas.sort_by_key(|m| m.epoch);
        metas
    }

    /// The checkpoint `latest.json` names, verified, with its weights.
    pub fn latest(&self) -> (CheckpointMeta, Vec<u8>) {
        self.store
            .latest_checkpoint()
            .unwrap_or_else(|e| panic!("latest checkpoint of {} is not usable: {e}", self.dir.display()))
    }

    /// Checks a completed run of `epochs` epochs: `run.json` says completed; `metrics.jsonl`
    /// has exactly one epoch-end record per epoch, in order, each with a finite loss, and the
    /// last epoch's mean loss is below the first's; every checkpoint verifies and `latest.json`
    /// names the last; `samples/` holds the PNGs its index lists. Returns the epoch losses.
    pub fn assert_completed(&self, epochs: u64) -> Vec<f64> {
        let losses = self.assert_complete_files(epochs);
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < first, "the loss did not fall in {}: epoch losses {losses:?}", self.dir.display());
        losses
    }

    /// [`RunCheck::assert_completed`] without the falling loss, for runs too short to learn.
    pub fn assert_complete_files(&self, epochs: u64) -> Vec<f64> {
        let info = self.info();
        assert_eq!(info.status, RunStatus::Completed, "run.json: {info:?}");
        assert_eq!(info.epochs_done, epochs);

        let losses = epoch_losses(&self.metrics());
        let seen: Vec<u64> = losses.iter().map(|(e, _)| *e).collect();
        assert_eq!(seen, (1..=epochs).collect::<Vec<_>>(), "one epoch-end record per epoch");
        for (epoch, loss) in &losses {
            assert!(loss.is_finite(), "epoch {epoch} has loss {loss}");
        }

        let checkpoints = self.verified_checkpoints();
        assert!(!checkpoints.is_empty(), "no checkpoint was written");
        let (latest, weights) = self.latest();
        assert_eq!(latest.epoch, epochs, "latest.json names the last epoch");
        assert!(!weights.is_empty());
        assert!(self.dir.join("checkpoints").join(format!("epoch-{epochs:04}.safetensors")).is_file());

        self.assert_samples();
        losses.into_iter().map(|(_, l)| l).collect()
    }

    /// `samples/index.json` parses and every file it lists is a PNG that decodes.
    pub fn assert_samples(&self) {
        let dir = self.store.layout.samples();
        let text = std::fs::read_to_string(dir.join("index.json")).expect("samples/index.json is missing");
        let index: SampleIndex = serde_json::from_str(&text).expect("samples/index.json does not parse");
        assert!(!index.sources.is_empty() && !index.samples.is_empty(), "no samples were written");
        for file in index.sources.iter().chain(index.samples.iter().map(|s| &s.file)) {
            image::open(dir.join(file)).unwrap_or_else(|e| panic!("sample {file} is not a readable image: {e}"));
        }
    }

    /// Loads `weights` into a fresh session of the run's own plugin, configured from
    /// `run.json`, exactly as `--resume` does; panics with the plugin's message on failure.
    pub fn load_into_plugin(&self, weights: &[u8]) {
        let info = self.info();
        let plugin = load(Path::new(&info.task.path)).unwrap_or_else(|e| panic!("cannot load the run's plugin: {e}"));
        let train: TrainConfig = serde_json::from_value(info.config.clone()).expect("run.json records its TrainConfig");
        let d = &info.dataset;
        let config = SessionConfig {
            task: train.task_config,
            backbone: info.backbone.clone(),
            input: InputSpec {
                channels: d.channels,
                height: d.height,
                width: d.width,
                patch_size: info.backbone.patch_size,
            },
            optimizer: OptimizerConfig {
                kind: train.optimizer,
                weight_decay: train.weight_decay,
                ..Default::default()
            },
            device: "cpu".into(),
            seed: info.seed,
            normalize: info.normalize.clone(),
            sync_batch_norm: train.sync_batch_norm,
        };
        let session =
            PluginSession::create(&plugin, &config).unwrap_or_else(|e| panic!("cannot create a session: {e}"));
        session.load_state(weights).unwrap_or_else(|e| panic!("the checkpoint does not load: {e}"));
    }
}
