//! Evaluating a run directory: pick a checkpoint, rebuild its backbone in the host, and
//! measure kNN and linear-probe accuracy or fine-tune on a labelled dataset; write the
//! embedding files the viewers show.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use thiserror::Error;

use super::{
    FeatureExtractor, FinetuneConfig, FinetuneResult, KnnConfig, ProbeConfig, ProbeResult, TsneConfig, accuracy,
    attention_atlas, finetune, knn_predict, linear_probe, pca_2d, top_k, tsne_2d,
};
use crate::data::encode_png;
use crate::data::{self, DataError, DataSplits, Dataset, OpenOptions};
use crate::model::{Backbone, seeded_var_builder};
use crate::run::store::{RunStore, StoreError, file_name, write_atomic, write_json};
use crate::run::{Atlas, CheckpointMeta, EmbeddingFile, FORMAT_VERSION, RunInfo};
use crate::task::wire::Matrix;
use crate::train::TrainConfig;

/// Share of each class held out for evaluation when labelled data has no test split.
pub const HOLD_OUT: f64 = 0.2;

/// Seed of the held-out split: one fixed split, so that every run and the raw-pixel floor
/// are scored on the same images.
const HOLD_OUT_SEED: u64 = 0;

/// The bank (or training set) and the queries: the test split when there is one, else a
/// seeded, class-balanced [`HOLD_OUT`] of the training split. Also names the split.
pub fn bank_and_queries(train: Dataset, test: Option<Dataset>) -> (Dataset, Dataset, &'static str) {
    match test {
        Some(test) => (train, test, "test"),
        None => {
            let (bank, queries) = train.hold_out(HOLD_OUT, HOLD_OUT_SEED);
            (bank, queries, "held-out")
        }
    }
}

#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Model(#[from] candle_core::Error),
    #[error("{0}")]
    Input(String),
}

/// Which weights to evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The checkpoint `latest.json` names.
    Latest,
    /// A checkpoint's `.json` or `.safetensors` file.
    Checkpoint(PathBuf),
    /// The run's seeded initialisation, before any training: the random-init baseline.
    RandomInit,
}

/// A run opened for evaluation, with the weights chosen.
pub struct Evaluation {
    pub store: RunStore,
    pub info: RunInfo,
    /// `None` for [`Weights::RandomInit`].
    pub checkpoint: Option<CheckpointMeta>,
    weights: Option<Vec<u8>>,
    /// Evaluate at this side instead of the training images' (see [`Evaluation::at_image_size`]).
    image_size: Option<usize>,
}

/// The `--data` spec of an evaluation: the given one or the run's own.
pub fn data_spec<'a>(info: &'a RunInfo, data: Option<&'a str>) -> &'a str {
    data.unwrap_or(&info.dataset.spec)
}

impl Evaluation {
    pub fn open(run_dir: &Path, weights: &Weights) -> Result<Self, EvalError> {
        let store = RunStore::open(run_dir);
        let info = store.read_info()?;
        let (checkpoint, bytes) = match weights {
            Weights::Latest => {
                let (meta, bytes) = store.latest_checkpoint()?;
                (Some(meta), Some(bytes))
            }
            Weights::Checkpoint(path) => {
                let json = if path.extension().is_some_and(|e| e == "safetensors") {
                    path.with_extension("json")
                } else {
                    path.clone()
                };
                let meta = store.read_checkpoint_meta(&json)?;
                let bytes = store.read_checkpoint_weights(&meta)?;
                (Some(meta), Some(bytes))
            }
            Weights::RandomInit => (None, None),
        };
        Ok(Self { store, info, checkpoint, weights: bytes, image_size: None })
    }

    /// Evaluates on images brought to `size`×`size` instead of the size the run trained on
    /// (`None` keeps that): a ViT resamples its position embeddings to the new patch grid,
    /// a CNN pools over whatever its last stage gives.
    #[must_use]
    pub fn at_image_size(mut self, size: Option<usize>) -> Self {
        self.image_size = size;
        self
    }

    /// The backbone with its normalisation, on the CPU.
    pub fn extractor(&self) -> Result<FeatureExtractor, EvalError> {
        let dev = Device::Cpu;
        let spec = &self.info.backbone;
        Ok(match &self.weights {
            Some(bytes) => FeatureExtractor::from_checkpoint(spec, &self.info.normalize, bytes, &dev)?,
            None => {
                let map = candle_nn::VarMap::new();
                let vb = seeded_var_builder(&map, self.info.seed, candle_core::DType::F32, &dev);
                FeatureExtractor::new(Backbone::new(spec, vb.pp("backbone"))?, &self.info.normalize, &dev)?
            }
        })
    }

