//! The Train view (native only): pick a discovered plugin (with its ABI status, and why any
//! library was refused), a dataset (a built-in name, or a folder picked with a dialog or
//! typed, previewed before training: `preview.rs`), the image size, a backbone,
//! hyper-parameters and the task's own settings (a form: `settings.rs`), then Start. Training
//! runs `pretext_core::train::train` on its own thread and writes the same run directory as
//! `pretext train`; its events come back through a channel, so the UI stays responsive and
//! draws live curves and a progress bar. Stop asks the trainer to finish the current step,
//! record the partial epoch and checkpoint; Resume continues a stopped run from its newest
//! checkpoint.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::sync::{Arc, Mutex};

use egui_plot::{Legend, Line, Plot, PlotPoints};
use pretext_core::host::{Discovery, discover};
use pretext_core::model::BackboneKind;
use pretext_core::run::{RunInfo, RunStatus};
use pretext_core::task::OptimizerKind;
use pretext_core::train::{Event, Summary, TrainConfig, train};

use super::{error_label, palette};

mod preview;
mod settings;

use preview::{Preview, PreviewKey};
pub use settings::TaskSettings;

const DATASETS: [&str; 4] = ["shapes", "fashion-mnist", "mnist", "cifar10"];

/// The settings of the next training; defaults are `TrainConfig`'s and the plugin's.
#[derive(Clone, Debug)]
pub struct TrainForm {
    /// Index into the discovered plugins.
    pub plugin: usize,
    pub data: String,
    /// `None`: the data's own square size, or 64 for image files of mixed sizes.
    pub image_size: Option<usize>,
    /// Treat class folders as unlabeled images.
    pub no_labels: bool,
    /// The pixel cache's folder; empty: the default one.
    pub cache_dir: String,
    pub backbone: BackboneKind,
    /// Base width; 0 takes the backbone's default.
    pub width: usize,
    pub epochs: u64,
    pub batch_size: usize,
    /// `None`: the optimizer's usual learning rate for the batch size.
    pub lr: Option<f64>,
    pub optimizer: OptimizerKind,
    pub seed: u64,
    /// Train on the first N images only.
    pub limit: Option<usize>,
    pub knn_every: u64,
    pub device: String,
    /// The run's folder name in the runs directory; empty: `<task>-<seed>`, made unique.
    pub name: String,
    /// The plugin's own settings.
    pub settings: TaskSettings,
}

impl Default for TrainForm {
    fn default() -> Self {
        let c = TrainConfig::default();
        Self {
            plugin: 0,
            data: c.data,
            image_size: c.image_size,
            no_labels: c.no_labels,
            cache_dir: String::new(),
            backbone: c.backbone,
            width: 0,
            epochs: c.epochs,
            batch_size: c.batch_size,
            lr: c.lr,
            optimizer: c.optimizer,
            seed: c.seed,
            limit: Some(2048),
            knn_every: 1,
            device: c.device,
            name: String::new(),
            settings: TaskSettings::default(),
        }
    }
}

enum Msg {
    Event(Event),
    Done(Result<Summary, String>),
}

/// Live state of the training in progress (or the last one).
struct Session {
    run: String,
    stop: Arc<AtomicBool>,
    rx: Option<Receiver<Msg>>,
    resumed: bool,
    epochs: u64,
    batches: u64,
    epoch: u64,
    batch: u64,
    step_loss: Vec<[f64; 2]>,
    epoch_loss: Vec<[f64; 2]>,
    knn: Vec<[f64; 2]>,
    /// The data preparation under way (the pixel cache being built), until training starts.
    preparing: Option<pretext_core::data::Progress>,
    notes: Vec<String>,
    outcome: Option<Result<Summary, String>>,
}

impl Session {
    fn running(&self) -> bool {
        self.rx.is_some()
    }

    fn handle(&mut self, event: Event) {
        #[allow(clippy::cast_precision_loss)]
        match event {
            Event::Started { epochs, batches_per_epoch, first_epoch, .. } => {
                self.preparing = None;
                self.epochs = epochs;
                self.batches = batches_per_epoch;
                self.epoch = first_epoch;
            }
            Event::Step { epoch, batch, batches, loss, .. } => {
                self.epoch = epoch;
                self.batch = batch;
                self.batches = batches;
                let x = (epoch - 1) as f64 + batch as f64 / batches.max(1) as f64;
                self.step_loss.push([x, loss]);
            }
            Event::Epoch(record) => {
                self.epoch_loss.push([record.epoch as f64, record.loss]);
                if let Some(k) = record.knn_top1 {
                    self.knn.push([record.epoch as f64, k]);
                }
            }
            Event::Preparing(p) => self.preparing = Some(p),
            Event::Note(note) | Event::Warning(note) => self.notes.push(note),
            Event::Checkpoint { .. } => {}
        }
    }

