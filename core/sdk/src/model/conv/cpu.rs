//! CPU kernels for the 2-D convolution and its two gradients: im2col / col2im and the single
//! call into the `gemm` crate.
//!
//! Everything here works on plain contiguous `f32` slices in NCHW (data) and OIHW (kernel)
//! order; the candle side (layouts, strides, the autograd graph) lives in `op.rs`. Work is
//! split over images on rayon's global pool, each task running single-threaded GEMMs on its
//! own scratch buffers, so no two tasks write the same memory. Images with small feature
//! maps are lowered in groups so that every GEMM has a reasonably long inner dimension.
//! The lowering has three forms, picked by geometry: through the image's phase planes
//! (same padding, the backbones' case: one contiguous copy per tap), through a table of
//! source offsets (maps of at most 64 pixels), and row by row (anything else). The
//! elementwise loops run under [`vectorized`], so they use AVX-512 or AVX2 where present.
//! This module must not know about candle tensors and must not spawn threads of its own;
//! its matrix products go through the one bounds-checked [`gemm_f32`].

use gemm::Parallelism;
use rayon::prelude::*;

use super::winograd;
use crate::model::kernels::{GemmError, MatRef, gemm_f32, transpose, vectorized, zeroed};

/// Lowered images per GEMM are grouped until their output pixels reach this many columns:
/// below it the GEMM micro-kernels spend more time packing than multiplying.
const GROUP_COLUMNS: usize = 256;

/// Feature maps of at most this many output pixels are lowered through a table of source
/// offsets (see [`tap_table`]) instead of row by row.
const TABLE_PIXELS: usize = 64;

/// A table entry for a position in the padding: an offset past any image, which the
/// lowering reads as zero and the un-lowering skips.
const PADDING: u32 = u32::MAX;

