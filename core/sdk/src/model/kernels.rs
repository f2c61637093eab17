//! What the CPU custom ops of this module share: reading a tensor's storage as one
//! contiguous f32 slice (or two of one length), an element-wise map of two slices, how many
//! rows one rayon task takes, fast f32 sums, zeroed buffers written in parallel, a cache-aware
//! transpose, and the one bounds-checked call into the `gemm` crate (the module's only
//! `unsafe` block). Off wasm32 only, like the ops themselves; no op logic lives here.

use candle_core::{CpuStorage, Layout, Result};
use gemm::Parallelism;
use rayon::prelude::*;

/// A right-hand operand that is a transposed view of at least this many values, in a
/// product of at least [`TRANSPOSE_MIN_ROWS`] rows, is copied upright before the product
/// (see [`gemm_f32`]).
const TRANSPOSE_MIN_VALUES: usize = 1 << 18;
const TRANSPOSE_MIN_ROWS: usize = 128;

/// Source columns per block of [`transpose`]: eight output rows are written at a time.
/// Wider blocks write more rows that lie a power of two apart, which share cache sets:
/// on a 2048×2048 matrix, 16 took 2.3× and 32 took 6× as long as 8.
const TRANSPOSE_BLOCK: usize = 8;

/// A matrix view or product that does not fit its buffer. The ops check shapes before
/// calling in, so this means a caller bug rather than bad user data, but it is an error,
/// not a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    #[error("a {rows}×{cols} matrix with strides ({rs}, {cs}) overruns its {len}-element buffer")]
    Overrun { rows: usize, cols: usize, rs: usize, cs: usize, len: usize },
    #[error("matrix product of {m}×{k} by {k2}×{n} into a buffer of {len}")]
    Shapes { m: usize, k: usize, k2: usize, n: usize, len: usize },
}

/// Turns a [`GemmError`] from [`gemm_f32`] into candle's error, naming `op`: for the ops'
/// `map_err`.
pub(crate) fn gemm_error(op: &'static str) -> impl Fn(GemmError) -> candle_core::Error {
    move |e| candle_core::Error::Msg(format!("{op}: {e}"))
}

/// The values of a contiguous f32 tensor, or an error naming `op`.
pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets().and_then(|(a, b)| data.get(a..b)) {
        Some(v) => Ok(v),
        None => candle_core::bail!("{op}: the input must be a contiguous f32 tensor"),
    }
}

/// The two same-length contiguous f32 inputs of an element-wise op, or an error naming `op`.
pub(crate) fn contiguous_pair<'a>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    op: &str,
) -> Result<(&'a [f32], &'a [f32])> {
    let (a, b) = (contiguous(s1, l1, op)?, contiguous(s2, l2, op)?);
    if a.len() != b.len() {
        candle_core::bail!("{op}: {} values against {}", a.len(), b.len());
    }
    Ok((a, b))
}

/// `out[i] = f(a[i], b[i])` over rayon's threads, vectorised; `f` is inlined into each
/// task's [`vectorized`] loop.
pub(crate) fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Copy) -> Vec<f32> {
    let mut out = zeroed(a.len());
    out.par_chunks_mut(chunk_len(1)).zip(a.par_chunks(chunk_len(1)).zip(b.par_chunks(chunk_len(1)))).for_each(
        |(o, (a, b))| {
            vectorized(
                #[inline(always)]
                || {
                    for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                        *o = f(x, y);
                    }
                },
            );
        },
    );
    out
}

/// Values per rayon task, in whole rows of `row` values: about 16k, so that small tensors
/// are not split and large ones are split evenly.
pub(crate) fn chunk_len(row: usize) -> usize {
    let row = row.max(1);
    (16_384 / row).max(1) * row
}

