//! The 3×3, stride-1, same-padded convolution (most of a ResNet's) by Winograd's minimal
//! filtering F(2×2, 3×3), forward and both gradients.
//!
//! Each 2×2 block of outputs is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` for its 4×4 input patch `d`
//! (Lavin & Gray, 2016): 16 multiplications instead of 36. Over channels the elementwise
//! product becomes 16 matrix products, one per position ξ of the 4×4 transformed tile:
//! `M[ξ] = U[ξ] · V[ξ]` for U (O×C) and V (C×T, T tiles), held transposed here (one row per
//! tile, channels contiguous). The gradients reuse the same transforms, transposed:
//! `dV[ξ] = U[ξ]ᵀ · dM[ξ]` for the input and `dU[ξ] = dM[ξ] · V[ξ]ᵀ` for the kernel, with
//! `dM = A dY Aᵀ`, `dd = B dV Bᵀ` and `dg = Gᵀ dU G`. The products do
//! 2.25× fewer multiply-adds than the lowered (im2col) convolution of `cpu.rs`, which is
//! where a ResNet step spends its time. The transforms run on images laid out pixel by pixel
//! (each pixel's channels together), 16 channels per vector step, so every tile transform
//! is a few dozen whole-register additions.
//!
//! Results differ from the lowered convolution by rounding only (the transforms add and
//! halve before multiplying; the tests hold them within 1e-5 of it, relative). Work is
//! split over images as in `cpu.rs`, whose [`Geometry`] and errors this shares; it must not
//! know about candle tensors.

// The lane loops index several arrays in step (`out[k][i] = f(a[i], b[i])`); iterator chains
// over three or four zipped arrays would hide the arithmetic they spell out.
#![allow(clippy::needless_range_loop)]

use gemm::Parallelism;
use rayon::prelude::*;

use super::cpu::{ConvError, Geometry, sum_partials};
use crate::model::kernels::{MatRef, gemm_f32, vectorized};

/// Positions of a transformed tile.
const XI: usize = 16;

/// Images per group until a group's tiles reach this many: the products' column count.
const GROUP_TILES: usize = 256;

/// Both channel counts must reach this. The transforms cost the same per tile and channel
/// whatever the layer, while the products' work per tile grows with C·O: with ResNet-18's
/// 64-channel first stage included the step measured the same as without it, while the
/// layers from 128 channels on took the step from 744 to 626 ms (docs/benchmarks.md,
/// 2026-12-07).
const MIN_CHANNELS: usize = 128;

/// Whether `g` is a convolution this module computes: 3×3, stride 1, padding 1, and wide.
pub fn applies(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && g.padding == 1 && g.c >= MIN_CHANNELS && g.o >= MIN_CHANNELS
}

/// The tile grid of an image and how images are split over tasks and grouped per product.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    /// Tile rows and columns: ⌈h/2⌉ × ⌈w/2⌉.
    th: usize,
    tw: usize,
    per_task: usize,
    group: usize,
    gemm: Parallelism,
}

impl Tiling {
    fn new(g: &Geometry, oversplit: usize) -> Self {
        let (th, tw) = (g.h.div_ceil(2), g.w.div_ceil(2));
        let threads = rayon::current_num_threads().max(1);
        let tasks = (threads * oversplit).min(g.n).max(1);
        let per_task = g.n.div_ceil(tasks);
        let group = GROUP_TILES.div_ceil(th * tw).clamp(1, per_task);
        let gemm = if g.n < threads { Parallelism::Rayon(threads) } else { Parallelism::None };
        Self { th, tw, per_task, group, gemm }
    }

    fn tiles(&self) -> usize {
        self.th * self.tw
    }
}

