//! The application: the runs list on the left, view tabs on top, the selected view in the
//! middle. It owns the run-data cache and refreshes it on a timer (runs being written show
//! up and grow without a reload), and implements [`eframe::App`] for the desktop window and
//! the browser.

use std::collections::{BTreeMap, BTreeSet};

use super::data::RunData;
use super::source::{Loadable, RunSource};
use super::{curves, embedding, error_label, filters, overview, runs, samples};

/// Seconds between re-reads of the runs directory and of the runs on screen.
const REFRESH_S: f64 = 2.0;

/// The views of a run (and the Train view, natively).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Overview,
    Curves,
    Embedding,
    Filters,
    Samples,
    #[cfg(not(target_arch = "wasm32"))]
    Train,
}

impl View {
    pub const ALL: &'static [View] = &[
        View::Overview,
        View::Curves,
        View::Embedding,
        View::Filters,
        View::Samples,
        #[cfg(not(target_arch = "wasm32"))]
        View::Train,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Curves => "Curves",
            View::Embedding => "Embedding",
            View::Filters => "Filters",
            View::Samples => "Samples",
            #[cfg(not(target_arch = "wasm32"))]
            View::Train => "Train",
        }
    }
}

pub struct PretextApp {
    source: Box<dyn RunSource>,
    runs: Loadable<Vec<String>>,
    data: BTreeMap<String, RunData>,
    selected: Option<String>,
    /// Runs overlaid on the selected one in Curves.
    compare: BTreeSet<String>,
    view: View,
    last_refresh: Option<f64>,
    curves: curves::CurvesState,
    embedding: embedding::EmbeddingState,
    filters: filters::FiltersState,
    #[cfg(not(target_arch = "wasm32"))]
    train: super::train::TrainView,
}

impl PretextApp {
    /// A viewer over any run source (the browser viewer's constructor).
    pub fn new(source: Box<dyn RunSource>) -> Self {
        Self {
            source,
            runs: Loadable::default(),
            data: BTreeMap::new(),
            selected: None,
            compare: BTreeSet::new(),
            view: View::Overview,
            last_refresh: None,
            curves: curves::CurvesState::default(),
            embedding: embedding::EmbeddingState::default(),
            filters: filters::FiltersState::default(),
            #[cfg(not(target_arch = "wasm32"))]
            train: super::train::TrainView::new(std::path::PathBuf::new(), Vec::new()),
        }
    }