/// A shape or buffer the kernels cannot work with. The op layer checks shapes before calling
/// in, so these mean a caller bug rather than bad user data, but they are errors, not panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvError {
    #[error("conv2d: kernel {kernel} with padding {padding} does not fit a {h}×{w} input (stride {stride})")]
    KernelTooLarge { kernel: usize, padding: usize, stride: usize, h: usize, w: usize },
    #[error("conv2d: sizes must be positive, got {0:?}")]
    ZeroSize(Geometry),
    #[error("conv2d: {what} has {got} elements, expected {want}")]
    BufferLength { what: &'static str, got: usize, want: usize },
    #[error("conv2d: {0}")]
    Gemm(#[from] GemmError),
}

/// Sizes of one convolution: `n` images of `c`×`h`×`w`, `o` output channels, a square
/// `k`×`k` kernel, symmetric zero padding and equal strides; `ho`×`wo` is the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    pub fn new(
        (n, c, h, w): (usize, usize, usize, usize),
        o: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self, ConvError> {
        let mut g = Self { n, c, h, w, o, k, stride, padding, ho: 0, wo: 0 };
        if n == 0 || c == 0 || h == 0 || w == 0 || o == 0 || k == 0 || stride == 0 {
            return Err(ConvError::ZeroSize(g));
        }
        if h + 2 * padding < k || w + 2 * padding < k {
            return Err(ConvError::KernelTooLarge { kernel: k, padding, stride, h, w });
        }
        g.ho = (h + 2 * padding - k) / stride + 1;
        g.wo = (w + 2 * padding - k) / stride + 1;
        Ok(g)
    }

    /// Rows of the lowered (im2col) matrix: one per input channel and kernel tap.
    fn taps(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Output pixels per image and channel.
    fn pixels(&self) -> usize {
        self.ho * self.wo
    }

    fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    fn out_image_len(&self) -> usize {
        self.o * self.pixels()
    }

    pub fn input_len(&self) -> usize {
        self.n * self.image_len()
    }

    pub fn output_len(&self) -> usize {
        self.n * self.out_image_len()
    }

    pub fn weight_len(&self) -> usize {
        self.o * self.taps()
    }

    /// A 1×1, stride-1, unpadded kernel reads the image itself as its lowered matrix.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// "Same" padding (2·padding + 1 = kernel) on a map too large for a [`tap_table`]: the
    /// output is ⌈h/stride⌉ × ⌈w/stride⌉, so every tap's lowered row is one phase plane of
    /// the input shifted by a constant (see [`im2col_phased`]).
    fn phased(&self) -> bool {
        2 * self.padding + 1 == self.k && self.pixels() > TABLE_PIXELS
    }

    /// For one kernel tap along an axis: the input phase (offset modulo the stride) it reads
    /// and how many output positions its reads are shifted by within that phase.
    fn phase_of(&self, tap: usize) -> (usize, isize) {
        let (offset, s) = (tap as isize - self.padding as isize, self.stride as isize);
        (offset.rem_euclid(s) as usize, offset.div_euclid(s))
    }

    /// Whether some tap reads input phase `phase` along an axis (all do once k ≥ stride; a
    /// strided 1×1 kernel reads only phase 0).
    fn phase_used(&self, phase: usize) -> bool {
        (0..self.k).any(|t| self.phase_of(t).0 == phase)
    }

    /// Output positions `o` along one axis whose input `o·stride + tap − padding` lies in
    /// `0..size`: a contiguous range, so the inner loops need no bounds tests.
    fn valid(&self, tap: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = if tap >= p { 0 } else { (p - tap).div_ceil(s) };
        let hi = if size + p > tap { (size + p - tap).div_ceil(s) } else { 0 };
        let hi = hi.min(out);
        (lo.min(hi), hi)
    }
}

/// How a call splits its images: `per_task` consecutive images per rayon task, lowered
/// `group` at a time, and whether the GEMMs themselves should be parallel (too few images to
/// keep every thread busy otherwise).
#[derive(Clone, Copy, Debug)]
struct Plan {
    per_task: usize,
    group: usize,
    gemm: Parallelism,
}

impl Plan {
    /// `oversplit` tasks per thread let the pool balance uneven progress (the cores are
    /// shared); the kernel gradient uses 1, as each task carries a full weight-sized sum.
    fn new(g: &Geometry, oversplit: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let tasks = (threads * oversplit).min(g.n).max(1);
        let per_task = g.n.div_ceil(tasks);
        let group = GROUP_COLUMNS.div_ceil(g.pixels()).clamp(1, per_task);
        let gemm = if g.n < threads { Parallelism::Rayon(threads) } else { Parallelism::None };
        Self { per_task, group, gemm }
    }

    /// A 1×1, stride-1, unpadded kernel on single images reads the image itself as its
    /// lowered matrix.
    fn direct(&self, g: &Geometry) -> bool {
        g.is_pointwise() && self.group == 1
    }
}

fn check_len(what: &'static str, got: usize, want: usize) -> Result<(), ConvError> {
    if got == want { Ok(()) } else { Err(ConvError::BufferLength { what, got, want }) }
}

/// For a small output map, the input offset within one image that each (tap, output
/// pixel) reads, or [`PADDING`]: taps × pixels entries, built once per call. Lowering row
/// by row copies a run of at most `wo` values at a time, and on jigsaw's tiles (maps of 2×2
/// to 9×9) those calls, not the GEMM, were the largest part of the step; with the table it
/// is one tight gather per tap. `None` for larger maps, where the runs are long.
fn tap_table(g: &Geometry) -> Option<Vec<u32>> {
    if g.pixels() > TABLE_PIXELS || u32::try_from(g.image_len()).is_err() {
        return None;
    }
    let (p, s) = (g.padding, g.stride);
    let mut table = vec![PADDING; g.taps() * g.pixels()];
    for (row, entries) in table.chunks_exact_mut(g.pixels()).enumerate() {
        let (c, ki, kj) = (row / (g.k * g.k), row / g.k % g.k, row % g.k);
        let (oh0, oh1) = g.valid(ki, g.h, g.ho);
        let (ow0, ow1) = g.valid(kj, g.w, g.wo);
        for oh in oh0..oh1 {
            for ow in ow0..ow1 {
                let (ih, iw) = (oh * s + ki - p, ow * s + kj - p);
                // In range: image_len fits in u32 (checked above).
                entries[oh * g.wo + ow] = ((c * g.h + ih) * g.w + iw) as u32;
            }
        }
    }
    Some(table)
}

/// [`im2col`] through a [`tap_table`].
fn im2col_table(table: &[u32], pixels: usize, x: &[f32], col: &mut [f32], ld: usize, at: usize) {
    vectorized(
        #[inline(always)]
        || {
            for (r, entries) in table.chunks_exact(pixels).enumerate() {
                let dst = &mut col[r * ld + at..r * ld + at + pixels];
                // PADDING lies past any image, so it reads as zero; no branch, no bounds
                // panic, and so a masked vector gather where the CPU has one.
                for (d, &i) in dst.iter_mut().zip(entries) {
                    *d = x.get(i as usize).copied().unwrap_or(0.0);
                }
            }
        },
    );
}

/// [`col2im`] through a [`tap_table`].
fn col2im_table(table: &[u32], pixels: usize, col: &[f32], ld: usize, at: usize, dx: &mut [f32]) {
    for (r, entries) in table.chunks_exact(pixels).enumerate() {
        let src = &col[r * ld + at..r * ld + at + pixels];
        for (v, &i) in src.iter().zip(entries) {
            if let Some(d) = dx.get_mut(i as usize) {
                *d += *v;
            }
        }
    }
}

/// Lowers one image (`c`×`h`×`w`) into columns `at..at + pixels` of `col`, a row-major
/// `taps`×`ld` matrix: row (channel, ki, kj) holds the input under that tap for every output
/// pixel. Only positions inside the image are written: the ones that fall in the padding
/// are the same for every image, so the caller zeroes the buffer once and reuses it with
/// the same `ld`, instead of re-filling a few zeros per row (thousands of tiny memsets).
fn im2col(g: &Geometry, x: &[f32], col: &mut [f32], ld: usize, at: usize) {
    vectorized(
        #[inline(always)]
        || {
            for_tap_runs(
                g,
                #[inline(always)]
                |run| {
                    let src = &x[run.input_row(g)][run.iw0..];
                    let start = run.tap_row * ld + at + run.oh * g.wo;
                    strided_copy(&mut col[start + run.cols.0..start + run.cols.1], src, g.stride);
                },
            );
        },
    );
}

/// One output row of one kernel tap that reads inside the image, for [`im2col`] and
/// [`col2im`]: input row `ih` of channel `c`, from column `iw0` on, feeds output row `oh`
/// at columns `cols` of lowered row `tap_row`.
struct TapRun {
    c: usize,
    tap_row: usize,
    ih: usize,
    iw0: usize,
    oh: usize,
    cols: (usize, usize),
}

impl TapRun {
    /// The whole input row this run reads, as a range of the image.
    #[inline(always)]
    fn input_row(&self, g: &Geometry) -> std::ops::Range<usize> {
        let start = (self.c * g.h + self.ih) * g.w;
        start..start + g.w
    }
}

/// Calls `f` for every [`TapRun`] of one image: every tap (c, ki, kj) and every output row
/// whose input row lies inside the image.
#[inline(always)]
fn for_tap_runs(g: &Geometry, mut f: impl FnMut(&TapRun)) {
    let (p, s) = (g.padding, g.stride);
    for c in 0..g.c {
        for ki in 0..g.k {
            let (oh0, oh1) = g.valid(ki, g.h, g.ho);
            for kj in 0..g.k {
                let cols = g.valid(kj, g.w, g.wo);
                if cols.1 <= cols.0 {
                    continue;
                }
                let (tap_row, iw0) = ((c * g.k + ki) * g.k + kj, cols.0 * s + kj - p);
                for oh in oh0..oh1 {
                    f(&TapRun { c, tap_row, ih: oh * s + ki - p, iw0, oh, cols });
                }
            }
        }
    }
}

/// `dst[j] = src[j·stride]` for every `j` in `dst`. Stride 2 (every downsampling layer) gets
/// its own loop over pairs, which the compiler turns into vector shuffles; a generic
/// `step_by` compiled to one scalar load and store per value, with its index arithmetic.
#[inline(always)]
fn strided_copy(dst: &mut [f32], src: &[f32], stride: usize) {
    let Some((last, head)) = dst.split_last_mut() else { return };
    match stride {
        1 => head.copy_from_slice(&src[..head.len()]),
        2 => head.iter_mut().zip(src.chunks_exact(2)).for_each(|(d, pair)| *d = pair[0]),
        s => head.iter_mut().zip(src.iter().step_by(s)).for_each(|(d, v)| *d = *v),
    }
    *last = src[head.len() * stride];
}

/// `dst[j·stride] += src[j]` for every `j` in `src`: the adjoint of [`strided_copy`].
#[inline(always)]
fn strided_add(dst: &mut [f32], src: &[f32], stride: usize) {
    let Some((last, head)) = src.split_last() else { return };
    match stride {
        1 => dst.iter_mut().zip(head).for_each(|(d, v)| *d += *v),
        2 => dst.chunks_exact_mut(2).zip(head).for_each(|(pair, v)| pair[0] += *v),
        s => dst.iter_mut().step_by(s).zip(head).for_each(|(d, v)| *d += *v),
    }
    dst[head.len() * stride] += *last;
}

/// Splits one image into its stride × stride phase planes for [`im2col_phased`]: plane
/// (c, q, r) is `ho`×`wo` with element (i, j) = x[c, i·s + q, j·s + r]. The strided
/// gathers happen here once per input value, instead of once per tap (k² times) in the
/// lowering. Positions past the image's edge are never written: `phases` starts zeroed and
/// is reused only for images of the same geometry. Stride 1 needs no split: the image is
/// its own plane.
fn split_phases(g: &Geometry, x: &[f32], phases: &mut [f32]) {
    vectorized(
        #[inline(always)]
        || {
            for_phase_rows(
                g,
                #[inline(always)]
                |c, ih, planes_row| {
                    let src = &x[(c * g.h + ih) * g.w..(c * g.h + ih + 1) * g.w];
                    match planes_row {
                        PhaseRow::Pair(even, odd) => {
                            let (pairs, tail) = src.as_chunks::<2>();
                            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                                *e = pair[0];
                                *o = pair[1];
                            }
                            if let [last] = tail {
                                even[pairs.len()] = *last;
                            }
                        }
                        PhaseRow::One(r, row) => {
                            let used = if r < g.w { (g.w - r).div_ceil(g.stride) } else { 0 };
                            if used > 0 {
                                strided_copy(&mut row[..used], &src[r..], g.stride);
                            }
                        }
                    }
                },
                phases,
            );
        },
    );
}

