//! What the trainer measures of the representation after an epoch, besides the loss: kNN
//! accuracy on labelled images (the training data's test split, or `--knn-data`) and the
//! collapse statistics of a fixed set of training images. Both embed through the plugin, so
//! they see exactly the features the task trains; neither changes a weight.

use crate::data::{self, ByteImages, DataSplits, Dataset, OpenOptions};
use crate::eval::{CollapseStats, KnnConfig, knn_top1};
use crate::host::PluginSession;
use crate::task::wire::Matrix;

use super::trainer::Event;
use super::{TrainConfig, TrainError};

/// Sizes of the kNN monitor's bank (training images) and queries (test images).
const MONITOR_BANK: usize = 5_000;
const MONITOR_QUERIES: usize = 2_000;

/// Labelled images the kNN monitor embeds at the end of an epoch.
pub(super) struct Monitor {
    bank: Dataset,
    queries: Dataset,
    classes: usize,
}

impl Monitor {
    /// The monitor `config` asks for: on the training data's test split, or on `--knn-data`.
    /// `Err(note)` inside when it is asked for but the data cannot serve it.
    pub(super) fn new(
        config: &TrainConfig,
        splits: &DataSplits,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Result<Option<Self>, String>, TrainError> {
        if config.knn_every == 0 {
            return Ok(Ok(None));
        }
        let train = &splits.train;
        let (bank, queries, spec) = if let Some(spec) = &config.knn_data {
            let opts = OpenOptions { limit: None, image_size: Some(train.height()), ..config.open_options() };
            let other = data::open_with(spec, &opts, &mut |p| on_event(Event::Preparing(p)))?;
            if !other.train.is_labelled() {
                return Err(TrainError::Config(format!(
                    "--knn-data `{spec}` has no labels to measure kNN accuracy with"
                )));
            }
            if other.train.channels() != train.channels() {
                return Err(TrainError::Config(format!(
                    "--knn-data `{spec}` has {} channels but the training images have {}",
                    other.train.channels(),
                    train.channels()
                )));
            }
            let DataSplits { train: mut bank, test, .. } = other;
            let queries = test.unwrap_or_else(|| bank.split_last(MONITOR_QUERIES.min(bank.len() / 2)));
            (bank, queries, spec.as_str())
        } else {
            let test = splits.test.as_ref().filter(|t| train.is_labelled() && t.is_labelled());
            let Some(test) = test else {
                let why = if train.is_labelled() { "has no test split" } else { "is unlabeled" };
                return Ok(Err(format!(
                    "the kNN monitor is off: `{}` {why}; name a labelled dataset with --knn-data",
                    config.data
                )));
            };
            (train.take(MONITOR_BANK), test.take(MONITOR_QUERIES), config.data.as_str())
        };
        let (bank, queries) = (bank.take(MONITOR_BANK), queries.take(MONITOR_QUERIES));
        if bank.is_empty() || queries.is_empty() {
            return Err(TrainError::Config(format!("the kNN monitor's data `{spec}` has too few images")));
        }
        let classes = bank.num_classes().max(queries.num_classes());
        Ok(Ok(Some(Self { bank, queries, classes })))
    }

    pub(super) fn measure(&self, session: &PluginSession) -> Result<f64, TrainError> {
        let last = |m: Vec<Matrix>| m.into_iter().find(|m| m.name == "features");
        let (Some(bank), Some(queries)) =
            (last(session.embed(&self.bank.images.batch())?), last(session.embed(&self.queries.images.batch())?))
        else {
            return Err(TrainError::Config("the plugin's embedding has no `features`".into()));
        };
        knn_top1(&bank, &self.bank.labels, &queries, &self.queries.labels, self.classes, KnnConfig::default())
            .map_err(|e| TrainError::Config(format!("kNN monitor: {e}")))
    }
}

/// Training images whose features the collapse monitor measures after every epoch.
pub(super) const COLLAPSE_IMAGES: usize = 512;

/// The collapse monitor's statistics of the backbone features of `probe`.
pub(super) fn collapse_stats(session: &PluginSession, probe: &ByteImages) -> Result<CollapseStats, TrainError> {
    let features = session
        .embed(probe)?
        .into_iter()
        .find(|m| m.name == "features")
        .ok_or_else(|| TrainError::Config("the plugin's embedding has no `features`".into()))?;
    Ok(CollapseStats::of(&features))
}