/// `G v` for the three taps of a kernel row or column, lane by lane:
/// (v0, (v0 + v1 + v2)/2, (v0 − v1 + v2)/2, v2).
#[inline(always)]
fn g3(v0: &Lane, v1: &Lane, v2: &Lane) -> [Lane; 4] {
    let mut out = [[0f32; L]; 4];
    for i in 0..L {
        out[0][i] = v0[i];
        out[1][i] = 0.5 * (v0[i] + v1[i] + v2[i]);
        out[2][i] = 0.5 * (v0[i] - v1[i] + v2[i]);
        out[3][i] = v2[i];
    }
    out
}

/// `Gᵀ v` for four lanes: (v0 + (v1 + v2)/2, (v1 − v2)/2, (v1 + v2)/2 + v3).
#[inline(always)]
fn gt4(v: [&Lane; 4]) -> [Lane; 3] {
    let mut out = [[0f32; L]; 3];
    for i in 0..L {
        let (s, d) = (0.5 * (v[1][i] + v[2][i]), 0.5 * (v[1][i] - v[2][i]));
        out[0][i] = v[0][i] + s;
        out[1][i] = d;
        out[2][i] = s + v[3][i];
    }
    out
}

/// `G g Gᵀ` of every (o, c) kernel as 16 matrices: O×C (row-major) or, with `c_major`, C×O,
/// the forward product's right-hand side. [`L`] kernels at a time along the matrices' rows.
fn transform_kernel(g: &Geometry, w: &[f32], c_major: bool) -> Vec<f32> {
    let (rows, cols) = if c_major { (g.c, g.o) } else { (g.o, g.c) };
    let mut u = vec![0f32; XI * rows * cols];
    let kernel = |r: usize, col: usize| if c_major { col * g.c + r } else { r * g.c + col };
    vectorized(
        #[inline(always)]
        || {
            for r in 0..rows {
                for c0 in (0..cols).step_by(L) {
                    let len = L.min(cols - c0);
                    let mut taps = [[0f32; L]; 9];
                    for i in 0..len {
                        let k = &w[kernel(r, c0 + i) * 9..][..9];
                        for (t, v) in k.iter().enumerate() {
                            taps[t][i] = *v;
                        }
                    }
                    let rows_g = [0, 1, 2].map(|y| g3(&taps[3 * y], &taps[3 * y + 1], &taps[3 * y + 2]));
                    for a in 0..4 {
                        let col = g3(&rows_g[0][a], &rows_g[1][a], &rows_g[2][a]);
                        for (b, lane) in col.iter().enumerate() {
                            store(&mut u, ((4 * b + a) * rows + r) * cols + c0, len, lane);
                        }
                    }
                }
            }
        },
    );
    u
}

/// `Gᵀ dU G`: the (O, C, 3, 3) kernel gradient from 16 O×C matrices.
fn untransform_kernel(g: &Geometry, du: &[f32]) -> Vec<f32> {
    let oc_len = g.o * g.c;
    let mut dw = vec![0f32; oc_len * 9];
    vectorized(
        #[inline(always)]
        || {
            for k0 in (0..oc_len).step_by(L) {
                let len = L.min(oc_len - k0);
                let mut d = [[0f32; L]; 16];
                for (xi, lane) in d.iter_mut().enumerate() {
                    load_into(lane, du, xi * oc_len + k0, len);
                }
                let rows: [[Lane; 3]; 4] =
                    [0, 1, 2, 3].map(|b| gt4([&d[4 * b], &d[4 * b + 1], &d[4 * b + 2], &d[4 * b + 3]]));
                let taps: [[Lane; 3]; 3] = [0, 1, 2].map(|x| gt4([&rows[0][x], &rows[1][x], &rows[2][x], &rows[3][x]]));
                for (i, k) in dw[k0 * 9..(k0 + len) * 9].chunks_exact_mut(9).enumerate() {
                    for y in 0..3 {
                        for x in 0..3 {
                            k[3 * y + x] = taps[x][y][i];
                        }
                    }
                }
            }
        },
    );
    dw
}

/// Channels per vector step of the tile transforms: one AVX-512 register.
const L: usize = 16;

/// Up to [`L`] channels of one pixel or transformed tile position.
type Lane = [f32; L];

