//! The egui UI shared by the desktop app (`pretext gui`) and the browser viewer: a runs list
//! and, for the selected run, one view at a time (overview, curves, embedding, filters,
//! samples; and natively a Train view). Each view lives in its own file; run data comes
//! through [`source::RunSource`], so the views never touch the disk or the network.

pub mod source;

mod app;
mod curves;
mod data;
mod embedding;
mod filters;
mod images;
mod overview;
mod runs;
mod samples;
#[cfg(not(target_arch = "wasm32"))]
mod train;

pub use app::{PretextApp, View};
pub use images::filter_grid;
#[cfg(not(target_arch = "wasm32"))]
pub use train::TrainForm;

/// Shows an error as a red line of text; errors never end the app.
pub fn error_label(ui: &mut egui::Ui, text: impl Into<String>) -> egui::Response {
    ui.colored_label(ui.visuals().error_fg_color, text.into())
}

/// A distinct colour per class or per run (Tableau 10, then golden-angle hues).
pub fn palette(i: usize) -> egui::Color32 {
    const TABLEAU: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if let Some(&(r, g, b)) = TABLEAU.get(i) {
        return egui::Color32::from_rgb(r, g, b);
    }
    #[allow(clippy::cast_precision_loss)]
    let hue = (i as f32 * 0.618_034).fract();
    egui::ecolor::Hsva::new(hue, 0.7, 0.85, 1.0).into()
}

/// Opens the desktop window on `runs_dir` and returns when it is closed.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_native(runs_dir: std::path::PathBuf) -> Result<(), String> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Pretext")
            .with_inner_size([1280.0, 820.0])
            .with_min_inner_size([640.0, 400.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Pretext",
        options,
        Box::new(move |_cc| Ok(Box::new(PretextApp::native(runs_dir, pretext_core::host::plugin_dirs())))),
    )
    .map_err(|e| format!("cannot open the window: {e}"))
}