    /// The desktop app over a runs directory, training into it with the plugins found in
    /// `plugin_dirs`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn native(runs_dir: std::path::PathBuf, plugin_dirs: Vec<std::path::PathBuf>) -> Self {
        let source = Box::new(super::source::fs::FsSource::new(runs_dir.clone()));
        let mut app = Self::new(source);
        app.train = super::train::TrainView::new(runs_dir, plugin_dirs);
        app
    }

    /// Draws the whole app into `ui` (what `eframe::App::ui` calls; tests call it too).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.tick(&ctx);

        egui::Panel::top("pretext-top").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("Pretext");
                ui.separator();
                for &view in View::ALL {
                    if ui.selectable_label(self.view == view, view.title()).clicked() {
                        self.view = view;
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.weak(format!("runs: {}", self.source.describe()));
                });
            });
        });

        egui::Panel::left("pretext-runs").resizable(true).default_size(220.0).show(ui, |ui| {
            let before = (self.selected.clone(), self.compare.len());
            runs::show(ui, &self.runs, &self.data, &mut self.selected, &mut self.compare);
            if (self.selected.clone(), self.compare.len()) != before {
                self.last_refresh = None;
            }
        });

        egui::CentralPanel::default().show(ui, |ui| self.central(ui, &ctx));
    }

    fn central(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        #[cfg(not(target_arch = "wasm32"))]
        if self.view == View::Train {
            let selected = self.selected.as_ref().and_then(|name| {
                let info = self.data.get(name).and_then(|d| d.info.ok());
                info.map(|info| (name.clone(), info.clone()))
            });
            if let Some(run) = self.train.show(ui, selected.as_ref()) {
                // A training started: show its run as soon as it appears.
                self.selected = Some(run);
                self.last_refresh = None;
            }
            return;
        }
        let Some(name) = self.selected.clone() else {
            ui.label("Select a run on the left.");
            if let Some(e) = self.runs.error() {
                error_label(ui, e);
            }
            return;
        };
        let src: &dyn RunSource = self.source.as_ref();
        match self.view {
            View::Overview => {
                if let Some(data) = self.data.get(&name) {
                    overview::show(ui, &name, data);
                }
            }
            View::Curves => {
                let mut shown: Vec<&str> = vec![name.as_str()];
                shown.extend(self.compare.iter().map(String::as_str).filter(|r| *r != name));
                let runs: Vec<(&str, &RunData)> =
                    shown.into_iter().filter_map(|r| self.data.get(r).map(|d| (r, d))).collect();
                curves::show(ui, &mut self.curves, &runs);
            }
            View::Embedding => {
                let data = self.data.entry(name.clone()).or_default();
                embedding::show(ui, ctx, &mut self.embedding, src, &name, data);
            }
            View::Filters => {
                let data = self.data.entry(name.clone()).or_default();
                filters::show(ui, ctx, &mut self.filters, src, &name, data);
            }
            View::Samples => {
                let data = self.data.entry(name.clone()).or_default();
                samples::show(ui, ctx, src, &name, data);
            }
            #[cfg(not(target_arch = "wasm32"))]
            View::Train => {}
        }
    }

    /// Starts the periodic re-reads and takes whatever has arrived.
    fn tick(&mut self, ctx: &egui::Context) {
        let now = ctx.input(|i| i.time);
        #[cfg(not(target_arch = "wasm32"))]
        if self.train.poll() {
            self.last_refresh = None;
        }
        let src: &dyn RunSource = self.source.as_ref();
        if self.last_refresh.is_none_or(|t| now - t >= REFRESH_S) {
            self.last_refresh = Some(now);
            self.runs.request(|| src.fetch_runs(ctx));
            for (name, data) in &mut self.data {
                if Some(name) == self.selected.as_ref() || self.compare.contains(name) {
                    data.refresh_details(src, ctx, name);
                } else {
                    data.refresh_info(src, ctx, name);
                }
            }
        }
        if self.runs.poll()
            && let Some(names) = self.runs.ok()
        {
            for name in names {
                let data = self.data.entry(name.clone()).or_default();
                if data.info.is_unrequested() {
                    data.refresh_info(src, ctx, name);
                }
            }
            self.data.retain(|name, _| names.contains(name));
            self.compare.retain(|name| names.contains(name));
        }
        if let Some(name) = &self.selected
            && let Some(data) = self.data.get_mut(name)
            && data.metrics.is_unrequested()
        {
            data.refresh_details(src, ctx, name);
        }
        for (name, data) in &mut self.data {
            data.poll(src, ctx, name);
        }
        ctx.request_repaint_after(std::time::Duration::from_secs_f64(REFRESH_S));
    }

    // ----- for tests and embedding hosts -----

    pub fn view(&self) -> View {
        self.view
    }

    pub fn set_view(&mut self, view: View) {
        self.view = view;
    }

    pub fn selected_run(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub fn select_run(&mut self, name: &str) {
        self.selected = Some(name.to_string());
        self.last_refresh = None;
    }

    /// The run names listed so far.
    pub fn run_names(&self) -> Vec<String> {
        self.runs.ok().cloned().unwrap_or_default()
    }

    /// One line on what is loaded: the run count and, for the selected run, the view, its
    /// epochs, metric records, checkpoints, embeddings and images (atlases, samples, filter
    /// grids), or the first error. The browser
    /// viewer shows it as the page title.
    pub fn status(&self) -> String {
        let mut text = match self.runs.get() {
            None => "Pretext — loading".to_string(),
            Some(Err(e)) => format!("Pretext — error: {e}"),
            Some(Ok(names)) => format!("Pretext — {} runs", names.len()),
        };
        let Some(name) = &self.selected else { return text };
        text.push_str(&format!(" — {name}: {}", self.view.title()));
        let Some(data) = self.data.get(name) else { return text };
        if let Some(e) = data.first_error() {
            text.push_str(&format!(", error: {e}"));
            return text;
        }
        if let Some(info) = data.info.ok() {
            text.push_str(&format!(", {}/{} epochs", info.epochs_done, info.epochs));
        }
        if let Some(metrics) = data.metrics.ok() {
            text.push_str(&format!(", {} metric records", metrics.len()));
        }
        let images = data.textures.values().filter(|t| t.ok().is_some()).count()
            + data.filters.values().filter(|f| f.ok().is_some()).count();
        text.push_str(&format!(
            ", {} checkpoints, {} embeddings, {images} images",
            data.checkpoint_list().len(),
            data.embeddings.values().filter(|e| e.ok().is_some()).count()
        ));
        if let (View::Embedding, Some(i)) = (self.view, self.embedding.selected()) {
            text.push_str(&format!(", point #{i}"));
        }
        text
    }

    /// Whether any file is still being read.
    pub fn is_loading(&self) -> bool {
        self.runs.is_loading() || self.data.values().any(RunData::is_loading)
    }

    /// Asks for every file on screen to be read again on the next frame.
    pub fn refresh_now(&mut self) {
        self.last_refresh = None;
    }

    /// Where point `i` of the embedding is drawn, once the scatter has been shown.
    pub fn embedding_point_pos(&self, i: usize) -> Option<egui::Pos2> {
        self.embedding.screen_pos(i)
    }

    /// Selects point `i` of the embedding once it has loaded, as a click on it would.
    pub fn select_embedding_point(&mut self, i: usize) {
        self.embedding.request_selection(i);
    }

    /// The point whose neighbours are shown, if one was clicked.
    pub fn embedding_selection(&self) -> Option<usize> {
        self.embedding.selected()
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_form_mut(&mut self) -> &mut super::train::TrainForm {
        self.train.form_mut()
    }

    /// Whether a training started from the Train view is still running.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn is_training(&self) -> bool {
        self.train.is_running()
    }

    /// Whether the Train view's data preview is still reading.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn is_previewing(&self) -> bool {
        self.train.is_previewing()
    }

    /// What the Train view's data preview found, once it has read the data.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn preview_summary(&self) -> Option<pretext_core::train::DataSummary> {
        self.train.preview_summary()
    }
}

impl eframe::App for PretextApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn on_exit(&mut self) {
        self.train.shutdown();
    }
}
