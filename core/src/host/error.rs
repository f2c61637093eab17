//! Why a plugin could not be loaded, or why a call into one failed.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{path} is not a loadable shared library: {reason}")]
    NotALibrary { path: PathBuf, reason: String },
    #[error("{path} is not a Pretext plugin: it does not export `{symbol}`")]
    NoEntryPoint { path: PathBuf, symbol: &'static str },
    #[error("{path} is not a Pretext plugin: its declaration has the wrong magic number")]
    BadMagic { path: PathBuf },
    #[error(
        "{path} uses plugin ABI version {found}, but this pretext uses version {expected}; rebuild the plugin against this pretext-sdk"
    )]
    AbiMismatch { path: PathBuf, found: u32, expected: u32 },
    #[error(
        "{path} was built against pretext-sdk {found}, but this pretext runs pretext-sdk {expected}; rebuild the plugin against pretext-sdk {expected}"
    )]
    CoreMismatch { path: PathBuf, found: String, expected: String },
    #[error(
        "{path} was built {plugin} CUDA support but this pretext was built {host} it; build both with the same `--features`"
    )]
    Capability { path: PathBuf, plugin: &'static str, host: &'static str },
    #[error("{path} does not describe itself: {reason}")]
    Describe { path: PathBuf, reason: String },
    #[error("no plugin named `{name}` was found (looked in: {searched}); `pretext plugins` lists what is available")]
    UnknownTask { name: String, searched: String },
    #[error("plugin `{name}` was refused: {reason}")]
    Refused { name: String, path: PathBuf, reason: String },
}

#[derive(Debug, Error)]
pub enum CallError {
    #[error("plugin `{plugin}` failed to {action}: {message}")]
    Failed { plugin: String, action: &'static str, message: String },
    #[error("plugin `{plugin}` panicked while trying to {action}: {message}")]
    Panicked { plugin: String, action: &'static str, message: String },
    #[error("plugin `{plugin}`: {message}")]
    NonFinite { plugin: String, message: String },
    #[error("plugin `{plugin}` returned data that could not be read during {action}: {message}")]
    BadOutput { plugin: String, action: &'static str, message: String },
}
