//! The Train view's look at the data before training: the dataset opened exactly as the
//! trainer will open it (same size, labels, cache and limit), on its own thread, with the
//! cache build's progress; then the image count, classes or "unlabeled", skipped files with
//! their reasons, the cache used, and a grid of the first images as they will be trained on.
//!
//! Opening builds the pixel cache, so the training that follows starts at once. This file
//! must not start training nor edit the form.

use std::sync::{Arc, Mutex};

use egui::TextureHandle;
use pretext_core::data::{self, ByteImages, OpenOptions, Progress, decode};
use pretext_core::train::DataSummary;

use super::super::error_label;
use super::super::images::color_image;

/// How many of the first images the grid shows.
const THUMBS: usize = 24;
const THUMB_SIZE: f32 = 56.0;

/// What was opened: the preview is current while the form still asks for this.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewKey {
    pub data: String,
    pub opts: OpenOptions,
}

struct Ready {
    summary: DataSummary,
    thumbs: ByteImages,
}

enum State {
    Running(Option<Progress>),
    Done(Result<Ready, String>),
}

pub struct Preview {
    pub key: PreviewKey,
    state: Arc<Mutex<State>>,
    textures: Option<Vec<TextureHandle>>,
}

impl Preview {
    /// Opens `key.data` on a thread of its own.
    pub fn start(ctx: &egui::Context, key: PreviewKey) -> Self {
        let state = Arc::new(Mutex::new(State::Running(None)));
        let (slot, ctx2, k) = (Arc::clone(&state), ctx.clone(), key.clone());
        let spawned = std::thread::Builder::new().name("pretext-preview".into()).spawn(move || {
            let progress_slot = Arc::clone(&slot);
            let repaint = ctx2.clone();
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                data::open_with(&k.data, &k.opts, &mut |p| {
                    if let Ok(mut s) = progress_slot.lock() {
                        *s = State::Running(Some(p));
                    }
                    repaint.request_repaint();
                })
                .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("reading the data stopped on an internal error".into()));
            let done = opened.and_then(|splits| {
                if splits.train.is_empty() {
                    return Err(format!("`{}` has no training images", k.data));
                }
                Ok(Ready { summary: DataSummary::new(&splits), thumbs: splits.train.images.take(THUMBS) })
            });
            if let Ok(mut s) = slot.lock() {
                *s = State::Done(done);
            }
            ctx2.request_repaint();
        });
        if let Err(e) = spawned
            && let Ok(mut s) = state.lock()
        {
            *s = State::Done(Err(format!("cannot start reading the data: {e}")));
        }
        Self { key, state, textures: None }
    }

    pub fn is_running(&self) -> bool {
        self.state.lock().is_ok_and(|s| matches!(*s, State::Running(_)))
    }

    /// The summary, once the data opened.
    pub fn summary(&self) -> Option<DataSummary> {
        match &*self.state.lock().ok()? {
            State::Done(Ok(r)) => Some(r.summary.clone()),
            _ => None,
        }
    }

    pub fn show(&mut self, ui: &mut egui::Ui) {
        let Ok(state) = self.state.lock() else { return };
        match &*state {
            State::Running(None) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("reading {}…", self.key.data));
                });
            }
            State::Running(Some(p)) => {
                #[allow(clippy::cast_precision_loss)]
                let f = p.done as f32 / p.total.max(1) as f32;
                ui.add(
                    egui::ProgressBar::new(f)
                        .text(format!("{}: {}/{} image files (building the pixel cache)", p.stage, p.done, p.total)),
                );
            }
            State::Done(Err(e)) => {
                error_label(ui, e);
            }
            State::Done(Ok(ready)) => {
                let textures = self.textures.get_or_insert_with(|| {
                    let t = &ready.thumbs;
                    (0..t.n)
                        .filter_map(|i| decode::from_planar(t.image(i), t.c, t.h, t.w))
                        .enumerate()
                        .map(|(i, image)| {
                            ui.ctx().load_texture(
                                format!("preview-{i}"),
                                color_image(&image),
                                egui::TextureOptions::LINEAR,
                            )
                        })
                        .collect()
                });
                summary(ui, &ready.summary);
                ui.label(format!("The first {} images, as they will be trained on:", textures.len()));
                ui.horizontal_wrapped(|ui| {
                    for t in textures.iter() {
                        ui.add(egui::Image::new((t.id(), egui::Vec2::splat(THUMB_SIZE))));
                    }
                });
            }
        }
    }
}

fn summary(ui: &mut egui::Ui, s: &DataSummary) {
    let test = if s.test_images > 0 { format!(", {} test images", s.test_images) } else { String::new() };
    ui.strong(format!("{}: {} images{test}", s.name, s.images));
    ui.label(s.describe());
    if !s.classes.is_empty() {
        let shown: Vec<&str> = s.classes.iter().take(12).map(String::as_str).collect();
        let more = if s.classes.len() > shown.len() { ", …" } else { "" };
        ui.label(format!("classes: {}{more}", shown.join(", ")));
    }
    for note in s.report.notes() {
        ui.colored_label(ui.visuals().warn_fg_color, note);
    }
    if !s.report.skipped.is_empty() {
        egui::CollapsingHeader::new(format!("skipped files ({})", s.report.skipped_count)).show(ui, |ui| {
            for k in &s.report.skipped {
                ui.label(format!("{}: {}", k.path, k.reason));
            }
        });
    }
    if let Some(c) = &s.report.cache {
        ui.weak(format!("pixel cache: {} ({})", c.path, if c.reused { "reused" } else { "built now" }));
    }
}