/// The adjoint of [`split_phases`]: writes each phase plane's in-image values back to
/// their places in the (C, H, W) image `dx`.
fn merge_phases(g: &Geometry, phases: &mut [f32], dx: &mut [f32]) {
    vectorized(
        #[inline(always)]
        || {
            for_phase_rows(
                g,
                #[inline(always)]
                |c, ih, planes_row| {
                    let dst = &mut dx[(c * g.h + ih) * g.w..(c * g.h + ih + 1) * g.w];
                    match planes_row {
                        PhaseRow::Pair(even, odd) => {
                            let (pairs, tail) = dst.as_chunks_mut::<2>();
                            for ((e, o), pair) in even.iter().zip(odd.iter()).zip(pairs.iter_mut()) {
                                pair[0] = *e;
                                pair[1] = *o;
                            }
                            if let [last] = tail {
                                *last = even[g.w / 2];
                            }
                        }
                        PhaseRow::One(r, row) => {
                            for (d, v) in dst.iter_mut().skip(r).step_by(g.stride).zip(row.iter()) {
                                *d = *v;
                            }
                        }
                    }
                },
                phases,
            );
        },
    );
}

/// The phase-plane rows that one input row feeds.
enum PhaseRow<'a> {
    /// Stride 2 with both column phases in use: (even columns, odd columns).
    Pair(&'a mut [f32], &'a mut [f32]),
    /// Column phase `r`'s row.
    One(usize, &'a mut [f32]),
}

