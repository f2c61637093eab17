//! The embedding of a checkpoint's features (`embeddings/epoch-NNNN.json`, written by
//! `pretext embed`): a 2-D scatter coloured by class with a legend; the image under the
//! cursor is shown beside it, and clicking a point shows its nearest neighbours (by cosine
//! similarity of the features, not of the 2-D projection) as a grid with their classes.
//! For a ViT, the last block's attention of the CLS token is laid over the images: the mean
//! over heads beside the image under the cursor, the mean and every head for the clicked one.

use std::sync::Arc;

use egui::{Pos2, Rect, TextureHandle, Vec2, pos2, vec2};
use egui_plot::{Legend, MarkerShape, Plot, PlotPoint, PlotPoints, PlotTransform, Points};
use pretext_core::run::EmbeddingFile;

use super::data::RunData;
use super::source::RunSource;
use super::{error_label, palette};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Projection {
    #[default]
    Pca,
    Tsne,
}

#[derive(Default)]
pub struct EmbeddingState {
    /// The run and embedding file being shown; changing either clears the selection.
    run: String,
    file: Option<String>,
    projection: Projection,
    hovered: Option<usize>,
    selected: Option<usize>,
    /// A point to select once the embedding has loaded (a page address's `point=`).
    requested: Option<usize>,
    /// The plot's transform and the drawn coordinates, from the last frame.
    transform: Option<PlotTransform>,
    points: Vec<[f64; 2]>,
}

/// Pointer distance (points) within which the nearest point counts as hovered.
const PICK_RADIUS: f32 = 8.0;
const THUMB: f32 = 56.0;

impl EmbeddingState {
    pub fn screen_pos(&self, i: usize) -> Option<Pos2> {
        let t = self.transform.as_ref()?;
        let [x, y] = *self.points.get(i)?;
        Some(t.position_from_point(&PlotPoint::new(x, y)))
    }

    pub fn selected(&self) -> Option<usize> {
        self.selected
    }

    /// Selects point `i` of the embedding shown next (ignored if it has no such point).
    pub fn request_selection(&mut self, i: usize) {
        self.requested = Some(i);
    }

