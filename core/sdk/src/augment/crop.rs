//! Cropping and bilinear resizing, including torchvision's `RandomResizedCrop`.
//!
//! Used by SimCLR-style views and anywhere a task needs a fixed output size. Resampling is
//! plain bilinear with half-pixel centres (PyTorch's `align_corners=False`) and no
//! antialiasing; these functions must not clamp or otherwise change pixel values.

use rand::Rng;

use super::image::Image;

/// A crop rectangle in pixels: top-left corner and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// The `height`×`width` region of `img` whose top-left corner is (`top`, `left`). Pixels of
/// the region outside the image are zero, as with torchvision's `F.crop`.
pub fn crop(img: &Image, top: usize, left: usize, height: usize, width: usize) -> Image {
    let mut out = Image::zeros(img.c, height, width);
    let rows = img.h.saturating_sub(top).min(height);
    let cols = img.w.saturating_sub(left).min(width);
    for ch in 0..img.c {
        for y in 0..rows {
            let src = (ch * img.h + top + y) * img.w + left;
            let dst = (ch * height + y) * width;
            out.data[dst..dst + cols].copy_from_slice(&img.data[src..src + cols]);
        }
    }
    out
}

/// torchvision's `RandomCrop(size, padding=pad)` at the image's own size: `img` shifted by a
/// uniformly random offset of up to `pad` pixels along each axis, the uncovered border
/// zero. `pad == 0` returns the image unchanged.
pub fn pad_crop(img: &Image, pad: usize, rng: &mut impl Rng) -> Image {
    if pad == 0 {
        return img.clone();
    }
    let (dy, dx) = (rng.random_range(0..=2 * pad), rng.random_range(0..=2 * pad));
    let mut out = Image::zeros(img.c, img.h, img.w);
    // Output pixel (y, x) is input pixel (y + dy - pad, x + dx - pad) where that exists.
    let span = |len: usize, d: usize| (pad.saturating_sub(d), (len + pad).saturating_sub(d).min(len));
    let ((y0, y1), (x0, x1)) = (span(img.h, dy), span(img.w, dx));
    for ch in 0..img.c {
        for y in y0..y1 {
            let src = (ch * img.h + y + dy - pad) * img.w + x0 + dx - pad;
            let dst = (ch * img.h + y) * img.w + x0;
            out.data[dst..dst + (x1 - x0)].copy_from_slice(&img.data[src..src + (x1 - x0)]);
        }
    }
    out
}

/// For each output index along one axis: the two source indices and the weight of the second,
/// with PyTorch's half-pixel mapping, clamped at the edges.
fn axis_weights(src_len: usize, dst_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = src_len as f32 / dst_len as f32;
    let last = src_len.saturating_sub(1);
    (0..dst_len)
        .map(|d| {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
            // `s` is non-negative and below `src_len`, so the cast is exact after floor.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i0 = (s.floor() as usize).min(last);
            let i1 = (i0 + 1).min(last);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

/// `img` resampled to `out_h`×`out_w` with bilinear interpolation. An empty input gives a zero
/// image of the requested size.
pub fn resize_bilinear(img: &Image, out_h: usize, out_w: usize) -> Image {
    if img.h == 0 || img.w == 0 {
        return Image::zeros(img.c, out_h, out_w);
    }
    if img.h == out_h && img.w == out_w {
        return img.clone();
    }
    let ys = axis_weights(img.h, out_h);
    let xs = axis_weights(img.w, out_w);
    let mut out = Image::zeros(img.c, out_h, out_w);
    for ch in 0..img.c {
        let src = img.plane(ch);
        let dst = out.plane_mut(ch);
        for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
            let r0 = &src[y0 * img.w..(y0 + 1) * img.w];
            let r1 = &src[y1 * img.w..(y1 + 1) * img.w];
            for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                dst[oy * out_w + ox] = top + (bottom - top) * fy;
            }
        }
    }
    out
}

/// The region `region` of `img`, resized to `out_h`×`out_w`.
pub fn resized_crop(img: &Image, region: CropBox, out_h: usize, out_w: usize) -> Image {
    let cropped = crop(img, region.top, region.left, region.height, region.width);
    resize_bilinear(&cropped, out_h, out_w)
}

fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// Aspect-ratio range of SimCLR's (and torchvision's default) random resized crop.
pub const DEFAULT_CROP_RATIO: (f32, f32) = (3.0 / 4.0, 4.0 / 3.0);

/// Checks an area range for [`random_resized_crop`]: `0 < low <= high <= 1`. The error is
/// one sentence for a task's configuration error.
pub fn check_crop_scale((lo, hi): (f32, f32)) -> Result<(), String> {
    if 0.0 < lo && lo <= hi && hi <= 1.0 {
        Ok(())
    } else {
        Err(format!("crop_scale must satisfy 0 < low <= high <= 1, got [{lo}, {hi}]"))
    }
}

/// torchvision's `RandomResizedCrop.get_params`: up to ten tries at a box covering a random
/// fraction `scale` of the area with a log-uniform aspect ratio (width/height) in `ratio`,
/// then a centre crop clamped to `ratio`.
pub fn random_resized_crop_params(
    h: usize,
    w: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut impl Rng,
) -> CropBox {
    let area = (h * w) as f32;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        // Rounded positive sizes; NaN from a bad ratio casts to 0 and is rejected below.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let cw = (target_area * aspect).sqrt().round() as usize;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ch = (target_area / aspect).sqrt().round() as usize;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return CropBox { top, left, height: ch, width: cw };
        }
    }
    let in_ratio = w as f32 / h as f32;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (ch, cw) = if in_ratio < lo {
        (((w as f32 / lo).round() as usize).min(h), w)
    } else if in_ratio > hi {
        (h, ((h as f32 * hi).round() as usize).min(w))
    } else {
        (h, w)
    };
    CropBox { top: (h - ch) / 2, left: (w - cw) / 2, height: ch, width: cw }
}