    fn fraction(&self) -> f32 {
        if self.epochs == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let done = (self.epoch.saturating_sub(1)) as f32 + self.batch as f32 / self.batches.max(1) as f32;
        #[allow(clippy::cast_precision_loss)]
        (done / self.epochs as f32).clamp(0.0, 1.0)
    }
}

pub struct TrainView {
    runs_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    discovery: Option<Arc<Mutex<Option<Discovery>>>>,
    form: TrainForm,
    /// The plugin whose defaults fill `form.task_config`.
    config_for: Option<String>,
    session: Option<Session>,
    message: Option<String>,
    thread: Option<std::thread::JoinHandle<()>>,
    preview: Option<Preview>,
    /// A folder dialog's answer, when one is open, and when it was opened.
    browse: Option<(Receiver<Option<PathBuf>>, std::time::Instant)>,
}

impl TrainView {
    pub fn new(runs_dir: PathBuf, plugin_dirs: Vec<PathBuf>) -> Self {
        Self {
            runs_dir,
            plugin_dirs,
            discovery: None,
            form: TrainForm::default(),
            config_for: None,
            session: None,
            message: None,
            thread: None,
            preview: None,
            browse: None,
        }
    }

    /// Opens the form's data as training will, on a thread, and shows it when ready.
    pub fn preview(&mut self, ctx: &egui::Context) {
        let key = self.preview_key();
        self.message = None;
        self.preview = Some(Preview::start(ctx, key));
    }

    /// Whether the data preview is still reading (or building the cache).
    pub fn is_previewing(&self) -> bool {
        self.preview.as_ref().is_some_and(Preview::is_running)
    }

    /// The previewed data's summary, once read.
    pub fn preview_summary(&self) -> Option<pretext_core::train::DataSummary> {
        self.preview.as_ref().and_then(Preview::summary)
    }

    /// The form's data settings (what to read and how), the rest left at the defaults.
    fn data_config(&self) -> TrainConfig {
        let f = &self.form;
        TrainConfig {
            data: f.data.trim().to_string(),
            image_size: f.image_size,
            no_labels: f.no_labels,
            cache_dir: Some(f.cache_dir.trim()).filter(|d| !d.is_empty()).map(PathBuf::from),
            limit: f.limit,
            seed: f.seed,
            ..TrainConfig::default()
        }
    }

    /// What a preview of the form's data reads: exactly what training will.
    fn preview_key(&self) -> PreviewKey {
        let c = self.data_config();
        PreviewKey { opts: c.open_options(), data: c.data }
    }

