//! The runs list: every folder of the runs directory with its status, refreshed while runs
//! are written. Clicking a run selects it; the box beside it overlays it in Curves.

use std::collections::{BTreeMap, BTreeSet};

use pretext_core::run::RunStatus;

use super::data::RunData;
use super::error_label;
use super::source::Loadable;

pub fn status_color(ui: &egui::Ui, status: RunStatus) -> egui::Color32 {
    match status {
        RunStatus::Running => egui::Color32::from_rgb(90, 170, 255),
        RunStatus::Completed => egui::Color32::from_rgb(80, 190, 100),
        RunStatus::Stopped => egui::Color32::from_rgb(230, 170, 60),
        RunStatus::Failed => ui.visuals().error_fg_color,
    }
}

pub fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Stopped => "stopped",
        RunStatus::Failed => "failed",
    }
}

pub fn show(
    ui: &mut egui::Ui,
    runs: &Loadable<Vec<String>>,
    data: &BTreeMap<String, RunData>,
    selected: &mut Option<String>,
    compare: &mut BTreeSet<String>,
) {
    ui.heading("Runs");
    if let Some(e) = runs.error() {
        error_label(ui, e);
        ui.label("Train a run (Train view or `pretext train`) and it appears here.");
        return;
    }
    let Some(names) = runs.ok() else {
        ui.spinner();
        return;
    };
    if names.is_empty() {
        ui.label("No runs yet.");
        return;
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        for name in names {
            let info = data.get(name).map(|d| &d.info);
            ui.horizontal(|ui| {
                let mut overlaid = compare.contains(name);
                if ui.checkbox(&mut overlaid, "").on_hover_text("Overlay this run in Curves").changed() {
                    if overlaid {
                        compare.insert(name.clone());
                    } else {
                        compare.remove(name);
                    }
                }
                if ui.selectable_label(selected.as_deref() == Some(name), name).clicked() {
                    *selected = Some(name.clone());
                }
                match info.and_then(Loadable::get) {
                    Some(Ok(info)) => {
                        let status = status_text(info.status);
                        ui.colored_label(status_color(ui, info.status), status).on_hover_text(format!(
                            "{} on {}, epoch {}/{}",
                            info.task.name, info.dataset.name, info.epochs_done, info.epochs
                        ));
                    }
                    Some(Err(e)) => {
                        ui.colored_label(ui.visuals().error_fg_color, "unreadable").on_hover_text(e);
                    }
                    None => {
                        ui.spinner();
                    }
                }
            });
        }
    });
}
