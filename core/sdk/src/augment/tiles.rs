//! Jigsaw tiles: an image cut into a `grid`×`grid` set of square tiles.
//!
//! Each tile is cut from its own cell at a random offset, so tiles are separated by a gap of
//! random width and their edges do not line up; that keeps the jigsaw task from being solved
//! by matching low-level edge continuity. This module only cuts: it must not permute tiles
//! (the task owns the permutation and its label).

use rand::Rng;

use super::crop::crop;
use super::image::Image;

fn cells(img: &Image, grid: usize, tile: usize) -> (usize, usize, usize) {
    let (cell_h, cell_w) = (img.h / grid, img.w / grid);
    (cell_h, cell_w, tile.min(cell_h).min(cell_w))
}

/// The `grid * grid` tiles of `img` in row-major cell order. Cells are `h / grid` by
/// `w / grid` pixels (trailing pixels are dropped); from each a `tile`×`tile` square is cut
/// at a uniformly random offset. A `tile` larger than a cell is shrunk to fit; `grid == 0`
/// gives no tiles.
pub fn tiles(img: &Image, grid: usize, tile: usize, rng: &mut impl Rng) -> Vec<Image> {
    if grid == 0 {
        return Vec::new();
    }
    let (cell_h, cell_w, tile) = cells(img, grid, tile);
    let mut out = Vec::with_capacity(grid * grid);
    for gy in 0..grid {
        for gx in 0..grid {
            let dy = rng.random_range(0..=cell_h - tile);
            let dx = rng.random_range(0..=cell_w - tile);
            out.push(crop(img, gy * cell_h + dy, gx * cell_w + dx, tile, tile));
        }
    }
    out
}

/// Like [`tiles`] but each tile is centred in its cell: the deterministic variant for
/// evaluation.
pub fn tiles_centered(img: &Image, grid: usize, tile: usize) -> Vec<Image> {
    if grid == 0 {
        return Vec::new();
    }
    let (cell_h, cell_w, tile) = cells(img, grid, tile);
    let (dy, dx) = ((cell_h - tile) / 2, (cell_w - tile) / 2);
    (0..grid * grid).map(|i| crop(img, (i / grid) * cell_h + dy, (i % grid) * cell_w + dx, tile, tile)).collect()
}

/// Per-channel mean and standard deviation of `img`'s values.
pub fn channel_mean_std(img: &Image) -> Vec<(f32, f32)> {
    (0..img.c)
        .map(|ch| {
            let p = img.plane(ch);
            let n = p.len().max(1) as f32;
            let mean = p.iter().sum::<f32>() / n;
            let var = p.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            (mean, var.sqrt())
        })
        .collect()
}

/// Standard deviation under which a channel counts as flat: it is shifted, never scaled up.
const FLAT_STD: f32 = 1e-3;

/// Shifts and scales every channel of `img` so that its mean and standard deviation are
/// `target[ch]` (`(0.0, 1.0)` standardises). A flat channel only gets the mean: scaling
/// would amplify nothing but rounding noise. Values may leave `0..=1`.
pub fn standardize(img: &mut Image, target: &[(f32, f32)]) {
    let stats = channel_mean_std(img);
    for (ch, (&(mean, std), &(to_mean, to_std))) in stats.iter().zip(target).enumerate() {
        let scale = if std < FLAT_STD { 0.0 } else { to_std / std };
        for v in img.plane_mut(ch) {
            *v = to_mean + (*v - mean) * scale;
        }
    }
}

/// Per-tile normalisation (Noroozi & Favaro 2016): every tile is standardised on its own, so
/// the brightness and contrast of a tile say nothing about where it came from. Each tile is
/// given the mean and standard deviation of `whole`, the image it was cut from, so that tiles
/// keep the input statistics of whole images, which is what evaluation shows the backbone.
pub fn normalize_tiles(tiles: &mut [Image], whole: &Image) {
    let target = channel_mean_std(whole);
    for t in tiles {
        standardize(t, &target);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        Image { c, h, w, data: (0..c * h * w).map(|v| v as f32).collect() }
    }

    #[test]
    fn count_and_size() {
        let img = ramp(3, 32, 32);
        let mut rng = StdRng::seed_from_u64(0);
        let t = tiles(&img, 3, 9, &mut rng);
        assert_eq!(t.len(), 9);
        assert!(t.iter().all(|t| (t.c, t.h, t.w, t.data.len()) == (3, 9, 9, 243)));
        // Every tile lies inside its own 10×10 cell.
        for (i, t) in t.iter().enumerate() {
            let v = t.at(0, 0, 0) as usize;
            let (y, x) = (v / 32, v % 32);
            assert_eq!((y / 10, x / 10), (i / 3, i % 3));
            assert!(y % 10 <= 1 && x % 10 <= 1);
        }
        assert!(tiles(&img, 0, 4, &mut rng).is_empty());
        assert_eq!(tiles(&img, 4, 100, &mut rng)[0].h, 8);
        assert_eq!(tiles_centered(&img, 3, 8)[4].at(0, 0, 0), (11 * 32 + 11) as f32);
    }

    #[test]
    fn full_cells_reassemble() {
        let img = ramp(2, 12, 12);
        let t = tiles(&img, 3, 4, &mut StdRng::seed_from_u64(1));
        let mut back = Image::zeros(2, 12, 12);
        for (i, tile) in t.iter().enumerate() {
            for ch in 0..2 {
                for y in 0..4 {
                    for x in 0..4 {
                        back.set(ch, (i / 3) * 4 + y, (i % 3) * 4 + x, tile.at(ch, y, x));
                    }
                }
            }
        }
        assert_eq!(back, img);
        assert_eq!(tiles_centered(&img, 3, 4), t);
    }

    #[test]
    fn normalised_tiles_share_the_image_statistics() {
        let mut img = Image::zeros(2, 9, 9);
        // A dark flat corner, a bright high-contrast centre: different statistics per tile.
        for (i, v) in img.data.iter_mut().enumerate() {
            let (y, x) = ((i / 9) % 9, i % 9);
            *v = if (3..6).contains(&y) && (3..6).contains(&x) { ((i * 37) % 11) as f32 / 10.0 } else { 0.0 };
        }
        let mut cut = tiles(&img, 3, 3, &mut StdRng::seed_from_u64(0));
        let mut zero_mean = cut[4].clone();
        standardize(&mut zero_mean, &[(0.0, 1.0), (0.0, 1.0)]);
        for (mean, std) in channel_mean_std(&zero_mean) {
            assert!(mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-4, "mean {mean}, std {std}");
        }
        normalize_tiles(&mut cut, &img);
        let want = channel_mean_std(&img);
        for (i, t) in cut.iter().enumerate() {
            for (ch, (mean, std)) in channel_mean_std(t).into_iter().enumerate() {
                assert!((mean - want[ch].0).abs() < 1e-5, "tile {i}: mean {mean}");
                // The flat corners only take the mean; the textured centre takes both.
                let want_std = if i == 4 { want[ch].1 } else { 0.0 };
                assert!((std - want_std).abs() < 1e-4, "tile {i}: std {std}, want {want_std}");
            }
        }
    }

    #[test]
    fn seeded_tiles_are_deterministic() {
        let img = ramp(1, 30, 30);
        let a = tiles(&img, 3, 7, &mut StdRng::seed_from_u64(4));
        let b = tiles(&img, 3, 7, &mut StdRng::seed_from_u64(4));
        assert_eq!(a, b);
    }
}
