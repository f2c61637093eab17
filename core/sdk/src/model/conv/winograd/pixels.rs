//! Images laid out pixel by pixel, (H, W, channels), as the tile transforms read and write
//! them: a pixel's channels are one lane apart, so a tile's patch is PATCH² lane loads.
//! Conversion from and to candle's (channels, H, W) planes goes through 16×16 blocks,
//! transposed in registers where the CPU has AVX-512 (see [`transposed`]). This file must
//! not know about tiles or transforms.

use super::super::cpu::Geometry;
use super::lanes::{L, Lane, copy_lane, load_into, store};
use crate::model::kernels::vectorized;

/// Planes laid out pixel by pixel: (H, W, channels), with a zero border of `border` pixels
/// on the top and left and enough on the bottom and right for whole tiles.
pub(super) struct PixelMajor {
    pub(super) data: Vec<f32>,
    /// Pixels per row, borders included.
    pw: usize,
    pub(super) channels: usize,
    border: usize,
}

impl PixelMajor {
    /// `(rows, cols)` pixels, borders included, zeroed.
    pub(super) fn new(rows: usize, cols: usize, channels: usize, border: usize) -> Self {
        Self { data: vec![0f32; rows * cols * channels], pw: cols, channels, border }
    }

    /// Where pixel (y, x) begins.
    pub(super) fn at(&self, y: usize, x: usize) -> usize {
        (y * self.pw + x) * self.channels
    }

    /// Copies `planes` ((channels, h, w), one image) in, its pixel (y, x) at (y + border, x + border).
    pub(super) fn fill(&mut self, g: &Geometry, planes: &[f32]) {
        let (hw, border) = (g.h * g.w, self.border);
        each_block(
            hw,
            self.channels,
            #[inline(always)]
            |shuffles, c0, cn, p0, pn| {
                let mut block = [[0f32; L]; L];
                for (c, row) in block.iter_mut().enumerate().take(cn) {
                    copy_lane(row, &planes[(c0 + c) * hw + p0..], pn);
                }
                let pixels = transposed(shuffles, &block);
                for (p, lane) in pixels.iter().enumerate().take(pn) {
                    let at = self.at((p0 + p) / g.w + border, (p0 + p) % g.w + border) + c0;
                    store(&mut self.data, at, cn, lane);
                }
            },
        );
    }

    /// Copies pixels (y + border, x + border) out into `planes` ((channels, h, w)).
    pub(super) fn drain(&self, g: &Geometry, planes: &mut [f32]) {
        let (hw, border) = (g.h * g.w, self.border);
        each_block(
            hw,
            self.channels,
            #[inline(always)]
            |shuffles, c0, cn, p0, pn| {
                let mut block = [[0f32; L]; L];
                for (p, lane) in block.iter_mut().enumerate().take(pn) {
                    let at = self.at((p0 + p) / g.w + border, (p0 + p) % g.w + border) + c0;
                    load_into(lane, &self.data, at, cn);
                }
                let rows = transposed(shuffles, &block);
                for (c, row) in rows.iter().enumerate().take(cn) {
                    copy_lane(&mut planes[(c0 + c) * hw + p0..], row, pn);
                }
            },
        );
    }
}

/// Calls `f(shuffles, c0, cn, p0, pn)` for each block of `cn` ≤ [`L`] channels from `c0` by
/// `pn` ≤ [`L`] pixels from `p0` of a (channels, `hw`) image: the unit in which planes and
/// pixel-major buffers are transposed into each other, reading and writing whole rows of the
/// block. Compiled for AVX-512 with its shuffles where the CPU has it, else for the widest
/// vectors it has.
#[inline(always)]
fn each_block(hw: usize, ch: usize, f: impl FnMut(Shuffles, usize, usize, usize, usize)) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || blocks(Some(simd), hw, ch, f),
        );
    }
    vectorized(
        #[inline(always)]
        || blocks(Shuffles::default(), hw, ch, f),
    );
}

#[inline(always)]
fn blocks(shuffles: Shuffles, hw: usize, ch: usize, mut f: impl FnMut(Shuffles, usize, usize, usize, usize)) {
    for c0 in (0..ch).step_by(L) {
        for p0 in (0..hw).step_by(L) {
            f(shuffles, c0, L.min(ch - c0), p0, L.min(hw - p0));
        }
    }
}

