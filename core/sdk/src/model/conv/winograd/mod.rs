//! The 3×3, stride-1, same-padded convolution (most of a ResNet's) by Winograd's minimal
//! filtering, forward and both gradients: F(4×4, 3×3) on maps of 16×16 and more, F(2×2, 3×3)
//! on smaller ones ([`uses_f4`]; the transforms of both are in `variant.rs`).
//!
//! Each TILE×TILE block of outputs is `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` for its PATCH×PATCH input
//! patch `d`, PATCH = TILE + 2 (Lavin & Gray, 2016): 36 multiplications for 16 outputs
//! instead of 144, or 16 for 4 instead of 36. Over channels the elementwise product
//! becomes one matrix product per position ξ of the transformed tile:
//! `M[ξ] = U[ξ] · V[ξ]` for U (O×C) and V (C×T, T tiles), held transposed here (one row per
//! tile, channels contiguous). The gradients reuse the same transforms, transposed:
//! `dV[ξ] = U[ξ]ᵀ · dM[ξ]` for the input and `dU[ξ] = dM[ξ] · V[ξ]ᵀ` for the kernel, with
//! `dM = A dY Aᵀ`, `dd = B dV Bᵀ` and `dg = Gᵀ dU G`. The products do 4× (2.25×) fewer
//! multiply-adds than the lowered (im2col) convolution of `cpu.rs`, which is where a ResNet
//! step spends its time. The transforms run on images laid out pixel by pixel (each
//! pixel's channels together), 16 channels per vector step, so every tile transform is a
//! few dozen whole-register operations; they are bound by memory traffic, not arithmetic.
//!
//! Results differ from the lowered convolution by rounding only: F(2×2)'s transforms add
//! and halve, F(4×4)'s multiply by up to 8 and divide by 24, so it rounds about ten times
//! as much (up to 4e-5 of the largest output, relative, at 128 channels; the tests bound
//! each variant). Work is split over images as in `cpu.rs`, whose [`Geometry`] and errors
//! this shares; it must not know about candle tensors.

// The lane loops index several arrays in step (`out[k][i] = f(a[i], b[i])`); iterator chains
// over three or four zipped arrays would hide the arithmetic they spell out.
#![allow(clippy::needless_range_loop)]

use gemm::Parallelism;
use rayon::prelude::*;

mod lanes;
mod pixels;
mod variant;

use super::cpu::{ConvError, Geometry, sum_partials};
use crate::model::kernels::{MatRef, gemm_f32, vectorized, zeroed};
use lanes::{
    L, MAX_XI, Tile, add_to, g_lanes, gt_lanes, input_grad_tile, input_tile, load_into, output_grad_tile, output_tile,
    store,
};
use pixels::PixelMajor;
use variant::{F2, F4, MAX_PATCH, Variant};

/// Images per group until a group's tiles reach this many: the products' column count.
/// `gemm` copies the kernel matrix into its packed layout on every call with more than 48
/// columns (8 of its 6-column AVX-512 micro-tiles) and reads it in place below that. At 48
/// the 128- and 256-channel layers ran 2 ms faster each than at 256 (three passes, best of
/// 15), the 512-channel ones the same, and a ResNet-18 step 3% faster (docs/benchmarks.md,
/// 2026-12-08).
const GROUP_TILES: usize = 48;

/// Both channel counts must reach this. The transforms cost the same per tile and channel
/// whatever the layer, while the products' work per tile grows with C·O. With F(2×2) alone,
/// ResNet-18's 64-channel 32×32 stage measured the same as lowered; with F(4×4) its three
/// passes take 27.7 ms against 42.5 lowered (docs/benchmarks.md, 2026-12-07).
const MIN_CHANNELS: usize = 64;

/// Whether `g` is a convolution this module computes: 3×3, stride 1, padding 1, and wide.
pub fn applies(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && g.padding == 1 && g.c >= MIN_CHANNELS && g.o >= MIN_CHANNELS
}

