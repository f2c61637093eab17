//! The two Winograd filterings used here, F(2×2, 3×3) and F(4×4, 3×3), as the 1-D
//! transforms every tile transform is built from (Lavin & Gray, 2016).
//!
//! A tile gives `TILE`×`TILE` outputs from a `PATCH`×`PATCH` input patch, PATCH = TILE + 2,
//! with PATCH² products per tile and channel pair instead of 9·TILE². F(4×4) does 4× fewer
//! multiply-adds than direct convolution, F(2×2) 2.25×, but its kernels transform into
//! 36 matrices instead of 16, so it only pays where the maps are large next to the kernels
//! (see `super::uses_f4`). Vectors here are one channel's values along a patch row or
//! column, padded to [`MAX_PATCH`] entries; a variant reads and writes only its first
//! `PATCH` (or `TILE`) of them. This file must not know about images or buffers.

/// The largest patch side (F(4×4, 3×3)'s).
pub(super) const MAX_PATCH: usize = 6;

/// One patch row or column of one channel.
pub(super) type Line = [f32; MAX_PATCH];

/// Lane indices `[PATCH·y + x]` of each patch row (`cols` false) or column.
const fn lines(patch: usize, cols: bool) -> [[usize; MAX_PATCH]; MAX_PATCH] {
    let mut out = [[0; MAX_PATCH]; MAX_PATCH];
    let mut y = 0;
    while y < patch {
        let mut x = 0;
        while x < patch {
            out[y][x] = if cols { x * patch + y } else { y * patch + x };
            x += 1;
        }
        y += 1;
    }
    out
}

pub(super) trait Variant {
    /// Outputs per tile side.
    const TILE: usize;
    /// Inputs per tile side.
    const PATCH: usize = Self::TILE + 2;
    /// Positions ξ of a transformed tile: the number of products.
    const XI: usize = Self::PATCH * Self::PATCH;
    const ROWS: [[usize; MAX_PATCH]; MAX_PATCH] = lines(Self::PATCH, false);
    const COLS: [[usize; MAX_PATCH]; MAX_PATCH] = lines(Self::PATCH, true);

    /// `Bᵀ v` (input patch to transformed tile).
    fn bt(v: Line) -> Line;
    /// `B v` (transformed gradient back to the patch).
    fn b(v: Line) -> Line;
    /// `Aᵀ v` (transformed tile to outputs), in the first `TILE` places.
    fn at(v: Line) -> Line;
    /// `A v` of the first `TILE` places (output gradient to transformed tile).
    fn a(v: Line) -> Line;
    /// `G v` for a kernel row or column's three taps.
    fn g(v: [f32; 3]) -> Line;
    /// `Gᵀ v`, the kernel gradient's way back to three taps.
    fn gt(v: Line) -> [f32; 3];
}

/// F(2×2, 3×3): a 4×4 patch per 2×2 outputs; every transform is additions and halvings,
/// so results round as the lowered convolution's nearly do.
pub(super) struct F2;

impl Variant for F2 {
    const TILE: usize = 2;

    #[inline(always)]
    fn bt(v: Line) -> Line {
        [v[0] - v[2], v[1] + v[2], v[2] - v[1], v[1] - v[3], 0.0, 0.0]
    }

    #[inline(always)]
    fn b(v: Line) -> Line {
        [v[0], v[1] - v[2] + v[3], v[1] + v[2] - v[0], -v[3], 0.0, 0.0]
    }

    #[inline(always)]
    fn at(v: Line) -> Line {
        [v[0] + v[1] + v[2], v[1] - v[2] - v[3], 0.0, 0.0, 0.0, 0.0]
    }

    #[inline(always)]
    fn a(v: Line) -> Line {
        [v[0], v[0] + v[1], v[0] - v[1], -v[1], 0.0, 0.0]
    }

    #[inline(always)]
    fn g(v: [f32; 3]) -> Line {
        [v[0], 0.5 * (v[0] + v[1] + v[2]), 0.5 * (v[0] - v[1] + v[2]), v[2], 0.0, 0.0]
    }

    #[inline(always)]
    fn gt(v: Line) -> [f32; 3] {
        let (s, d) = (0.5 * (v[1] + v[2]), 0.5 * (v[1] - v[2]));
        [v[0] + s, d, s + v[3]]
    }
}

/// F(4×4, 3×3): a 6×6 patch per 4×4 outputs, with the points 0, ±1, ±2 and ∞.
pub(super) struct F4;

impl Variant for F4 {
    const TILE: usize = 4;

    #[inline(always)]
    fn bt(v: Line) -> Line {
        let (s, d) = (v[4] - v[2], v[3] - v[1]);
        [
            4.0 * v[0] - 5.0 * v[2] + v[4],
            v[3] + v[4] - 4.0 * (v[1] + v[2]),
            v[4] - v[3] + 4.0 * (v[1] - v[2]),
            s + 2.0 * d,
            s - 2.0 * d,
            4.0 * v[1] - 5.0 * v[3] + v[5],
        ]
    }