/// Runs `f` compiled for the widest vector instructions this CPU has (AVX-512, else AVX2,
/// else the x86-64 baseline's SSE2), picked at run time. The build targets baseline x86-64
/// so that one binary runs anywhere; without this, the elementwise loops of batch norm and
/// the convolution's lowering run four floats at a time on machines that do sixteen. `f`
/// must be small enough to be inlined here, or it keeps the baseline instructions.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Eight independent partial sums: float addition is not associative, so the compiler keeps
/// a single running sum in order unless the lanes are spelled out, and that serial chain
/// is what made these reductions slow.
pub(crate) const LANES: usize = 8;

pub(crate) fn lanes_total(acc: [f32; LANES]) -> f32 {
    acc.iter().sum()
}

pub(crate) fn sum(x: &[f32]) -> f32 {
    vectorized(
        #[inline(always)]
        || sum_in(x),
    )
}

/// [`sum`] for a caller already inside [`vectorized`] (one dispatch for many short rows).
#[inline(always)]
pub(crate) fn sum_in(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for ch in chunks {
        for (a, v) in acc.iter_mut().zip(ch) {
            *a += *v;
        }
    }
    lanes_total(acc) + tail
}

/// Σ (x − m)².
pub(crate) fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    vectorized(
        #[inline(always)]
        || sum_sq_dev_in(x, m),
    )
}

/// [`sum_sq_dev`] for a caller already inside [`vectorized`].
#[inline(always)]
pub(crate) fn sum_sq_dev_in(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - m) * (v - m)).sum();
    for ch in chunks {
        for (a, v) in acc.iter_mut().zip(ch) {
            *a += (v - m) * (v - m);
        }
    }
    lanes_total(acc) + tail
}

/// `len` zeros, written by rayon's threads when there are many. An activation-sized
/// `vec![0.0; len]` is one thread's `memset` on the caller's thread while the pool waits:
/// in a ResNet-18 step at two threads that was 5% of the samples, with the other core idle.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    if len < PARALLEL_ZEROS {
        return vec![0f32; len];
    }
    let mut out = Vec::with_capacity(len);
    out.par_extend(rayon::iter::repeat_n(0f32, len));
    out
}

/// From this many values [`zeroed`] splits the work (256 KB).
const PARALLEL_ZEROS: usize = 1 << 16;

/// A read-only matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major `rows`×`cols` matrix stored in `data`.
    pub(crate) fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows: cols, cols: rows, rs: 1, cs: cols }
    }

    /// Rows `ld` apart, as in a lowered group of images.
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self { data, rows, cols, rs: ld, cs: 1 }
    }

    pub(crate) fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    pub(crate) fn check(&self) -> std::result::Result<(), GemmError> {
        if self.rows == 0 || self.cols == 0 {
            return Ok(());
        }
        let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
        if last >= self.data.len() {
            return Err(GemmError::Overrun {
                rows: self.rows,
                cols: self.cols,
                rs: self.rs,
                cs: self.cs,
                len: self.data.len(),
            });
        }
        Ok(())
    }
}

/// The transpose of the row-major `rows`×`cols` matrix whose rows start `ld` apart in
/// `src`, as a row-major `cols`×`rows` matrix; split over rayon's threads if `parallel`.
/// `src` must hold the matrix (`(rows − 1)·ld + cols` values at least).
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, ld: usize, parallel: bool) -> Vec<f32> {
    let mut out = zeroed(rows * cols);
    if rows == 0 || cols == 0 {
        return out;
    }
    // One block: output rows c0.. (source columns), written a source row at a time, so
    // each source row is read once per block and each output row is written in order.
    let block = |(b, rows_out): (usize, &mut [f32])| {
        let (c0, width) = (b * TRANSPOSE_BLOCK, rows_out.len() / rows);
        for r in 0..rows {
            let row = &src[r * ld + c0..r * ld + c0 + width];
            for (j, v) in row.iter().enumerate() {
                rows_out[j * rows + r] = *v;
            }
        }
    };
    let chunk = TRANSPOSE_BLOCK * rows;
    if parallel {
        out.par_chunks_mut(chunk).enumerate().for_each(block);
    } else {
        out.chunks_mut(chunk).enumerate().for_each(block);
    }
    out
}

