//! Jigsaw puzzles (Noroozi & Favaro 2016) as a Pretext plugin.
//!
//! Each image is cut into a 3×3 grid of tiles (2×2 with `grid = 2`), each tile cut at a
//! random offset inside its cell so that a gap separates neighbours and edges do not line
//! up. One permutation from a fixed, seeded set of permutations far apart in Hamming
//! distance reorders the tiles; every tile is encoded by the shared backbone and a shared
//! per-tile layer (the paper's `fc6`), the tile features are concatenated in tile order, and
//! an MLP predicts the index of the permutation applied. The seed article's listing instead
//! used the identity order as the label and stacked tiles into one image.
//!
//! For small images such as Fashion-MNIST's 28×28, 3×3 tiles are 7 pixels wide, far from
//! the scale the backbone is evaluated at; `grid = 2` with `permutations = 24` and a random
//! resized crop of the image before cutting (`crop_scale`) learn better features there (see
//! docs/benchmarks.md and bench/quality/jigsaw.toml).
//!
//! Against low-level shortcuts the paper also normalises every tile on its own; here each
//! tile takes the mean and standard deviation of its whole image (`tile_norm`), and tiles
//! can get their own brightness and contrast jitter (`tile_jitter`).

pub mod permutations;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use pretext_sdk::augment::{Image, check_crop_scale, color_jitter, normalize_tiles, random_zoom, tiles};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::task::heads::{Dense, Mlp};
use pretext_sdk::task::losses::classification;
use pretext_sdk::task::{ImageRngs, InputSpec, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use permutations::{Permutation, maximal_hamming_set};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JigsawConfig {
    /// Tiles per side: 3 (the paper's 3×3 puzzle) or 2 (2×2, larger tiles, 24 orders).
    pub grid: usize,
    /// Size of the permutation set, i.e. the number of classes (at most `grid²!`).
    pub permutations: usize,
    /// Seed of the permutation set (kept apart from the run seed so the classes stay fixed).
    pub permutation_seed: u64,
    /// Area range of a random resized crop of the whole image (aspect ratio 3/4 to 4/3, back
    /// to full size) before it is cut into tiles; `[1.0, 1.0]` turns it off.
    pub crop_scale: (f32, f32),
    /// Tile side as a fraction of the cell side; the rest is the random gap.
    pub tile_fraction: f32,
    /// Hidden size of the classifier over the concatenated tile features.
    pub hidden_dim: usize,
    /// Size of a layer (Linear → BatchNorm → ReLU) shared by all tiles before they
    /// are concatenated, the paper's per-tile `fc6`: it keeps the backbone's own output
    /// from having to encode tile positions linearly. 0 concatenates the backbone features.
    pub tile_dim: usize,
    /// Per-tile normalisation (Noroozi & Favaro): shift and scale every tile, per channel,
    /// to the mean and standard deviation of its whole image, so that a tile's brightness
    /// and contrast do not give its position away.
    pub tile_norm: bool,
    /// Strength of a brightness and contrast jitter drawn for every tile on its own (as
    /// torchvision's `ColorJitter(b, b)`); 0 turns it off. Applied before `tile_norm`,
    /// which undoes most of it, so it matters mainly with `tile_norm` off.
    pub tile_jitter: f32,
}

impl Default for JigsawConfig {
    fn default() -> Self {
        Self {
            grid: 3,
            permutations: 100,
            permutation_seed: 1,
            crop_scale: (1.0, 1.0),
            tile_fraction: 0.85,
            hidden_dim: 512,
            tile_dim: 128,
            tile_norm: true,
            tile_jitter: 0.0,
        }
    }
}

pub struct Jigsaw {
    grid: usize,
    crop_scale: (f32, f32),
    perms: Vec<Permutation>,
    tile: usize,
    hidden_dim: usize,
    tile_dim: usize,
    tile_norm: bool,
    tile_jitter: f32,
}

/// The optional per-tile layer, then an MLP from the concatenated tile features to
/// the permutation logits.
pub struct PermutationHead {
    tile: Option<Dense>,
    classifier: Mlp,
}

/// Puts tile `perm[j]` at position `j`.
pub fn arrange(tiles: &[Image], perm: &Permutation) -> Vec<Image> {
    perm.iter().map(|&k| tiles[usize::from(k)].clone()).collect()
}

impl Jigsaw {
    pub fn permutations(&self) -> &[Permutation] {
        &self.perms
    }

    /// The shuffled tiles of image `i` and the index of the permutation applied.
    pub fn puzzle(&self, batch: &ByteImages, i: usize, rng: &mut StdRng) -> (Vec<Image>, usize) {
        let whole = random_zoom(Image::from_bytes(batch, i), self.crop_scale, rng);
        let mut cut = tiles(&whole, self.grid, self.tile, rng);
        if self.tile_jitter > 0.0 {
            for t in &mut cut {
                *t = color_jitter(t, self.tile_jitter, self.tile_jitter, 0.0, 0.0, rng);
            }
        }
        if self.tile_norm {
            normalize_tiles(&mut cut, &whole);
        }
        let label = rng.random_range(0..self.perms.len());
        (arrange(&cut, &self.perms[label]), label)
    }

    /// The classification loss of the permutation from the tiles' backbone features (rows in
    /// puzzle order, grid² per image).
    fn permutation_loss(
        &self,
        head: &PermutationHead,
        features: &Tensor,
        targets: &Tensor,
    ) -> candle_core::Result<TaskOutput> {
        let tiles = match &head.tile {
            None => features.clone(),
            Some(layer) => layer.forward_t(features, true)?,
        };
        let (rows, dim) = tiles.dims2()?;
        // One row of grid²·D per image.
        let n = self.grid * self.grid;
        let per_image = tiles.reshape((rows / n, n * dim))?;
        classification(&head.classifier.forward_t(&per_image, true)?, targets)
    }
}

impl PretextTask for Jigsaw {
    type Config = JigsawConfig;
    type Head = PermutationHead;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "jigsaw".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Jigsaw: predict which permutation shuffled a grid of tiles".into(),
            samples: "the shuffled tiles of each image and the permutation applied".into(),
        }
    }

    fn new(config: JigsawConfig, input: InputSpec) -> Result<Self, TaskError> {
        if !(2..=3).contains(&config.grid) {
            return Err(TaskError::Config(format!("grid must be 2 or 3, got {}", config.grid)));
        }
        if config.permutations < 2 || config.permutations > 1000 {
            return Err(TaskError::Config("permutations must be between 2 and 1000".into()));
        }
        if !(config.tile_jitter >= 0.0 && config.tile_jitter.is_finite()) {
            return Err(TaskError::Config("tile_jitter must be a non-negative number".into()));
        }
        check_crop_scale(config.crop_scale).map_err(TaskError::Config)?;
        if !(config.tile_fraction > 0.0 && config.tile_fraction <= 1.0) {
            return Err(TaskError::Config("tile_fraction must be in (0, 1]".into()));
        }
        let cell = input.height.min(input.width) / config.grid;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let tile = ((cell as f32 * config.tile_fraction).floor() as usize).max(1);
        if cell < 2 {
            return Err(TaskError::Config(format!(
                "{}×{} images are too small for {2}×{2} tiles",
                input.height, input.width, config.grid
            )));
        }
        let tiles = u8::try_from(config.grid * config.grid).unwrap_or(u8::MAX);
        let perms = maximal_hamming_set(config.permutations, tiles, config.permutation_seed);
        if perms.len() < config.permutations {
            return Err(TaskError::Config(format!(
                "a {0}×{0} grid has only {1} orders of its tiles, fewer than permutations = {2}",
                config.grid,
                perms.len(),
                config.permutations
            )));
        }
        Ok(Self {
            grid: config.grid,
            crop_scale: config.crop_scale,
            perms,
            tile,
            hidden_dim: config.hidden_dim,
            tile_dim: config.tile_dim,
            tile_norm: config.tile_norm,
            tile_jitter: config.tile_jitter,
        })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let mut images = FloatImages::empty(batch.c, self.tile, self.tile);
        let mut targets = Vec::with_capacity(batch.n);
        for i in 0..batch.n {
            let (shuffled, label) = self.puzzle(batch, i, rngs.image(i));
            for t in &shuffled {
                t.push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
            }
            targets.push(u32::try_from(label).unwrap_or(0));
        }
        Ok(Views::new(images, targets))
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<PermutationHead> {
        let (tile, tile_dim) = match self.tile_dim {
            0 => (None, feature_dim),
            dim => (Some(Dense::new(feature_dim, dim, true, vb.pp("tile"))?), dim),
        };
        let classifier = Mlp::new(self.grid * self.grid * tile_dim, self.hidden_dim, self.perms.len(), false, vb)?;
        Ok(PermutationHead { tile, classifier })
    }

    fn loss(&self, step: &mut Step<'_, PermutationHead>) -> candle_core::Result<TaskOutput> {
        self.permutation_loss(step.head(), &step.features()?, step.targets()?)
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            let (shuffled, label) = self.puzzle(batch, i, rngs.image(i));
            let perm = &self.perms[label];
            for (pos, t) in shuffled.into_iter().enumerate() {
                out.push(Sample {
                    group: i,
                    caption: format!("permutation {label}: position {pos} holds tile {}", perm[pos]),
                    image: t.into_batch(),
                });
            }
        }
        Ok(out)
    }
}

