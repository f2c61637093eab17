//! The desktop app driven headless with egui_kittest over a runs directory made by the real
//! trainer: select a run, open each view, hover and click a point of the embedding (and a
//! ViT's attention maps), train
//! from the Train view, and open malformed runs. Assertions read the UI's accessibility
//! tree (labels), not pixels, so fonts and GPUs cannot make them flaky. With
//! `PRETEXT_SCREENSHOTS=DIR` set, each view is also rendered (wgpu; lavapipe headless) and
//! saved there as a PNG, which is how `docs/screenshots/` is made.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pretext::ui::{PretextApp, View};
use pretext_core::eval::{EmbedOptions, Evaluation, Weights, write_embedding};
use pretext_core::run::RunStatus;
use pretext_core::run::store::RunStore;
use pretext_core::train::{TrainConfig, train};

/// `target/release`, from this test's executable (`target/release/deps/ui-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap().to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The plugins are cdylibs that `cargo test -p pretext` does not build: build the workspace
/// once, with the test command's features (a no-op after `cargo build --release --workspace`).
fn plugin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            pretext_tests::ensure_built();
            let dir = target_dir();
            assert!(simclr_in(&dir).is_file(), "cannot build the plugins into {}", dir.display());
            dir
        })
        .clone()
}

fn simclr_in(dir: &Path) -> PathBuf {
    dir.join(format!("{}pretext_simclr{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

/// A runs directory with one small SimCLR run (2 epochs, kNN each epoch) and its embedding.
fn fixture() -> &'static Path {
    static RUNS: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUNS.get_or_init(|| {
        let plugins = plugin_dir();
        let runs = tempfile::Builder::new().prefix("pretext-ui-").tempdir().unwrap();
        let run = runs.path().join("demo");
        let config = TrainConfig {
            task: simclr_in(&plugins).display().to_string(),
            epochs: 2,
            batch_size: 64,
            limit: Some(256),
            knn_every: 1,
            log_every: 1,
            workers: 1,
            out: Some(run.clone()),
            ..TrainConfig::default()
        };
        train_and_embed(&config, 200);
        runs
    })
    .path()
}

/// Trains `config` and embeds its first `limit` test images (PCA only).
fn train_and_embed(config: &TrainConfig, limit: usize) -> pretext_core::run::EmbeddingFile {
    train(config, false, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let eval = Evaluation::open(config.out.as_ref().unwrap(), &Weights::Latest).unwrap();
    write_embedding(&eval, None, &EmbedOptions { limit, tsne: false, ..EmbedOptions::default() }).unwrap().1
}

fn harness<'a>(app: PretextApp) -> Harness<'a, PretextApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .with_max_steps(1000)
        .build_ui_state(|ui, app: &mut PretextApp| app.show(ui), app)
}

/// Steps frames until `done` holds and no file is being read, or fails after `secs`.
fn settle(h: &mut Harness<'_, PretextApp>, secs: u64, what: &str, done: impl Fn(&Harness<'_, PretextApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        h.step();
        if done(h) && !h.state().is_loading() {
            h.step();
            h.step();
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_label(h: &Harness<'_, PretextApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn wait_for_label(h: &mut Harness<'_, PretextApp>, text: &str) {
    settle(h, 60, &format!("a label containing `{text}`"), |h| has_label(h, text));
}

/// Renders the window into `$PRETEXT_SCREENSHOTS/NAME.png` when asked to.
fn screenshot(h: &mut Harness<'_, PretextApp>, name: &str) {
    let Some(dir) = std::env::var_os("PRETEXT_SCREENSHOTS") else { return };
    let image = h.render().expect("cannot render the UI (is a Vulkan driver such as lavapipe installed?)");
    std::fs::create_dir_all(&dir).unwrap();
    image.save(Path::new(&dir).join(format!("{name}.png"))).unwrap();
}

/// Clicks the embedding point at `pos` and waits for the selected point's neighbours.
fn click_point(h: &mut Harness<'_, PretextApp>, pos: egui::Pos2) {
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
    }
    h.step();
    h.step();
    let selected = h.state().embedding_selection().expect("a click on a point selects it");
    wait_for_label(h, &format!("Nearest neighbours of #{selected}"));
}

fn open_view(h: &mut Harness<'_, PretextApp>, view: View) {
    h.get_by_label(view.title()).click();
    h.step();
    assert_eq!(h.state().view(), view);
}

#[test]
fn browse_a_run_through_every_view() {
    let runs = fixture();
    let mut h = harness(PretextApp::native(runs.to_path_buf(), vec![]));
    settle(&mut h, 30, "the runs list", |h| h.state().run_names() == ["demo"]);
    h.get_by_label("demo").click();
    h.step();
    assert_eq!(h.state().selected_run(), Some("demo"));

    wait_for_label(&mut h, "simclr");
    wait_for_label(&mut h, "epoch-0002.safetensors");
    assert!(has_label(&h, "completed"));
    assert!(has_label(&h, "shapes"));
    screenshot(&mut h, "overview");

    open_view(&mut h, View::Curves);
    wait_for_label(&mut h, "kNN top-1");
    assert!(has_label(&h, "loss") && has_label(&h, "learning rate"));
    screenshot(&mut h, "curves");

    open_view(&mut h, View::Filters);
    wait_for_label(&mut h, "backbone.conv1.weight");
    assert!(has_label(&h, "kernels of 3×3 over 3 input channels"), "the filters' shape is described");
    screenshot(&mut h, "filters");

    open_view(&mut h, View::Samples);
    wait_for_label(&mut h, "source 0");
    assert!(has_label(&h, "What the simclr task made"));
    screenshot(&mut h, "samples");

    open_view(&mut h, View::Embedding);
    wait_for_label(&mut h, "200 points");
    screenshot(&mut h, "embedding");

    // The same run rendered once even without PRETEXT_SCREENSHOTS: headless rendering works.
    if std::env::var_os("PRETEXT_SCREENSHOTS").is_none() {
        let image = h.render().expect("cannot render the UI headless");
        assert_eq!((image.width(), image.height()), (1280, 800));
        let first = image.get_pixel(0, 0);
        assert!(image.pixels().any(|p| p != first), "the rendered UI is blank");
    }
}

#[test]
fn hovering_and_clicking_the_embedding_shows_the_image_and_its_neighbours() {
    let runs = fixture();
    let mut h = harness(PretextApp::native(runs.to_path_buf(), vec![]));
    settle(&mut h, 30, "the runs list", |h| !h.state().run_names().is_empty());
    h.state_mut().select_run("demo");
    h.state_mut().set_view(View::Embedding);
    settle(&mut h, 60, "the embedding scatter", |h| h.state().embedding_point_pos(0).is_some());
    assert!(has_label(&h, "Hover a point"));

    // Points can overlap: find one whose screen position picks itself.
    let pos = (0..200).filter_map(|i| h.state().embedding_point_pos(i)).next().unwrap();
    h.hover_at(pos);
    h.step();
    h.step();
    wait_for_label(&mut h, "Under the cursor: #");

    click_point(&mut h, pos);
    assert!(has_label(&h, "share its class"));
    screenshot(&mut h, "embedding-neighbours");
}

#[test]
fn malformed_runs_show_a_message_and_nothing_crashes() {
    let runs = tempfile::Builder::new().prefix("pretext-ui-bad-").tempdir().unwrap();
    let broken = runs.path().join("broken");
    std::fs::create_dir_all(broken.join("embeddings")).unwrap();
    std::fs::write(broken.join("run.json"), "{ \"format_version\": 1, \"name\": ").unwrap();
    std::fs::write(broken.join("metrics.jsonl"), "not json\n{}\n").unwrap();
    std::fs::write(broken.join("embeddings/epoch-0001.json"), "[]").unwrap();
    std::fs::create_dir_all(runs.path().join("empty")).unwrap();

    let mut h = harness(PretextApp::native(runs.path().to_path_buf(), vec![]));
    settle(&mut h, 30, "the runs list", |h| h.state().run_names().len() == 2);
    assert!(has_label(&h, "unreadable"), "the list marks runs it cannot read");

    h.get_by_label("broken").click();
    wait_for_label(&mut h, "This run cannot be shown");
    assert!(has_label(&h, "broken/run.json"), "the message names the file");
    screenshot(&mut h, "malformed");

    open_view(&mut h, View::Curves);
    wait_for_label(&mut h, "not a metrics record");
    open_view(&mut h, View::Embedding);
    wait_for_label(&mut h, "epoch-0001.json");
    open_view(&mut h, View::Filters);
    wait_for_label(&mut h, "No checkpoint yet");
    open_view(&mut h, View::Samples);
    wait_for_label(&mut h, "no samples");

    h.get_by_label("empty").click();
    open_view(&mut h, View::Overview);
    wait_for_label(&mut h, "empty/run.json");
}

#[test]
fn a_tiny_training_from_the_train_view_finishes_and_is_listed() {
    let plugins = plugin_dir();
    let runs = tempfile::Builder::new().prefix("pretext-ui-train-").tempdir().unwrap();
    let mut h = harness(PretextApp::native(runs.path().to_path_buf(), vec![plugins]));
    settle(&mut h, 30, "the (empty) runs list", |h| h.state().run_names().is_empty() && has_label(h, "No runs yet"));

    open_view(&mut h, View::Train);
    wait_for_label(&mut h, "simclr 0.");
    let abi = format!("ABI {} (compatible)", pretext_core::task::abi::ABI_VERSION);
    assert!(has_label(&h, &abi), "the plugin's ABI status is shown");
    {
        let form = h.state_mut().train_form_mut();
        form.epochs = 2;
        form.batch_size = 32;
        form.limit = Some(96);
        form.knn_every = 1;
        form.name = "from-gui".into();
    }
    h.get_by_label("Start").click();
    h.step();
    assert!(h.state().is_training());
    settle(&mut h, 180, "the training to finish", |h| !h.state().is_training());
    wait_for_label(&mut h, "Training finished: 2 epochs");
    screenshot(&mut h, "train");
    settle(&mut h, 30, "the new run in the list", |h| h.state().run_names() == ["from-gui"]);
    assert_eq!(h.state().selected_run(), Some("from-gui"));

    let info = RunStore::open(&runs.path().join("from-gui")).read_info().unwrap();
    assert_eq!((info.status, info.epochs_done), (RunStatus::Completed, 2));
    open_view(&mut h, View::Overview);
    wait_for_label(&mut h, "epoch-0002.safetensors");
}

#[test]
fn each_sdk_v2_task_trains_from_the_train_view() {
    let plugins = plugin_dir();
    let runs = tempfile::Builder::new().prefix("pretext-ui-train-v2-").tempdir().unwrap();
    let mut h = harness(PretextApp::native(runs.path().to_path_buf(), vec![plugins]));
    open_view(&mut h, View::Train);
    wait_for_label(&mut h, "simclr 0.");
    for task in ["byol", "dino", "barlow", "vicreg"] {
        // The task's radio button, as a user picks it.
        h.get_by_label(&format!("{task} {}", env!("CARGO_PKG_VERSION"))).click();
        h.step();
        {
            let form = h.state_mut().train_form_mut();
            form.epochs = 1;
            form.batch_size = 16;
            form.limit = Some(48);
            form.width = 4;
            form.name = format!("gui-{task}");
        }
        h.get_by_label("Start").click();
        h.step();
        assert!(h.state().is_training(), "{task} did not start");
        settle(&mut h, 180, "the training to finish", |h| !h.state().is_training());
        wait_for_label(&mut h, "Training finished");
        let info = RunStore::open(&runs.path().join(format!("gui-{task}"))).read_info().unwrap();
        assert_eq!((info.status, info.task.name.as_str()), (RunStatus::Completed, task));
    }
}

#[test]
fn stop_then_resume_from_the_train_view() {
    let plugins = plugin_dir();
    let runs = tempfile::Builder::new().prefix("pretext-ui-stop-").tempdir().unwrap();
    let mut h = harness(PretextApp::native(runs.path().to_path_buf(), vec![plugins]));
    settle(&mut h, 30, "the (empty) runs list", |h| has_label(h, "No runs yet"));
    open_view(&mut h, View::Train);
    wait_for_label(&mut h, "simclr 0.");
    {
        let form = h.state_mut().train_form_mut();
        form.epochs = 3;
        form.batch_size = 32;
        form.limit = Some(96);
        form.knn_every = 0;
        form.name = "stopped".into();
    }
    h.get_by_label("Start").click();
    h.step();
    // Stop at once: the trainer finishes the step it is in, checkpoints and says so.
    h.get_by_label("Stop").click();
    settle(&mut h, 120, "the training to stop", |h| !h.state().is_training());
    wait_for_label(&mut h, "Training stopped");
    let store = RunStore::open(&runs.path().join("stopped"));
    let info = store.read_info().unwrap();
    assert_eq!(info.status, RunStatus::Stopped);
    assert!(store.latest_checkpoint().is_ok(), "a stop writes a checkpoint");

    settle(&mut h, 30, "the stopped run's status", |h| has_label(h, "Resume stopped"));
    h.get_by_label("Resume stopped").click();
    h.step();
    assert!(h.state().is_training());
    settle(&mut h, 180, "the resumed training to finish", |h| !h.state().is_training());
    wait_for_label(&mut h, "Training finished: 3 epochs");
    let info = store.read_info().unwrap();
    assert_eq!((info.status, info.epochs_done), (RunStatus::Completed, 3));
}

#[test]
fn train_on_a_folder_of_photos_after_previewing_it() {
    let plugins = plugin_dir();
    let tmp = tempfile::Builder::new().prefix("pretext-ui-photos-").tempdir().unwrap();
    let photos = tmp.path().join("holiday-photos");
    let mixed = pretext_tests::photos::write_mixed_folder(&photos, 40);
    let runs = tmp.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let mut h = harness(PretextApp::native(runs.clone(), vec![plugins]));
    settle(&mut h, 30, "the (empty) runs list", |h| has_label(h, "No runs yet"));
    open_view(&mut h, View::Train);
    wait_for_label(&mut h, "simclr 0.");
    {
        let form = h.state_mut().train_form_mut();
        form.data = photos.display().to_string();
        form.image_size = Some(32);
        form.cache_dir = tmp.path().join("cache").display().to_string();
        form.epochs = 2;
        form.batch_size = 16;
        form.limit = None;
        form.knn_every = 0;
        form.name = "photos".into();
    }
    h.get_by_label("Preview").click();
    settle(&mut h, 120, "the data preview", |h| h.state().preview_summary().is_some());
    let summary = h.state().preview_summary().unwrap();
    assert_eq!((summary.images, summary.size, summary.classes.len()), (mixed.good, 32, 0));
    assert_eq!(summary.report.skipped_count, mixed.bad.len());
    wait_for_label(&mut h, &format!("holiday-photos: {} images", mixed.good));
    wait_for_label(&mut h, "32×32 RGB, resized (shorter side, centre crop), unlabeled");
    wait_for_label(&mut h, "5 image files could not be used and were skipped");
    wait_for_label(&mut h, "skipped files (5)");
    wait_for_label(&mut h, "The first 24 images, as they will be trained on");

    // Edit a task setting in the form: SimCLR's temperature, typed into its field.
    wait_for_label(&mut h, "temperature");
    assert_eq!(h.get_by_label("temperature").value().as_deref(), Some("0.2"), "shown as the plugin declares it");
    h.get_by_label("temperature").scroll_to_me();
    h.step();
    h.get_by_label("temperature").focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label("temperature").type_text("0.5");
    h.step();
    h.key_press(egui::Key::Enter);
    h.step();
    h.step();
    assert_eq!(h.get_by_label("temperature").value().as_deref(), Some("0.5"));
    h.get_by_label("Start").scroll_to_me();
    h.step();
    screenshot(&mut h, "train-folder");

    h.get_by_label("Start").click_accesskit();
    h.step();
    assert!(h.state().is_training());
    settle(&mut h, 180, "the training to finish", |h| !h.state().is_training());
    wait_for_label(&mut h, "Training finished: 2 epochs");
    let info = RunStore::open(&runs.join("photos")).read_info().unwrap();
    assert_eq!((info.status, info.dataset.train_images), (RunStatus::Completed, mixed.good));
    assert_eq!(info.dataset.report.skipped_count, mixed.bad.len());
    assert_eq!(info.config["task_config"]["temperature"], serde_json::json!(0.5), "the edited setting was used");
    assert!(info.dataset.report.cache.is_some_and(|c| c.reused), "training reused the cache the preview built");
}

#[test]
fn an_unlabeled_run_shows_its_embedding_without_classes() {
    let plugins = plugin_dir();
    let tmp = tempfile::Builder::new().prefix("pretext-ui-unlabeled-").tempdir().unwrap();
    let photos = tmp.path().join("photos");
    pretext_tests::photos::write_jpegs(&photos, 64);
    let runs = tmp.path().join("runs");
    let run = runs.join("unlabeled");
    let config = TrainConfig {
        task: simclr_in(&plugins).display().to_string(),
        data: photos.display().to_string(),
        image_size: Some(32),
        cache_dir: Some(tmp.path().join("cache")),
        epochs: 1,
        batch_size: 32,
        workers: 1,
        out: Some(run.clone()),
        ..TrainConfig::default()
    };
    let file = train_and_embed(&config, 40);
    assert!(file.labels.is_empty() && file.classes.is_empty() && file.knn_top1.is_none());

    let mut h = harness(PretextApp::native(runs, vec![]));
    settle(&mut h, 30, "the runs list", |h| h.state().run_names() == ["unlabeled"]);
    h.state_mut().select_run("unlabeled");
    h.state_mut().set_view(View::Overview);
    wait_for_label(&mut h, "unlabeled");
    h.state_mut().set_view(View::Embedding);
    settle(&mut h, 60, "the embedding scatter", |h| h.state().embedding_point_pos(0).is_some());
    wait_for_label(&mut h, "40 points");
    assert!(!has_label(&h, "class"), "no legend of classes for unlabeled data");
    let pos = (0..40).filter_map(|i| h.state().embedding_point_pos(i)).next().unwrap();
    h.hover_at(pos);
    click_point(&mut h, pos);
    assert!(!has_label(&h, "share its class"));
    screenshot(&mut h, "embedding-unlabeled");
}

/// A ViT run with an embedding: a small DINO run trained here, or, with
/// `PRETEXT_UI_VIT_RUN=DIR`, that run (already embedded; how the screenshot in
/// `docs/screenshots/` shows a model trained longer). Returns the runs directory, the run's
/// name and its number of heads.
fn vit_fixture(tmp: &Path) -> (PathBuf, String, usize) {
    if let Some(dir) = std::env::var_os("PRETEXT_UI_VIT_RUN") {
        let dir = PathBuf::from(dir);
        let layout = pretext_core::run::RunLayout::new(&dir);
        let latest = std::fs::read_dir(layout.embeddings())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .max()
            .expect("PRETEXT_UI_VIT_RUN has an embedding");
        let file: pretext_core::run::EmbeddingFile = serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap();
        let heads = file.attention.expect("PRETEXT_UI_VIT_RUN is a ViT run").heads;
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        return (dir.parent().unwrap().to_path_buf(), name, heads);
    }
    let plugins = plugin_dir();
    let runs = tmp.join("runs");
    let run = runs.join("dino-vit");
    let config = TrainConfig {
        task: plugins
            .join(format!("{}pretext_dino{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
            .display()
            .to_string(),
        backbone: pretext_core::model::BackboneKind::VitTiny,
        width: Some(48),
        patch_size: Some(4),
        epochs: 2,
        batch_size: 64,
        limit: Some(256),
        workers: 1,
        out: Some(run.clone()),
        ..TrainConfig::default()
    };
    let file = train_and_embed(&config, 60);
    let attention = file.attention.expect("a ViT's embedding has attention maps");
    assert_eq!(
        (attention.heads, attention.rows, attention.cols),
        (3, 8, 8),
        "ViT-Tiny: 3 heads; 32 px in 4 px patches"
    );
    assert!(run.join("embeddings").join(&attention.file).is_file());
    (runs, "dino-vit".into(), attention.heads)
}

#[test]
fn a_vit_embedding_shows_the_attention_of_the_image_under_the_cursor_and_of_the_clicked_one() {
    let tmp = tempfile::Builder::new().prefix("pretext-ui-vit-").tempdir().unwrap();
    let (runs, name, heads) = vit_fixture(tmp.path());
    let mut h = harness(PretextApp::native(runs, vec![]));
    settle(&mut h, 30, "the runs list", |h| h.state().run_names().contains(&name));
    h.state_mut().select_run(&name);
    h.state_mut().set_view(View::Embedding);
    settle(&mut h, 60, "the embedding scatter", |h| h.state().embedding_point_pos(0).is_some());
    let pos = (0..60).filter_map(|i| h.state().embedding_point_pos(i)).next().unwrap();
    h.hover_at(pos);
    h.step();
    wait_for_label(&mut h, "Under the cursor: #");
    assert!(!has_label(&h, "head 1"), "the heads are shown for the clicked image only");
    // The hovered image's row can widen the side panel and move the points: look again.
    let pos = (0..60).filter_map(|i| h.state().embedding_point_pos(i)).next().unwrap();
    h.hover_at(pos);
    h.step();
    click_point(&mut h, pos);
    let selected = h.state().embedding_selection().unwrap();
    wait_for_label(&mut h, &format!("Attention of #{selected}"));
    let tiles = std::iter::once("mean".to_string()).chain((1..=heads).map(|k| format!("head {k}")));
    for tile in tiles {
        assert!(has_label(&h, &tile), "the attention tile `{tile}` is shown");
    }
    assert!(!has_label(&h, &format!("head {}", heads + 1)));
    screenshot(&mut h, "embedding-attention");
}

#[test]
fn a_data_parallel_run_says_how_many_processes_trained_it() {
    let text = std::fs::read_to_string(fixture().join("demo/run.json")).unwrap();
    let mut info: serde_json::Value = serde_json::from_str(&text).unwrap();
    info["world_size"] = 2.into();
    let runs = tempfile::Builder::new().prefix("pretext-ui-ddp-").tempdir().unwrap();
    std::fs::create_dir_all(runs.path().join("ddp")).unwrap();
    std::fs::write(runs.path().join("ddp/run.json"), serde_json::to_string(&info).unwrap()).unwrap();

    let mut h = harness(PretextApp::native(runs.path().to_path_buf(), vec![]));
    settle(&mut h, 30, "the runs list", |h| h.state().run_names() == ["ddp"]);
    h.get_by_label("ddp").click();
    open_view(&mut h, View::Overview);
    wait_for_label(&mut h, "2 ranks (data-parallel");
}