/// `dst = lhs × rhs`, or `dst += lhs × rhs` with `accumulate`; `dst` is row-major with rows
/// `dst_ld` apart. Every view is bounds-checked here, which is what makes the call sound.
pub(crate) fn gemm_f32(
    dst: &mut [f32],
    dst_ld: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    parallelism: Parallelism,
) -> std::result::Result<(), GemmError> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        return Err(GemmError::Shapes { m, k, k2: rhs.rows, n, len: dst.len() });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if (m - 1) * dst_ld + n > dst.len() || dst_ld < n {
        return Err(GemmError::Shapes { m, k, k2: rhs.rows, n, len: dst.len() });
    }
    lhs.check()?;
    rhs.check()?;
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_ld).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return Ok(());
    }
    // `gemm` computes a row-major product as its transpose, so a transposed right-hand
    // operand (`x·Wᵀ`, a linear layer's forward) becomes its left-hand operand with a row
    // stride, which it re-packs with a strided gather on every thread. For a 256×2048 by
    // 2048×2048 product that took as long as the multiplication; copying `W` upright first
    // costs a fifth of that.
    let upright;
    let rhs = if rhs.rs == 1 && rhs.cs != 1 && m >= TRANSPOSE_MIN_ROWS && k * n >= TRANSPOSE_MIN_VALUES {
        upright = transpose(rhs.data, n, k, rhs.cs, matches!(parallelism, Parallelism::Rayon(_)));
        MatRef::row_major(&upright, k, n)
    } else {
        rhs
    };
    let stride = |s: usize| s as isize;
    // SAFETY: `gemm` reads lhs (m×k) at `lhs.data + i·rs + j·cs`, rhs (k×n) likewise, and
    // reads/writes dst (m×n) at `dst + i·dst_ld + j`. The checks above bound the largest of
    // those offsets by each slice's length, and all sizes are non-zero. The slices fit in
    // `isize` (Rust allocations do), so the stride casts cannot wrap. `dst` is a unique
    // borrow, so it aliases neither input, and `T = f32` is one of the supported types.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(dst_ld),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.cs),
            stride(lhs.rs),
            rhs.data.as_ptr(),
            stride(rhs.cs),
            stride(rhs.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seq(len: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 % 101) as f32 / 101.0) - 0.5).collect()
    }

    #[test]
    fn transpose_matches_the_definition_on_ragged_blocks() {
        // 13 columns: one whole block of 8 and a ragged one; rows 24 apart, so the padding
        // at each row's end must be skipped.
        let (rows, cols, ld) = (21, 13, 24);
        let src = seq((rows - 1) * ld + cols);
        for parallel in [false, true] {
            let t = transpose(&src, rows, cols, ld, parallel);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], src[r * ld + c], "({r}, {c}), parallel {parallel}");
                }
            }
        }
    }

    #[test]
    fn a_large_transposed_right_operand_gives_the_upright_product() {
        // Large enough for gemm_f32 to copy the transposed operand upright first: the
        // product must equal the one with the operand stored upright to begin with.
        let (m, k, n) = (TRANSPOSE_MIN_ROWS, 512, TRANSPOSE_MIN_VALUES / 512);
        let (lhs, w) = (seq(m * k), seq(n * k));
        let upright = transpose(&w, n, k, k, false);
        for parallelism in [Parallelism::None, Parallelism::Rayon(2)] {
            let mut via_view = vec![0f32; m * n];
            let mut direct = vec![0f32; m * n];
            gemm_f32(&mut via_view, n, MatRef::row_major(&lhs, m, k), MatRef::transposed(&w, n, k), false, parallelism)
                .unwrap();
            gemm_f32(
                &mut direct,
                n,
                MatRef::row_major(&lhs, m, k),
                MatRef::row_major(&upright, k, n),
                false,
                parallelism,
            )
            .unwrap();
            assert_eq!(via_view, direct);
        }
    }
}