/// `dst[..len] = src[..len]` for `len` ≤ [`L`]: a fixed-size move when whole, element by
/// element otherwise, never a call to `memcpy` (which a 16-value copy does not pay for).
#[inline(always)]
fn copy_lane(dst: &mut [f32], src: &[f32], len: usize) {
    if len == L {
        dst[..L].copy_from_slice(&src[..L]);
    } else {
        for (d, s) in dst[..len].iter_mut().zip(&src[..len]) {
            *d = *s;
        }
    }
}

#[inline(always)]
fn load_into(lane: &mut Lane, src: &[f32], at: usize, len: usize) {
    copy_lane(lane, &src[at..], len);
}

#[inline(always)]
fn store(dst: &mut [f32], at: usize, len: usize, lane: &Lane) {
    copy_lane(&mut dst[at..], lane, len);
}

#[inline(always)]
fn add_to(dst: &mut [f32], at: usize, len: usize, lane: &Lane) {
    for (d, v) in dst[at..at + len].iter_mut().zip(lane) {
        *d += *v;
    }
}

/// Replaces lanes `idx` of `d` by `f` of them, channel by channel (a vectorised loop once
/// inlined with constant indices; no lane leaves `d`, so no array is copied around).
#[inline(always)]
fn lanes4(d: &mut [Lane; 16], idx: [usize; 4], f: impl Fn([f32; 4]) -> [f32; 4]) {
    for i in 0..L {
        let r = f([d[idx[0]][i], d[idx[1]][i], d[idx[2]][i], d[idx[3]][i]]);
        for (k, v) in idx.into_iter().zip(r) {
            d[k][i] = v;
        }
    }
}

/// `Bᵀ v`.
#[inline(always)]
fn bt(v: [f32; 4]) -> [f32; 4] {
    [v[0] - v[2], v[1] + v[2], v[2] - v[1], v[1] - v[3]]
}

/// `B v`.
#[inline(always)]
fn b(v: [f32; 4]) -> [f32; 4] {
    [v[0], v[1] - v[2] + v[3], v[1] + v[2] - v[0], -v[3]]
}

/// `Aᵀ v`, in the first two places.
#[inline(always)]
fn at(v: [f32; 4]) -> [f32; 4] {
    [v[0] + v[1] + v[2], v[1] - v[2] - v[3], 0.0, 0.0]
}

/// `A v` of the first two places.
#[inline(always)]
fn a(v: [f32; 4]) -> [f32; 4] {
    [v[0], v[0] + v[1], v[0] - v[1], -v[1]]
}

const ROWS: [[usize; 4]; 4] = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]];
const COLS: [[usize; 4]; 4] = [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]];

/// `Bᵀ d B` of a 4×4 patch `d[4y + x]`, in place as `[4b + a]`.
#[inline(always)]
fn input_tile(d: &mut [Lane; 16]) {
    ROWS.into_iter().for_each(|idx| lanes4(d, idx, bt));
    COLS.into_iter().for_each(|idx| lanes4(d, idx, bt));
}

/// `Aᵀ M A` of a transformed tile `m[4b + a]`, in place: output (r, s) lands at `[4r + s]`.
#[inline(always)]
fn output_tile(m: &mut [Lane; 16]) {
    COLS.into_iter().for_each(|idx| lanes4(m, idx, at));
    ROWS[..2].iter().for_each(|idx| lanes4(m, *idx, at));
}

/// `A dY Aᵀ` of a 2×2 block placed at `[4r + s]` (the rest zero), in place as `[4b + a]`.
#[inline(always)]
fn output_grad_tile(d: &mut [Lane; 16]) {
    ROWS[..2].iter().for_each(|idx| lanes4(d, *idx, a));
    COLS.into_iter().for_each(|idx| lanes4(d, idx, a));
}

