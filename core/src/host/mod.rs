//! The plugin host: finds plugin libraries, checks them, and calls them safely.
//!
//! Loading reads the declaration's magic and ABI version before anything else, then the
//! pretext-sdk version and capabilities, and refuses a mismatch with a sentence that says
//! what to rebuild. Libraries are never unloaded (a session or a log callback may outlive
//! any handle we hold). All `unsafe` of the host side lives in [`library`] and [`session`],
//! plus one `mallopt` call in [`alloc`] that tunes the allocator plugins share.

mod alloc;
mod discover;
mod error;
mod library;
mod session;

pub use alloc::keep_freed_memory;
pub use discover::{Discovery, Refusal, discover, plugin_dirs, resolve};
pub use error::{CallError, LoadError};
pub use library::{Plugin, load};
pub use session::{PluginSession, PreparedBatch};
