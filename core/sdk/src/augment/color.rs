//! Photometric transforms: torchvision's `ColorJitter`, grayscale and Gaussian blur.
//!
//! They change pixel values but never geometry; outputs stay in `0..=1` (except blur, which
//! only averages). Formulas follow torchvision's tensor implementations so that settings
//! carried over from papers mean the same thing here.

use rand::Rng;
use rand::seq::SliceRandom;

use super::image::Image;

/// ITU-R 601-2 luma weights, as torchvision's `rgb_to_grayscale`.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

fn luma_plane(img: &Image) -> Vec<f32> {
    let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
    r.iter().zip(g).zip(b).map(|((r, g), b)| LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).collect()
}

/// The luma of an RGB image copied into all three channels; images without exactly three
/// channels are returned unchanged (a single channel is already grey).
pub fn grayscale(img: &Image) -> Image {
    if img.c != 3 {
        return img.clone();
    }
    let l = luma_plane(img);
    let mut out = img.clone();
    for ch in 0..3 {
        out.plane_mut(ch).copy_from_slice(&l);
    }
    out
}

/// `img * factor`, clamped to `0..=1`.
pub fn adjust_brightness(img: &mut Image, factor: f32) {
    for v in &mut img.data {
        *v *= factor;
    }
    img.clamp_unit();
}

/// Blends towards the mean grey level (of the luma for RGB, of all values otherwise).
pub fn adjust_contrast(img: &mut Image, factor: f32) {
    if img.data.is_empty() {
        return;
    }
    let mean = if img.c == 3 {
        let l = luma_plane(img);
        l.iter().sum::<f32>() / l.len() as f32
    } else {
        img.data.iter().sum::<f32>() / img.data.len() as f32
    };
    for v in &mut img.data {
        *v = factor * *v + (1.0 - factor) * mean;
    }
    img.clamp_unit();
}

/// Blends towards the image's grayscale version; only RGB images are changed.
pub fn adjust_saturation(img: &mut Image, factor: f32) {
    if img.c != 3 {
        return;
    }
    let grey = grayscale(img);
    for (v, g) in img.data.iter_mut().zip(&grey.data) {
        *v = factor * *v + (1.0 - factor) * g;
    }
    img.clamp_unit();
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let s = cr / if maxc == 0.0 { 1.0 } else { maxc };
    let div = if cr == 0.0 { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    // Ties resolve to red, then green, as torchvision's masks do.
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0 + 1.0).rem_euclid(1.0), s, maxc)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    // `i` is a small whole number, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Rotates the hue by `shift` turns (`-0.5..=0.5`); only RGB images are changed.
pub fn adjust_hue(img: &mut Image, shift: f32) {
    if img.c != 3 {
        return;
    }
    let n = img.plane_len();
    for i in 0..n {
        let (r, g, b) = (img.data[i], img.data[n + i], img.data[2 * n + i]);
        let (h, s, v) = rgb_to_hsv(r, g, b);
        let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        img.data[i] = r;
        img.data[n + i] = g;
        img.data[2 * n + i] = b;
    }
}

fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// torchvision's `ColorJitter(brightness, contrast, saturation, hue)`: brightness, contrast
/// and saturation factors drawn from `[max(0, 1 - x), 1 + x]`, a hue shift from
/// `[-hue, hue]`, applied in a random order. A strength of 0 skips that operation.
/// Saturation and hue need colour, so they leave non-RGB images alone.
pub fn color_jitter(
    img: &Image,
    brightness: f32,
    contrast: f32,
    saturation: f32,
    hue: f32,
    rng: &mut impl Rng,
) -> Image {
    let mut order = [0u8, 1, 2, 3];
    order.shuffle(rng);
    let mut out = img.clone();
    for op in order {
        match op {
            0 if brightness > 0.0 => {
                let f = uniform(rng, (1.0 - brightness).max(0.0), 1.0 + brightness);
                adjust_brightness(&mut out, f);
            }
            1 if contrast > 0.0 => {
                let f = uniform(rng, (1.0 - contrast).max(0.0), 1.0 + contrast);
                adjust_contrast(&mut out, f);
            }
            2 if saturation > 0.0 && out.c == 3 => {
                let f = uniform(rng, (1.0 - saturation).max(0.0), 1.0 + saturation);
                adjust_saturation(&mut out, f);
            }
            3 if hue > 0.0 && out.c == 3 => {
                let hue = hue.min(0.5);
                adjust_hue(&mut out, uniform(rng, -hue, hue));
            }
            _ => {}
        }
    }
    out
}