pretext_sdk::export_plugin!(Jigsaw);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    use super::*;

    #[test]
    fn the_label_is_the_index_of_the_permutation_applied() {
        for (grid, permutations, tile) in [(3, 100, 8), (2, 24, 12)] {
            let config = JigsawConfig { grid, permutations, tile_norm: false, ..JigsawConfig::default() };
            let task = Jigsaw::new(config, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).unwrap();
            // Each cell is filled with its own index, so any tile cut from it, wherever the
            // jitter puts it, shows which cell it came from.
            let cell = 30 / grid;
            let data: Vec<u8> =
                (0..30 * 30).map(|p| u8::try_from((p / 30 / cell) * grid + (p % 30) / cell).unwrap() * 20).collect();
            let batch = ByteImages::new(1, 1, 30, 30, data).unwrap();
            for seed in 0..20 {
                let views = task.make_views(&batch, &mut ImageRngs::from_seed(seed, batch.n)).unwrap();
                assert_eq!((views.groups[0].n, views.groups[0].h), (grid * grid, tile));
                let perm = &task.permutations()[views.targets[0] as usize];
                for (pos, &cell) in perm.iter().enumerate() {
                    let tile = views.groups[0].one(pos).to_bytes();
                    assert!(tile.data.iter().all(|&v| v == cell * 20), "position {pos} should hold tile {cell}");
                }
            }
        }
    }

    #[test]
    fn tiles_are_normalised_to_the_image_statistics() {
        let input = InputSpec { channels: 1, height: 30, width: 30, patch_size: None };
        let task = Jigsaw::new(JigsawConfig { tile_jitter: 0.5, ..JigsawConfig::default() }, input).unwrap();
        // A bright textured band over a dark one: tile statistics differ by position.
        let data: Vec<u8> =
            (0..30 * 30usize).map(|p| if p / 30 < 10 { 150 + u8::try_from(p % 7).unwrap() * 15 } else { 20 }).collect();
        let batch = ByteImages::new(1, 1, 30, 30, data).unwrap();
        let whole = pretext_sdk::augment::channel_mean_std(&Image::from_bytes(&batch, 0))[0];
        let views = task.make_views(&batch, &mut ImageRngs::from_seed(3, batch.n)).unwrap();
        for pos in 0..9 {
            let tile = Image::from_floats(&views.groups[0], pos);
            let (mean, std) = pretext_sdk::augment::channel_mean_std(&tile)[0];
            assert!((mean - whole.0).abs() < 1e-4, "tile {pos}: mean {mean}, image mean {}", whole.0);
            // Flat tiles (the dark band) keep no spread; textured ones take the image's.
            assert!(std < 1e-4 || (std - whole.1).abs() < 1e-4, "tile {pos}: std {std}, image std {}", whole.1);
        }
    }

    #[test]
    fn the_tile_layer_is_shared_by_the_nine_tiles() {
        use candle_core::{DType, Device};
        use candle_nn::VarMap;

        let config = JigsawConfig { permutations: 10, hidden_dim: 16, tile_dim: 4, ..JigsawConfig::default() };
        let task = Jigsaw::new(config, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).unwrap();
        let map = VarMap::new();
        let head = task.build_head(6, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
        let shapes: std::collections::BTreeMap<String, Vec<usize>> =
            map.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
        // One 6 → 4 layer for every tile, then 9·4 concatenated features → 16 → 10 classes.
        assert_eq!(shapes["tile.0.weight"], vec![4, 6]);
        assert_eq!(shapes["0.weight"], vec![16, 36]);
        assert_eq!(shapes["2.weight"], vec![10, 16]);
        // Two images' worth of tile features (18 rows) → two permutation predictions.
        let features = (Tensor::arange(0f32, 108.0, &Device::Cpu).unwrap().reshape((18, 6)).unwrap() / 108.0).unwrap();
        let targets = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
        let out = task.permutation_loss(&head, &features, &targets).unwrap();
        assert!(out.loss.to_scalar::<f32>().unwrap().is_finite());
    }

    #[test]
    fn tiny_images_and_bad_settings_are_refused() {
        let input = InputSpec { channels: 1, height: 5, width: 5, patch_size: None };
        assert!(Jigsaw::new(JigsawConfig::default(), input).is_err());
        let bad = JigsawConfig { permutations: 1, ..JigsawConfig::default() };
        assert!(Jigsaw::new(bad, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).is_err());
        let bad = JigsawConfig { tile_jitter: -0.1, ..JigsawConfig::default() };
        assert!(Jigsaw::new(bad, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).is_err());
        for grid in [0, 1, 4] {
            let bad = JigsawConfig { grid, ..JigsawConfig::default() };
            assert!(
                Jigsaw::new(bad, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).is_err(),
                "grid {grid}"
            );
        }
        for crop_scale in [(0.0, 1.0), (0.8, 0.5), (0.5, 1.5)] {
            let bad = JigsawConfig { crop_scale, ..JigsawConfig::default() };
            assert!(
                Jigsaw::new(bad, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).is_err(),
                "{crop_scale:?}"
            );
        }
        // A 2×2 grid has 4! = 24 orders, fewer than the default 100 classes.
        let bad = JigsawConfig { grid: 2, ..JigsawConfig::default() };
        assert!(Jigsaw::new(bad, InputSpec { channels: 1, height: 30, width: 30, patch_size: None }).is_err());
    }
}
