//! `pretext train` for each built-in task on the built-in `shapes` data: exit 0 and a full
//! run directory (run.json, metrics.jsonl with a finite, falling loss, verified checkpoints
//! with latest.json, samples/).
//!
//! The acceptance command uses `--limit 2048 --batch-size 64 --epochs 3`; on CPU that takes
//! minutes per task, so these tests use a narrow ConvNet on 256 images, sizes at which the
//! loss falls reliably over three epochs for every task.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pretext_core::model::BackboneKind;
use pretext_core::task::abi::ABI_VERSION;
use pretext_tests::{RunCheck, pretext, target_dir, temp_dir, train_small};

fn train_task(task: &str) {
    let tmp = temp_dir();
    let out = tmp.path().join("runs").join(task);
    let result = train_small(task, "shapes", 256, &out);
    result.assert_success();
    assert!(result.stdout.contains("trained 3 epochs"), "{}", result.stdout);

    let run = RunCheck::new(&out);
    let losses = run.assert_completed(3);
    eprintln!("{task}: epoch losses {losses:?}");
    let info = run.info();
    assert_eq!(info.task.name, task);
    assert_eq!(info.task.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.task.abi_version, ABI_VERSION);
    assert_eq!(std::path::PathBuf::from(&info.task.path), target_dir().join(format!("libpretext_{task}.so")));
    assert_eq!((info.backbone.kind, info.backbone.width, info.backbone.in_channels), (BackboneKind::Convnet, 8, 3));
    assert_eq!((info.dataset.name.as_str(), info.dataset.train_images, info.dataset.height), ("shapes", 256, 32));
    assert_eq!((info.seed, info.epochs), (1, 3));
    assert_eq!(info.config["batch_size"], 32);
    // Every task setting is recorded, defaults included, so that a later plugin with other
    // defaults resumes this run as it started.
    let plugins: serde_json::Value = serde_json::from_str(&pretext(&["plugins", "--json"]).stdout).unwrap();
    let plugin = plugins.as_array().unwrap().iter().find(|p| p["name"] == task).unwrap();
    assert_eq!(info.config["task_config"], plugin["default_config"]);
    // Each epoch's checkpoint is kept (checkpoint_every defaults to 1).
    let epochs: Vec<u64> = run.verified_checkpoints().iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, [1, 2, 3]);
}

#[test]
fn simclr_trains_on_shapes() {
    train_task("simclr");
}

#[test]
fn jigsaw_trains_on_shapes() {
    train_task("jigsaw");
}

#[test]
fn rotation_trains_on_shapes() {
    train_task("rotation");
}

#[test]
fn an_existing_run_is_not_overwritten_and_resume_of_a_finished_run_adds_nothing() {
    let tmp = temp_dir();
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let base = [
        "train",
        "--task",
        "rotation",
        "--width",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--limit",
        "32",
        "--out",
        out_s,
    ];
    pretext(&base).assert_success();
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    pretext(&base).assert_one_line_error(&[out_s, "already holds a run", "--resume"]);
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before, "the refused run changed the metrics");
    RunCheck::new(&out).latest();

    // A run whose recorded task settings no longer match its checkpoints (as after a plugin
    // changed a default under a run that did not record it) is refused with the way out.
    let info_path = out.join("run.json");
    let mut info: serde_json::Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    info["config"]["task_config"]["hidden_dim"] = serde_json::json!(0);
    std::fs::write(&info_path, serde_json::to_vec_pretty(&info).unwrap()).unwrap();
    pretext(&["train", "--resume", "--out", out_s, "--epochs", "2"]).assert_one_line_error(&[
        "checkpoint",
        "task_config",
        "run.json",
    ]);
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before, "the refused resume changed the metrics");
}

/// The acceptance commands at their full size: `--limit 2048 --batch-size 64 --epochs 3`
/// with the default ConvNet, for each task. Minutes per task on a CPU, so run on request:
/// `cargo test --release -p pretext-tests --test train -- --ignored`.
#[test]
#[ignore = "full-size acceptance runs take minutes per task on a CPU"]
fn acceptance_commands_at_full_size() {
    let tmp = temp_dir();
    for task in ["simclr", "jigsaw", "rotation"] {
        let out = tmp.path().join("runs").join(task);
        let started = std::time::Instant::now();
        let args = [
            "train",
            "--task",
            task,
            "--data",
            "shapes",
            "--backbone",
            "convnet",
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--limit",
            "2048",
            "--out",
            out.to_str().unwrap(),
        ];
        pretext_tests::pretext_with(&args, &[], std::time::Duration::from_secs(3600)).assert_success();
        let losses = RunCheck::new(&out).assert_completed(3);
        eprintln!("{task}: {:.0}s, epoch losses {losses:?}", started.elapsed().as_secs_f64());
    }
}
