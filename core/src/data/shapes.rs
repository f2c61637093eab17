//! The built-in `shapes` dataset: labelled 32×32 RGB images drawn procedurally, so that
//! training, tests and demos work with no download.
//!
//! Classes differ only in the outline of one shape; position, size, rotation, colours,
//! background gradient and noise are random, so a classifier has to learn shape rather than
//! colour or place. Images are a pure function of `(n, seed)` (and image `i` depends only on
//! `(i, seed)`, so a shorter set is a prefix of a longer one). This file must not touch files
//! or threads: it also runs in the browser viewer.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ByteImages;
use super::dataset::Dataset;

/// Side of every image, in pixels.
pub const SIZE: usize = 32;

/// Class names, in label order.
pub const CLASSES: [&str; 8] = ["circle", "square", "triangle", "cross", "ring", "star", "crescent", "bars"];

/// `n` images with labels cycling through the classes (so any prefix is balanced).
pub fn generate(n: usize, seed: u64) -> Dataset {
    let len = 3 * SIZE * SIZE;
    let mut data = vec![0u8; n * len];
    let mut labels = Vec::with_capacity(n);
    for (i, image) in data.chunks_exact_mut(len).enumerate() {
        let label = i % CLASSES.len();
        let mut rng = StdRng::seed_from_u64(image_seed(seed, i as u64));
        draw(label, &mut rng, image);
        labels.push(label as u32);
    }
    Dataset {
        name: "shapes".to_owned(),
        images: ByteImages { n, c: 3, h: SIZE, w: SIZE, data }.into(),
        labels,
        classes: CLASSES.iter().map(|&s| s.to_owned()).collect(),
    }
}

