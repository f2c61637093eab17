//! Training curves: loss, learning rate, kNN accuracy and the task's own metrics against
//! epoch or step, with every run ticked in the runs list overlaid on the selected one.

use std::collections::BTreeSet;

use egui_plot::{Legend, Line, Plot, PlotPoints};
use pretext_core::run::MetricRecord;

use super::data::RunData;
use super::{error_label, palette};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XAxis {
    #[default]
    Epoch,
    Step,
}

#[derive(Default)]
pub struct CurvesState {
    pub x: XAxis,
}

/// One metric of one record, if it has it.
type Getter = fn(&MetricRecord) -> Option<f64>;

/// The points of one metric: per-epoch means against epoch, or the logged steps against step
/// (the epoch means at their steps when a run logged per epoch only).
pub fn series(records: &[MetricRecord], x: XAxis, get: &dyn Fn(&MetricRecord) -> Option<f64>) -> Vec<[f64; 2]> {
    #[allow(clippy::cast_precision_loss)]
    match x {
        XAxis::Epoch => {
            records.iter().filter(|r| r.epoch_end).filter_map(|r| get(r).map(|y| [r.epoch as f64, y])).collect()
        }
        XAxis::Step => {
            let steps: Vec<[f64; 2]> =
                records.iter().filter(|r| !r.epoch_end).filter_map(|r| get(r).map(|y| [r.step as f64, y])).collect();
            if steps.is_empty() {
                records.iter().filter_map(|r| get(r).map(|y| [r.step as f64, y])).collect()
            } else {
                steps
            }
        }
    }
}

pub fn show(ui: &mut egui::Ui, state: &mut CurvesState, runs: &[(&str, &RunData)]) {
    ui.horizontal(|ui| {
        ui.label("x axis:");
        ui.selectable_value(&mut state.x, XAxis::Epoch, "epoch");
        ui.selectable_value(&mut state.x, XAxis::Step, "step");
        ui.separator();
        ui.weak("Tick runs in the list to overlay them.");
    });
    for (name, data) in runs {
        if let Some(e) = data.metrics.error() {
            error_label(ui, format!("{name}: {e}"));
        }
    }
    let loaded: Vec<(&str, &[MetricRecord])> =
        runs.iter().filter_map(|(name, d)| d.metrics.ok().map(|m| (*name, m.as_slice()))).collect();
    if loaded.iter().all(|(_, m)| m.is_empty()) {
        if runs.iter().any(|(_, d)| d.metrics.is_loading()) {
            ui.spinner();
        } else {
            ui.label("No metrics recorded yet.");
        }
        return;
    }
    let mut metrics: Vec<(String, Getter)> = vec![
        ("loss".into(), |r| Some(r.loss)),
        ("learning rate".into(), |r| Some(r.lr)),
        ("kNN top-1".into(), |r| r.knn_top1),
    ];
    let extra: BTreeSet<&String> = loaded.iter().flat_map(|(_, m)| m.iter().flat_map(|r| r.extra.keys())).collect();
    let x = state.x;
    let link = egui::Id::unique("pretext-curves-x");
    let height = ((ui.available_height() - 20.0) / (3 + extra.len()).min(4) as f32).max(160.0);
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (title, get) in metrics.drain(..) {
            plot(ui, &title, x, height, link, &loaded, &get);
        }
        for key in extra {
            let get = |r: &MetricRecord| r.extra.get(key).copied();
            plot(ui, key, x, height, link, &loaded, &get);
        }
    });
}

/// Grid steps of 1, 2 or 5 × 10^k (the default spaces by powers of ten only, which leaves
/// a learning-rate axis that spans half a decade without a single label).
fn nice_steps(input: &egui_plot::GridInput) -> [f64; 3] {
    let base = input.base_step_size.max(f64::MIN_POSITIVE);
    let mut steps = Vec::with_capacity(3);
    let mut decade = 10f64.powf(base.log10().floor());
    while steps.len() < 3 {
        for m in [1.0, 2.0, 5.0] {
            let s = m * decade;
            if s >= base && steps.len() < 3 && steps.last().is_none_or(|&l: &f64| s >= l * 4.0) {
                steps.push(s);
            }
        }
        decade *= 10.0;
    }
    [steps[0], steps[1], steps[2]]
}

/// Tick labels that stay readable for learning rates (1e-4) as for losses and accuracies.
fn axis_number(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if step < 1e-3 || v.abs() >= 1e5 {
        return format!("{v:.2e}");
    }
    let digits = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.digits$}")
}

fn plot(
    ui: &mut egui::Ui,
    title: &str,
    x: XAxis,
    height: f32,
    link: egui::Id,
    runs: &[(&str, &[MetricRecord])],
    get: &dyn Fn(&MetricRecord) -> Option<f64>,
) {
    let lines: Vec<(usize, &str, Vec<[f64; 2]>)> = runs
        .iter()
        .enumerate()
        .map(|(i, (name, records))| (i, *name, series(records, x, get)))
        .filter(|(_, _, pts)| !pts.is_empty())
        .collect();
    if lines.is_empty() {
        return;
    }
    ui.strong(title);
    Plot::new(("curve", title))
        .height(height)
        .legend(Legend::default())
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
        .y_grid_spacer(egui_plot::uniform_grid_spacer(|input| nice_steps(&input)))
        .y_axis_formatter(|mark, _| axis_number(mark.value, mark.step_size))
        .y_axis_min_width(64.0)
        .x_axis_label(match x {
            XAxis::Epoch => "epoch",
            XAxis::Step => "step",
        })
        .show(ui, |plot| {
            for (i, name, pts) in lines {
                let single = pts.len() == 1;
                let color = palette(i);
                if single {
                    plot.points(egui_plot::Points::new(name, PlotPoints::from(pts)).color(color).radius(4.0));
                } else {
                    plot.line(Line::new(name, PlotPoints::from(pts)).color(color).width(1.5));
                }
            }
        });
}
