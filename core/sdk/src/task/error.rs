//! The error type of everything that runs inside a task session.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TaskError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("the loss is not finite ({loss}) at step {step}; the weights were not updated")]
    NonFinite { loss: f64, step: u64 },
    #[error("device: {0}")]
    Device(String),
    #[error("state: {0}")]
    State(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
