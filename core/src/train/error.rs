//! Why a training run could not start or had to stop.

use std::path::PathBuf;

use thiserror::Error;

use crate::data::DataError;
use crate::host::{CallError, LoadError};
use crate::run::store::StoreError;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Plugin(#[from] LoadError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{dir} already holds a run; pass --resume to continue it or choose another --out")]
    RunExists { dir: PathBuf },
    #[error("training stopped at epoch {epoch}: {source}; {kept}")]
    NonFinite { epoch: u64, source: CallError, kept: String },
    #[error("cannot write sample images to {path}: {reason}")]
    Samples { path: PathBuf, reason: String },
    /// The ranks of a data-parallel run hold different states; every rank finds this at
    /// the same point, so only rank 0 need report it.
    #[error("{0}")]
    Ranks(String),
}