/// A well-mixed per-image seed, so neighbouring images and neighbouring seeds are unrelated.
fn image_seed(seed: u64, i: u64) -> u64 {
    splitmix(splitmix(seed) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type V2 = [f32; 2];

/// Signed distance in pixels from `q` (shape-local coordinates) to the outline of shape
/// `label` of radius `r`: negative inside.
fn distance(label: usize, q: V2, r: f32, poly: &[V2]) -> f32 {
    let len = |v: V2| v[0].hypot(v[1]);
    match label {
        0 => len(q) - r,
        1 => sd_box(q, [0.8 * r, 0.8 * r]),
        2 | 5 => sd_polygon(q, poly),
        3 => sd_box(q, [r, 0.3 * r]).min(sd_box(q, [0.3 * r, r])),
        4 => (len(q) - 0.72 * r).abs() - 0.28 * r,
        6 => (len(q) - r).max(-(len([q[0] - 0.55 * r, q[1]]) - 0.8 * r)),
        _ => (-1..=1).map(|k| sd_box([q[0], q[1] - k as f32 * 0.66 * r], [r, 0.17 * r])).fold(f32::INFINITY, f32::min),
    }
}

fn sd_box(q: V2, half: V2) -> f32 {
    let dx = q[0].abs() - half[0];
    let dy = q[1].abs() - half[1];
    dx.max(0.0).hypot(dy.max(0.0)) + dx.max(dy).min(0.0)
}

/// Exact signed distance to a closed polygon (after Inigo Quilez).
fn sd_polygon(p: V2, v: &[V2]) -> f32 {
    let Some(&first) = v.first() else {
        return f32::INFINITY;
    };
    let sq = |a: V2| a[0] * a[0] + a[1] * a[1];
    let mut d = sq([p[0] - first[0], p[1] - first[1]]);
    let mut sign = 1.0;
    let mut j = v.len() - 1;
    for i in 0..v.len() {
        let e = [v[j][0] - v[i][0], v[j][1] - v[i][1]];
        let w = [p[0] - v[i][0], p[1] - v[i][1]];
        let t = ((w[0] * e[0] + w[1] * e[1]) / sq(e)).clamp(0.0, 1.0);
        d = d.min(sq([w[0] - e[0] * t, w[1] - e[1] * t]));
        let c = [p[1] >= v[i][1], p[1] < v[j][1], e[0] * w[1] > e[1] * w[0]];
        if c.iter().all(|&b| b) || c.iter().all(|&b| !b) {
            sign = -sign;
        }
        j = i;
    }
    sign * d.sqrt()
}

/// Vertices of the triangle or star of radius `r`, in shape-local coordinates.
fn polygon(label: usize, r: f32) -> Vec<V2> {
    let (count, inner) = match label {
        2 => (3, None),
        5 => (10, Some(0.45)),
        _ => return Vec::new(),
    };
    (0..count)
        .map(|k| {
            let a = std::f32::consts::TAU * k as f32 / count as f32 - std::f32::consts::FRAC_PI_2;
            let rr = match inner {
                Some(f) if k % 2 == 1 => r * f,
                _ => r,
            };
            [rr * a.cos(), rr * a.sin()]
        })
        .collect()
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Draws one image of class `label` into `out` (planar RGB, `3 × SIZE × SIZE`).
fn draw(label: usize, rng: &mut StdRng, out: &mut [u8]) {
    let s = SIZE as f32;
    let r: f32 = rng.random_range(5.5..11.0);
    // Keep the whole shape (whose farthest point is about 1.3 r from its centre) on the image.
    let margin = 1.1 * r + 1.0;
    let cx: f32 = rng.random_range(margin..s - margin);
    let cy: f32 = rng.random_range(margin..s - margin);
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (sin, cos) = angle.sin_cos();

    let colour = |rng: &mut StdRng| [0; 3].map(|_: u8| rng.random_range(0.0..255.0f32));
    let bg0 = colour(rng);
    let bg1 = colour(rng);
    let bg_mean = luminance([0, 1, 2].map(|k| 0.5 * (bg0[k] + bg1[k])));
    // Shapes must stay visible: redraw the foreground until it stands out from the
    // background, and fall back to the opposite brightness if the dice keep refusing.
    let mut fg = colour(rng);
    for _ in 0..16 {
        if (luminance(fg) - bg_mean).abs() >= 60.0 {
            break;
        }
        fg = colour(rng);
    }
    if (luminance(fg) - bg_mean).abs() < 60.0 {
        fg = if bg_mean > 127.5 { [20.0; 3] } else { [235.0; 3] };
    }
    let grad_angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (gy, gx) = grad_angle.sin_cos();
    let noise: f32 = rng.random_range(0.0..18.0);

    let poly = polygon(label, r);
    let reach = 1.35 * r + 1.0;
    let plane = SIZE * SIZE;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let px = x as f32 + 0.5;
            let py = y as f32 + 0.5;
            let (dx, dy) = (px - cx, py - cy);
            // Pixels far from the centre cannot be covered; skipping them keeps generation fast.
            let coverage = if dx.abs() > reach || dy.abs() > reach {
                0.0
            } else {
                let q = [cos * dx + sin * dy, -sin * dx + cos * dy];
                (0.5 - distance(label, q, r, &poly)).clamp(0.0, 1.0)
            };
            let t = (((px - s / 2.0) * gx + (py - s / 2.0) * gy) / s + 0.5).clamp(0.0, 1.0);
            for ch in 0..3 {
                let bg = bg0[ch] + (bg1[ch] - bg0[ch]) * t;
                let v = bg + (fg[ch] - bg) * coverage + noise * rng.random_range(-1.0..1.0f32);
                // Clamped to the byte range first, so the cast cannot wrap.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let byte = v.round().clamp(0.0, 255.0) as u8;
                out[ch * plane + y * SIZE + x] = byte;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed_and_different_across_seeds() {
        let a = generate(40, 7);
        assert_eq!(a, generate(40, 7));
        assert_ne!(a.images, generate(40, 8).images);
        assert_eq!(generate(10, 7).images.data(), &a.images.data()[..10 * 3 * SIZE * SIZE], "prefix");
        assert_eq!((a.len(), a.channels(), a.height(), a.width()), (40, 3, 32, 32));
    }

    #[test]
    fn labels_in_range_and_balanced() {
        let d = generate(803, 1);
        assert!(d.labels.iter().all(|&l| (l as usize) < CLASSES.len()));
        let counts = d.class_counts();
        assert!(counts.iter().all(|&c| c == 100 || c == 101), "{counts:?}");
    }

    #[test]
    fn shapes_are_visible_and_distinct() {
        // The foreground must differ from the background, and the classes must not all draw
        // the same mask: compare the average "ink" of each class over many images.
        let d = generate(800, 3);
        let plane = SIZE * SIZE;
        let mut spread = vec![0.0f64; CLASSES.len()];
        for i in 0..d.len() {
            let best = d
                .images
                .image(i)
                .chunks_exact(plane)
                .map(|ch| {
                    let (lo, hi) = ch.iter().fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                    hi - lo
                })
                .max()
                .unwrap_or(0);
            spread[d.labels[i] as usize] += f64::from(best);
        }
        for (k, s) in spread.iter().enumerate() {
            assert!(s / 100.0 > 40.0, "class {} is barely visible", CLASSES[k]);
        }
    }

    #[test]
    fn polygon_distance_sign() {
        let tri = polygon(2, 10.0);
        assert!(sd_polygon([0.0, 0.0], &tri) < 0.0);
        assert!(sd_polygon([20.0, 20.0], &tri) > 0.0);
        let star = polygon(5, 10.0);
        assert!(sd_polygon([0.0, -9.0], &star) < 0.0, "a star point is inside");
        assert!(sd_polygon([0.0, 9.0], &star) > 0.0, "between two lower points is outside");
    }
}