    #[inline(always)]
    fn b(v: Line) -> Line {
        let (s12, d12) = (v[1] + v[2], v[2] - v[1]);
        let (s34, d34) = (v[3] + v[4], v[3] - v[4]);
        [
            4.0 * v[0],
            4.0 * (d12 + v[5]) + 2.0 * (v[4] - v[3]),
            -5.0 * v[0] - 4.0 * s12 - s34,
            -d12 + 2.0 * d34 - 5.0 * v[5],
            v[0] + s12 + s34,
            v[5],
        ]
    }

    #[inline(always)]
    fn at(v: Line) -> Line {
        let (s12, d12) = (v[1] + v[2], v[1] - v[2]);
        let (s34, d34) = (v[3] + v[4], v[3] - v[4]);
        [v[0] + s12 + s34, d12 + 2.0 * d34, s12 + 4.0 * s34, d12 + 8.0 * d34 + v[5], 0.0, 0.0]
    }

    #[inline(always)]
    fn a(v: Line) -> Line {
        let (s02, s13) = (v[0] + v[2], v[1] + v[3]);
        let (q, e) = (v[0] + 4.0 * v[2], 2.0 * v[1] + 8.0 * v[3]);
        [v[0], s02 + s13, s02 - s13, q + e, q - e, v[3]]
    }

    #[inline(always)]
    fn g(v: [f32; 3]) -> Line {
        let (even, odd) = (v[0] + v[2], v[1]);
        let (e, o) = (v[0] / 24.0 + v[2] / 6.0, odd / 12.0);
        [v[0] / 4.0, -(even + odd) / 6.0, -(even - odd) / 6.0, e + o, e - o, v[2]]
    }

    #[inline(always)]
    fn gt(v: Line) -> [f32; 3] {
        let (s12, d12) = (v[1] + v[2], v[1] - v[2]);
        let (s34, d34) = (v[3] + v[4], v[3] - v[4]);
        [v[0] / 4.0 - s12 / 6.0 + s34 / 24.0, -d12 / 6.0 + d34 / 12.0, -s12 / 6.0 + s34 / 6.0 + v[5]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each 1-D transform against its matrix, written out as in Lavin & Gray's paper, on
    /// unit vectors: so a typo in one coefficient of the factored forms above shows here.
    fn check<V: Variant>(bt: &[&[f32]], g: &[&[f32]], at: &[&[f32]]) {
        let p = V::PATCH;
        let unit = |k: usize| -> Line { std::array::from_fn(|i| f32::from(u8::from(i == k))) };
        for k in 0..p {
            for r in 0..p {
                assert_eq!(V::bt(unit(k))[r], bt[r][k], "Bᵀ[{r}][{k}]");
                assert_eq!(V::b(unit(k))[r], bt[k][r], "B[{r}][{k}]");
            }
            for r in 0..V::TILE {
                assert_eq!(V::at(unit(k))[r], at[r][k], "Aᵀ[{r}][{k}]");
            }
            for c in 0..3 {
                assert!((V::gt(unit(k))[c] - g[k][c]).abs() < 1e-7, "Gᵀ[{c}][{k}]");
            }
        }
        for k in 0..V::TILE {
            for r in 0..p {
                assert_eq!(V::a(unit(k))[r], at[k][r], "A[{r}][{k}]");
            }
        }
        for k in 0..3 {
            let e: [f32; 3] = std::array::from_fn(|i| f32::from(u8::from(i == k)));
            for r in 0..p {
                assert!((V::g(e)[r] - g[r][k]).abs() < 1e-7, "G[{r}][{k}]");
            }
        }
    }

    #[test]
    fn f2_matches_its_matrices() {
        check::<F2>(
            &[&[1., 0., -1., 0.], &[0., 1., 1., 0.], &[0., -1., 1., 0.], &[0., 1., 0., -1.]],
            &[&[1., 0., 0.], &[0.5, 0.5, 0.5], &[0.5, -0.5, 0.5], &[0., 0., 1.]],
            &[&[1., 1., 1., 0.], &[0., 1., -1., -1.]],
        );
    }

    #[test]
    fn f4_matches_its_matrices() {
        let (s, t, f) = (1. / 6., 1. / 12., 1. / 24.);
        check::<F4>(
            &[
                &[4., 0., -5., 0., 1., 0.],
                &[0., -4., -4., 1., 1., 0.],
                &[0., 4., -4., -1., 1., 0.],
                &[0., -2., -1., 2., 1., 0.],
                &[0., 2., -1., -2., 1., 0.],
                &[0., 4., 0., -5., 0., 1.],
            ],
            &[&[0.25, 0., 0.], &[-s, -s, -s], &[-s, s, -s], &[f, t, s], &[f, -t, s], &[0., 0., 1.]],
            &[
                &[1., 1., 1., 1., 1., 0.],
                &[0., 1., -1., 2., -2., 0.],
                &[0., 1., 1., 4., 4., 0.],
                &[0., 1., -1., 8., -8., 1.],
            ],
        );
    }
}