/// torchvision's `RandomSolarize(threshold)` applied: every value at or above `threshold`
/// becomes `1 - value` (BYOL's and DINO's second view, threshold 0.5 on `0..=1`).
pub fn solarize(img: &Image, threshold: f32) -> Image {
    let mut out = img.clone();
    for v in &mut out.data {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
    out
}

/// SimCLR's blur kernel size: about 10% of the smaller side, made odd, at least 3.
pub fn gaussian_kernel_size(h: usize, w: usize) -> usize {
    (h.min(w) / 10).max(3) | 1
}

/// Index into `0..len` with reflection at the edges (`dcb|abcd|cba`), as torch's reflect pad.
fn reflect(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    // Small images are reflected repeatedly; the period of a reflected signal is 2(len-1).
    let period = 2 * (len as isize - 1);
    let m = i.rem_euclid(period);
    let m = if m >= len as isize { period - m } else { m };
    m.unsigned_abs()
}

/// Gaussian blur with standard deviation `sigma` pixels and the kernel size of
/// [`gaussian_kernel_size`], separable, reflect-padded.
pub fn gaussian_blur(img: &Image, sigma: f32) -> Image {
    gaussian_blur_with_kernel(img, sigma, gaussian_kernel_size(img.h, img.w))
}

/// Gaussian blur with an explicit kernel size (made odd). A non-positive `sigma` or an empty
/// image returns the input.
pub fn gaussian_blur_with_kernel(img: &Image, sigma: f32, ksize: usize) -> Image {
    if sigma <= 0.0 || img.h == 0 || img.w == 0 || ksize <= 1 {
        return img.clone();
    }
    let half = (ksize / 2) as isize;
    let mut kernel: Vec<f32> = (-half..=half).map(|d| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    for k in &mut kernel {
        *k /= total;
    }
    let (h, w) = (img.h, img.w);
    let mut tmp = Image::zeros(img.c, h, w);
    let mut out = Image::zeros(img.c, h, w);
    for ch in 0..img.c {
        let src = img.plane(ch);
        let mid = tmp.plane_mut(ch);
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, d) in kernel.iter().zip(-half..=half) {
                    acc += k * src[y * w + reflect(x as isize + d, w)];
                }
                mid[y * w + x] = acc;
            }
        }
        let mid = tmp.plane(ch);
        let dst = out.plane_mut(ch);
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, d) in kernel.iter().zip(-half..=half) {
                    acc += k * mid[reflect(y as isize + d, h) * w + x];
                }
                dst[y * w + x] = acc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn noise(c: usize, h: usize, w: usize, seed: u64) -> Image {
        let mut rng = StdRng::seed_from_u64(seed);
        Image { c, h, w, data: (0..c * h * w).map(|_| rng.random::<f32>()).collect() }
    }

    #[test]
    fn grayscale_uses_luma_and_equal_channels() {
        let mut img = Image::zeros(3, 2, 2);
        img.set(0, 0, 0, 1.0);
        img.set(1, 0, 1, 1.0);
        img.set(2, 1, 0, 1.0);
        img.set(0, 1, 1, 0.5);
        img.set(1, 1, 1, 0.5);
        let g = grayscale(&img);
        assert_eq!(g.c, 3);
        assert_eq!(g.plane(0), g.plane(1));
        assert_eq!(g.plane(1), g.plane(2));
        assert!((g.at(0, 0, 0) - 0.299).abs() < 1e-6);
        assert!((g.at(0, 0, 1) - 0.587).abs() < 1e-6);
        assert!((g.at(0, 1, 0) - 0.114).abs() < 1e-6);
        assert!((g.at(0, 1, 1) - 0.443).abs() < 1e-6);
        let mono = noise(1, 4, 4, 0);
        assert_eq!(grayscale(&mono), mono);
    }

    #[test]
    fn hsv_round_trip() {
        for &(r, g, b) in &[(0.2, 0.4, 0.9), (1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.0, 0.3, 0.3)] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-5 && (g - g2).abs() < 1e-5 && (b - b2).abs() < 1e-5);
        }
        // Pure red shifted by a third of a turn is pure green.
        let mut img = Image { c: 3, h: 1, w: 1, data: vec![1.0, 0.0, 0.0] };
        adjust_hue(&mut img, 1.0 / 3.0);
        assert!((img.data[0]).abs() < 1e-5 && (img.data[1] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn jitter_stays_in_unit_range_and_is_seeded() {
        let img = noise(3, 8, 8, 1);
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..50 {
            let out = color_jitter(&img, 0.8, 0.8, 0.8, 0.2, &mut rng);
            assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
            assert_ne!(out, img);
        }
        let mono = noise(1, 8, 8, 2);
        let out = color_jitter(&mono, 0.4, 0.4, 0.4, 0.1, &mut rng);
        assert_eq!(out.c, 1);
        assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let a = color_jitter(&img, 0.4, 0.4, 0.4, 0.1, &mut StdRng::seed_from_u64(7));
        let b = color_jitter(&img, 0.4, 0.4, 0.4, 0.1, &mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        assert_eq!(color_jitter(&img, 0.0, 0.0, 0.0, 0.0, &mut rng), img);
    }

    #[test]
    fn blur_keeps_constant_and_mean() {
        let flat = Image { c: 3, h: 32, w: 32, data: vec![0.37; 3 * 32 * 32] };
        let b = gaussian_blur(&flat, 1.5);
        assert!(b.data.iter().all(|v| (v - 0.37).abs() < 1e-5));
        let img = noise(3, 40, 40, 3);
        let mean = |i: &Image| i.data.iter().sum::<f32>() / i.data.len() as f32;
        let out = gaussian_blur(&img, 2.0);
        assert!((mean(&out) - mean(&img)).abs() < 0.01, "{} vs {}", mean(&out), mean(&img));
        // Blurring noise shrinks its spread.
        let var = |i: &Image| {
            let m = mean(i);
            i.data.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / i.data.len() as f32
        };
        assert!(var(&out) < var(&img) / 2.0);
        assert_eq!(gaussian_kernel_size(32, 32), 3);
        assert_eq!(gaussian_kernel_size(224, 224), 23);
        // Kernels larger than the image still reflect inside it.
        let tiny = gaussian_blur_with_kernel(&noise(1, 2, 2, 4), 3.0, 9);
        assert!(tiny.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
