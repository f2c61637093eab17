//! Images laid out pixel by pixel, (H, W, channels), as the tile transforms read and write
//! them: a pixel's channels are one lane apart, so a tile's patch is PATCH² lane loads.
//! Conversion from and to candle's (channels, H, W) planes goes through 16×16 blocks.
//! This file must not know about tiles or transforms.

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
            |c0, cn, p0, pn| {
                let mut block = [[0f32; L]; L];
                for (c, row) in block.iter_mut().enumerate().take(cn) {
                    copy_lane(row, &planes[(c0 + c) * hw + p0..], pn);
                }
                for p in 0..pn {
                    let at = self.at((p0 + p) / g.w + border, (p0 + p) % g.w + border) + c0;
                    store(&mut self.data, at, cn, &std::array::from_fn(|c| block[c][p]));
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
            |c0, cn, p0, pn| {
                let mut block = [[0f32; L]; L];
                for (p, lane) in block.iter_mut().enumerate().take(pn) {
                    let at = self.at((p0 + p) / g.w + border, (p0 + p) % g.w + border) + c0;
                    load_into(lane, &self.data, at, cn);
                }
                for c in 0..cn {
                    let row: Lane = std::array::from_fn(|p| block[p][c]);
                    copy_lane(&mut planes[(c0 + c) * hw + p0..], &row, pn);
                }
            },
        );
    }
}

/// Calls `f(c0, cn, p0, pn)` for each block of `cn` ≤ [`L`] channels from `c0` by `pn` ≤ [`L`]
/// pixels from `p0` of a (channels, `hw`) image: the unit in which planes and pixel-major
/// buffers are transposed into each other, reading and writing whole rows of the block.
#[inline(always)]
fn each_block(hw: usize, ch: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    vectorized(
        #[inline(always)]
        || {
            for c0 in (0..ch).step_by(L) {
                for p0 in (0..hw).step_by(L) {
                    f(c0, L.min(ch - c0), p0, L.min(hw - p0));
                }
            }
        },
    );
}