/// Calls `f(channel, input row, rows)` for every input row whose phase some tap
/// reads, with the matching rows of the phase planes in `phases`.
#[inline(always)]
fn for_phase_rows(g: &Geometry, mut f: impl FnMut(usize, usize, PhaseRow<'_>), phases: &mut [f32]) {
    let (s, wo, pixels) = (g.stride, g.wo, g.pixels());
    let used: Vec<usize> = (0..s).filter(|&r| g.phase_used(r)).collect();
    let pair = s == 2 && used.len() == 2;
    for c in 0..g.c {
        for &q in &used {
            for (i, ih) in (q..g.h).step_by(s).enumerate() {
                let plane = |r: usize| ((c * s + q) * s + r) * pixels + i * wo;
                if pair {
                    let (head, tail) = phases.split_at_mut(plane(1));
                    f(c, ih, PhaseRow::Pair(&mut head[plane(0)..plane(0) + wo], &mut tail[..wo]));
                } else {
                    for &r in &used {
                        f(c, ih, PhaseRow::One(r, &mut phases[plane(r)..plane(r) + wo]));
                    }
                }
            }
        }
    }
}

/// One kernel tap's lowered row as a shifted phase plane (see [`im2col_phased`]): which
/// plane, the shift, the contiguous range of row positions `lo..hi` that maps inside the
/// plane, and the valid output rows and columns.
struct TapShift {
    plane: usize,
    shift: isize,
    lo: usize,
    hi: usize,
    rows: (usize, usize),
    cols: (usize, usize),
}

impl TapShift {
    /// Zeroes the positions of rows `rows` whose column falls in the padding (they wrapped
    /// around a row edge in the contiguous copy).
    #[inline(always)]
    fn clear_wrapped(&self, row: &mut [f32], wo: usize) {
        let (ow0, ow1) = self.cols;
        if ow0 == 0 && ow1 == wo {
            return;
        }
        for line in row[self.rows.0 * wo..self.rows.1 * wo].chunks_exact_mut(wo) {
            line[..ow0].fill(0.0);
            line[ow1..].fill(0.0);
        }
    }
}

/// Calls `f(tap row, shift)` for every tap (c, ki, kj) that reads inside the image.
#[inline(always)]
fn for_tap_shifts(g: &Geometry, mut f: impl FnMut(usize, &TapShift)) {
    let (s, wo, pixels) = (g.stride, g.wo, g.pixels());
    let (ho_i, wo_i) = (g.ho as isize, wo as isize);
    for c in 0..g.c {
        for ki in 0..g.k {
            let (q, dq) = g.phase_of(ki);
            let (oh0, oh1) = ((-dq).max(0), (ho_i - dq).min(ho_i));
            for kj in 0..g.k {
                let (r, dr) = g.phase_of(kj);
                let (ow0, ow1) = ((-dr).max(0), (wo_i - dr).min(wo_i));
                if oh1 <= oh0 || ow1 <= ow0 {
                    continue;
                }
                let shift = dq * wo_i + dr;
                // Clamped so that the source stays inside the plane; what the clamp drops
                // are wrapped positions.
                let lo = (oh0 * wo_i).max(-shift) as usize;
                let hi = (oh1 * wo_i).min(pixels as isize - shift) as usize;
                let tap = TapShift {
                    plane: ((c * s + q) * s + r) * pixels,
                    shift,
                    lo,
                    hi,
                    rows: (oh0 as usize, oh1 as usize),
                    cols: (ow0 as usize, ow1 as usize),
                };
                f((c * g.k + ki) * g.k + kj, &tap);
            }
        }
    }
}

/// [`im2col`] for [`Geometry::phased`] convolutions, from the image's phase planes (the
/// image itself at stride 1). With same padding, output pixel (oh, ow) of tap (ki, kj)
/// reads element (oh + dq, ow + dr) of one phase plane, which has the output's width: the
/// lowered row is that plane shifted by dq·wo + dr, one contiguous copy, after which the
/// few positions that wrapped around a row edge are zeroed. Whole rows that fall in the
/// padding are never written (zero from the start, as in [`im2col`]). This replaced one
/// short copy per output row and tap, whose per-call cost dominated the lowering on 14×14
/// maps.
fn im2col_phased(g: &Geometry, planes: &[f32], col: &mut [f32], ld: usize, at: usize) {
    vectorized(
        #[inline(always)]
        || {
            for_tap_shifts(
                g,
                #[inline(always)]
                |tap_row, tap| {
                    let row = &mut col[tap_row * ld + at..tap_row * ld + at + g.pixels()];
                    let src = tap.plane.wrapping_add_signed(tap.shift);
                    row[tap.lo..tap.hi].copy_from_slice(&planes[src + tap.lo..src + tap.hi]);
                    tap.clear_wrapped(row, g.wo);
                },
            );
        },
    );
}

/// The adjoint of [`im2col_phased`]: adds each tap row of `col` (columns `at..`) onto its
/// shifted phase plane in `planes` (the image gradient itself at stride 1). The wrapped
/// positions are zeroed in `col` first, which is why it is taken mutably.
fn col2im_phased(g: &Geometry, col: &mut [f32], ld: usize, at: usize, planes: &mut [f32]) {
    vectorized(
        #[inline(always)]
        || {
            for_tap_shifts(
                g,
                #[inline(always)]
                |tap_row, tap| {
                    let row = &mut col[tap_row * ld + at..tap_row * ld + at + g.pixels()];
                    tap.clear_wrapped(row, g.wo);
                    let dst = tap.plane.wrapping_add_signed(tap.shift);
                    for (d, v) in planes[dst + tap.lo..dst + tap.hi].iter_mut().zip(&row[tap.lo..tap.hi]) {
                        *d += *v;
                    }
                },
            );
        },
    );
}

/// The adjoint of [`im2col`]: adds columns `at..at + pixels` of `col` back onto the image
/// positions they were read from (overlapping taps sum).
fn col2im(g: &Geometry, col: &[f32], ld: usize, at: usize, dx: &mut [f32]) {
    vectorized(
        #[inline(always)]
        || {
            for_tap_runs(
                g,
                #[inline(always)]
                |run| {
                    let start = run.tap_row * ld + at + run.oh * g.wo;
                    let dst = &mut dx[run.input_row(g)][run.iw0..];
                    strided_add(dst, &col[start + run.cols.0..start + run.cols.1], g.stride);
                },
            );
        },
    );
}

/// Copies `count` images' (`rows`×`pixels`) planes side by side into a `rows`×(count·pixels)
/// matrix with rows `ld` apart, so a group of images becomes one GEMM operand.
fn gather_planes(src: &[f32], count: usize, rows: usize, pixels: usize, ld: usize, dst: &mut [f32]) {
    for (i, img) in src.chunks_exact(rows * pixels).take(count).enumerate() {
        for (r, plane) in img.chunks_exact(pixels).enumerate() {
            dst[r * ld + i * pixels..r * ld + (i + 1) * pixels].copy_from_slice(plane);
        }
    }
}

/// The inverse of [`gather_planes`].
fn scatter_planes(src: &[f32], count: usize, rows: usize, pixels: usize, ld: usize, dst: &mut [f32]) {
    for (i, img) in dst.chunks_exact_mut(rows * pixels).take(count).enumerate() {
        for (r, plane) in img.chunks_exact_mut(pixels).enumerate() {
            plane.copy_from_slice(&src[r * ld + i * pixels..r * ld + (i + 1) * pixels]);
        }
    }
}

/// Scratch buffers of one task. The lowered matrix is zeroed once here and then only
/// overwritten at in-image positions (see [`im2col`]), always with the full group's row
/// stride `ld`, even for a short last group.
struct Scratch<'t> {
    col: Vec<f32>,
    planes: Vec<f32>,
    /// One image's phase planes (see [`split_phases`]), for strided phased lowerings.
    phases: Vec<f32>,
    ld: usize,
    table: Option<&'t [u32]>,
}

