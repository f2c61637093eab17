//! The serde types of the run directory's JSON files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::DataReport;
use crate::model::BackboneSpec;
use crate::task::Normalize;

/// Version of every JSON file in a run directory. Bump it when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Completed,
    /// Stopped on request at a clean point; `--resume` continues it.
    Stopped,
    Failed,
}

/// The task plugin a run was trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    pub name: String,
    pub version: String,
    pub abi_version: u32,
    /// Where the plugin was loaded from when the run started.
    pub path: String,
}

/// What was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The `--data` spec as given.
    pub spec: String,
    pub name: String,
    pub train_images: usize,
    pub test_images: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Empty when the data is unlabeled.
    pub classes: Vec<String>,
    /// What opening the data found: skipped files and why, ignored files, how the size
    /// was chosen, the pixel cache.
    #[serde(default)]
    pub report: DataReport,
}

/// `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub format_version: u32,
    pub name: String,
    pub status: RunStatus,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    pub updated_unix: u64,
    pub task: TaskRef,
    pub backbone: BackboneSpec,
    pub dataset: DatasetInfo,
    pub seed: u64,
    /// Per-channel input normalisation the backbone was trained with; evaluation reuses it.
    pub normalize: Normalize,
    pub epochs: u64,
    pub epochs_done: u64,
    /// The whole training configuration, as the trainer saw it.
    pub config: serde_json::Value,
    /// Why the run failed or stopped, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Processes that trained the run (data-parallel ranks), 1 for a run of one process;
    /// `config.batch_size` is the global batch over all of them.
    #[serde(default = "one")]
    pub world_size: usize,
    /// In a data-parallel run, the images each rank trains on per step:
    /// `config.batch_size / world_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_per_rank: Option<usize>,
}

fn one() -> usize {
    1
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub epoch: u64,
    pub step: u64,
    /// Mean training loss since the previous record.
    pub loss: f64,
    pub lr: f64,
    pub images_per_sec: f64,
    pub elapsed_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// `true` for the record that closes an epoch (its loss is the epoch mean).
    #[serde(default)]
    pub epoch_end: bool,
    /// Task-specific metrics (e.g. the pretext accuracy), averaged like `loss`.
    #[serde(default, flatten)]
    pub extra: BTreeMap<String, f64>,
}

/// `checkpoints/epoch-NNNN.json`: written after its safetensors file, so its presence
/// means the weights were complete, and its hash proves they still are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub epoch: u64,
    pub step: u64,
    /// File name of the weights, relative to `checkpoints/`.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub created_unix: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricRecord>,
}

/// `checkpoints/latest.json`: names the newest complete checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub format_version: u32,
    pub epoch: u64,
    /// File name of the checkpoint's JSON, relative to `checkpoints/`.
    pub checkpoint: String,
}

/// One entry of `samples/index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleEntry {
    pub file: String,
    pub group: usize,
    pub caption: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleIndex {
    pub format_version: u32,
    /// The source images the samples were made from, one PNG each.
    pub sources: Vec<String>,
    pub samples: Vec<SampleEntry>,
}

/// The atlas of thumbnails that goes with an embedding: image `i` sits at column
/// `i % columns`, row `i / columns`, each `size`×`size` pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Atlas {
    /// File name relative to `embeddings/`.
    pub file: String,
    pub size: usize,
    pub columns: usize,
}

/// A ViT's last-block attention of the CLS token over the patches, for each embedded image,
/// as one greyscale PNG. Image `i`'s cell sits at column `i % columns`, row `i / columns`;
/// it is `heads + 1` tiles of `rows × cols` pixels side by side, one pixel per patch: the
/// mean over the heads first, then head 1, 2, …. Each tile is stretched from its smallest
/// weight (0) to its largest (255), as attention maps are usually drawn: they show where a
/// head looks most, not how much it attends there in total (a flat map is all 0; the CLS
/// token's attention to itself is left out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionAtlas {
    /// File name relative to `embeddings/`.
    pub file: String,
    pub heads: usize,
    /// The patch grid: the image padded at the bottom and right to whole patches.
    pub rows: usize,
    pub cols: usize,
    /// The patch side in pixels.
    pub patch: usize,
    pub columns: usize,
}

impl AttentionAtlas {
    /// The top-left pixel of image `i`'s tile `tile` (0 the mean, `k` head `k`).
    pub fn tile_origin(&self, i: usize, tile: usize) -> (usize, usize) {
        let cell = (self.heads + 1) * self.cols;
        ((i % self.columns.max(1)) * cell + tile * self.cols, (i / self.columns.max(1)) * self.rows)
    }
}

/// `embeddings/epoch-NNNN.json`: a labelled evaluation set seen through one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingFile {
    pub format_version: u32,
    pub epoch: u64,
    /// The checkpoint's JSON file name, relative to `checkpoints/`.
    pub checkpoint: String,
    /// The `--data` spec and split the points come from.
    pub data: String,
    /// Which backbone output was projected (`features` is the last stage).
    pub stage: String,
    pub classes: Vec<String>,
    pub labels: Vec<u32>,
    pub pca: Vec<[f32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsne: Option<Vec<[f32; 2]>>,
    /// For each point, its nearest other points by cosine similarity of the features.
    pub neighbours: Vec<Vec<u32>>,
    pub atlas: Atlas,
    /// kNN top-1 of these points against the training set, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// The attention maps of a ViT backbone; `None` for a CNN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionAtlas>,
}

/// Parses `metrics.jsonl`, skipping blank lines and a torn last line (a crash while
/// appending), but reporting a bad line anywhere else.
pub fn parse_metrics(text: &str) -> Result<Vec<MetricRecord>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => return Err(format!("line {} is not a metrics record: {e}", i + 1)),
        }
    }
    Ok(records)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn torn_last_line_is_skipped_but_not_a_bad_middle_line() {
        let good = serde_json::to_string(&MetricRecord { epoch: 1, loss: 2.0, ..Default::default() }).unwrap();
        let torn = format!("{good}\n{good}\n{{\"epoch\": 2, \"lo");
        assert_eq!(parse_metrics(&torn).unwrap().len(), 2);
        let bad = format!("{good}\nnot json\n{good}\n");
        assert!(parse_metrics(&bad).unwrap_err().contains("line 2"));
    }

    #[test]
    fn extra_metrics_flatten_into_the_line() {
        let mut r = MetricRecord { epoch: 3, ..Default::default() };
        r.extra.insert("pretext_acc".into(), 0.5);
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains("\"pretext_acc\":0.5"));
        let back: MetricRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }
}