    /// Asks the desktop for a folder on a thread (the dialog blocks), without blocking the UI.
    fn browse(&mut self, ctx: &egui::Context) {
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new().name("pretext-folder-dialog".into()).spawn(move || {
            let picked = rfd::FileDialog::new().set_title("Choose a folder of images").pick_folder();
            let _ = tx.send(picked);
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => self.browse = Some((rx, std::time::Instant::now())),
            Err(e) => self.message = Some(format!("cannot open a folder dialog: {e}")),
        }
    }

    /// Takes the folder dialog's answer: the folder becomes the data and is previewed.
    fn poll_browse(&mut self, ctx: &egui::Context) {
        let Some((rx, opened)) = &self.browse else { return };
        // The dialog answers "nothing chosen" both when cancelled and when the desktop has
        // no dialog to show (no portal, no zenity); only the latter answers at once.
        let no_dialog = "no folder dialog could be opened here (it needs the desktop's portal or zenity); \
                         type the folder's path instead";
        match rx.try_recv() {
            Ok(Some(dir)) => {
                self.browse = None;
                self.form.data = dir.display().to_string();
                self.preview(ctx);
            }
            Ok(None) => {
                if opened.elapsed() < std::time::Duration::from_millis(1500) {
                    self.message = Some(no_dialog.into());
                }
                self.browse = None;
            }
            Err(TryRecvError::Disconnected) => {
                self.browse = None;
                self.message = Some(no_dialog.into());
            }
            Err(TryRecvError::Empty) => {}
        }
    }

    pub fn form_mut(&mut self) -> &mut TrainForm {
        &mut self.form
    }

    pub fn is_running(&self) -> bool {
        self.session.as_ref().is_some_and(Session::running)
    }

    /// Stops a running training at its next clean point and waits for its checkpoint, so that
    /// closing the window leaves a resumable run rather than one marked running forever.
    pub fn shutdown(&mut self) {
        if let Some(s) = &self.session {
            s.stop.store(true, Ordering::Relaxed);
        }
        if let Some(handle) = self.thread.take() {
            let _ = handle.join();
        }
    }

    /// Takes training events; returns true when a training finished (the runs list should
    /// be re-read).
    pub fn poll(&mut self) -> bool {
        let Some(session) = &mut self.session else { return false };
        let Some(rx) = session.rx.take() else { return false };
        let mut finished = false;
        loop {
            match rx.try_recv() {
                Ok(Msg::Event(e)) => session.handle(e),
                Ok(Msg::Done(result)) => {
                    session.outcome = Some(result);
                    finished = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if session.outcome.is_none() {
                        session.outcome = Some(Err("the training thread ended without a result".into()));
                    }
                    finished = true;
                    break;
                }
            }
        }
        if !finished {
            session.rx = Some(rx);
        }
        finished
    }

    fn discover(&mut self, ctx: &egui::Context) {
        let slot = Arc::new(Mutex::new(None));
        let (writer, dirs, ctx) = (Arc::clone(&slot), self.plugin_dirs.clone(), ctx.clone());
        let spawned = std::thread::Builder::new().name("pretext-discover".into()).spawn(move || {
            let found = discover(&dirs);
            if let Ok(mut guard) = writer.lock() {
                *guard = Some(found);
            }
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => self.discovery = Some(slot),
            Err(e) => self.message = Some(format!("cannot look for plugins: {e}")),
        }
    }

    /// Draws the view; returns the run name when a training was started.
    pub fn show(&mut self, ui: &mut egui::Ui, selected: Option<&(String, RunInfo)>) -> Option<String> {
        if self.discovery.is_none() {
            self.discover(ui.ctx());
        }
        self.poll_browse(ui.ctx());
        let mut started = None;
        egui::Panel::left("train-form").resizable(true).default_size(440.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                let discovery = self.discovery.clone();
                let guard = discovery.as_ref().and_then(|d| d.lock().ok());
                let Some(found) = guard.as_ref().and_then(|g| g.as_ref()) else {
                    ui.spinner();
                    return;
                };
                if self.config_for.is_none()
                    && let Some(i) = found.plugins.iter().position(|p| p.name() == "simclr")
                {
                    self.form.plugin = i;
                }
                let running = self.session.as_ref().is_some_and(Session::running);
                ui.horizontal(|ui| {
                    let previewing = self.preview.as_ref().is_some_and(Preview::is_running);
                    let can_start = !running && !previewing && !found.plugins.is_empty();
                    let start = ui
                        .add_enabled(can_start, egui::Button::new("Start"))
                        .on_disabled_hover_text("Wait for the data preview to finish reading.");
                    if start.clicked() {
                        let plugin = found.plugins.get(self.form.plugin).map(|p| p.path.clone());
                        match plugin.ok_or_else(|| "no plugin is selected".to_string()).and_then(|p| self.config(&p)) {
                            Ok((name, config)) => {
                                self.start(ui.ctx(), &name, config, false);
                                started = Some(name);
                            }
                            Err(e) => self.message = Some(e),
                        }
                    }
                    if ui.add_enabled(running, egui::Button::new("Stop")).clicked()
                        && let Some(s) = &self.session
                    {
                        s.stop.store(true, Ordering::Relaxed);
                    }
                    let resumable = selected.filter(|(_, info)| {
                        matches!(info.status, RunStatus::Stopped | RunStatus::Failed) && info.epochs_done < info.epochs
                    });
                    let label = match resumable {
                        Some((name, _)) => format!("Resume {name}"),
                        None => "Resume".to_string(),
                    };
                    let resume = ui
                        .add_enabled(!running && resumable.is_some(), egui::Button::new(label))
                        .on_disabled_hover_text("Select a stopped run in the list to continue it.");
                    if resume.clicked()
                        && let Some((name, info)) = resumable
                    {
                        match serde_json::from_value::<TrainConfig>(info.config.clone()) {
                            Ok(mut config) => {
                                config.out = Some(self.runs_dir.join(name));
                                self.start(ui.ctx(), name, config, true);
                                started = Some(name.clone());
                            }
                            Err(e) => self.message = Some(format!("{name} records no usable configuration: {e}")),
                        }
                    }
                });
                if let Some(m) = &self.message {
                    error_label(ui, m);
                }
                ui.separator();
                plugins(ui, found, &mut self.form.plugin);
                if let Some(plugin) = found.plugins.get(self.form.plugin)
                    && self.config_for.as_deref() != Some(plugin.name())
                {
                    self.config_for = Some(plugin.name().to_string());
                    self.form.settings = TaskSettings::from_defaults(&plugin.description.default_config);
                }
                ui.separator();
                let action = form(ui, &mut self.form, self.browse.is_some());
                ui.separator();
                self.form.settings.show(ui);
                match action {
                    Some(FormAction::Browse) => self.browse(ui.ctx()),
                    Some(FormAction::Preview) => self.preview(ui.ctx()),
                    None => {}
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            if self.preview.is_some() {
                let key = self.preview_key();
                let current = self.preview.as_ref().is_some_and(|p| p.key == key);
                egui::CollapsingHeader::new("Data").default_open(true).show(ui, |ui| {
                    if !current {
                        ui.weak("The data settings changed since this preview: Preview again to see them.");
                    }
                    if let Some(p) = &mut self.preview {
                        p.show(ui);
                    }
                });
                ui.separator();
            }
            self.progress(ui);
        });
        started
    }

    /// The configuration the form describes, and the run's folder name.
    fn config(&self, plugin: &std::path::Path) -> Result<(String, TrainConfig), String> {
        let f = &self.form;
        let task_config = f.settings.value()?;
        let stem = self.config_for.clone().unwrap_or_else(|| "run".into());
        let name = if f.name.trim().is_empty() {
            let base = format!("{stem}-{}", f.seed);
            (1..)
                .map(|i| if i == 1 { base.clone() } else { format!("{base}-{i}") })
                .find(|n| !self.runs_dir.join(n).exists())
                .unwrap_or(base)
        } else {
            let name = f.name.trim().to_string();
            if name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(format!("`{name}` is not a folder name"));
            }
            if self.runs_dir.join(&name).exists() {
                return Err(format!("a run named `{name}` already exists; pick another name, or select it and Resume"));
            }
            name
        };
        let config = TrainConfig {
            task: plugin.display().to_string(),
            backbone: f.backbone,
            width: (f.width > 0).then_some(f.width),
            epochs: f.epochs,
            batch_size: f.batch_size,
            lr: f.lr,
            optimizer: f.optimizer,
            device: f.device.trim().to_string(),
            out: Some(self.runs_dir.join(&name)),
            knn_every: f.knn_every,
            task_config,
            ..self.data_config()
        };
        config.validate()?;
        Ok((name, config))
    }

    fn start(&mut self, ctx: &egui::Context, name: &str, config: TrainConfig, resume: bool) {
        self.message = None;
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, ctx) = (Arc::clone(&stop), ctx.clone());
        let spawned = std::thread::Builder::new().name("pretext-train".into()).spawn(move || {
            let events = tx.clone();
            let repaint = ctx.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                train(&config, resume, &flag, &mut |event| {
                    let _ = events.send(Msg::Event(event));
                    repaint.request_repaint();
                })
                .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("training stopped on an internal error (a panic)".into()));
            let _ = tx.send(Msg::Done(result));
            ctx.request_repaint();
        });
        match spawned {
            Ok(handle) => {
                self.thread = Some(handle);
                self.session = Some(Session {
                    run: name.to_string(),
                    stop,
                    rx: Some(rx),
                    resumed: resume,
                    epochs: 0,
                    batches: 0,
                    epoch: 0,
                    batch: 0,
                    step_loss: Vec::new(),
                    epoch_loss: Vec::new(),
                    knn: Vec::new(),
                    preparing: None,
                    notes: Vec::new(),
                    outcome: None,
                });
            }
            Err(e) => self.message = Some(format!("cannot start the training thread: {e}")),
        }
    }

    fn progress(&self, ui: &mut egui::Ui) {
        let Some(s) = &self.session else {
            ui.label(format!(
                "Choose a plugin and settings, then Start. The run is written to {}/<name>, as `pretext train` does.",
                self.runs_dir.display()
            ));
            return;
        };
        ui.heading(format!("{}{}", s.run, if s.resumed { " (resumed)" } else { "" }));
        for note in &s.notes {
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
        if s.running() {
            let stopping = s.stop.load(Ordering::Relaxed);
            let text = if let Some(p) = s.preparing.filter(|_| s.epochs == 0) {
                #[allow(clippy::cast_precision_loss)]
                let f = p.done as f32 / p.total.max(1) as f32;
                ui.add(egui::ProgressBar::new(f).text(format!("{}: {}/{} image files", p.stage, p.done, p.total)));
                "building the pixel cache…".to_string()
            } else if s.epochs == 0 {
                "loading the plugin and data…".to_string()
            } else {
                format!(
                    "epoch {}/{}, batch {}/{}{}",
                    s.epoch,
                    s.epochs,
                    s.batch,
                    s.batches,
                    if stopping { " — stopping at the end of this step" } else { "" }
                )
            };
            ui.add(egui::ProgressBar::new(s.fraction()).show_percentage().text(text));
        }
        match &s.outcome {
            Some(Ok(summary)) => {
                let done = match summary.status {
                    RunStatus::Completed => "Training finished",
                    RunStatus::Stopped => "Training stopped",
                    _ => "Training ended",
                };
                ui.label(format!(
                    "{done}: {} epochs, last loss {:.4}, {:.0} images/s, in {}",
                    summary.epochs_done,
                    summary.last_loss,
                    summary.images_per_sec,
                    summary.run_dir.display()
                ));
            }
            Some(Err(e)) => {
                error_label(ui, format!("Training failed: {e}"));
            }
            None => {}
        }
        let height = (ui.available_height() / 2.0 - 16.0).max(140.0);
        Plot::new("train-loss").height(height).legend(Legend::default()).x_axis_label("epoch").show(ui, |plot| {
            plot.line(Line::new("loss (steps)", PlotPoints::from(s.step_loss.clone())).color(palette(0)));
            plot.points(
                egui_plot::Points::new("loss (epoch mean)", PlotPoints::from(s.epoch_loss.clone()))
                    .color(palette(1))
                    .radius(4.0),
            );
        });
        if !s.knn.is_empty() {
            Plot::new("train-knn").height(height).legend(Legend::default()).x_axis_label("epoch").show(ui, |plot| {
                plot.line(Line::new("kNN top-1", PlotPoints::from(s.knn.clone())).color(palette(2)));
                plot.points(
                    egui_plot::Points::new("kNN top-1", PlotPoints::from(s.knn.clone())).color(palette(2)).radius(4.0),
                );
            });
        }
    }
}