impl<'t> Scratch<'t> {
    /// `lowers`: whether this set holds a lowered (im2col) matrix; `planes_rows`: rows of
    /// the side-by-side buffer for grouped images.
    /// `table`: the call's [`tap_table`], if it has one.
    fn new(g: &Geometry, plan: &Plan, lowers: bool, planes_rows: usize, table: Option<&'t [u32]>) -> Self {
        let ld = plan.group * g.pixels();
        let col = if !lowers || plan.direct(g) { Vec::new() } else { vec![0f32; g.taps() * ld] };
        let planes = if plan.group > 1 { vec![0f32; planes_rows * ld] } else { Vec::new() };
        let split = lowers && !plan.direct(g) && g.phased() && g.stride > 1;
        let phases = if split { vec![0f32; g.c * g.stride * g.stride * g.pixels()] } else { Vec::new() };
        Self { col, planes, phases, ld, table }
    }

    /// The `taps`×(count·pixels) lowered matrix of `count` consecutive images.
    fn lower<'a>(&'a mut self, g: &Geometry, plan: &Plan, images: &'a [f32], count: usize) -> MatRef<'a> {
        let cols = count * g.pixels();
        if plan.direct(g) {
            return MatRef::row_major(images, g.taps(), cols);
        }
        for (i, img) in images.chunks_exact(g.image_len()).enumerate() {
            let at = i * g.pixels();
            match self.table {
                Some(table) => im2col_table(table, g.pixels(), img, &mut self.col, self.ld, at),
                None if g.phased() && g.stride == 1 => im2col_phased(g, img, &mut self.col, self.ld, at),
                None if g.phased() => {
                    split_phases(g, img, &mut self.phases);
                    im2col_phased(g, &self.phases, &mut self.col, self.ld, at);
                }
                None => im2col(g, img, &mut self.col, self.ld, at),
            }
        }
        MatRef::strided(&self.col, g.taps(), cols, self.ld)
    }