/// `B dV Bᵀ` of a transformed tile gradient `dv[4b + a]`, in place as `[4y + x]`.
#[inline(always)]
fn input_grad_tile(d: &mut [Lane; 16]) {
    ROWS.into_iter().for_each(|idx| lanes4(d, idx, b));
    COLS.into_iter().for_each(|idx| lanes4(d, idx, b));
}

/// Planes laid out pixel by pixel: (H, W, channels), with a zero border of `border` pixels
/// on the top and left and enough on the bottom and right for whole tiles.
struct PixelMajor {
    data: Vec<f32>,
    /// Pixels per row, borders included.
    pw: usize,
    channels: usize,
}

impl PixelMajor {
    /// `(rows, cols)` pixels, zeroed.
    fn new(rows: usize, cols: usize, channels: usize) -> Self {
        Self { data: vec![0f32; rows * cols * channels], pw: cols, channels }
    }

    /// Where pixel (y, x) begins.
    fn at(&self, y: usize, x: usize) -> usize {
        (y * self.pw + x) * self.channels
    }

    /// Copies `planes` ((channels, h, w), one image) in, its pixel (y, x) at (y + border, x + border).
    fn fill(&mut self, g: &Geometry, planes: &[f32], border: usize) {
        let hw = g.h * g.w;
        each_block(hw, self.channels, |c0, cn, p0, pn| {
            let mut block = [[0f32; L]; L];
            for (c, row) in block.iter_mut().enumerate().take(cn) {
                copy_lane(row, &planes[(c0 + c) * hw + p0..], pn);
            }
            for p in 0..pn {
                let at = self.at((p0 + p) / g.w + border, (p0 + p) % g.w + border) + c0;
                store(&mut self.data, at, cn, &std::array::from_fn(|c| block[c][p]));
            }
        });
    }

    /// Copies pixels (y + border, x + border) out into `planes` ((channels, h, w)).
    fn drain(&self, g: &Geometry, planes: &mut [f32], border: usize) {
        let hw = g.h * g.w;
        each_block(hw, self.channels, |c0, cn, p0, pn| {
            let mut block = [[0f32; L]; L];
            for (p, lane) in block.iter_mut().enumerate().take(pn) {
                let at = self.at((p0 + p) / g.w + border, (p0 + p) % g.w + border) + c0;
                load_into(lane, &self.data, at, cn);
            }
            for c in 0..cn {
                let row: Lane = std::array::from_fn(|p| block[p][c]);
                copy_lane(&mut planes[(c0 + c) * hw + p0..], &row, pn);
            }
        });
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

/// Per-task buffers of transformed tiles: matrix ξ of a buffer holds one row per tile of the
/// group's images and one column per channel.
struct Tiles {
    /// Tiles of a full group: the rows of each matrix.
    rows: usize,
}

impl Tiles {
    fn new(t: &Tiling) -> Self {
        Self { rows: t.group * t.tiles() }
    }

    /// Where tile `tile` of matrix ξ starts in a buffer of `channels` columns.
    fn at(&self, xi: usize, tile: usize, channels: usize) -> usize {
        (xi * self.rows + tile) * channels
    }

    /// Matrix ξ's first `count` images: (count · tiles) × `channels`.
    fn matrix<'a>(&self, t: &Tiling, data: &'a [f32], channels: usize, xi: usize, count: usize) -> MatRef<'a> {
        let len = self.rows * channels;
        MatRef::row_major(&data[xi * len..xi * len + count * t.tiles() * channels], count * t.tiles(), channels)
    }

    fn matrix_mut<'a>(&self, data: &'a mut [f32], channels: usize, xi: usize) -> &'a mut [f32] {
        let len = self.rows * channels;
        &mut data[xi * len..(xi + 1) * len]
    }
}

/// Calls `f(i, j, tile, k, len)` for every tile (i, j) of one image, whose tiles are the
/// rows from `first` of the transformed buffers, and every run of `len` ≤ [`L`] of its `ch`
/// channels from `k`; compiled for the CPU's widest vectors.
#[inline(always)]
fn each_tile_lane(t: &Tiling, first: usize, ch: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    vectorized(
        #[inline(always)]
        || {
            for i in 0..t.th {
                for j in 0..t.tw {
                    for k in (0..ch).step_by(L) {
                        f(i, j, first + i * t.tw + j, k, L.min(ch - k));
                    }
                }
            }
        },
    );
}