/// torchvision's `RandomResizedCrop((out_h, out_w), scale, ratio)` with bilinear resampling.
pub fn random_resized_crop(
    img: &Image,
    out_h: usize,
    out_w: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut impl Rng,
) -> Image {
    let region = random_resized_crop_params(img.h, img.w, scale, ratio, rng);
    resized_crop(img, region, out_h, out_w)
}

/// A random resized crop of `img` back to its own size (area range `scale`, aspect ratio
/// [`DEFAULT_CROP_RATIO`]), the tasks' "zoom in on part of the image" augmentation.
/// `scale` starting at 1 means off: `img` comes back as it is and nothing is drawn from
/// `rng`, so turning the option off leaves every later draw as it was.
pub fn random_zoom(img: Image, scale: (f32, f32), rng: &mut impl Rng) -> Image {
    if scale.0 < 1.0 { random_resized_crop(&img, img.h, img.w, scale, DEFAULT_CROP_RATIO, rng) } else { img }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        let n = c * h * w;
        Image { c, h, w, data: (0..n).map(|i| i as f32 / n as f32).collect() }
    }

    #[test]
    fn crop_copies_and_pads() {
        let img = Image { c: 1, h: 2, w: 3, data: vec![1., 2., 3., 4., 5., 6.] };
        assert_eq!(crop(&img, 0, 1, 2, 2).data, vec![2., 3., 5., 6.]);
        assert_eq!(crop(&img, 1, 2, 2, 2).data, vec![6., 0., 0., 0.]);
    }

    #[test]
    fn pad_crop_shifts_within_the_padding() {
        let img = ramp(2, 6, 5);
        let mut rng = StdRng::seed_from_u64(4);
        assert_eq!(pad_crop(&img, 0, &mut rng), img);
        let mut shifts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let out = pad_crop(&img, 2, &mut rng);
            assert_eq!((out.c, out.h, out.w), (2, 6, 5));
            // Find the shift from any surviving pixel, then check every pixel against it.
            let (sy, sx) = (-2..=2)
                .flat_map(|sy| (-2..=2).map(move |sx| (sy, sx)))
                .find(|&(sy, sx): &(isize, isize)| {
                    (0..6).all(|y| {
                        (0..5).all(|x| {
                            let (iy, ix) = (y as isize + sy, x as isize + sx);
                            let want = if (0..6).contains(&iy) && (0..5).contains(&ix) {
                                img.at(1, iy as usize, ix as usize)
                            } else {
                                0.0
                            };
                            out.at(1, y, x) == want
                        })
                    })
                })
                .unwrap_or_else(|| panic!("every output is the input shifted by at most the padding"));
            shifts.insert((sy, sx));
        }
        assert_eq!(shifts.len(), 25, "all 5×5 shifts occur: {shifts:?}");
    }

    #[test]
    fn full_scale_square_crop_is_identity() {
        let img = ramp(3, 16, 16);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..5 {
            let out = random_resized_crop(&img, 16, 16, (1.0, 1.0), (1.0, 1.0), &mut rng);
            let diff = out.data.iter().zip(&img.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-5, "max diff {diff}");
        }
    }

    #[test]
    fn random_crop_box_is_inside_and_sized() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..200 {
            let b = random_resized_crop_params(32, 24, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(b.height > 0 && b.width > 0);
            assert!(b.top + b.height <= 32 && b.left + b.width <= 24);
        }
        let out = random_resized_crop(&ramp(3, 32, 24), 20, 20, (0.2, 1.0), (0.75, 1.33), &mut rng);
        assert_eq!((out.c, out.h, out.w, out.data.len()), (3, 20, 20, 1200));
    }

    #[test]
    fn fallback_is_centre_crop() {
        // No box of a 1×10 image has an aspect ratio near 1 and area ≥ 50%, so all ten tries
        // fail and the fallback clamps the ratio.
        let mut rng = StdRng::seed_from_u64(3);
        let b = random_resized_crop_params(1, 10, (0.5, 1.0), (1.0, 1.0), &mut rng);
        assert_eq!(b, CropBox { top: 0, left: 4, height: 1, width: 1 });
    }

    #[test]
    fn resize_matches_pytorch_bilinear() {
        // F.interpolate(torch.tensor([[[[0., 1.]]]]), size=(1, 4), mode="bilinear",
        // align_corners=False) == [0, 0.25, 0.75, 1].
        let img = Image { c: 1, h: 1, w: 2, data: vec![0., 1.] };
        let out = resize_bilinear(&img, 1, 4);
        assert_eq!(out.data, vec![0.0, 0.25, 0.75, 1.0]);
        let down = resize_bilinear(&ramp(1, 4, 4), 2, 2);
        assert_eq!(down.data.len(), 4);
    }

    #[test]
    fn seeded_crops_are_deterministic() {
        let img = ramp(3, 32, 32);
        let a = random_resized_crop(&img, 24, 24, (0.2, 1.0), (0.75, 1.33), &mut StdRng::seed_from_u64(9));
        let b = random_resized_crop(&img, 24, 24, (0.2, 1.0), (0.75, 1.33), &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
    }
}