    /// The `rows`×(count·pixels) matrix of `count` consecutive images' planes: the data
    /// itself for one image, else gathered side by side.
    fn side_by_side<'a>(&'a mut self, g: &Geometry, data: &'a [f32], rows: usize, count: usize) -> MatRef<'a> {
        if count == 1 {
            return MatRef::row_major(data, rows, g.pixels());
        }
        gather_planes(data, count, rows, g.pixels(), self.ld, &mut self.planes);
        MatRef::strided(&self.planes, rows, count * g.pixels(), self.ld)
    }
}

/// Forward: the (N, O, Ho, Wo) output for (N, C, H, W) `x` and (O, C, k, k) `w`; by
/// Winograd's method where `winograd` allows and it applies, else lowered.
pub fn forward(g: &Geometry, x: &[f32], w: &[f32], winograd: bool) -> Result<Vec<f32>, ConvError> {
    check_len("input", x.len(), g.input_len())?;
    check_len("kernel", w.len(), g.weight_len())?;
    if winograd && winograd::applies(g) { winograd::forward(g, x, w) } else { lowered_forward(g, x, w) }
}

/// Input gradient: the (N, C, H, W) gradient from the (N, O, Ho, Wo) output gradient.
pub fn input_grad(g: &Geometry, dy: &[f32], w: &[f32], winograd: bool) -> Result<Vec<f32>, ConvError> {
    check_len("output gradient", dy.len(), g.output_len())?;
    check_len("kernel", w.len(), g.weight_len())?;
    if winograd && winograd::applies(g) { winograd::input_grad(g, dy, w) } else { lowered_input_grad(g, dy, w) }
}