/// The 16 transformed lanes of one tile (`[ξ]`), channels `k..k + len`.
#[inline(always)]
fn gather(buf: &[f32], tiles: &Tiles, tile: usize, ch: usize, k: usize, len: usize) -> [Lane; 16] {
    let mut lanes = [[0f32; L]; 16];
    for (xi, lane) in lanes.iter_mut().enumerate() {
        load_into(lane, buf, tiles.at(xi, tile, ch) + k, len);
    }
    lanes
}

#[inline(always)]
fn scatter(lanes: &[Lane; 16], buf: &mut [f32], tiles: &Tiles, tile: usize, ch: usize, k: usize, len: usize) {
    for (xi, lane) in lanes.iter().enumerate() {
        store(buf, tiles.at(xi, tile, ch) + k, len, lane);
    }
}

/// Bᵀ d B of every tile of one image (padded pixel-major, border 1) into the rows from
/// `first` of `v`.
fn transform_input(t: &Tiling, pad: &PixelMajor, tiles: &Tiles, first: usize, v: &mut [f32]) {
    let ch = pad.channels;
    each_tile_lane(t, first, ch, |i, j, tile, k, len| {
        let mut d = [[0f32; L]; 16];
        for (p, lane) in d.iter_mut().enumerate() {
            load_into(lane, &pad.data, pad.at(2 * i + p / 4, 2 * j + p % 4) + k, len);
        }
        input_tile(&mut d);
        scatter(&d, v, tiles, tile, ch, k, len);
    });
}

/// A dY Aᵀ of every 2×2 block of one image's output gradient (pixel-major, no border,
/// whole tiles) into the rows from `first` of `dm`.
fn transform_output_grad(t: &Tiling, dy: &PixelMajor, tiles: &Tiles, first: usize, dm: &mut [f32]) {
    let ch = dy.channels;
    each_tile_lane(t, first, ch, |i, j, tile, k, len| {
        let mut d = [[0f32; L]; 16];
        for (r, s) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            load_into(&mut d[4 * r + s], &dy.data, dy.at(2 * i + r, 2 * j + s) + k, len);
        }
        output_grad_tile(&mut d);
        scatter(&d, dm, tiles, tile, ch, k, len);
    });
}

/// Aᵀ M A of the tiles from row `first` of `m` into one image's output (pixel-major, no
/// border, whole tiles).
fn transform_output(t: &Tiling, m: &[f32], tiles: &Tiles, first: usize, y: &mut PixelMajor) {
    let ch = y.channels;
    each_tile_lane(t, first, ch, |i, j, tile, k, len| {
        let mut mt = gather(m, tiles, tile, ch, k, len);
        output_tile(&mut mt);
        for (r, s) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let at = y.at(2 * i + r, 2 * j + s) + k;
            store(&mut y.data, at, len, &mt[4 * r + s]);
        }
    });
}

/// B dV Bᵀ of the tiles from row `first` of `dv`, summed where tiles overlap, into one
/// image's padded input gradient (pixel-major, border 1), which this clears first.
fn untransform_input(t: &Tiling, dv: &[f32], tiles: &Tiles, first: usize, dx: &mut PixelMajor) {
    let ch = dx.channels;
    dx.data.fill(0.0);
    each_tile_lane(t, first, ch, |i, j, tile, k, len| {
        let mut vt = gather(dv, tiles, tile, ch, k, len);
        input_grad_tile(&mut vt);
        for (p, lane) in vt.iter().enumerate() {
            let at = dx.at(2 * i + p / 4, 2 * j + p % 4) + k;
            add_to(&mut dx.data, at, len, lane);
        }
    });
}

