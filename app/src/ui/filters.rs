//! The first convolution layer's kernels of a chosen checkpoint, read from its safetensors
//! file (`backbone.conv1.weight`), one tile per output channel.

use super::data::RunData;
use super::error_label;
use super::source::RunSource;

#[derive(Default)]
pub struct FiltersState {
    run: String,
    /// The checkpoint's safetensors file name; `None` follows the newest.
    file: Option<String>,
}

pub fn show(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    state: &mut FiltersState,
    src: &dyn RunSource,
    run: &str,
    data: &mut RunData,
) {
    if state.run != run {
        *state = FiltersState { run: run.to_string(), file: None };
    }
    let files: Vec<(u64, String)> = data.checkpoint_list().iter().map(|m| (m.epoch, m.file.clone())).collect();
    if let Some(e) = data.checkpoint_files.error() {
        error_label(ui, e);
        return;
    }
    let Some((_, newest)) = files.last() else {
        if data.checkpoint_files.is_loading() || data.checkpoints.values().any(super::source::Loadable::is_loading) {
            ui.spinner();
        } else {
            ui.label("No checkpoint yet.");
        }
        return;
    };
    let file = state.file.clone().filter(|f| files.iter().any(|(_, g)| g == f)).unwrap_or_else(|| newest.clone());
    ui.horizontal(|ui| {
        ui.label("Checkpoint:");
        egui::ComboBox::from_id_salt("filters-file").selected_text(file.as_str()).show_ui(ui, |ui| {
            for (epoch, f) in &files {
                if ui.selectable_label(*f == file, format!("epoch {epoch}: {f}")).clicked() {
                    state.file = Some(f.clone());
                }
            }
        });
    });
    match data.filters(src, ctx, run, &file).get() {
        Some(Ok(filters)) => {
            let [o, i, kh, kw] = filters.shape;
            ui.label(format!(
                "{}: {o} kernels of {kh}×{kw} over {i} input channel{} ({})",
                filters.tensor,
                if i == 1 { "" } else { "s" },
                if i == 3 { "shown as RGB" } else { "mean over inputs, in grey" }
            ));
            let size = filters.texture.size_vec2();
            let avail = ui.available_size();
            let scale = (avail.x / size.x).min(avail.y / size.y).clamp(1.0, 32.0).floor();
            ui.add(egui::Image::new((filters.texture.id(), size * scale)));
        }
        Some(Err(e)) => {
            error_label(ui, e);
        }
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("reading {file}"));
            });
        }
    }
}
