//! The pretext inputs the task made (`samples/`): for each source image, what the plugin
//! turned it into — SimCLR's pairs of views, Jigsaw's shuffled tiles with the permutation,
//! the four rotations — with the plugin's captions.

use super::data::RunData;
use super::error_label;
use super::source::RunSource;

const SIZE: f32 = 96.0;

fn image(ui: &mut egui::Ui, ctx: &egui::Context, src: &dyn RunSource, run: &str, data: &mut RunData, file: &str) {
    match data.texture(src, ctx, run, &format!("samples/{file}")).get() {
        Some(Ok(t)) => {
            let size = t.size_vec2();
            let scale = SIZE / size.x.max(size.y).max(1.0);
            ui.add(egui::Image::new((t.id(), size * scale)));
        }
        Some(Err(e)) => {
            error_label(ui, e);
        }
        None => {
            ui.add_sized([SIZE, SIZE], egui::Spinner::new());
        }
    }
}

pub fn show(ui: &mut egui::Ui, ctx: &egui::Context, src: &dyn RunSource, run: &str, data: &mut RunData) {
    let index = match data.samples.get() {
        Some(Ok(index)) => index.clone(),
        Some(Err(e)) => {
            if e.contains("No such file") || e.contains("not found") {
                ui.label("This run has no samples.");
            } else {
                error_label(ui, e);
            }
            return;
        }
        None => {
            ui.spinner();
            return;
        }
    };
    if let Some(task) = data.info.ok().map(|i| i.task.name.clone()) {
        ui.label(format!("What the {task} task made of {} images:", index.sources.len()));
    }
    egui::ScrollArea::both().show(ui, |ui| {
        for (g, source) in index.sources.iter().enumerate() {
            ui.horizontal(|ui| {
                ui.vertical(|ui| {
                    image(ui, ctx, src, run, data, source);
                    ui.label(egui::RichText::new(format!("source {g}")).small().strong());
                });
                ui.separator();
                for sample in index.samples.iter().filter(|s| s.group == g) {
                    ui.vertical(|ui| {
                        image(ui, ctx, src, run, data, &sample.file);
                        ui.label(egui::RichText::new(&sample.caption).small());
                    });
                }
            });
            ui.separator();
        }
    });
}
