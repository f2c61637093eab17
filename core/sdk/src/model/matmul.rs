//! Matrix products with optional transposes, single or batched, differentiable, with a CPU
//! kernel that reads transposed operands through their strides and whose gradients come out
//! contiguous.
//!
//! Attention multiplies `N × heads` small matrices (a 50×64 by 64×50 product per image and
//! head for ViT-Tiny on 28 px images). candle's CPU matmul runs a batch one product after
//! another, each asking rayon to split a matrix too small to split, and `q·kᵀ` first copies
//! `k` transposed. Here one rayon task takes a run of whole products, each a single-threaded
//! GEMM; a batch smaller than the thread pool (a linear layer's one product) is instead
//! split by the GEMM itself.
//!
//! The gradients matter as much as the products: candle differentiates `x·wᵀ` through
//! `w.t()`, so a weight's gradient is a transposed view, and when a weight is used twice
//! (two views through one projector) candle adds two transposed views element by element
//! with strided reads — 15% of a Barlow Twins step. Here each gradient is its own
//! contiguous product. Elsewhere (CUDA, other dtypes) candle's matmul runs. This file must
//! not know about attention or any network.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use candle_core::{Result, Tensor};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{MatRef, contiguous, gemm_error, gemm_f32};

/// `op(a) · op(b)` over the leading (batch) dimensions, `op` a transpose of the last two
/// dimensions where `transpose_a` / `transpose_b` say: for `(…, m, k)` by `(…, k, n)`
/// without transposes, `(…, m, n)`. Both need the same batch dimensions (none for two
/// matrices).
pub fn batch_matmul(a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    if a.device().is_cpu() && a.dtype() == candle_core::DType::F32 && a.rank() >= 2 {
        let op = BatchMatmul { ta: transpose_a, tb: transpose_b };
        return a.contiguous()?.apply_op2(&b.contiguous()?, op);
    }
    // candle's matmul takes a transposed matrix as it is, but not a transposed batch.
    let t = |x: &Tensor, yes: bool| match (yes, x.rank()) {
        (false, _) => Ok(x.clone()),
        (true, 2) => x.t(),
        (true, _) => x.t()?.contiguous(),
    };
    t(a, transpose_a)?.matmul(&t(b, transpose_b)?)
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy)]
struct BatchMatmul {
    ta: bool,
    tb: bool,
}

/// The batch size (1 for a matrix) and the last two dimensions of a tensor of rank ≥ 2.
#[cfg(not(target_arch = "wasm32"))]
fn batch_dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let dims = l.dims();
    match dims {
        [batch @ .., r, c] => Ok((batch.iter().product(), *r, *c)),
        _ => candle_core::bail!("batch_matmul needs tensors of rank 2 or more, got {dims:?}"),
    }
}

/// Matrix `i` of a batch of row-major `rows × cols` matrices, transposed if asked.
#[cfg(not(target_arch = "wasm32"))]
fn nth(data: &[f32], i: usize, rows: usize, cols: usize, transpose: bool) -> MatRef<'_> {
    let one = &data[i * rows * cols..(i + 1) * rows * cols];
    if transpose { MatRef::transposed(one, rows, cols) } else { MatRef::row_major(one, rows, cols) }
}

