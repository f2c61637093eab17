//! The browser viewer for real: `web/build.sh` builds it, `pretext serve` serves it with a
//! runs directory holding a small trained SimCLR run, and Debian's headless Chromium (driven
//! by playwright-core, tests/web/viewer.mjs) loads it. The viewer reports what it loaded in
//! the page title; the test waits for the run's epochs, metrics, checkpoints and embedding
//! to arrive over HTTP, for a metrics line appended afterwards to show up (a run being
//! written), and for a small ViT run's attention maps with a point selected from the
//! address; checks that the canvas is drawn and that the page logged no error.
//!
//! Needs Chromium (`/usr/bin/chromium` or `$CHROMIUM`), `npm ci --prefix tests/web`, the
//! wasm32 target and wasm-bindgen-cli at Cargo.lock's version: `.ci/run` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pretext_tests::process::run_command;
use pretext_tests::serve::Served;
use pretext_tests::{RunCheck, pretext, target_dir, temp_dir, train_monitored_simclr, workspace_root};

/// Builds the viewer into `web/dist` unless `PRETEXT_E2E_NO_BUILD=1` (CI built it already).
fn viewer_dist() -> PathBuf {
    let root = workspace_root();
    if std::env::var_os("PRETEXT_E2E_NO_BUILD").is_none_or(|v| v != "1") {
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("web/build.sh")).current_dir(&root);
        let out = run_command(cmd, Duration::from_secs(40 * 60));
        assert!(out.success(), "web/build.sh failed:\n{}", out.stderr);
    }
    let dist = root.join("web/dist");
    assert!(dist.join("viewer_bg.wasm").is_file(), "the viewer is not built: run web/build.sh");
    dist
}

fn browser_tools() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(chromium.is_file(), "Chromium is needed at {} (apt install chromium)", chromium.display());
    let web = workspace_root().join("tests/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run npm ci --prefix tests/web"
    );
    (chromium, web.join("viewer.mjs"))
}

fn train_fixture(runs: &Path) -> PathBuf {
    let run = runs.join("fixture");
    train_monitored_simclr(&run);
    pretext(&["embed", "--run", run.to_str().unwrap(), "--limit", "300"]).assert_success();
    run
}

/// A small ViT run whose embedding carries attention maps.
fn train_vit_fixture(runs: &Path) {
    let run = runs.join("vit");
    let run = run.to_str().unwrap();
    pretext(&[
        "train",
        "--task",
        "simclr",
        "--backbone",
        "vit-tiny",
        "--width",
        "24",
        "--patch-size",
        "8",
        "--limit",
        "128",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        run,
    ])
    .assert_success();
    let out = pretext(&["embed", "--run", run, "--limit", "50", "--no-tsne"]);
    out.assert_success();
    assert!(out.stdout.contains("attention maps (3 heads)"), "{}", out.stdout);
}

/// Whether a screenshot shows a drawn UI: many colours, and no colour covering nearly all of it.
fn assert_drawn(png: &Path) {
    let image = image::open(png).unwrap_or_else(|e| panic!("cannot read {}: {e}", png.display())).to_rgb8();
    let mut counts = std::collections::HashMap::new();
    for p in image.pixels() {
        *counts.entry(p.0).or_insert(0usize) += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    let total = image.pixels().len();
    assert!(counts.len() >= 64, "{}: only {} colours, the canvas looks blank", png.display(), counts.len());
    assert!(top * 100 < total * 97, "{}: one colour covers {top} of {total} pixels", png.display());
}

#[test]
fn the_browser_shows_a_served_run_and_follows_it() {
    let dist = viewer_dist();
    let (chromium, script) = browser_tools();
    let tmp = temp_dir();
    let runs = tmp.path().join("runs");
    let run = train_fixture(&runs);
    train_vit_fixture(&runs);
    let records = RunCheck::new(&run).metrics();
    let n = records.len();
    let served = Served::start(&runs, &dist);

    // The trainer appends whole lines; so does this (a copy of the last one, a step later).
    let mut extra = serde_json::to_value(records.last().unwrap()).unwrap();
    extra["step"] = serde_json::json!(records.last().unwrap().step + 1);
    let shots = target_dir().join("web-test");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |name: &str| shots.join(name).to_str().unwrap().to_string();
    let loaded = format!("fixture: Overview, 2/2 epochs, {n} metric records, 2 checkpoints");
    let spec = serde_json::json!({
        "base": served.url(),
        "steps": [
            {"path": "?run=fixture&view=overview", "expect": loaded, "screenshot": shot("overview.png")},
            {"append": {"file": run.join("metrics.jsonl"), "text": format!("{extra}\n")},
             "expect": format!("{} metric records", n + 1)},
            // The embedding, then its thumbnail atlas (one image).
            {"path": "?run=fixture&view=embedding", "expect": "1 embeddings, 1 images", "screenshot": shot("embedding.png")},
            // The first-layer filters, read from the checkpoint's safetensors.
            {"path": "?run=fixture&view=filters", "expect": "0 embeddings, 1 images", "screenshot": shot("filters.png")},
            {"path": "?run=fixture&view=curves", "expect": "fixture: Curves, 2/2 epochs", "screenshot": shot("curves.png")},
            // A ViT's embedding with point 0 selected: the atlas and the attention overlay.
            {"path": "?run=vit&view=embedding&point=0", "expect": "1 embeddings, 2 images, point #0",
             "screenshot": shot("attention.png")},
        ],
    });
    let spec_file = tmp.path().join("steps.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();

    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(&spec_file).env("CHROMIUM", &chromium);
    let out = run_command(cmd, Duration::from_secs(600));
    assert!(out.success(), "the browser run failed:\n{}\n{}", out.stdout, out.stderr);
    let lines: Vec<serde_json::Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let errors = lines.last().and_then(|l| l["errors"].as_array()).expect("a final line with the errors");
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    assert_eq!(lines.len(), 7, "{}", out.stdout);
    let titles: Vec<&str> = lines.iter().filter_map(|l| l["title"].as_str()).collect();
    assert!(titles[0].starts_with("Pretext — 2 runs — "), "{titles:?}");
    for name in ["overview.png", "embedding.png", "filters.png", "curves.png", "attention.png"] {
        assert_drawn(&shots.join(name));
    }
}
