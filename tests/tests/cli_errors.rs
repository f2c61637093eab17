//! Bad command-line input gives one sentence on stderr and a non-zero exit, never a panic
//! or a backtrace: missing datasets, unknown tasks, unwritable or missing run directories,
//! out-of-range and non-numeric flags, bad config files and devices this build lacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pretext_tests::process::assert_no_panic_text;
use pretext_tests::{pretext, pretext_with, temp_dir};

/// `pretext train ARGS --limit 16` (small, so cases that get as far as the data are quick).
fn train(args: &[&str]) -> pretext_tests::Output {
    let mut all = vec!["train", "--limit", "16", "--epochs", "1", "--batch-size", "8", "--width", "2"];
    all.extend_from_slice(args);
    pretext(&all)
}

#[test]
fn missing_dataset_path() {
    let tmp = temp_dir();
    let missing = tmp.path().join("no/such/data");
    let out = train(&[
        "--task",
        "rotation",
        "--data",
        missing.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    out.assert_one_line_error(&[missing.to_str().unwrap(), "does not exist"]);
    assert!(!tmp.path().join("r").exists(), "no run directory is made for a run that cannot start");
}

#[test]
fn named_dataset_that_is_not_installed() {
    let tmp = temp_dir();
    let out = pretext_with(
        &["train", "--task", "rotation", "--data", "mnist", "--out", tmp.path().join("r").to_str().unwrap()],
        &[("PRETEXT_DATA", tmp.path())],
        Duration::from_secs(60),
    );
    out.assert_one_line_error(&[
        "dataset 'mnist' was not found",
        &tmp.path().join("mnist").display().to_string(),
        "IDX files",
    ]);
}

#[test]
fn unknown_dataset_name() {
    let tmp = temp_dir();
    let out = train(&["--task", "rotation", "--data", "imagenette", "--out", tmp.path().join("r").to_str().unwrap()]);
    out.assert_one_line_error(&["unknown dataset 'imagenette'", "shapes, fashion-mnist"]);
}

#[test]
fn a_folder_that_is_no_dataset() {
    let tmp = temp_dir();
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    let out = train(&[
        "--task",
        "rotation",
        "--data",
        tmp.path().to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    out.assert_one_line_error(&[tmp.path().to_str().unwrap(), "not a dataset this program can read"]);
}

#[test]
fn unknown_task() {
    let tmp = temp_dir();
    let out = train(&["--task", "colorize", "--out", tmp.path().join("r").to_str().unwrap()]);
    out.assert_one_line_error(&["no plugin named `colorize`", "pretext plugins"]);
}

#[test]
fn task_path_that_does_not_exist() {
    let tmp = temp_dir();
    let lib = tmp.path().join("libmissing.so");
    let out = train(&["--task", lib.to_str().unwrap(), "--out", tmp.path().join("r").to_str().unwrap()]);
    out.assert_one_line_error(&[lib.to_str().unwrap(), "no such file"]);
}

#[test]
fn unwritable_out() {
    // Tests may run as root, for whom permission bits do not stop a write; a regular file
    // where a folder must go stops everyone.
    let tmp = temp_dir();
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let out_dir = blocker.join("run");
    let out = train(&["--task", "rotation", "--out", out_dir.to_str().unwrap()]);
    out.assert_one_line_error(&["cannot create directory", out_dir.to_str().unwrap()]);
}

#[test]
fn zero_batch_size_and_epochs() {
    let out = pretext(&["train", "--task", "rotation", "--batch-size", "0"]);
    out.assert_one_line_error(&["--batch-size must be at least 1"]);
    let out = pretext(&["train", "--task", "rotation", "--epochs", "0"]);
    out.assert_one_line_error(&["--epochs must be at least 1"]);
    let out = pretext(&["train", "--task", "rotation", "--lr=-0.1"]);
    out.assert_one_line_error(&["--lr must be a positive number"]);
}

/// clap's own usage errors: `error: …` first, then a hint line; exit code 2.
fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let out = pretext(args);
    assert_eq!(out.code(), Some(2), "{:?}: {:?}\n{}", args, out.status, out.stderr);
    assert_no_panic_text(&out.stderr);
    let lines = out.stderr_lines();
    assert!(lines.len() <= 3, "{}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{}", out.stderr);
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` not in: {}", lines[0]);
    }
}

#[test]
fn non_numeric_and_unknown_values() {
    assert_usage_error(&["train", "--epochs", "three"], &["'three'", "--epochs"]);
    assert_usage_error(&["train", "--batch-size", "-5"], &["'-5'"]);
    assert_usage_error(&["train", "--limit", "1e3"], &["'1e3'", "--limit"]);
    assert_usage_error(&["train", "--backbone", "vgg"], &["vgg", "`convnet`", "`vit-tiny`"]);
    assert_usage_error(&["train", "--optimizer", "adam"], &["adam"]);
    assert_usage_error(&["train", "--no-such-flag"], &["--no-such-flag"]);
    assert_usage_error(&["fly"], &["fly"]);
}

#[test]
fn resume_without_a_run() {
    let out = pretext(&["train", "--resume"]);
    out.assert_one_line_error(&["--resume needs --out"]);
    let tmp = temp_dir();
    let out = pretext(&["train", "--resume", "--out", tmp.path().to_str().unwrap()]);
    out.assert_one_line_error(&["cannot resume", tmp.path().to_str().unwrap()]);
}

#[test]
fn bad_config_files() {
    let tmp = temp_dir();
    let missing = tmp.path().join("missing.toml");
    pretext(&["train", "--config", missing.to_str().unwrap()])
        .assert_one_line_error(&["cannot read the config file", missing.to_str().unwrap()]);
    let typo = tmp.path().join("typo.toml");
    std::fs::write(&typo, "task = \"rotation\"\nepoch = 3\n").unwrap();
    pretext(&["train", "--config", typo.to_str().unwrap()]).assert_one_line_error(&[
        typo.to_str().unwrap(),
        "not a valid config file",
        "epoch",
    ]);
    let wrong_type = tmp.path().join("type.toml");
    std::fs::write(&wrong_type, "epochs = \"many\"\n").unwrap();
    pretext(&["train", "--config", wrong_type.to_str().unwrap()])
        .assert_one_line_error(&[wrong_type.to_str().unwrap(), "not a valid config file"]);
}

#[test]
fn unknown_task_setting_and_missing_device() {
    let tmp = temp_dir();
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, "task = \"rotation\"\nlimit = 16\n[task_config]\nflip = 0.5\n").unwrap();
    let out =
        pretext(&["train", "--config", config.to_str().unwrap(), "--out", tmp.path().join("a").to_str().unwrap()]);
    out.assert_one_line_error(&["plugin `rotation`", "unknown task setting `flip`"]);
    let plugins: serde_json::Value = serde_json::from_str(&pretext(&["plugins", "--json"]).stdout).unwrap();
    let built_with_cuda = plugins.as_array().unwrap().iter().any(|p| p["name"] == "rotation" && p["cuda"] == true);
    if !built_with_cuda {
        let out = train(&["--task", "rotation", "--device", "cuda", "--out", tmp.path().join("b").to_str().unwrap()]);
        out.assert_one_line_error(&["plugin `rotation`", "no CUDA support"]);
    }
}

#[test]
fn patch_size_belongs_to_vits() {
    let out = pretext(&["train", "--task", "simclr", "--backbone", "convnet", "--patch-size", "4"]);
    out.assert_one_line_error(&["--patch-size applies to ViT backbones", "convnet"]);
    let out = pretext(&["train", "--task", "simclr", "--backbone", "vit-tiny", "--patch-size", "0"]);
    out.assert_one_line_error(&["--patch-size must be at least 1"]);
}
