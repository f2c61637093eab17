//! Broken plugins: a wrong magic number, a wrong ABI version, a file that is not a shared
//! library, a plugin whose training step panics and one whose loss goes NaN. Each gives one
//! sentence naming the plugin and the cause; the host never aborts; `pretext plugins` lists
//! the refused ones with their reason and still lists the good ones; after a NaN the run
//! stops, `run.json` says why, and the last good checkpoint stays the latest.
//!
//! The first two are compiled here with plain `rustc` from a few lines that only mimic the
//! declaration's header; the last two are the real plugin of `tests/fixtures/faulty`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pretext_core::run::RunStatus;
use pretext_core::task::abi::{ABI_VERSION, MAGIC};
use pretext_tests::{RunCheck, build_rust_fixture, faulty_plugin, pretext, pretext_with, temp_dir};

/// A library exporting `pretext_plugin_v1` whose declaration starts with `magic`, `abi`.
fn header_only_plugin(magic: u64, abi: u32) -> String {
    format!(
        r#"
#[repr(C)]
pub struct Header {{ magic: u64, abi_version: u32, capabilities: u32 }}
static DECL: Header = Header {{ magic: {magic:#x}, abi_version: {abi}, capabilities: 0 }};
#[no_mangle]
pub extern "C" fn pretext_plugin_v1() -> *const Header {{ &DECL }}
"#
    )
}

/// A folder holding the three broken libraries, built once per test binary.
fn broken_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir();
        build_rust_fixture(&header_only_plugin(MAGIC ^ 0xff, ABI_VERSION), &dir.path().join("libpretext_badmagic.so"));
        build_rust_fixture(&header_only_plugin(MAGIC, ABI_VERSION - 1), &dir.path().join("libpretext_oldabi.so"));
        std::fs::write(dir.path().join("libpretext_notalib.so"), "this is a text file, not a shared library\n")
            .unwrap();
        dir
    })
    .path()
}

fn broken(name: &str) -> PathBuf {
    broken_dir().join(format!("libpretext_{name}.so"))
}

fn wrong_abi_text() -> String {
    format!("uses plugin ABI version {}, but this pretext uses version {ABI_VERSION}", ABI_VERSION - 1)
}

#[test]
fn plugins_lists_refused_libraries_with_their_reason_and_keeps_the_good_ones() {
    let out = pretext_with(
        &["plugins", "--json"],
        &[("PRETEXT_PLUGIN_PATH", broken_dir())],
        std::time::Duration::from_secs(60),
    );
    out.assert_success();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let expect = [
        ("badmagic", "wrong magic number".to_string()),
        ("oldabi", wrong_abi_text()),
        ("notalib", "is not a loadable shared library".to_string()),
    ];
    for (name, reason) in &expect {
        let path = broken(name).display().to_string();
        let row = rows
            .iter()
            .find(|r| r["path"] == path.as_str())
            .unwrap_or_else(|| panic!("{path} not listed: {}", out.stdout));
        assert_eq!(row["status"], "refused");
        assert_eq!(row["name"], *name);
        let text = row["reason"].as_str().unwrap();
        assert!(text.contains(reason.as_str()), "{name}: {text}");
        assert!(!text.contains('\n'), "{text}");
    }
    for task in ["simclr", "jigsaw", "rotation"] {
        assert!(rows.iter().any(|r| r["name"] == task && r["status"] == "ok"), "{task} missing: {}", out.stdout);
    }
    let table =
        pretext_with(&["plugins"], &[("PRETEXT_PLUGIN_PATH", broken_dir())], std::time::Duration::from_secs(60));
    table.assert_success();
    assert!(table.stdout.contains("reason:") && table.stdout.contains("wrong magic number"), "{}", table.stdout);
}