fn plugins(ui: &mut egui::Ui, found: &Discovery, chosen: &mut usize) {
    ui.heading("Plugin");
    if found.plugins.is_empty() {
        error_label(ui, "No task plugin was found.");
    }
    for (i, p) in found.plugins.iter().enumerate() {
        let text = format!("{} {}", p.name(), p.version());
        ui.radio_value(chosen, i, text).on_hover_text(format!(
            "{}\n{}\nABI {} · pretext-sdk {} · {}",
            p.description.info.description,
            p.path.display(),
            p.abi_version,
            p.description.core_version,
            if p.cuda() { "CUDA" } else { "CPU" }
        ));
        ui.weak(format!("  ABI {} (compatible) · {}", p.abi_version, p.description.info.samples));
    }
    for r in &found.refused {
        let file = pretext_core::run::store::file_name(&r.path);
        error_label(ui, format!("{file} refused: {}", r.reason));
    }
    let searched: Vec<String> = found.searched.iter().map(|d| d.display().to_string()).collect();
    ui.weak(format!("searched: {}", searched.join(", ")));
}

/// What the form asks the view to do.
enum FormAction {
    Browse,
    Preview,
}

fn form(ui: &mut egui::Ui, f: &mut TrainForm, browsing: bool) -> Option<FormAction> {
    let mut action = None;
    egui::Grid::new("train-settings").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label("Dataset");
        ui.horizontal(|ui| {
            let named = DATASETS.contains(&f.data.as_str());
            let shown = if named { f.data.clone() } else { "path".to_string() };
            egui::ComboBox::from_id_salt("train-data").width(110.0).selected_text(shown).show_ui(ui, |ui| {
                for d in DATASETS {
                    ui.selectable_value(&mut f.data, d.to_string(), d);
                }
            });
            let path = ui
                .add(egui::TextEdit::singleline(&mut f.data).desired_width(150.0).hint_text("or a folder / list file"));
            if path.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                action = Some(FormAction::Preview);
            }
        });
        ui.end_row();
        ui.label("");
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!browsing, egui::Button::new("Browse…"))
                .on_hover_text("Choose a folder of images")
                .clicked()
            {
                action = Some(FormAction::Browse);
            }
            if ui.button("Preview").on_hover_text("Read the data as training will and show it").clicked() {
                action = Some(FormAction::Preview);
            }
        });
        ui.end_row();
        ui.label("Image size");
        ui.horizontal(|ui| {
            let mut auto = f.image_size.is_none();
            if ui.checkbox(&mut auto, "auto").on_hover_text("the data's own square size, else 64").changed() {
                f.image_size = if auto { None } else { Some(64) };
            }
            if let Some(n) = &mut f.image_size {
                ui.add(egui::DragValue::new(n).range(8..=1024).suffix(" px"));
            }
        });
        ui.end_row();
        ui.label("Labels");
        ui.checkbox(&mut f.no_labels, "ignore class folders");
        ui.end_row();
        ui.label("Pixel cache");
        ui.add(egui::TextEdit::singleline(&mut f.cache_dir).desired_width(150.0).hint_text("default folder"));
        ui.end_row();
        ui.label("Backbone");
        ui.horizontal(|ui| {
            for kind in BackboneKind::ALL {
                ui.selectable_value(&mut f.backbone, kind, kind.as_str());
            }
        });
        ui.end_row();
        ui.label("Width");
        ui.add(
            egui::DragValue::new(&mut f.width)
                .range(0..=512)
                .custom_formatter(|v, _| if v == 0.0 { "default".into() } else { format!("{v}") }),
        );
        ui.end_row();
        ui.label("Epochs");
        ui.add(egui::DragValue::new(&mut f.epochs).range(1..=10_000));
        ui.end_row();
        ui.label("Batch size");
        ui.add(egui::DragValue::new(&mut f.batch_size).range(1..=8192));
        ui.end_row();
        ui.label("Optimizer");
        ui.horizontal(|ui| {
            for (kind, name) in
                [(OptimizerKind::Adamw, "adamw"), (OptimizerKind::Sgd, "sgd"), (OptimizerKind::Lars, "lars")]
            {
                ui.selectable_value(&mut f.optimizer, kind, name);
            }
        });
        ui.end_row();
        ui.label("Learning rate");
        ui.horizontal(|ui| {
            let mut auto = f.lr.is_none();
            if ui.checkbox(&mut auto, "auto").changed() {
                f.lr = if auto { None } else { Some(1e-3) };
            }
            if let Some(lr) = &mut f.lr {
                ui.add(egui::DragValue::new(lr).range(1e-6..=10.0).speed(1e-4).max_decimals(6));
            }
        });
        ui.end_row();
        ui.label("Limit");
        ui.horizontal(|ui| {
            let mut all = f.limit.is_none();
            if ui.checkbox(&mut all, "all images").changed() {
                f.limit = if all { None } else { Some(2048) };
            }
            if let Some(limit) = &mut f.limit {
                ui.add(egui::DragValue::new(limit).range(1..=10_000_000));
            }
        });
        ui.end_row();
        ui.label("kNN every");
        ui.add(egui::DragValue::new(&mut f.knn_every).range(0..=1000).suffix(" epochs"));
        ui.end_row();
        ui.label("Seed");
        ui.add(egui::DragValue::new(&mut f.seed));
        ui.end_row();
        ui.label("Device");
        ui.add(egui::TextEdit::singleline(&mut f.device).desired_width(120.0));
        ui.end_row();
        ui.label("Run name");
        ui.add(egui::TextEdit::singleline(&mut f.name).desired_width(160.0).hint_text("<task>-<seed>"));
        ui.end_row();
    });
    action
}