/// AVX-512's shuffles, where the CPU has them.
#[cfg(target_arch = "x86_64")]
type Shuffles = Option<pulp::x86::V4>;
#[cfg(not(target_arch = "x86_64"))]
type Shuffles = ();

/// The transpose of an L×L block: `out[j][i] = block[i][j]`. Element by element the
/// compiler moves one float at a time through the stack, three of them per element and a
/// stalled vector load per row (a quarter of an F(4×4) layer's time); with AVX-512 it is the
/// usual four rounds of sixteen shuffles: pairs of rows interleaved by floats, then by pairs
/// of floats, which leaves every 128-bit quarter holding four rows of one column, and those
/// quarters gathered by two rounds of `shuffle_f32x4`.
#[inline(always)]
fn transposed(shuffles: Shuffles, block: &[Lane; L]) -> [Lane; L] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = shuffles {
        use pulp::cast;
        use std::arch::x86_64::{__m512, __m512d};
        // Plain loops: an intrinsic inside a closure handed to `array::from_fn` is compiled
        // outside the AVX-512 context and becomes a call.
        let avx = simd.avx512f;
        let mut r: [__m512; L] = [avx._mm512_setzero_ps(); L];
        for i in 0..L {
            r[i] = cast(block[i]);
        }
        // Floats of rows 2i and 2i + 1 interleaved, per 128-bit quarter.
        let mut t: [__m512d; L] = [avx._mm512_setzero_pd(); L];
        for i in (0..L).step_by(2) {
            t[i] = cast(avx._mm512_unpacklo_ps(r[i], r[i + 1]));
            t[i + 1] = cast(avx._mm512_unpackhi_ps(r[i], r[i + 1]));
        }
        // u[4i + j], quarter q: rows 4i..4i + 4 of column 4q + j.
        for i in (0..L).step_by(4) {
            let (t0, t1, t2, t3) = (t[i], t[i + 1], t[i + 2], t[i + 3]);
            r[i] = cast(avx._mm512_unpacklo_pd(t0, t2));
            r[i + 1] = cast(avx._mm512_unpackhi_pd(t0, t2));
            r[i + 2] = cast(avx._mm512_unpacklo_pd(t1, t3));
            r[i + 3] = cast(avx._mm512_unpackhi_pd(t1, t3));
        }
        // Column 4q + j is quarter q of u[j], u[4 + j], u[8 + j] and u[12 + j]: quarters 0
        // and 2 (1 and 3) of each pair gathered, then the same again across the pairs.
        let mut out = [[0f32; L]; L];
        for j in 0..4 {
            let (a, b, c, d) = (r[j], r[4 + j], r[8 + j], r[12 + j]);
            let even =
                (avx._mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), avx._mm512_shuffle_f32x4::<0b10_00_10_00>(c, d));
            let odd =
                (avx._mm512_shuffle_f32x4::<0b11_01_11_01>(a, b), avx._mm512_shuffle_f32x4::<0b11_01_11_01>(c, d));
            out[j] = cast(avx._mm512_shuffle_f32x4::<0b10_00_10_00>(even.0, even.1));
            out[8 + j] = cast(avx._mm512_shuffle_f32x4::<0b11_01_11_01>(even.0, even.1));
            out[4 + j] = cast(avx._mm512_shuffle_f32x4::<0b10_00_10_00>(odd.0, odd.1));
            out[12 + j] = cast(avx._mm512_shuffle_f32x4::<0b11_01_11_01>(odd.0, odd.1));
        }
        return out;
    }
    let _ = shuffles;
    std::array::from_fn(|j| std::array::from_fn(|i| block[i][j]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of transposing (AVX-512's shuffles where this CPU has them, and the
    /// element-by-element fallback every CPU takes otherwise) against the definition.
    #[test]
    fn a_block_transposes_by_either_path() {
        let block: [Lane; L] = std::array::from_fn(|i| std::array::from_fn(|j| (100 * i + j) as f32));
        let want: [Lane; L] = std::array::from_fn(|j| std::array::from_fn(|i| (100 * i + j) as f32));
        assert_eq!(transposed(Shuffles::default(), &block), want);
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            let got = simd.vectorize(
                #[inline(always)]
                || transposed(Some(simd), &block),
            );
            assert_eq!(got, want);
        }
    }
}