    /// How the run's own data is opened: as it was for training (same image size, same
    /// cache), without the training limit.
    fn own_options(&self) -> OpenOptions {
        let config: Option<TrainConfig> = serde_json::from_value(self.info.config.clone()).ok();
        let mut opts = config.map(|c| c.open_options()).unwrap_or_default();
        opts.limit = None;
        opts.seed = self.info.seed;
        opts
    }

    /// The dataset to evaluate on — `data`, or the run's own — at the run's image size (or
    /// the one [`Evaluation::at_image_size`] chose): its training split and, if it has one,
    /// its test split. With `labelled`, unlabeled data is refused in one sentence.
    pub fn dataset(&self, data: Option<&str>, labelled: bool) -> Result<(Dataset, Option<Dataset>), EvalError> {
        let spec = data_spec(&self.info, data);
        let d = &self.info.dataset;
        let mut opts = match data {
            None => self.own_options(),
            Some(_) => OpenOptions { seed: self.info.seed, image_size: Some(d.height), ..OpenOptions::default() },
        };
        if self.image_size.is_some() {
            opts.image_size = self.image_size;
        }
        opts.validate().map_err(EvalError::Input)?;
        let DataSplits { train, test, .. } = data::open(spec, &opts)?;
        if labelled && !train.is_labelled() {
            return Err(EvalError::Input(format!(
                "`{spec}` is unlabeled; evaluate with a labelled dataset of the same kind of images, \
                 e.g. --data path/to/class-folders"
            )));
        }
        let (h, w) = self.image_size.map_or((d.height, d.width), |n| (n, n));
        if (train.channels(), train.height(), train.width()) != (d.channels, h, w) {
            return Err(EvalError::Input(format!(
                "`{spec}` has {}×{}×{} images but the run was trained on {}×{}×{}",
                train.channels(),
                train.height(),
                train.width(),
                d.channels,
                d.height,
                d.width
            )));
        }
        Ok((train, test))
    }

    /// Features of the train and test splits, one matrix per backbone stage each.
    pub fn features(&self, train: &Dataset, test: &Dataset) -> Result<(Vec<Matrix>, Vec<Matrix>), EvalError> {
        let extractor = self.extractor()?;
        Ok((extractor.stages(&train.images)?, extractor.stages(&test.images)?))
    }

    /// Fine-tunes from these weights (or the random init) on the dataset.
    pub fn finetune(
        &self,
        train: &Arc<Dataset>,
        test: &Dataset,
        config: FinetuneConfig,
        on_epoch: &mut dyn FnMut(u64, f64),
    ) -> Result<FinetuneResult, EvalError> {
        Ok(finetune(&self.info.backbone, &self.info.normalize, self.weights.as_deref(), train, test, config, on_epoch)?)
    }

    /// The epoch the weights come from (0 for the random init).
    pub fn epoch(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.epoch)
    }
}

/// kNN top-1 of `test` against `train` as the bank.
pub fn knn_top1(
    train: &Matrix,
    train_labels: &[u32],
    test: &Matrix,
    test_labels: &[u32],
    classes: usize,
    config: KnnConfig,
) -> Result<f64, EvalError> {
    let predicted = knn_predict(&train.data, train_labels, &test.data, train.cols, classes, config)?;
    Ok(accuracy(&predicted, test_labels))
}

/// Linear-probe top-1 on frozen features.
pub fn probe_top1(
    train: &Matrix,
    train_labels: &[u32],
    test: &Matrix,
    test_labels: &[u32],
    classes: usize,
    config: ProbeConfig,
) -> Result<ProbeResult, EvalError> {
    Ok(linear_probe(&train.data, train_labels, &test.data, test_labels, train.cols, classes, config)?)
}

/// Options of `pretext embed`.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Points to embed (the first N test images).
    pub limit: usize,
    /// Neighbours stored per point.
    pub neighbours: usize,
    /// Skip t-SNE (PCA only) when false.
    pub tsne: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self { limit: 2000, neighbours: 8, tsne: true }
    }
}

