//! A plugin written outside the workspace, as `docs/writing-a-plugin.md` tells a new user to:
//! the template in `docs/plugin-template/` is copied to a temporary folder, its
//! `pretext-sdk` path dependency pointed at this checkout, built with plain
//! `cargo build --release`, and trained with `pretext train --task path/to/libflip_task.so`.
//! The guide's second example, `docs/teacher-template/` (a momentum teacher and task state),
//! goes the same way.
//!
//! The build shares the workspace's target folder so that compiled dependencies are reused.
//! They cannot all be: the workspace's own members (the GUI in particular) switch on extra
//! features of shared crates, which changes their build hashes, so the first build of the
//! template compiles candle once more (minutes on two cores); every later one reuses that
//! and takes seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pretext_core::run::SampleIndex;
use pretext_tests::process::run_command;
use pretext_tests::{RunCheck, ensure_built, pretext, pretext_with, target_dir, temp_dir, workspace_root};

/// The dependency line of the template that a user edits.
const SDK_DEP: &str = r#"pretext-sdk = { path = "../../core/sdk" }"#;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// Copies `docs/<template>` into `dir`, points it at this checkout, builds it as the guide
/// says and returns a copy of the library `lib<name>.so`.
fn build_template(template: &str, name: &str, dir: &Path) -> std::path::PathBuf {
    let krate = dir.join(template);
    copy_dir(&workspace_root().join("docs").join(template), &krate);

    // Step 1 of the guide: point the dependency at a Pretext checkout.
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(SDK_DEP), "the template no longer has the line the guide tells users to edit");
    let sdk = workspace_root().join("core/sdk");
    let manifest = manifest.replace(SDK_DEP, &format!("pretext-sdk = {{ path = {:?} }}", sdk.display().to_string()));
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    // The same dependency versions as the workspace, so built artifacts can be shared.
    std::fs::copy(workspace_root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();

    // Step 2: plain `cargo build --release`.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shared_target = target_dir().parent().unwrap().to_path_buf();
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release"]).current_dir(&krate).env("CARGO_TARGET_DIR", &shared_target);
    let started = Instant::now();
    let build = run_command(cmd, Duration::from_secs(25 * 60));
    assert!(build.success(), "{template} does not build:\n{}", build.stderr);
    eprintln!("out-of-tree build of {template} took {:.1}s", started.elapsed().as_secs_f64());
    // Keep a copy: another build may replace the file in the shared target folder.
    let file = format!("lib{name}.so");
    let lib = dir.join(&file);
    std::fs::copy(shared_target.join("release").join(&file), &lib).unwrap();
    lib
}

#[test]
fn the_template_plugin_builds_out_of_tree_and_trains() {
    ensure_built();
    let tmp = temp_dir();
    let lib = build_template("plugin-template", "flip_task", tmp.path());

    // Not named `libpretext_*`, so it is not discovered by itself…
    let listed = pretext_with(&["plugins", "--json"], &[("PRETEXT_PLUGIN_PATH", tmp.path())], Duration::from_secs(60));
    assert!(!listed.stdout.contains("\"flip\""), "{}", listed.stdout);

    // …but `--task PATH` trains it (step 3).
    let out = tmp.path().join("run");
    let args = [
        "train",
        "--task",
        lib.to_str().unwrap(),
        "--width",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--limit",
        "128",
        "--out",
        out.to_str().unwrap(),
    ];
    pretext(&args).assert_success();
    let run = RunCheck::new(&out);
    run.assert_complete_files(2);
    let info = run.info();
    assert_eq!((info.task.name.as_str(), info.task.version.as_str()), ("flip", "0.1.0"));
    assert_eq!(Path::new(&info.task.path), lib);
    let index: SampleIndex =
        serde_json::from_str(&std::fs::read_to_string(out.join("samples/index.json")).unwrap()).unwrap();
    assert!(index.samples.iter().any(|s| s.caption == "mirrored"), "{index:?}");
    for m in run.metrics() {
        let acc = m.extra.get("pretext_acc").copied().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&acc), "the task's accuracy metric is recorded: {m:?}");
    }

    // The task's own settings come from `[task_config]`, and its validation reaches the user.
    let config = tmp.path().join("flip.toml");
    std::fs::write(&config, "limit = 16\nwidth = 2\n[task_config]\ngrayscale_p = 2.0\n").unwrap();
    let bad = pretext(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--task",
        lib.to_str().unwrap(),
        "--out",
        tmp.path().join("bad").to_str().unwrap(),
    ]);
    bad.assert_one_line_error(&["plugin `flip`", "grayscale_p must be in [0, 1]"]);
}

#[test]
fn the_teacher_template_builds_out_of_tree_and_checkpoints_teacher_and_state() {
    ensure_built();
    let tmp = temp_dir();
    let lib = build_template("teacher-template", "mean_teacher_task", tmp.path());
    let out = tmp.path().join("run");
    let args = ["train", "--task", lib.to_str().unwrap(), "--width", "8", "--epochs", "2", "--batch-size", "32"];
    pretext(&[&args[..], &["--limit", "128", "--out", out.to_str().unwrap()]].concat()).assert_success();
    let run = RunCheck::new(&out);
    run.assert_complete_files(2);
    assert_eq!(run.info().task.name, "mean-teacher");
    let (_, weights) = run.latest();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let names: Vec<&str> = st.names();
    for name in ["teacher.backbone.conv1.weight", "teacher.head.projector.0.weight", "state.center"] {
        assert!(names.contains(&name), "{name} missing from the checkpoint: {names:?}");
    }
    // The centre moved away from its zero start: the state is written, not just declared.
    let center = st.tensor("state.center").unwrap();
    assert!(center.data().iter().any(|b| *b != 0), "the centre was never updated");
}
