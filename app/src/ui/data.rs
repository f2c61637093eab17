//! What the UI knows about each run, loaded through the [`RunSource`] and refreshed while
//! runs are being written: `run.json` for every run in the list; metrics, checkpoints,
//! embeddings and samples for the runs being looked at. Each file loads on its own, so one
//! broken file shows as one message and the rest of the run still displays.

use std::collections::BTreeMap;
use std::sync::Arc;

use egui::TextureHandle;
use pretext_core::run::{CheckpointMeta, EmbeddingFile, MetricRecord, RunInfo, SampleIndex, parse_metrics};

use super::images::{Filters, filters_from_safetensors, load_attention_overlay, load_texture};
use super::source::{Loadable, RunSource};

/// Everything loaded for one run.
#[derive(Default)]
pub struct RunData {
    pub info: Loadable<RunInfo>,
    pub metrics: Loadable<Vec<MetricRecord>>,
    /// File names in `checkpoints/`.
    pub checkpoint_files: Loadable<Vec<String>>,
    /// Checkpoint metadata by JSON file name (`epoch-0001.json`).
    pub checkpoints: BTreeMap<String, Loadable<CheckpointMeta>>,
    /// File names in `embeddings/`.
    pub embedding_files: Loadable<Vec<String>>,
    pub embeddings: BTreeMap<String, Loadable<Arc<EmbeddingFile>>>,
    pub samples: Loadable<SampleIndex>,
    /// How many checkpoint files there were when `samples` was requested: the trainer
    /// rewrites the samples at each checkpoint (MAE's reconstructions change).
    samples_at: Option<usize>,
    /// PNG textures (atlases, samples) by path inside the run (`samples/sample-0000.png`).
    pub textures: BTreeMap<String, Loadable<TextureHandle>>,
    /// First-layer filters by safetensors file name.
    pub filters: BTreeMap<String, Loadable<Filters>>,
}

fn is_checkpoint_meta(name: &str) -> bool {
    name.starts_with("epoch-") && name.ends_with(".json")
}

impl RunData {
    /// Re-reads `run.json` (cheap; done for every listed run).
    pub fn refresh_info(&mut self, src: &dyn RunSource, ctx: &egui::Context, run: &str) {
        self.info.request(|| src.fetch_json(ctx, run, "run.json"));
    }

    /// Re-reads what changes while a run trains: metrics and the checkpoint and embedding
    /// listings. Files that never change once written are read once.
    pub fn refresh_details(&mut self, src: &dyn RunSource, ctx: &egui::Context, run: &str) {
        self.refresh_info(src, ctx, run);
        self.metrics.request(|| {
            src.fetch(ctx, run, "metrics.jsonl", |bytes| {
                let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
                parse_metrics(&text)
            })
        });
        self.checkpoint_files.request(|| src.fetch_list(ctx, run, "checkpoints"));
        self.embedding_files.request(|| src.fetch_list(ctx, run, "embeddings"));
        if self.samples.ok().is_none() {
            self.samples.request(|| src.fetch_json(ctx, run, "samples/index.json"));
        }
    }

    /// Takes arrived results and starts the loads they make necessary.
    pub fn poll(&mut self, src: &dyn RunSource, ctx: &egui::Context, run: &str) {
        self.info.poll();
        self.metrics.poll();
        self.embedding_files.poll();
        self.samples.poll();
        if self.checkpoint_files.poll()
            && let Some(files) = self.checkpoint_files.ok()
        {
            if self.samples_at != Some(files.len()) {
                if self.samples_at.is_some() {
                    self.samples = Loadable::default();
                    self.textures.retain(|path, _| !path.starts_with("samples/"));
                }
                self.samples_at = Some(files.len());
            }
            for file in files.iter().filter(|f| is_checkpoint_meta(f)) {
                let entry = self.checkpoints.entry(file.clone()).or_default();
                if entry.ok().is_none() {
                    entry.request(|| src.fetch_json(ctx, run, &format!("checkpoints/{file}")));
                }
            }
        }
        self.textures.values_mut().for_each(|l| {
            l.poll();
        });
        self.checkpoints.values_mut().for_each(|l| {
            l.poll();
        });
        self.embeddings.values_mut().for_each(|l| {
            l.poll();
        });
        self.filters.values_mut().for_each(|l| {
            l.poll();
        });
    }

    pub fn is_loading(&self) -> bool {
        self.info.is_loading()
            || self.metrics.is_loading()
            || self.checkpoint_files.is_loading()
            || self.embedding_files.is_loading()
            || self.samples.is_loading()
            || self.checkpoints.values().any(Loadable::is_loading)
            || self.embeddings.values().any(Loadable::is_loading)
            || self.textures.values().any(Loadable::is_loading)
            || self.filters.values().any(Loadable::is_loading)
    }