/// Kernel gradient: the (O, C, k, k) gradient summed over the images.
pub fn kernel_grad(g: &Geometry, x: &[f32], dy: &[f32], winograd: bool) -> Result<Vec<f32>, ConvError> {
    check_len("input", x.len(), g.input_len())?;
    check_len("output gradient", dy.len(), g.output_len())?;
    if winograd && winograd::applies(g) { winograd::kernel_grad(g, x, dy) } else { lowered_kernel_grad(g, x, dy) }
}

/// `y[n] = W × im2col(x[n])`; the caller has checked the lengths.
pub(super) fn lowered_forward(g: &Geometry, x: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    let plan = Plan::new(g, 2);
    let table = tap_table(g);
    let (in_len, out_len) = (g.image_len(), g.out_image_len());
    let weights = MatRef::row_major(w, g.o, g.taps());
    let mut y = zeroed(g.output_len());
    y.par_chunks_mut(plan.per_task * out_len).enumerate().try_for_each(|(t, y_task)| {
        let first = t * plan.per_task;
        let images = y_task.len() / out_len;
        let mut scratch = Scratch::new(g, &plan, true, 0, table.as_deref());
        let mut out = if plan.group > 1 { vec![0f32; g.o * scratch.ld] } else { Vec::new() };
        let ld = scratch.ld;
        for start in (0..images).step_by(plan.group) {
            let count = plan.group.min(images - start);
            let n0 = first + start;
            let lowered = scratch.lower(g, &plan, &x[n0 * in_len..(n0 + count) * in_len], count);
            let y_group = &mut y_task[start * out_len..(start + count) * out_len];
            if count == 1 {
                gemm_f32(y_group, g.pixels(), weights, lowered, false, plan.gemm)?;
            } else {
                gemm_f32(&mut out, ld, weights, lowered, false, plan.gemm)?;
                scatter_planes(&out, count, g.o, g.pixels(), ld, y_group);
            }
        }
        Ok::<(), ConvError>(())
    })?;
    Ok(y)
}

/// `dx[n] = col2im(Wᵀ × dy[n])`; the caller has checked the lengths.
pub(super) fn lowered_input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>, ConvError> {
    let plan = Plan::new(g, 2);
    let table = tap_table(g);
    let (in_len, out_len) = (g.image_len(), g.out_image_len());
    let weights_t = MatRef::transposed(w, g.o, g.taps());
    let mut dx = zeroed(g.input_len());
    dx.par_chunks_mut(plan.per_task * in_len).enumerate().try_for_each(|(t, dx_task)| {
        let first = t * plan.per_task;
        let images = dx_task.len() / in_len;
        let mut scratch = Scratch::new(g, &plan, true, g.o, table.as_deref());
        // Every entry of the lowered gradient is written by the GEMM: no zeroing to keep.
        let mut dcol = std::mem::take(&mut scratch.col);
        let ld = scratch.ld;
        for start in (0..images).step_by(plan.group) {
            let count = plan.group.min(images - start);
            let n0 = first + start;
            let dy_mat = scratch.side_by_side(g, &dy[n0 * out_len..(n0 + count) * out_len], g.o, count);
            let dx_group = &mut dx_task[start * in_len..(start + count) * in_len];
            if plan.direct(g) {
                gemm_f32(dx_group, g.pixels(), weights_t, dy_mat, false, plan.gemm)?;
            } else {
                gemm_f32(&mut dcol, ld, weights_t, dy_mat, false, plan.gemm)?;
                for (i, img) in dx_group.chunks_exact_mut(in_len).enumerate() {
                    let at = i * g.pixels();
                    match scratch.table {
                        Some(table) => col2im_table(table, g.pixels(), &dcol, ld, at, img),
                        None if g.phased() && g.stride == 1 => col2im_phased(g, &mut dcol, ld, at, img),
                        None if g.phased() => {
                            scratch.phases.fill(0.0);
                            col2im_phased(g, &mut dcol, ld, at, &mut scratch.phases);
                            merge_phases(g, &mut scratch.phases, img);
                        }
                        None => col2im(g, &dcol, ld, at, img),
                    }
                }
            }
        }
        Ok::<(), ConvError>(())
    })?;
    Ok(dx)
}

