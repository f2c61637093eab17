//! Evaluation of learned features: kNN and linear-probe accuracy, fine-tuning, 2-D
//! projections and neighbours for the viewers.
//!
//! Everything here reads features or checkpoint files, never a plugin: evaluation works on
//! any run directory, with its plugin present or not. Fine-tuning and the probe train with
//! candle and use the host's threads, so they are native-only; kNN, projections and feature
//! extraction also compile for the browser.

#[cfg(not(target_arch = "wasm32"))]
mod attention;
mod collapse;
mod knn;
mod projection;

#[cfg(not(target_arch = "wasm32"))]
mod evaluate;
#[cfg(not(target_arch = "wasm32"))]
mod finetune;
#[cfg(not(target_arch = "wasm32"))]
mod probe;

#[cfg(not(target_arch = "wasm32"))]
pub use attention::attention_atlas;
pub use collapse::{COLLAPSED_RANK, COLLAPSED_STD_RATIO, CollapseStats, effective_rank};
#[cfg(not(target_arch = "wasm32"))]
pub use evaluate::{
    EmbedOptions, EvalError, Evaluation, HOLD_OUT, Weights, bank_and_queries, data_spec, knn_top1, probe_top1,
    write_embedding,
};
#[cfg(not(target_arch = "wasm32"))]
pub use finetune::{FinetuneConfig, FinetuneResult, finetune};
pub use knn::{KnnConfig, accuracy, knn_predict, l2_normalized, top_k};
pub use pretext_sdk::features::{AttentionMaps, FeatureExtractor, InputNorm, stage_matrices};
#[cfg(not(target_arch = "wasm32"))]
pub use probe::{ProbeConfig, ProbeResult, linear_probe};
pub use projection::{TsneConfig, pca_2d, tsne_2d};
