//! The overview of one run: what was trained (task plugin and version, dataset, backbone,
//! configuration), its status, and its checkpoints with their metrics.

use pretext_core::run::{CheckpointMeta, RunInfo};

use super::data::RunData;
use super::error_label;
use super::runs::{status_color, status_text};

pub fn show(ui: &mut egui::Ui, name: &str, data: &RunData) {
    ui.heading(name);
    let info = match data.info.get() {
        Some(Ok(info)) => info,
        Some(Err(e)) => {
            error_label(ui, format!("This run cannot be shown: {e}"));
            return;
        }
        None => {
            ui.spinner();
            return;
        }
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        summary(ui, info);
        ui.add_space(8.0);
        ui.collapsing("Configuration", |ui| {
            let text = serde_json::to_string_pretty(&info.config).unwrap_or_default();
            ui.add(egui::Label::new(egui::RichText::new(text).monospace()).wrap());
        });
        ui.add_space(8.0);
        ui.heading("Checkpoints");
        checkpoints(ui, &data.checkpoint_list());
        for (file, e) in data.checkpoint_errors() {
            error_label(ui, format!("checkpoints/{file}: {e}"));
        }
        if let Some(e) = data.checkpoint_files.error() {
            error_label(ui, e);
        }
        if let Some(e) = data.metrics.error() {
            error_label(ui, e);
        }
    });
}

fn summary(ui: &mut egui::Ui, info: &RunInfo) {
    egui::Grid::new("run-summary").num_columns(2).striped(true).spacing([16.0, 4.0]).show(ui, |ui| {
        ui.label("Status");
        ui.horizontal(|ui| {
            ui.colored_label(status_color(ui, info.status), status_text(info.status));
            ui.label(format!("epoch {} of {}", info.epochs_done, info.epochs));
        });
        ui.end_row();
        if let Some(message) = &info.message {
            ui.label("Message");
            ui.label(message);
            ui.end_row();
        }
        ui.label("Task");
        ui.label(format!("{} {} (plugin ABI {})", info.task.name, info.task.version, info.task.abi_version))
            .on_hover_text(&info.task.path);
        ui.end_row();
        let d = &info.dataset;
        ui.label("Dataset");
        let classes =
            if d.classes.is_empty() { "unlabeled".to_string() } else { format!("{} classes", d.classes.len()) };
        ui.label(format!(
            "{} ({}): {} train / {} test images, {}×{}×{}, {classes}",
            d.name, d.spec, d.train_images, d.test_images, d.channels, d.height, d.width,
        ))
        .on_hover_text(d.classes.join(", "));
        ui.end_row();
        let notes = d.report.notes();
        if !notes.is_empty() {
            ui.label("Data notes");
            ui.vertical(|ui| {
                for note in notes {
                    ui.label(note);
                }
                for k in &d.report.skipped {
                    ui.weak(format!("{}: {}", k.path, k.reason));
                }
            });
            ui.end_row();
        }
        ui.label("Backbone");
        ui.label(format!(
            "{} (width {}, {} input channels)",
            info.backbone.kind, info.backbone.width, info.backbone.in_channels
        ));
        ui.end_row();
        ui.label("Seed");
        ui.label(info.seed.to_string());
        ui.end_row();
        if info.world_size > 1 {
            // A data-parallel run: the batch in its config is the global one.
            ui.label("Processes");
            ui.label(format!("{} ranks (data-parallel; the batch size is over all of them)", info.world_size));
            ui.end_row();
        }
        ui.label("Normalisation");
        ui.label(format!("mean {:?}, std {:?}", info.normalize.mean, info.normalize.std));
        ui.end_row();
        ui.label("Updated");
        ui.label(format!("{} s after it was created", info.updated_unix.saturating_sub(info.created_unix)));
        ui.end_row();
    });
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

fn checkpoints(ui: &mut egui::Ui, list: &[&CheckpointMeta]) {
    if list.is_empty() {
        ui.label("No checkpoint yet.");
        return;
    }
    egui::Grid::new("run-checkpoints").num_columns(7).striped(true).spacing([16.0, 4.0]).show(ui, |ui| {
        for title in ["Epoch", "Step", "Loss", "LR", "kNN top-1", "Images/s", "File"] {
            ui.strong(title);
        }
        ui.end_row();
        for meta in list {
            let m = meta.metrics.as_ref();
            ui.label(meta.epoch.to_string());
            ui.label(meta.step.to_string());
            ui.label(fmt_opt(m.map(|m| m.loss), |v| format!("{v:.4}")));
            ui.label(fmt_opt(m.map(|m| m.lr), |v| format!("{v:.2e}")));
            ui.label(fmt_opt(m.and_then(|m| m.knn_top1), |v| format!("{:.1}%", v * 100.0)));
            ui.label(fmt_opt(m.map(|m| m.images_per_sec), |v| format!("{v:.0}")));
            #[allow(clippy::cast_precision_loss)]
            let mib = meta.bytes as f64 / (1024.0 * 1024.0);
            ui.label(format!("{} ({mib:.1} MiB)", meta.file)).on_hover_text(format!("sha256 {}", meta.sha256));
            ui.end_row();
        }
    });
}
