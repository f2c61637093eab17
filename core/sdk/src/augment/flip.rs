//! Mirror flips and exact quarter-turn rotations.
//!
//! The rotation pretext task's labels depend on `rot90` agreeing with PyTorch, so it must
//! stay an exact index permutation (no resampling, no value changes) and keep torch's
//! direction convention.

use super::image::Image;

/// The image mirrored left–right.
pub fn hflip(img: &Image) -> Image {
    let mut out = img.clone();
    for row in out.data.chunks_exact_mut(img.w.max(1)) {
        row.reverse();
    }
    out
}

/// The image mirrored top–bottom.
pub fn vflip(img: &Image) -> Image {
    let mut out = Image::zeros(img.c, img.h, img.w);
    let w = img.w;
    for ch in 0..img.c {
        for y in 0..img.h {
            let src = (ch * img.h + y) * w;
            let dst = (ch * img.h + img.h - 1 - y) * w;
            out.data[dst..dst + w].copy_from_slice(&img.data[src..src + w]);
        }
    }
    out
}

/// The image rotated by `k` quarter turns counter-clockwise (as displayed, with row 0 at the
/// top), exactly `torch.rot90(x, k, dims=(1, 2))` on a CHW tensor; negative `k` turns
/// clockwise. For `k = 1` the top-right pixel becomes the top-left one:
/// `[[1, 2, 3], [4, 5, 6]]` becomes `[[3, 6], [2, 5], [1, 4]]`. Odd `k` swaps `h` and `w`.
pub fn rot90(img: &Image, k: i32) -> Image {
    let (h, w) = (img.h, img.w);
    let k = k.rem_euclid(4);
    if k == 0 {
        return img.clone();
    }
    let (oh, ow) = if k % 2 == 1 { (w, h) } else { (h, w) };
    let mut out = Image::zeros(img.c, oh, ow);
    for ch in 0..img.c {
        let src = img.plane(ch);
        let dst = out.plane_mut(ch);
        for i in 0..oh {
            for j in 0..ow {
                let (y, x) = match k {
                    1 => (j, w - 1 - i),
                    2 => (h - 1 - i, w - 1 - j),
                    _ => (h - 1 - j, i),
                };
                dst[i * ow + j] = src[y * w + x];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_by_three() -> Image {
        Image { c: 1, h: 2, w: 3, data: vec![1., 2., 3., 4., 5., 6.] }
    }

    #[test]
    fn rot90_matches_torch_by_hand() {
        let img = two_by_three();
        // torch.rot90(torch.tensor([[[1, 2, 3], [4, 5, 6]]]), k, dims=(1, 2))
        let r1 = rot90(&img, 1);
        assert_eq!((r1.h, r1.w), (3, 2));
        assert_eq!(r1.data, vec![3., 6., 2., 5., 1., 4.]);
        let r2 = rot90(&img, 2);
        assert_eq!((r2.h, r2.w), (2, 3));
        assert_eq!(r2.data, vec![6., 5., 4., 3., 2., 1.]);
        let r3 = rot90(&img, 3);
        assert_eq!((r3.h, r3.w), (3, 2));
        assert_eq!(r3.data, vec![4., 1., 5., 2., 6., 3.]);
        assert_eq!(rot90(&img, -1), r3);
        assert_eq!(rot90(&img, 5), r1);
    }

    #[test]
    fn four_rotations_are_identity() {
        let img = Image { c: 2, h: 3, w: 5, data: (0..30).map(|v| v as f32).collect() };
        let mut r = img.clone();
        for _ in 0..4 {
            r = rot90(&r, 1);
        }
        assert_eq!(r, img);
        assert_eq!(rot90(&rot90(&img, 1), 3), img);
    }

    #[test]
    fn flips_twice_are_identity() {
        let img = two_by_three();
        assert_eq!(hflip(&img).data, vec![3., 2., 1., 6., 5., 4.]);
        assert_eq!(vflip(&img).data, vec![4., 5., 6., 1., 2., 3.]);
        assert_eq!(hflip(&hflip(&img)), img);
        assert_eq!(vflip(&vflip(&img)), img);
        // Two flips are a half turn.
        assert_eq!(hflip(&vflip(&img)), rot90(&img, 2));
    }
}