/// The tile grid of an image and how images are split over tasks and grouped per product.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    /// Tile rows and columns: ⌈h/TILE⌉ × ⌈w/TILE⌉.
    th: usize,
    tw: usize,
    per_task: usize,
    group: usize,
    gemm: Parallelism,
}

impl Tiling {
    fn new<V: Variant>(g: &Geometry, oversplit: usize) -> Self {
        let (th, tw) = (g.h.div_ceil(V::TILE), g.w.div_ceil(V::TILE));
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

/// `G g Gᵀ` of every (o, c) kernel as one matrix per ξ: O×C or, with `c_major`, C×O, the
/// forward product's right-hand side. The matrices are interleaved by rows, `[row][ξ][col]`
/// (see [`kernel_matrix`]), so that the rows can be transformed in parallel: done on one
/// thread, the transform of a 512-channel kernel took as long as its products on two.
fn transform_kernel<V: Variant>(g: &Geometry, w: &[f32], c_major: bool) -> Vec<f32> {
    let (rows, cols) = if c_major { (g.c, g.o) } else { (g.o, g.c) };
    let mut u = zeroed(V::XI * rows * cols);
    let kernel = |r: usize, col: usize| if c_major { col * g.c + r } else { r * g.c + col };
    u.par_chunks_mut(V::XI * cols).enumerate().for_each(|(r, u_row)| {
        vectorized(
            #[inline(always)]
            || {
                for c0 in (0..cols).step_by(L) {
                    let len = L.min(cols - c0);
                    let mut taps = [[0f32; L]; 9];
                    for i in 0..len {
                        let k = &w[kernel(r, c0 + i) * 9..][..9];
                        for (t, v) in k.iter().enumerate() {
                            taps[t][i] = *v;
                        }
                    }
                    // Spelled out: under `array::map` (or `from_fn`) the lane arithmetic
                    // went into an out-of-line closure compiled without the wide vectors.
                    let rows_g = [
                        g_lanes::<V>(&taps[0], &taps[1], &taps[2]),
                        g_lanes::<V>(&taps[3], &taps[4], &taps[5]),
                        g_lanes::<V>(&taps[6], &taps[7], &taps[8]),
                    ];
                    for a in 0..V::PATCH {
                        let col = g_lanes::<V>(&rows_g[0][a], &rows_g[1][a], &rows_g[2][a]);
                        for (b, lane) in col.iter().take(V::PATCH).enumerate() {
                            store(u_row, (V::PATCH * b + a) * cols + c0, len, lane);
                        }
                    }
                }
            },
        );
    });
    u
}

/// Matrix ξ of a kernel laid out `[row][ξ][col]`: `rows` × `cols`, rows `XI · cols` apart.
fn kernel_matrix<V: Variant>(u: &[f32], xi: usize, rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::strided(&u[xi * cols..], rows, cols, V::XI * cols)
}

/// `Gᵀ dU G`: the (O, C, 3, 3) kernel gradient from one O×C matrix per ξ, laid out
/// `[o][ξ][c]` as [`transform_kernel`]'s; output channels in parallel.
fn untransform_kernel<V: Variant>(g: &Geometry, du: &[f32]) -> Vec<f32> {
    let mut dw = zeroed(g.o * g.c * 9);
    dw.par_chunks_mut(g.c * 9).zip(du.par_chunks(V::XI * g.c)).for_each(|(dw_o, du_o)| {
        vectorized(
            #[inline(always)]
            || {
                for k0 in (0..g.c).step_by(L) {
                    let len = L.min(g.c - k0);
                    let mut d = [[0f32; L]; MAX_XI];
                    for (xi, lane) in d.iter_mut().take(V::XI).enumerate() {
                        load_into(lane, du_o, xi * g.c + k0, len);
                    }
                    let mut rows = [[[0f32; L]; 3]; MAX_PATCH];
                    for (b, row) in rows.iter_mut().take(V::PATCH).enumerate() {
                        *row = gt_lanes::<V>(std::array::from_fn(|a| &d[V::PATCH * b + a]));
                    }
                    // A loop, as in `transform_kernel`: not the lane arithmetic under `from_fn`.
                    let mut taps = [[[0f32; L]; 3]; 3];
                    for (x, tap) in taps.iter_mut().enumerate() {
                        *tap = gt_lanes::<V>(std::array::from_fn(|b| &rows[b][x]));
                    }
                    for (i, k) in dw_o[k0 * 9..(k0 + len) * 9].chunks_exact_mut(9).enumerate() {
                        for y in 0..3 {
                            for x in 0..3 {
                                k[3 * y + x] = taps[x][y][i];
                            }
                        }
                    }
                }
            },
        );
    });
    dw
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

/// Calls `f(i, j, tile, k, len, d, e)` for every tile (i, j) of one image, whose tiles are
/// the rows from `first` of the transformed buffers, and every run of `len` ≤ [`L`] of its
/// `ch` channels from `k`, with two tile buffers for the transform; compiled for the CPU's
/// widest vectors.
#[inline(always)]
fn each_tile_lane(
    t: &Tiling,
    first: usize,
    ch: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize, &mut Tile, &mut Tile),
) {
    let (mut d, mut e) = ([[0f32; L]; MAX_XI], [[0f32; L]; MAX_XI]);
    vectorized(
        #[inline(always)]
        || {
            for i in 0..t.th {
                for j in 0..t.tw {
                    for k in (0..ch).step_by(L) {
                        f(i, j, first + i * t.tw + j, k, L.min(ch - k), &mut d, &mut e);
                    }
                }
            }
        },
    );
}

/// The transformed lanes of one tile (`[ξ]`), channels `k..k + len`.
#[inline(always)]
fn gather<V: Variant>(lanes: &mut Tile, buf: &[f32], tiles: &Tiles, tile: usize, ch: usize, k: usize, len: usize) {
    for (xi, lane) in lanes.iter_mut().take(V::XI).enumerate() {
        load_into(lane, buf, tiles.at(xi, tile, ch) + k, len);
    }
}

#[inline(always)]
fn scatter<V: Variant>(lanes: &Tile, buf: &mut [f32], tiles: &Tiles, tile: usize, ch: usize, k: usize, len: usize) {
    for (xi, lane) in lanes.iter().take(V::XI).enumerate() {
        store(buf, tiles.at(xi, tile, ch) + k, len, lane);
    }
}

/// Bᵀ d B of every tile of one image (padded pixel-major, border 1) into the rows from
/// `first` of `v`.
fn transform_input<V: Variant>(t: &Tiling, pad: &PixelMajor, tiles: &Tiles, first: usize, v: &mut [f32]) {
    let ch = pad.channels;
    each_tile_lane(
        t,
        first,
        ch,
        #[inline(always)]
        |i, j, tile, k, len, d, e| {
            let (tile_y, tile_x) = (V::TILE * i, V::TILE * j);
            for (p, lane) in d.iter_mut().take(V::XI).enumerate() {
                load_into(lane, &pad.data, pad.at(tile_y + p / V::PATCH, tile_x + p % V::PATCH) + k, len);
            }
            input_tile::<V>(d, e);
            scatter::<V>(d, v, tiles, tile, ch, k, len);
        },
    );
}

/// A dY Aᵀ of every TILE×TILE block of one image's output gradient (pixel-major, no border,
/// whole tiles) into the rows from `first` of `dm`.
fn transform_output_grad<V: Variant>(t: &Tiling, dy: &PixelMajor, tiles: &Tiles, first: usize, dm: &mut [f32]) {
    let ch = dy.channels;
    each_tile_lane(
        t,
        first,
        ch,
        #[inline(always)]
        |i, j, tile, k, len, d, e| {
            for r in 0..V::TILE {
                for s in 0..V::TILE {
                    load_into(&mut d[V::PATCH * r + s], &dy.data, dy.at(V::TILE * i + r, V::TILE * j + s) + k, len);
                }
            }
            output_grad_tile::<V>(d, e);
            scatter::<V>(d, dm, tiles, tile, ch, k, len);
        },
    );
}

/// Aᵀ M A of the tiles from row `first` of `m` into one image's output (pixel-major, no
/// border, whole tiles).
fn transform_output<V: Variant>(t: &Tiling, m: &[f32], tiles: &Tiles, first: usize, y: &mut PixelMajor) {
    let ch = y.channels;
    each_tile_lane(
        t,
        first,
        ch,
        #[inline(always)]
        |i, j, tile, k, len, d, e| {
            gather::<V>(d, m, tiles, tile, ch, k, len);
            output_tile::<V>(d, e);
            for r in 0..V::TILE {
                for s in 0..V::TILE {
                    let at = y.at(V::TILE * i + r, V::TILE * j + s) + k;
                    store(&mut y.data, at, len, &d[V::PATCH * r + s]);
                }
            }
        },
    );
}

/// B dV Bᵀ of the tiles from row `first` of `dv`, summed where tiles overlap, into one
/// image's padded input gradient (pixel-major, border 1), which this clears first.
fn untransform_input<V: Variant>(t: &Tiling, dv: &[f32], tiles: &Tiles, first: usize, dx: &mut PixelMajor) {
    let ch = dx.channels;
    dx.data.fill(0.0);
    each_tile_lane(
        t,
        first,
        ch,
        #[inline(always)]
        |i, j, tile, k, len, d, e| {
            gather::<V>(d, dv, tiles, tile, ch, k, len);
            input_grad_tile::<V>(d, e);
            let (tile_y, tile_x) = (V::TILE * i, V::TILE * j);
            for (p, lane) in d.iter().take(V::XI).enumerate() {
                let at = dx.at(tile_y + p / V::PATCH, tile_x + p % V::PATCH) + k;
                add_to(&mut dx.data, at, len, lane);
            }
        },
    );
}

/// How an image is laid out pixel by pixel on one side of the products: the input side has
/// a one-pixel border (its patches overlap by two pixels), the output side none.
#[derive(Clone, Copy)]
struct Side {
    channels: usize,
    border: usize,
}

impl Side {
    fn buffer<V: Variant>(self, t: &Tiling) -> PixelMajor {
        let extra = 2 * self.border;
        PixelMajor::new(V::TILE * t.th + extra, V::TILE * t.tw + extra, self.channels, self.border)
    }
}

/// The work shared by the forward pass and the input gradient: each image of `src` (`from`
/// channels) laid out pixel by pixel and turned into tiles (`to_tiles`), then for each ξ the
/// tiles × `from` matrix times the `from` × `to` kernel matrix ξ (see [`kernel_matrix`]),
/// then the products turned back into images of `to` channels (`from_tiles`).
fn through_tiles<V: Variant>(
    g: &Geometry,
    src: &[f32],
    (from, to): (Side, Side),
    kernel: &[f32],
    to_tiles: impl Fn(&Tiling, &PixelMajor, &Tiles, usize, &mut [f32]) + Sync,
    from_tiles: impl Fn(&Tiling, &[f32], &Tiles, usize, &mut PixelMajor) + Sync,
) -> Result<Vec<f32>, ConvError> {
    let t = Tiling::new::<V>(g, 2);
    let (in_len, out_len) = (from.channels * g.h * g.w, to.channels * g.h * g.w);
    let mut dst = zeroed(g.n * out_len);
    dst.par_chunks_mut(t.per_task * out_len).enumerate().try_for_each(|(task, dst_task)| {
        let first = task * t.per_task;
        let images = dst_task.len() / out_len;
        let tiles = Tiles::new(&t);
        let mut a = vec![0f32; V::XI * tiles.rows * from.channels];
        let mut b = vec![0f32; V::XI * tiles.rows * to.channels];
        let (mut src_px, mut dst_px) = (from.buffer::<V>(&t), to.buffer::<V>(&t));
        for start in (0..images).step_by(t.group) {
            let count = t.group.min(images - start);
            for gi in 0..count {
                src_px.fill(g, &src[(first + start + gi) * in_len..][..in_len]);
                to_tiles(&t, &src_px, &tiles, gi * t.tiles(), &mut a);
            }
            for xi in 0..V::XI {
                let rhs = kernel_matrix::<V>(kernel, xi, from.channels, to.channels);
                let lhs = tiles.matrix(&t, &a, from.channels, xi, count);
                gemm_f32(tiles.matrix_mut(&mut b, to.channels, xi), to.channels, lhs, rhs, false, t.gemm)?;
            }
            for gi in 0..count {
                from_tiles(&t, &b, &tiles, gi * t.tiles(), &mut dst_px);
                dst_px.drain(g, &mut dst_task[(start + gi) * out_len..][..out_len]);
            }
        }
        Ok::<(), ConvError>(())
    })?;
    Ok(dst)
}

/// Whether `g` takes F(4×4, 3×3) rather than F(2×2, 3×3): maps of at least 16×16
/// outputs. Its kernels transform into 36 matrices instead of 16, work that grows with
/// C·O while the tiles' grows with N·H·W·C; on ResNet-18's 8×8 maps of 256 channels the
/// kernel gradient took 15 ms with F(4×4) against 9 ms with F(2×2), while the three
/// passes ran 11% faster with it on the 16×16 maps (23.0 against 25.9 ms) and 31% on the
/// 32×32 ones (27.7 against 40.4 ms; docs/benchmarks.md, 2026-12-07).
fn uses_f4(g: &Geometry) -> bool {
    g.h * g.w >= F4_MIN_PIXELS
}

/// Output pixels per map from which [`uses_f4`] holds.
const F4_MIN_PIXELS: usize = 256;

/// Forward: the (N, O, H, W) output of a 3×3, stride-1, same-padded convolution.
pub fn forward(g: &Geometry, x: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    if uses_f4(g) { forward_by::<F4>(g, x, w) } else { forward_by::<F2>(g, x, w) }
}

fn forward_by<V: Variant>(g: &Geometry, x: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    let sides = (Side { channels: g.c, border: 1 }, Side { channels: g.o, border: 0 });
    through_tiles::<V>(g, x, sides, &transform_kernel::<V>(g, w, true), transform_input::<V>, transform_output::<V>)
}

/// Input gradient: the (N, C, H, W) gradient from the (N, O, H, W) output gradient.
pub fn input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    if uses_f4(g) { input_grad_by::<F4>(g, dy, w) } else { input_grad_by::<F2>(g, dy, w) }
}

fn input_grad_by<V: Variant>(g: &Geometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    let sides = (Side { channels: g.o, border: 0 }, Side { channels: g.c, border: 1 });
    let kernel = transform_kernel::<V>(g, w, false);
    through_tiles::<V>(g, dy, sides, &kernel, transform_output_grad::<V>, untransform_input::<V>)
}

/// Kernel gradient: the (O, C, 3, 3) gradient.
pub fn kernel_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Result<Vec<f32>, ConvError> {
    if uses_f4(g) { kernel_grad_by::<F4>(g, x, dy) } else { kernel_grad_by::<F2>(g, x, dy) }
}

/// Each task sums its images' products into its own transformed buffer; the buffers are
/// added, then transformed back once.
fn kernel_grad_by<V: Variant>(g: &Geometry, x: &[f32], dy: &[f32]) -> Result<Vec<f32>, ConvError> {
    let t = Tiling::new::<V>(g, 1);
    let (in_len, out_len) = (g.c * g.h * g.w, g.o * g.h * g.w);
    let tasks = g.n.div_ceil(t.per_task);
    let partials = (0..tasks)
        .into_par_iter()
        .map(|task| {
            let first = task * t.per_task;
            let images = t.per_task.min(g.n - first);
            let tiles = Tiles::new(&t);
            let mut du = vec![0f32; V::XI * g.o * g.c];
            let mut v = vec![0f32; V::XI * tiles.rows * g.c];
            let mut dm = vec![0f32; V::XI * tiles.rows * g.o];
            let mut pad = Side { channels: g.c, border: 1 }.buffer::<V>(&t);
            let mut grad = Side { channels: g.o, border: 0 }.buffer::<V>(&t);
            for start in (0..images).step_by(t.group) {
                let count = t.group.min(images - start);
                for gi in 0..count {
                    let n = first + start + gi;
                    pad.fill(g, &x[n * in_len..][..in_len]);
                    transform_input::<V>(&t, &pad, &tiles, gi * t.tiles(), &mut v);
                    grad.fill(g, &dy[n * out_len..][..out_len]);
                    transform_output_grad::<V>(&t, &grad, &tiles, gi * t.tiles(), &mut dm);
                }
                for xi in 0..V::XI {
                    let lhs = tiles.matrix(&t, &dm, g.o, xi, count).t();
                    let rhs = tiles.matrix(&t, &v, g.c, xi, count);
                    gemm_f32(&mut du[xi * g.c..], V::XI * g.c, lhs, rhs, true, t.gemm)?;
                }
            }
            Ok(du)
        })
        .collect::<Result<Vec<_>, ConvError>>()?;
    Ok(untransform_kernel::<V>(g, &sum_partials(partials, V::XI * g.o * g.c)))
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

    /// Both variants against the lowered convolution, forward and both gradients, on even
    /// and odd sizes, maps smaller than a tile, and several images per product.
    #[test]
    fn matches_the_lowered_convolution() {
        fn check<V: Variant>(bound: f32) {
            for (n, c, h, w, o) in [
                (2, 3, 6, 6, 4),
                (3, 5, 7, 5, 2),
                (1, 2, 1, 1, 3),
                (5, 8, 4, 4, 16),
                (2, 16, 32, 32, 8),
                (70, 4, 2, 3, 5),
                (3, 17, 9, 11, 20),
            ] {
                let g = Geometry::new((n, c, h, w), o, 3, 1, 1).unwrap();
                let x = data(g.input_len(), 1);
                let k = data(g.weight_len(), 2);
                let dy = data(g.output_len(), 3);
                let shape = (V::TILE, n, c, h, w, o);
                let y = forward_by::<V>(&g, &x, &k).unwrap();
                assert!(rel_err(&y, &cpu::lowered_forward(&g, &x, &k).unwrap()) < bound, "forward {shape:?}");
                let dx = input_grad_by::<V>(&g, &dy, &k).unwrap();
                let want = cpu::lowered_input_grad(&g, &dy, &k).unwrap();
                assert!(rel_err(&dx, &want) < bound, "input grad {shape:?}");
                let dw = kernel_grad_by::<V>(&g, &x, &dy).unwrap();
                let want = cpu::lowered_kernel_grad(&g, &x, &dy).unwrap();
                assert!(rel_err(&dw, &want) < bound, "kernel grad {shape:?}");
            }
        }
        check::<F2>(1e-5);
        // F(4×4)'s transforms multiply by up to 8 and divide by 24 before the products, so
        // it rounds more; measured here at about 2e-6.
        check::<F4>(2e-5);
    }

    /// One 2×2 image, one channel: each output is the sum of the kernel taps that land on
    /// the image, worked out by hand. F(2×2)'s transforms are exact on these integers.
    #[test]
    fn a_hand_computed_case() {
        let g = Geometry::new((1, 1, 2, 2), 1, 3, 1, 1).unwrap();
        let x = [1.0, 2.0, 3.0, 4.0];
        let k = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        // y[0][0] = 5·1 + 6·2 + 8·3 + 9·4, and so on around the centre tap.
        let y = [77.0, 67.0, 47.0, 37.0];
        // dW[u][v] = Σ dy[i][j]·x[i + u − 1][j + v − 1] with dy = 1 everywhere.
        let dw = [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0];
        assert_eq!(forward_by::<F2>(&g, &x, &k).unwrap(), y);
        assert_eq!(kernel_grad_by::<F2>(&g, &x, &[1.0; 4]).unwrap(), dw);
        assert!(rel_err(&forward_by::<F4>(&g, &x, &k).unwrap(), &y) < 1e-6);
        assert!(rel_err(&kernel_grad_by::<F4>(&g, &x, &[1.0; 4]).unwrap(), &dw) < 1e-6);
    }
}