#[test]
fn a_broken_library_given_by_path_is_refused_in_one_sentence() {
    let tmp = temp_dir();
    for (name, cause) in [
        ("badmagic", "is not a Pretext plugin: its declaration has the wrong magic number".to_string()),
        ("oldabi", wrong_abi_text()),
        ("notalib", "is not a loadable shared library".to_string()),
    ] {
        let path = broken(name);
        let out_dir = tmp.path().join(name);
        let out = pretext(&["train", "--task", path.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
        let line = out.assert_one_line_error(&[path.to_str().unwrap(), &cause]);
        eprintln!("{line}");
        assert!(!out_dir.join("run.json").exists(), "a refused plugin must not start a run");
    }
}

#[test]
fn a_broken_library_found_by_name_is_refused_with_its_reason() {
    let tmp = temp_dir();
    let out_dir = tmp.path().join("run");
    let out = pretext_with(
        &["train", "--task", "oldabi", "--out", out_dir.to_str().unwrap()],
        &[("PRETEXT_PLUGIN_PATH", broken_dir())],
        std::time::Duration::from_secs(60),
    );
    let line = out.assert_one_line_error(&["plugin `oldabi`", "was refused", &wrong_abi_text(), "rebuild the plugin"]);
    eprintln!("{line}");
}

/// A `--config` file training the faulty plugin with `fail` after `after_steps` steps.
fn faulty_config(dir: &Path, fail: &str, after_steps: u64) -> PathBuf {
    let out = dir.join("run");
    let text = format!(
        "task = {task:?}\ndata = \"shapes\"\nwidth = 4\nepochs = 3\nbatch_size = 16\nlimit = 64\nout = {out:?}\n\n\
         [task_config]\nfail = {fail:?}\nafter_steps = {after_steps}\n",
        task = faulty_plugin().display().to_string(),
        out = out.display().to_string(),
    );
    let path = dir.join("faulty.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_faulty_plugin_trains_when_told_not_to_fail() {
    let tmp = temp_dir();
    let config = faulty_config(tmp.path(), "none", 0);
    pretext(&["train", "--config", config.to_str().unwrap()]).assert_success();
    let run = RunCheck::new(&tmp.path().join("run"));
    run.assert_complete_files(3);
    assert_eq!(run.info().task.name, "faulty");
}

#[test]
fn a_panicking_train_step_is_one_sentence_and_the_host_survives() {
    let tmp = temp_dir();
    // 64 images in batches of 16: four steps an epoch; step 7 (epoch 2) panics.
    let config = faulty_config(tmp.path(), "panic", 6);
    let out = pretext(&["train", "--config", config.to_str().unwrap()]);
    let line = out.assert_error_after_progress(&[
        "plugin `faulty` panicked while trying to run a training step",
        "deliberate failure after 6 steps",
    ]);
    eprintln!("{line}");

    let run = RunCheck::new(&tmp.path().join("run"));
    let info = run.info();
    assert_eq!(info.status, RunStatus::Failed);
    assert!(info.message.as_deref().unwrap_or("").contains("deliberate failure"), "{info:?}");
    assert_eq!(info.epochs_done, 1);
    let (latest, _) = run.latest();
    assert_eq!(latest.epoch, 1);
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let tmp = temp_dir();
    // Four steps an epoch; the sixth step (the second of epoch 2) has a NaN loss.
    let config = faulty_config(tmp.path(), "nan", 5);
    let out = pretext(&["train", "--config", config.to_str().unwrap()]);
    let line = out.assert_error_after_progress(&["epoch 2", "plugin `faulty`", "not finite", "epoch-0001"]);
    eprintln!("{line}");

    let run = RunCheck::new(&tmp.path().join("run"));
    let info = run.info();
    assert_eq!(info.status, RunStatus::Failed);
    let message = info.message.clone().unwrap_or_default();
    assert!(message.contains("not finite") && message.contains("epoch-0001"), "{message}");
    assert_eq!(info.epochs_done, 1);

    let checkpoints: Vec<u64> = run.verified_checkpoints().iter().map(|m| m.epoch).collect();
    assert_eq!(checkpoints, [1], "only the epoch before the NaN has a checkpoint");
    let (latest, _) = run.latest();
    assert_eq!(latest.epoch, 1);
    let losses = pretext_tests::epoch_losses(&run.metrics());
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert!(losses[0].1.is_finite());
    assert!(run.metrics().iter().all(|r| r.loss.is_finite()), "no NaN reached metrics.jsonl");
}

#[test]
fn a_collapsing_representation_is_recorded_and_warned_about_once() {
    let tmp = temp_dir();
    // The loss is the features' spread: a high learning rate maps every image to one point.
    let config = faulty_config(tmp.path(), "collapse", 0);
    let out = pretext(&["train", "--config", config.to_str().unwrap(), "--lr", "0.05", "--epochs", "12"]);
    out.assert_success();
    let warnings: Vec<&str> = out.stderr_lines().into_iter().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{}", out.stderr);
    assert!(warnings[0].contains("the representation is collapsing"), "{}", warnings[0]);
    let run = RunCheck::new(&tmp.path().join("run"));
    let last = run.metrics().into_iter().rfind(|r| r.epoch_end).unwrap();
    let (spread, rank) = (last.extra["feature_std_ratio"], last.extra["effective_rank"]);
    assert!(spread < pretext_core::eval::COLLAPSED_STD_RATIO || rank < pretext_core::eval::COLLAPSED_RANK, "{last:?}");

    // The same plugin with its ordinary rotation loss: statistics recorded, no warning.
    let healthy = temp_dir();
    let config = faulty_config(healthy.path(), "none", 0);
    let out = pretext(&["train", "--config", config.to_str().unwrap(), "--epochs", "4"]);
    out.assert_success();
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    let run = RunCheck::new(&healthy.path().join("run"));
    let first = run.metrics().into_iter().find(|r| r.epoch_end).unwrap();
    assert!(first.extra["feature_std_ratio"] > 0.2 && first.extra["effective_rank"] > 2.0, "{first:?}");
}