/// How an image is laid out pixel by pixel on one side of the products: the input side has
/// a one-pixel border (its tiles overlap by two pixels), the output side none.
#[derive(Clone, Copy)]
struct Side {
    channels: usize,
    border: usize,
}

impl Side {
    fn buffer(self, t: &Tiling) -> PixelMajor {
        let extra = 2 * self.border;
        PixelMajor::new(2 * t.th + extra, 2 * t.tw + extra, self.channels)
    }
}

/// The work shared by the forward pass and the input gradient: each image of `src` (`from`
/// channels) laid out pixel by pixel and turned into tiles (`to_tiles`), then for each ξ the
/// tiles × `from` matrix times `kernel[ξ]` (`from` × `to`, row-major), then the products
/// turned back into images of `to` channels (`from_tiles`).
fn through_tiles(
    g: &Geometry,
    src: &[f32],
    (from, to): (Side, Side),
    kernel: &[f32],
    to_tiles: impl Fn(&Tiling, &PixelMajor, &Tiles, usize, &mut [f32]) + Sync,
    from_tiles: impl Fn(&Tiling, &[f32], &Tiles, usize, &mut PixelMajor) + Sync,
) -> Result<Vec<f32>, ConvError> {
    let t = Tiling::new(g, 2);
    let (in_len, out_len) = (from.channels * g.h * g.w, to.channels * g.h * g.w);
    let kernel_len = from.channels * to.channels;
    let mut dst = vec![0f32; g.n * out_len];
    dst.par_chunks_mut(t.per_task * out_len).enumerate().try_for_each(|(task, dst_task)| {
        let first = task * t.per_task;
        let images = dst_task.len() / out_len;
        let tiles = Tiles::new(&t);
        let mut a = vec![0f32; XI * tiles.rows * from.channels];
        let mut b = vec![0f32; XI * tiles.rows * to.channels];
        let (mut src_px, mut dst_px) = (from.buffer(&t), to.buffer(&t));
        for start in (0..images).step_by(t.group) {
            let count = t.group.min(images - start);
            for gi in 0..count {
                src_px.fill(g, &src[(first + start + gi) * in_len..][..in_len], from.border);
                to_tiles(&t, &src_px, &tiles, gi * t.tiles(), &mut a);
            }
            for xi in 0..XI {
                let rhs =
                    MatRef::row_major(&kernel[xi * kernel_len..(xi + 1) * kernel_len], from.channels, to.channels);
                let lhs = tiles.matrix(&t, &a, from.channels, xi, count);
                gemm_f32(tiles.matrix_mut(&mut b, to.channels, xi), to.channels, lhs, rhs, false, t.gemm)?;
            }
            for gi in 0..count {
                from_tiles(&t, &b, &tiles, gi * t.tiles(), &mut dst_px);
                dst_px.drain(g, &mut dst_task[(start + gi) * out_len..][..out_len], to.border);
            }
        }
        Ok::<(), ConvError>(())
    })?;
    Ok(dst)
}

/// Forward: the (N, O, H, W) output of a 3×3, stride-1, same-padded convolution.
pub fn forward(g: &Geometry, x: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    let sides = (Side { channels: g.c, border: 1 }, Side { channels: g.o, border: 0 });
    through_tiles(g, x, sides, &transform_kernel(g, w, true), transform_input, transform_output)
}

/// Input gradient: the (N, C, H, W) gradient from the (N, O, H, W) output gradient.
pub fn input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    let sides = (Side { channels: g.o, border: 0 }, Side { channels: g.c, border: 1 });
    through_tiles(g, dy, sides, &transform_kernel(g, w, false), transform_output_grad, untransform_input)
}

