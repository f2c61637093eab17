//! Support for Pretext's end-to-end tests: build the workspace once, run the real `pretext`
//! binary with a timeout, write small dataset fixtures, and check run directories through
//! `pretext_core::run`'s own types.
//!
//! The tests run as `cargo test --release --workspace` (or `-p pretext-tests`); they find the
//! binary and the plugins beside their own executable (`target/release/deps/…` →
//! `target/release`), and make sure those are fresh by running `cargo build --release
//! --workspace` once per test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;
pub mod process;
pub mod runs;

pub use process::{
    Output, build_rust_fixture, ensure_built, faulty_plugin, pretext, pretext_bin, pretext_with, target_dir,
    workspace_root,
};
pub use runs::{RunCheck, epoch_losses};

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("pretext-e2e-").tempdir().expect("cannot create a temporary directory")
}