    /// The first file of the run that failed to load, with why.
    pub fn first_error(&self) -> Option<&str> {
        let single =
            [self.info.error(), self.metrics.error(), self.checkpoint_files.error(), self.embedding_files.error()];
        single
            .into_iter()
            .flatten()
            .chain(self.checkpoints.values().filter_map(Loadable::error))
            .chain(self.embeddings.values().filter_map(Loadable::error))
            .chain(self.textures.values().filter_map(Loadable::error))
            .chain(self.filters.values().filter_map(Loadable::error))
            .next()
    }

    /// The checkpoints whose metadata loaded, oldest first.
    pub fn checkpoint_list(&self) -> Vec<&CheckpointMeta> {
        let mut list: Vec<&CheckpointMeta> = self.checkpoints.values().filter_map(Loadable::ok).collect();
        list.sort_by_key(|m| m.epoch);
        list
    }

    /// Checkpoint metadata files that failed to load, with why.
    pub fn checkpoint_errors(&self) -> Vec<(&str, &str)> {
        self.checkpoints.iter().filter_map(|(k, l)| l.error().map(|e| (k.as_str(), e))).collect()
    }

    /// The embedding files (`epoch-NNNN.json`) present, oldest first.
    pub fn embedding_list(&self) -> Vec<String> {
        self.embedding_files
            .ok()
            .map(|files| files.iter().filter(|f| f.starts_with("epoch-") && f.ends_with(".json")).cloned().collect())
            .unwrap_or_default()
    }

    pub fn embedding(
        &mut self,
        src: &dyn RunSource,
        ctx: &egui::Context,
        run: &str,
        file: &str,
    ) -> &Loadable<Arc<EmbeddingFile>> {
        let entry = self.embeddings.entry(file.to_string()).or_default();
        if entry.is_unrequested() {
            entry.request(|| {
                src.fetch(ctx, run, &format!("embeddings/{file}"), |bytes| {
                    let file: EmbeddingFile = super::source::parse_versioned_json(&bytes)?;
                    check_embedding(&file)?;
                    Ok(Arc::new(file))
                })
            });
        }
        entry
    }

    /// The PNG at `path` inside the run (e.g. `embeddings/epoch-0002-atlas.png`) as a texture.
    pub fn texture(
        &mut self,
        src: &dyn RunSource,
        ctx: &egui::Context,
        run: &str,
        path: &str,
    ) -> &Loadable<TextureHandle> {
        self.png(src, ctx, run, path, false)
    }

    /// An attention atlas (e.g. `embeddings/epoch-0002-attention.png`) as a heat overlay.
    pub fn attention_overlay(
        &mut self,
        src: &dyn RunSource,
        ctx: &egui::Context,
        run: &str,
        path: &str,
    ) -> &Loadable<TextureHandle> {
        self.png(src, ctx, run, path, true)
    }

    fn png(
        &mut self,
        src: &dyn RunSource,
        ctx: &egui::Context,
        run: &str,
        path: &str,
        overlay: bool,
    ) -> &Loadable<TextureHandle> {
        let key = if overlay { format!("{path}#overlay") } else { path.to_string() };
        let entry = self.textures.entry(key.clone()).or_default();
        if entry.is_unrequested() {
            let c = ctx.clone();
            let name = format!("{run}/{key}");
            let decode = if overlay { load_attention_overlay } else { load_texture };
            entry.request(|| src.fetch(ctx, run, path, move |b| decode(&c, &name, &b)));
        }
        entry
    }

    pub fn filters(&mut self, src: &dyn RunSource, ctx: &egui::Context, run: &str, file: &str) -> &Loadable<Filters> {
        let entry = self.filters.entry(file.to_string()).or_default();
        if entry.is_unrequested() {
            let c = ctx.clone();
            let name = format!("{run}/checkpoints/{file}");
            entry.request(|| {
                src.fetch(ctx, run, &format!("checkpoints/{file}"), move |b| filters_from_safetensors(&c, &name, &b))
            });
        }
        entry
    }
}

/// The embedding's arrays must agree in length and its indices must be in range, so the
/// views can index without checking. Labels are either one per point or none (unlabeled).
fn check_embedding(file: &EmbeddingFile) -> Result<(), String> {
    let n = file.pca.len();
    let labels_ok = file.labels.len() == n || file.labels.is_empty();
    if !labels_ok || file.neighbours.len() != n || file.tsne.as_ref().is_some_and(|t| t.len() != n) {
        return Err(format!("its arrays disagree in length ({} labels, {n} points)", file.labels.len()));
    }
    if file.labels.iter().any(|&l| l as usize >= file.classes.len().max(1)) {
        return Err("a label is not one of its classes".into());
    }
    if file.neighbours.iter().flatten().any(|&j| j as usize >= n) {
        return Err("a neighbour index is out of range".into());
    }
    if file.atlas.columns == 0 || file.atlas.size == 0 {
        return Err("its atlas has no columns".into());
    }
    if let Some(a) = &file.attention
        && (a.columns == 0 || a.heads == 0 || a.rows == 0 || a.cols == 0 || a.patch == 0)
    {
        return Err("its attention atlas has an empty layout".into());
    }
    Ok(())
}
