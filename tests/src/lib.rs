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
pub mod photos;
pub mod process;
pub mod runs;
pub mod serve;

pub use process::{
    Output, build_rust_fixture, ensure_built, faulty_plugin, pretext, pretext_bin, pretext_with, target_dir,
    test_cache_dir, workspace_root,
};
pub use runs::{RunCheck, epoch_losses};

/// `pretext train` for three epochs with the narrow settings the tests use (ConvNet width 8,
/// batch 32, seed 1): small enough for CI, large enough that the loss falls for every task.
pub fn train_small(task: &str, data: &str, limit: usize, out: &std::path::Path) -> Output {
    let limit = limit.to_string();
    let out = out.to_str().expect("test paths are UTF-8");
    let args = ["train", "--task", task, "--data", data, "--backbone", "convnet", "--width", "8", "--epochs", "3"];
    pretext(&[&args[..], &["--batch-size", "32", "--limit", &limit, "--seed", "1", "--out", out]].concat())
}

/// A two-epoch SimCLR run on 256 `shapes` images with the kNN monitor every epoch (ConvNet
/// width 8, batch 32): what the evaluation and viewer tests look at. Asserts success.
pub fn train_monitored_simclr(out: &std::path::Path) {
    let out = out.to_str().expect("test paths are UTF-8");
    let args =
        ["train", "--task", "simclr", "--data", "shapes", "--backbone", "convnet", "--width", "8", "--epochs", "2"];
    pretext(&[&args[..], &["--batch-size", "32", "--limit", "256", "--knn-every", "1", "--out", out]].concat())
        .assert_success();
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("pretext-e2e-").tempdir().expect("cannot create a temporary directory")
}

/// Whether Debian's Fashion-MNIST is installed; if not, says the test is skipped and why.
pub fn has_fashion_mnist() -> bool {
    let system = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    if !system.is_dir() {
        eprintln!("skipped: needs {} (apt-get install dataset-fashion-mnist)", system.display());
    }
    system.is_dir()
}