/// `op_a(a) · op_b(b)` over the batch dimensions on the CPU, into a new buffer; with `bias`
/// (one value per output column), `… + bias` with the bias written first and the product
/// added to it, so that a linear layer does not pass over its output twice.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn cpu_batch_matmul(
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    ta: bool,
    tb: bool,
    bias: Option<&[f32]>,
) -> Result<(CpuStorage, Shape)> {
    let (a, b) = (contiguous(s1, l1, "batch_matmul")?, contiguous(s2, l2, "batch_matmul")?);
    let ((batch, ar, ac), (batch2, br, bc)) = (batch_dims(l1)?, batch_dims(l2)?);
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if batch != batch2 || l1.dims()[..l1.dims().len() - 2] != l2.dims()[..l2.dims().len() - 2] || k != k2 {
        candle_core::bail!("batch_matmul: cannot multiply {:?} by {:?}", l1.dims(), l2.dims());
    }
    let mut out = match bias {
        None => vec![0f32; batch * m * n],
        Some(bias) if bias.len() == n => bias.repeat(batch * m),
        Some(bias) => candle_core::bail!("a bias of {} values for products of {n} columns", bias.len()),
    };
    let product = |i: usize, dst: &mut [f32], parallelism| {
        let (lhs, rhs) = (nth(a, i, ar, ac, ta), nth(b, i, br, bc, tb));
        gemm_f32(dst, n, lhs, rhs, bias.is_some(), parallelism).map_err(gemm_error("batch_matmul"))
    };
    let threads = rayon::current_num_threads();
    if m * n == 0 {
        // Nothing to compute: an empty product.
    } else if batch < threads {
        // Too few products to go round: each is split by the GEMM, when big enough.
        let split = threads > 1 && m * n * k >= 32_768 * threads;
        let parallelism = if split { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        for (i, d) in out.chunks_mut(m * n).enumerate() {
            product(i, d, parallelism)?;
        }
    } else {
        // Whole products per task, about 32k multiply-adds each at the least.
        let per_task = (32_768 / (m * n * k).max(1)).max(1);
        out.par_chunks_mut(per_task * m * n).enumerate().try_for_each(|(t, dst)| {
            for (j, d) in dst.chunks_mut(m * n).enumerate() {
                product(t * per_task + j, d, gemm::Parallelism::None)?;
            }
            Ok::<(), candle_core::Error>(())
        })?;
    }
    let mut shape = l1.dims()[..l1.dims().len() - 2].to_vec();
    shape.extend([m, n]);
    Ok((CpuStorage::F32(out), Shape::from(shape)))
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for BatchMatmul {
    fn name(&self) -> &'static str {
        "pretext-batch-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_batch_matmul((s1, l1), (s2, l2), self.ta, self.tb, None)
    }

    /// With `C = op_a(A)·op_b(B)`: `op_a(A)`'s gradient is `dC·op_b(B)ᵀ` and `op_b(B)`'s is
    /// `op_a(A)ᵀ·dC`; a transposed operand takes the transpose of its product, which is the
    /// product of the transposes in the other order.
    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, dc: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let da = if self.ta { batch_matmul(b, dc, self.tb, true)? } else { batch_matmul(dc, b, false, !self.tb)? };
        let db = if self.tb { batch_matmul(dc, a, true, self.ta)? } else { batch_matmul(a, dc, !self.ta, false)? };
        Ok((Some(da), Some(db)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::model::tests::max_diff;

    #[test]
    fn products_and_gradients_match_candles_matmul_for_every_transpose() {
        // A batch of small products, one small matrix, and one large enough for the GEMM
        // to split it over the threads.
        for (batch, (m, k, n)) in [(&[2usize, 3][..], (5, 7, 3)), (&[][..], (5, 7, 3)), (&[][..], (96, 160, 80))] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                check_against_candle(batch, (m, k, n), ta, tb);
            }
        }
    }

    fn check_against_candle(batch: &[usize], (m, k, n): (usize, usize, usize), ta: bool, tb: bool) {
        let dev = Device::Cpu;
        let shape = |r: usize, c: usize| [batch, &[r, c]].concat();
        let a_shape = if ta { shape(k, m) } else { shape(m, k) };
        let b_shape = if tb { shape(n, k) } else { shape(k, n) };
        let a = Var::from_tensor(&Tensor::randn(0f32, 1., a_shape, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., b_shape, &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1., shape(m, n), &dev).unwrap();
        let t = |x: &Tensor, yes: bool| if yes { x.t().unwrap().contiguous().unwrap() } else { x.clone() };

        let ours = batch_matmul(&a, &b, ta, tb).unwrap();
        let reference = t(&a, ta).matmul(&t(&b, tb)).unwrap();
        assert_eq!(ours.dims(), shape(m, n));
        let tolerance = 1e-6 * k as f32;
        assert!(max_diff(&ours, &reference) < tolerance, "{batch:?} ta {ta} tb {tb}");

        let g_ours = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &b] {
            let (x, y) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
            assert!(max_diff(x, y) < tolerance, "gradient, {batch:?} ta {ta} tb {tb}");
            // What the op is for: a gradient that later adds and optimizer steps read in order.
            assert!(x.is_contiguous(), "gradient layout, {batch:?} ta {ta} tb {tb}");
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((2, 4, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros((3, 3, 4), candle_core::DType::F32, &dev).unwrap();
        assert!(batch_matmul(&a, &b, false, false).is_err(), "batch 2 by batch 3");
        assert!(batch_matmul(&a, &a, false, false).is_err(), "4×3 by 4×3");
    }
}