    fn nearest(&self, pointer: Pos2) -> Option<usize> {
        let t = self.transform.as_ref()?;
        let mut best: Option<(usize, f32)> = None;
        for (i, &[x, y]) in self.points.iter().enumerate() {
            let d = t.position_from_point(&PlotPoint::new(x, y)).distance(pointer);
            if d <= PICK_RADIUS && best.is_none_or(|(_, bd)| d < bd) {
                best = Some((i, d));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Where image `i` sits in the atlas, in texture coordinates.
pub fn atlas_uv(file: &EmbeddingFile, texture_size: [usize; 2], i: usize) -> Rect {
    let (s, c) = (file.atlas.size as f32, file.atlas.columns);
    let (w, h) = (texture_size[0].max(1) as f32, texture_size[1].max(1) as f32);
    let (col, row) = ((i % c) as f32, (i / c) as f32);
    Rect::from_min_size(pos2(col * s / w, row * s / h), vec2(s / w, s / h))
}

/// Whether the embedded images have classes (embeddings of unlabeled data have none).
fn labelled(file: &EmbeddingFile) -> bool {
    !file.classes.is_empty() && file.labels.len() == file.pca.len()
}

/// ` · class` for image `i`, or nothing when the data is unlabeled.
fn class_name(file: &EmbeddingFile, i: usize) -> String {
    match file.labels.get(i).filter(|_| labelled(file)) {
        Some(&label) => {
            let label = label as usize;
            format!(" · {}", file.classes.get(label).cloned().unwrap_or_else(|| format!("class {label}")))
        }
        None => String::new(),
    }
}

/// Whether images `i` and `j` share a class (false when the data is unlabeled).
fn same_class(file: &EmbeddingFile, i: usize, j: usize) -> bool {
    labelled(file) && file.labels.get(i).is_some_and(|a| file.labels.get(j) == Some(a))
}

pub fn show(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    state: &mut EmbeddingState,
    src: &dyn RunSource,
    run: &str,
    data: &mut RunData,
) {
    if state.run != run {
        *state = EmbeddingState {
            run: run.to_string(),
            projection: state.projection,
            requested: state.requested.take(),
            ..Default::default()
        };
    }
    let files = data.embedding_list();
    if let Some(e) = data.embedding_files.error() {
        error_label(ui, e);
        return;
    }
    if files.is_empty() {
        if data.embedding_files.is_loading() || data.embedding_files.is_unrequested() {
            ui.spinner();
        } else {
            ui.label(format!("No embedding yet. Write one with `pretext embed --run <runs>/{run}`."));
        }
        return;
    }
    if state.file.as_ref().is_none_or(|f| !files.contains(f)) {
        state.file = files.last().cloned();
        state.selected = None;
    }
    let Some(file_name) = state.file.clone() else { return };

    let file = match data.embedding(src, ctx, run, &file_name).get() {
        Some(Ok(file)) => Arc::clone(file),
        Some(Err(e)) => {
            controls(ui, state, &files, None);
            error_label(ui, e);
            return;
        }
        None => {
            ui.spinner();
            return;
        }
    };
    if let Some(i) = state.requested.take()
        && i < file.pca.len()
    {
        state.selected = Some(i);
    }
    let atlas_name = file.atlas.file.clone();
    let atlas = match data.texture(src, ctx, run, &format!("embeddings/{atlas_name}")).get() {
        Some(Ok(t)) => Some(t.clone()),
        Some(Err(e)) => {
            error_label(ui, e);
            None
        }
        None => None,
    };
    let attention = file.attention.as_ref().and_then(|a| {
        match data.attention_overlay(src, ctx, run, &format!("embeddings/{}", a.file)).get() {
            Some(Ok(t)) => Some(t.clone()),
            Some(Err(e)) => {
                error_label(ui, format!("attention maps: {e}"));
                None
            }
            None => None,
        }
    });
    controls(ui, state, &files, Some(&file));

    let images = Images { file: &file, atlas: atlas.as_ref(), attention: attention.as_ref() };
    egui::Panel::right("embedding-side").default_size(300.0).resizable(true).show(ui, |ui| {
        side(ui, state, &images);
    });
    egui::CentralPanel::default().show(ui, |ui| scatter(ui, state, &file));
}

fn controls(ui: &mut egui::Ui, state: &mut EmbeddingState, files: &[String], file: Option<&EmbeddingFile>) {
    ui.horizontal(|ui| {
        ui.label("Checkpoint:");
        let current = state.file.clone().unwrap_or_default();
        egui::ComboBox::from_id_salt("embedding-file").selected_text(current.trim_end_matches(".json")).show_ui(
            ui,
            |ui| {
                for f in files {
                    if ui.selectable_label(state.file.as_ref() == Some(f), f.trim_end_matches(".json")).clicked() {
                        state.file = Some(f.clone());
                        state.selected = None;
                    }
                }
            },
        );
        let has_tsne = file.is_some_and(|f| f.tsne.is_some());
        ui.selectable_value(&mut state.projection, Projection::Pca, "PCA");
        ui.add_enabled_ui(has_tsne, |ui| {
            ui.selectable_value(&mut state.projection, Projection::Tsne, "t-SNE")
                .on_disabled_hover_text("this embedding was written without t-SNE");
        });
        if !has_tsne {
            state.projection = Projection::Pca;
        }
        if let Some(f) = file {
            ui.separator();
            ui.label(format!("{} points of {} ({})", f.pca.len(), f.data, f.stage));
            if let Some(k) = f.knn_top1 {
                ui.label(format!("kNN top-1 {:.1}%", k * 100.0));
            }
        }
    });
}

fn scatter(ui: &mut egui::Ui, state: &mut EmbeddingState, file: &EmbeddingFile) {
    let coords = match (state.projection, &file.tsne) {
        (Projection::Tsne, Some(t)) => t,
        _ => &file.pca,
    };
    state.points = coords.iter().map(|&[x, y]| [f64::from(x), f64::from(y)]).collect();
    let labelled = labelled(file);
    let mut by_class: Vec<Vec<[f64; 2]>> = vec![Vec::new(); file.classes.len().max(1)];
    for (i, p) in state.points.iter().enumerate() {
        let label = if labelled { (file.labels[i] as usize).min(by_class.len() - 1) } else { 0 };
        by_class[label].push(*p);
    }
    let selected = state.selected;
    let neighbours: Vec<[f64; 2]> =
        selected.map(|s| file.neighbours[s].iter().map(|&j| state.points[j as usize]).collect()).unwrap_or_default();
    let chosen: Option<[f64; 2]> = selected.map(|s| state.points[s]);
    let stroke = ui.visuals().strong_text_color();
    let mut plot = Plot::new("embedding-scatter");
    if labelled {
        plot = plot.legend(Legend::default().title("class").follow_insertion_order(true));
    }
    let response =
        plot.data_aspect(1.0).show_axes(false).show_grid(false).allow_double_click_reset(true).show(ui, |plot| {
            for (c, pts) in by_class.into_iter().enumerate() {
                let name = match file.classes.get(c) {
                    Some(name) if labelled => name.clone(),
                    _ if labelled => format!("class {c}"),
                    _ => "images".to_string(),
                };
                plot.points(Points::new(name, PlotPoints::from(pts)).color(palette(c)).radius(2.5).filled(true));
            }
            if !neighbours.is_empty() {
                plot.points(
                    Points::new("neighbours", PlotPoints::from(neighbours))
                        .shape(MarkerShape::Circle)
                        .filled(false)
                        .radius(6.0)
                        .color(stroke),
                );
            }
            if let Some(p) = chosen {
                plot.points(
                    Points::new("selected", PlotPoints::from(vec![p]))
                        .shape(MarkerShape::Diamond)
                        .radius(8.0)
                        .color(stroke),
                );
            }
        });
    state.transform = Some(response.transform);
    let hover = response.response.hover_pos().and_then(|p| state.nearest(p));
    state.hovered = hover;
    if response.response.clicked() {
        state.selected = response.response.interact_pointer_pos().and_then(|p| state.nearest(p)).or(hover);
    }
}

/// An embedding with its loaded textures: the thumbnail atlas and, for a ViT, the
/// attention overlay.
struct Images<'a> {
    file: &'a EmbeddingFile,
    atlas: Option<&'a TextureHandle>,
    attention: Option<&'a TextureHandle>,
}

impl Images<'_> {
    /// Image `i` as a clickable thumbnail, with attention tile `tile` (0 the mean over
    /// heads, `k` head `k`) painted over it when given.
    fn thumb(&self, ui: &mut egui::Ui, i: usize, size: f32, tile: Option<usize>) -> egui::Response {
        let Some(t) = self.atlas else { return ui.add_sized([size, size], egui::Spinner::new()) };
        let response = ui.add(
            egui::Image::new((t.id(), Vec2::splat(size)))
                .uv(atlas_uv(self.file, t.size(), i))
                .sense(egui::Sense::click()),
        );
        if let (Some(tile), Some(overlay)) = (tile, self.attention)
            && let Some(uv) = attention_uv(self.file, overlay.size(), i, tile)
        {
            ui.painter().image(overlay.id(), response.rect, uv, egui::Color32::WHITE);
        }
        response
    }
}

/// Where image `i`'s attention tile sits in the overlay texture, cut to the part of the
/// patch grid that covers the image (the grid may pad it to whole patches).
pub fn attention_uv(file: &EmbeddingFile, texture_size: [usize; 2], i: usize, tile: usize) -> Option<Rect> {
    let a = file.attention.as_ref()?;
    if tile > a.heads {
        return None;
    }
    let (x, y) = a.tile_origin(i, tile);
    let (w, h) = (texture_size[0].max(1) as f32, texture_size[1].max(1) as f32);
    let side = file.atlas.size as f32;
    let cover = |cells: usize| (side / (cells * a.patch).max(1) as f32).min(1.0) * cells as f32;
    Some(Rect::from_min_size(pos2(x as f32 / w, y as f32 / h), vec2(cover(a.cols) / w, cover(a.rows) / h)))
}

fn side(ui: &mut egui::Ui, state: &mut EmbeddingState, images: &Images<'_>) {
    let file = images.file;
    let has_attention = file.attention.is_some();
    ui.strong("Under the cursor");
    match state.hovered {
        Some(i) => {
            ui.horizontal(|ui| {
                images.thumb(ui, i, THUMB * 1.5, None);
                if has_attention {
                    images
                        .thumb(ui, i, THUMB * 1.5, Some(0))
                        .on_hover_text("the CLS token's attention, mean over heads");
                }
                ui.label(format!("Under the cursor: #{i}{}", class_name(file, i)));
            });
        }
        None => {
            ui.weak("Hover a point to see its image; click it for its nearest neighbours.");
        }
    }
    ui.separator();
    let Some(s) = state.selected else { return };
    if let Some(a) = &file.attention {
        ui.label(format!("Attention of #{s}: the last block's CLS token over the patches"));
        ui.horizontal_wrapped(|ui| {
            for tile in 0..=a.heads {
                ui.vertical(|ui| {
                    images.thumb(ui, s, THUMB, Some(tile));
                    let name = if tile == 0 { "mean".to_string() } else { format!("head {tile}") };
                    ui.label(egui::RichText::new(name).small());
                });
            }
        });
        ui.separator();
    }
    ui.horizontal(|ui| {
        images.thumb(ui, s, THUMB * 1.5, None);
        ui.label(format!("Nearest neighbours of #{s}{}", class_name(file, s)));
    });
    if labelled(file) {
        let same = file.neighbours[s].iter().filter(|&&j| same_class(file, j as usize, s)).count();
        ui.weak(format!("{same} of {} share its class", file.neighbours[s].len()));
    }
    let columns = (((ui.available_width() - 8.0) / (THUMB + 12.0)).floor() as usize).max(1);
    let mut clicked = None;
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("embedding-neighbours").spacing([6.0, 6.0]).show(ui, |ui| {
            for (k, &j) in file.neighbours[s].iter().enumerate() {
                let j = j as usize;
                ui.vertical(|ui| {
                    if images.thumb(ui, j, THUMB, None).on_hover_text("show this image's neighbours").clicked() {
                        clicked = Some(j);
                    }
                    let name = class_name(file, j);
                    let text = egui::RichText::new(format!("#{j}{name}")).small();
                    if same_class(file, j, s) || !labelled(file) {
                        ui.label(text);
                    } else {
                        ui.colored_label(ui.visuals().warn_fg_color, text);
                    }
                });
                if (k + 1) % columns == 0 {
                    ui.end_row();
                }
            }
        });
    });
    if let Some(j) = clicked {
        state.selected = Some(j);
    }
}