/// Kernel gradient: the (O, C, 3, 3) gradient, each task summing its images' products into
/// its own transformed buffer; the buffers are added, then transformed back once.
pub fn kernel_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Result<Vec<f32>, ConvError> {
    let t = Tiling::new(g, 1);
    let (in_len, out_len) = (g.c * g.h * g.w, g.o * g.h * g.w);
    let tasks = g.n.div_ceil(t.per_task);
    let partials = (0..tasks)
        .into_par_iter()
        .map(|task| {
            let first = task * t.per_task;
            let images = t.per_task.min(g.n - first);
            let tiles = Tiles::new(&t);
            let mut du = vec![0f32; XI * g.o * g.c];
            let mut v = vec![0f32; XI * tiles.rows * g.c];
            let mut dm = vec![0f32; XI * tiles.rows * g.o];
            let mut pad = Side { channels: g.c, border: 1 }.buffer(&t);
            let mut grad = Side { channels: g.o, border: 0 }.buffer(&t);
            for start in (0..images).step_by(t.group) {
                let count = t.group.min(images - start);
                for gi in 0..count {
                    let n = first + start + gi;
                    pad.fill(g, &x[n * in_len..][..in_len], 1);
                    transform_input(&t, &pad, &tiles, gi * t.tiles(), &mut v);
                    grad.fill(g, &dy[n * out_len..][..out_len], 0);
                    transform_output_grad(&t, &grad, &tiles, gi * t.tiles(), &mut dm);
                }
                for xi in 0..XI {
                    let lhs = tiles.matrix(&t, &dm, g.o, xi, count).t();
                    let rhs = tiles.matrix(&t, &v, g.c, xi, count);
                    gemm_f32(&mut du[xi * g.o * g.c..(xi + 1) * g.o * g.c], g.c, lhs, rhs, true, t.gemm)?;
                }
            }
            Ok(du)
        })
        .collect::<Result<Vec<_>, ConvError>>()?;
    Ok(untransform_kernel(g, &sum_partials(partials, XI * g.o * g.c)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::cpu;
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
            .collect()
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Winograd against the lowered convolution, forward and both gradients, on even and
    /// odd sizes, maps smaller than a tile, and several images per product.
    #[test]
    fn matches_the_lowered_convolution() {
        for (n, c, h, w, o) in
            [(2, 3, 6, 6, 4), (3, 5, 7, 5, 2), (1, 2, 1, 1, 3), (5, 8, 4, 4, 16), (2, 16, 32, 32, 8), (70, 4, 2, 3, 5)]
        {
            let g = Geometry::new((n, c, h, w), o, 3, 1, 1).unwrap();
            let x = data(g.input_len(), 1);
            let k = data(g.weight_len(), 2);
            let dy = data(g.output_len(), 3);
            let shape = (n, c, h, w, o);
            let y = forward(&g, &x, &k).unwrap();
            assert!(rel_err(&y, &cpu::lowered_forward(&g, &x, &k).unwrap()) < 1e-5, "forward {shape:?}");
            let dx = input_grad(&g, &dy, &k).unwrap();
            assert!(rel_err(&dx, &cpu::lowered_input_grad(&g, &dy, &k).unwrap()) < 1e-5, "input grad {shape:?}");
            let dw = kernel_grad(&g, &x, &dy).unwrap();
            assert!(rel_err(&dw, &cpu::lowered_kernel_grad(&g, &x, &dy).unwrap()) < 1e-5, "kernel grad {shape:?}");
        }
    }

    /// One 2×2 image, one channel: each output is the sum of the kernel taps that land on
    /// the image, worked out by hand.
    #[test]
    fn a_hand_computed_case() {
        let g = Geometry::new((1, 1, 2, 2), 1, 3, 1, 1).unwrap();
        let x = [1.0, 2.0, 3.0, 4.0];
        let k = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        // y[0][0] = 5·1 + 6·2 + 8·3 + 9·4, and so on around the centre tap.
        assert_eq!(forward(&g, &x, &k).unwrap(), vec![77.0, 67.0, 47.0, 37.0]);
        // dW[u][v] = Σ dy[i][j]·x[i + u − 1][j + v − 1] with dy = 1 everywhere.
        let dw = kernel_grad(&g, &x, &[1.0; 4]).unwrap();
        assert_eq!(dw, vec![1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
    }
}