/// `dW = Σₙ dy[n] × im2col(x[n])ᵀ`; the caller has checked the lengths. Each task sums its
/// own images into a private buffer; the buffers are added at the end.
///
/// The product is taken transposed, `dWᵀ += im2col(x[n]) × dy[n]ᵀ`. `gemm` re-packs (copies
/// and transposes) whichever operand it cannot read in place, for every call; in the
/// direct form that is the lowered input, taps × pixels values per image, which with the
/// AVX-512 kernels took a seventh of a ResNet-18 step. In the transposed form it is the
/// output gradient, a ninth the size in ResNet-18 (taps = 9·C, and O = C there or 2·C).
pub(super) fn lowered_kernel_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Result<Vec<f32>, ConvError> {
    let plan = Plan::new(g, 1);
    let table = tap_table(g);
    let (in_len, out_len) = (g.image_len(), g.out_image_len());
    let tasks = g.n.div_ceil(plan.per_task);
    let partials = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let first = t * plan.per_task;
            let images = plan.per_task.min(g.n - first);
            let mut acc_t = vec![0f32; g.weight_len()];
            // Two scratch sets: the lowered input and the gathered gradient are both live
            // during the GEMM.
            let mut lower = Scratch::new(g, &plan, true, 0, table.as_deref());
            let mut grads = Scratch::new(g, &plan, false, g.o, None);
            for start in (0..images).step_by(plan.group) {
                let count = plan.group.min(images - start);
                let n0 = first + start;
                let dy_mat = grads.side_by_side(g, &dy[n0 * out_len..(n0 + count) * out_len], g.o, count);
                let lowered = lower.lower(g, &plan, &x[n0 * in_len..(n0 + count) * in_len], count);
                gemm_f32(&mut acc_t, g.o, lowered, dy_mat.t(), true, plan.gemm)?;
            }
            Ok(acc_t)
        })
        .collect::<Result<Vec<_>, ConvError>>()?;
    Ok(transpose(&sum_partials(partials, g.weight_len()), g.taps(), g.o, g.o, true))
}

/// The element-wise sum of the tasks' partial kernel gradients (`len` zeros for none), in
/// parallel: a 512-channel Winograd kernel gradient is 16 MB per task.
pub(super) fn sum_partials(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut partials = partials.into_iter();
    let mut sum = partials.next().unwrap_or_else(|| vec![0f32; len]);
    let rest: Vec<Vec<f32>> = partials.collect();
    sum.par_chunks_mut(SUM_CHUNK).enumerate().for_each(|(i, s)| {
        for part in &rest {
            s.iter_mut().zip(&part[i * SUM_CHUNK..]).for_each(|(a, b)| *a += *b);
        }
    });
    sum
}

/// Values per task of [`sum_partials`].
const SUM_CHUNK: usize = 1 << 14;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The textbook definition, for checking the lowered kernels on tiny shapes.
    fn naive(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; g.output_len()];
        for n in 0..g.n {
            for o in 0..g.o {
                for oh in 0..g.ho {
                    for ow in 0..g.wo {
                        let mut acc = 0f32;
                        for c in 0..g.c {
                            for ki in 0..g.k {
                                for kj in 0..g.k {
                                    let ih = (oh * g.stride + ki) as isize - g.padding as isize;
                                    let iw = (ow * g.stride + kj) as isize - g.padding as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.c + c) * g.h + ih as usize) * g.w + iw as usize;
                                    acc += x[xi] * w[((o * g.c + c) * g.k + ki) * g.k + kj];
                                }
                            }
                        }
                        y[((n * g.o + o) * g.ho + oh) * g.wo + ow] = acc;
                    }
                }
            }
        }
        y
    }

    fn seq(len: usize, mul: f32) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 % 97) as f32 / 97.0 - 0.5) * mul).collect()
    }

    #[test]
    fn forward_matches_the_definition() {
        for &(n, c, h, w, o, k, s, p) in &[
            (1, 1, 5, 5, 1, 3, 1, 1),
            (3, 2, 7, 6, 4, 3, 2, 1),
            (2, 3, 4, 4, 2, 1, 1, 0),
            (5, 2, 3, 3, 3, 1, 2, 0),
            (2, 1, 9, 8, 2, 7, 2, 1),
            (40, 2, 2, 2, 3, 1, 1, 1),
        ] {
            let g = Geometry::new((n, c, h, w), o, k, s, p).unwrap();
            let x = seq(g.input_len(), 1.0);
            let wt = seq(g.weight_len(), 0.5);
            let got = forward(&g, &x, &wt, true).unwrap();
            let want = naive(&g, &x, &wt);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{g:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Geometry::new((1, 1, 2, 2), 1, 5, 1, 1).is_err());
        assert!(Geometry::new((1, 0, 2, 2), 1, 1, 1, 0).is_err());
        let g = Geometry::new((1, 1, 3, 3), 1, 3, 1, 1).unwrap();
        assert!(forward(&g, &[0.0; 8], &[0.0; 9], true).is_err());
        assert!(kernel_grad(&g, &[0.0; 9], &[0.0; 8], true).is_err());
    }
}
