//! A ViT's attention maps as the greyscale atlas the viewers overlay on the embedded
//! images (layout in [`AttentionAtlas`]). It only lays out and quantises maps the
//! [`FeatureExtractor`](super::FeatureExtractor) computed; it must not run a network.

use crate::data::ByteImages;
use crate::run::AttentionAtlas;
use pretext_sdk::features::AttentionMaps;

/// The atlas image (one channel) of `maps` and its layout; `file` is left empty for the
/// caller to name. Cells are arranged in about as many pixel rows as columns.
pub fn attention_atlas(maps: &AttentionMaps) -> (ByteImages, AttentionAtlas) {
    let (n, heads, rows, cols) = (maps.images, maps.heads, maps.rows, maps.cols);
    let cell = (heads + 1) * cols;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let columns = (((n * rows) as f64 / cell.max(1) as f64).sqrt().ceil() as usize).clamp(1, n.max(1));
    let layout = AttentionAtlas { file: String::new(), heads, rows, cols, patch: maps.patch, columns };
    let width = columns * cell;
    let mut atlas = ByteImages::zeros(1, 1, n.div_ceil(columns).max(1) * rows, width);
    let len = rows * cols;
    let mut mean = vec![0f32; len];
    for i in 0..n {
        mean.iter_mut().for_each(|m| *m = 0.0);
        for head in 0..heads {
            mean.iter_mut().zip(maps.map(i, head)).for_each(|(m, v)| *m += v);
        }
        let tiles = std::iter::once(mean.as_slice()).chain((0..heads).map(|head| maps.map(i, head)));
        for (tile, map) in tiles.enumerate() {
            let (x0, y0) = layout.tile_origin(i, tile);
            let low = map.iter().copied().fold(f32::INFINITY, f32::min);
            let range = map.iter().copied().fold(0f32, f32::max) - low;
            for (k, &v) in map.iter().enumerate() {
                let level = if range > 0.0 { (v - low) / range * 255.0 } else { 0.0 };
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let level = level.round().clamp(0.0, 255.0) as u8;
                atlas.data[(y0 + k / cols) * width + x0 + k % cols] = level;
            }
        }
    }
    (atlas, layout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_tile_spans_its_own_range_and_the_mean_comes_first() {
        // Three images, two heads, a 1×3 grid.
        let one = [0.5f32, 0.25, 0.125, 0.125, 0.5, 0.25];
        let data: Vec<f32> = one.iter().copied().cycle().take(3 * 6).collect();
        let maps = AttentionMaps { images: 3, heads: 2, rows: 1, cols: 3, patch: 4, data };
        let (atlas, layout) = attention_atlas(&maps);
        assert_eq!(layout.columns, 1, "3 cells of 9×1 px stack into about a square");
        assert_eq!((atlas.h, atlas.w), (3, 9));
        for i in 0..3 {
            let (x, y) = layout.tile_origin(i, 0);
            assert_eq!((x, y), (0, i));
            let row = &atlas.data[y * 9..y * 9 + 9];
            // mean ∝ (0.625, 0.75, 0.375) → 170, 255, 0; head 0 → 255, 85, 0; head 1 → 0, 255, 85.
            assert_eq!(row, [170, 255, 0, 255, 85, 0, 0, 255, 85]);
        }
    }

    #[test]
    fn many_cells_wrap_into_columns() {
        let maps = AttentionMaps { images: 100, heads: 3, rows: 7, cols: 7, patch: 4, data: vec![0.01; 100 * 3 * 49] };
        let (atlas, layout) = attention_atlas(&maps);
        assert_eq!(layout.columns, 5, "√(100·7/28) = 5 cells across");
        assert_eq!((atlas.w, atlas.h), (5 * 28, 20 * 7));
        assert_eq!(layout.tile_origin(7, 2), (2 * 28 + 14, 7));
        assert!(atlas.data.iter().all(|&v| v == 0), "flat maps have nothing to show");
    }
}
