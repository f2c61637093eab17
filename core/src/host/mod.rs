//! The plugin host: finds plugin libraries, checks them, and calls them safely.
//!
//! Loading reads the declaration's magic and ABI version before anything else, then the
//! pretext-sdk version and capabilities, and refuses a mismatch with a sentence that says
//! what to rebuild. Libraries are never unloaded (a session or a log callback may outlive
//! any handle we hold). All `unsafe` of the host side lives in [`library`] and [`session`],
//! plus two process-wide settings in [`process`] (malloc, candle's worker threads) that
//! the plugins share.

mod discover;
mod error;
mod library;
mod process;
mod session;

pub use discover::{Discovery, Refusal, discover, plugin_dirs, resolve};
pub use error::{CallError, LoadError};
pub use library::{Plugin, load};
pub use process::tune_for_training;
pub use session::{PluginSession, PreparedBatch};