/// Embeds the first `limit` test images with the chosen weights and writes
/// `embeddings/epoch-NNNN.json` and its thumbnail atlas. Returns the file written.
pub fn write_embedding(
    eval: &Evaluation,
    data: Option<&str>,
    options: &EmbedOptions,
) -> Result<(PathBuf, EmbeddingFile), EvalError> {
    let (train, test) = eval.dataset(data, false)?;
    let labelled = train.is_labelled();
    let (train, test, split) = if labelled {
        bank_and_queries(train, test)
    } else {
        // Unlabeled: the points are the test split's or the first training images.
        let split = if test.is_some() { "test split, unlabeled" } else { "training images, unlabeled" };
        let points = test.unwrap_or_else(|| train.take(options.limit.max(1)));
        (train, points, split)
    };
    let points = test.take(options.limit.max(1));
    let extractor = eval.extractor()?;
    let features = extractor.stages(&points.images)?;
    let last = features.last().ok_or_else(|| EvalError::Input("the backbone produced no features".into()))?;
    // kNN against (up to) 10k training images: the accuracy shown beside the picture.
    let bank = train.take(10_000);
    let bank_features = if labelled { extractor.stages(&bank.images)? } else { Vec::new() };
    let knn = match bank_features.last() {
        Some(b) => Some(knn_top1(
            b,
            &bank.labels,
            last,
            &points.labels,
            points.num_classes().max(bank.num_classes()),
            KnnConfig::default(),
        )?),
        None => None,
    };
    let neighbours = top_k(&last.data, &last.data, last.cols, options.neighbours, true)?
        .into_iter()
        .map(|row| row.into_iter().filter_map(|(j, _)| u32::try_from(j).ok()).collect())
        .collect();
    let tsne = options
        .tsne
        .then(|| tsne_2d(&last.data, last.cols, TsneConfig { seed: eval.info.seed, ..TsneConfig::default() }));

    let epoch = eval.epoch();
    let layout = &eval.store.layout;
    std::fs::create_dir_all(layout.embeddings()).map_err(|e| StoreError::Io {
        action: "create directory",
        path: layout.embeddings(),
        source: e,
    })?;
    let (atlas_png, columns) = atlas(&points.images.batch())?;
    let atlas_path = layout.embedding_atlas(epoch);
    write_atomic(&atlas_path, &atlas_png)?;
    let attention = match extractor.attention(&points.images)? {
        Some(maps) => {
            let (image, mut meta) = attention_atlas(&maps);
            let path = layout.embedding_attention(epoch);
            write_atomic(&path, &encode_png(&image).map_err(EvalError::Input)?)?;
            meta.file = file_name(&path);
            Some(meta)
        }
        None => None,
    };
    let file = EmbeddingFile {
        format_version: FORMAT_VERSION,
        epoch,
        checkpoint: eval
            .checkpoint
            .as_ref()
            .map_or_else(|| "random-init".into(), |c| c.file.replace(".safetensors", ".json")),
        data: format!("{} ({split}{})", data_spec(&eval.info, data), if split == "test" { " split" } else { "" }),
        stage: last.name.clone(),
        classes: if labelled { train.classes.clone() } else { Vec::new() },
        labels: points.labels.clone(),
        pca: pca_2d(&last.data, last.cols),
        tsne,
        neighbours,
        atlas: Atlas { file: file_name(&atlas_path), size: points.height().max(points.width()), columns },
        knn_top1: knn,
        attention,
    };
    let path = layout.embedding(epoch);
    write_json(&path, &file)?;
    Ok((path, file))
}

/// All images in one PNG grid, row-major, as square-as-possible.
fn atlas(images: &crate::data::ByteImages) -> Result<(Vec<u8>, usize), EvalError> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let columns = ((images.n as f64).sqrt().ceil() as usize).max(1);
    let rows = images.n.div_ceil(columns).max(1);
    let (c, h, w) = (images.c, images.h, images.w);
    let mut grid = crate::data::ByteImages::zeros(1, c, rows * h, columns * w);
    for i in 0..images.n {
        let (gy, gx) = (i / columns, i % columns);
        let src = images.image(i);
        for ch in 0..c {
            for y in 0..h {
                let from = (ch * h + y) * w;
                let to = (ch * rows * h + gy * h + y) * columns * w + gx * w;
                grid.data[to..to + w].copy_from_slice(&src[from..from + w]);
            }
        }
    }
    Ok((encode_png(&grid).map_err(EvalError::Input)?, columns))
}
