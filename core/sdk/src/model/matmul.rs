//! Batched matrix products with optional transposes, differentiable, with a CPU kernel that
//! runs the batch's products in parallel.
//!
//! Attention multiplies `N × heads` small matrices (a 50×64 by 64×50 product per image and
//! head for ViT-Tiny on 28 px images). candle's CPU matmul runs a batch one product after
//! another, each asking rayon to split a matrix too small to split, and `q·kᵀ` first copies
//! `k` transposed. Here one rayon task takes a run of whole products, each a single-threaded
//! GEMM that reads transposed operands through their strides. Elsewhere (CUDA, other dtypes)
//! candle's matmul runs. This file must not know about attention or any network.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use candle_core::{Result, Tensor};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{MatRef, contiguous, gemm_f32};

/// `op(a) · op(b)` over the leading (batch) dimensions, `op` a transpose of the last two
/// dimensions where `transpose_a` / `transpose_b` say: for `(…, m, k)` by `(…, k, n)`
/// without transposes, `(…, m, n)`. Both need the same batch dimensions.
pub fn batch_matmul(a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    if a.device().is_cpu() && a.dtype() == candle_core::DType::F32 && a.rank() >= 3 {
        let op = BatchMatmul { ta: transpose_a, tb: transpose_b };
        return a.contiguous()?.apply_op2(&b.contiguous()?, op);
    }
    let t = |x: &Tensor, yes: bool| if yes { x.t()?.contiguous() } else { Ok(x.clone()) };
    t(a, transpose_a)?.matmul(&t(b, transpose_b)?)
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy)]
struct BatchMatmul {
    ta: bool,
    tb: bool,
}

/// The batch size and the last two dimensions of a tensor of rank ≥ 3.
#[cfg(not(target_arch = "wasm32"))]
fn batch_dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let dims = l.dims();
    match dims {
        [batch @ .., r, c] if !batch.is_empty() => Ok((batch.iter().product(), *r, *c)),
        _ => candle_core::bail!("batch_matmul needs tensors of rank 3 or more, got {dims:?}"),
    }
}

/// Matrix `i` of a batch of row-major `rows × cols` matrices, transposed if asked.
#[cfg(not(target_arch = "wasm32"))]
fn nth(data: &[f32], i: usize, rows: usize, cols: usize, transpose: bool) -> MatRef<'_> {
    let one = &data[i * rows * cols..(i + 1) * rows * cols];
    if transpose { MatRef::transposed(one, rows, cols) } else { MatRef::row_major(one, rows, cols) }
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for BatchMatmul {
    fn name(&self) -> &'static str {
        "pretext-batch-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (contiguous(s1, l1, "batch_matmul")?, contiguous(s2, l2, "batch_matmul")?);
        let ((batch, ar, ac), (batch2, br, bc)) = (batch_dims(l1)?, batch_dims(l2)?);
        let (m, k) = if self.ta { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if self.tb { (bc, br) } else { (br, bc) };
        if batch != batch2 || l1.dims()[..l1.dims().len() - 2] != l2.dims()[..l2.dims().len() - 2] || k != k2 {
            candle_core::bail!("batch_matmul: cannot multiply {:?} by {:?}", l1.dims(), l2.dims());
        }
        let mut out = vec![0f32; batch * m * n];
        // Whole products per task, about 32k multiply-adds each at the least.
        let per_task = (32_768 / (m * n * k).max(1)).max(1);
        if m * n > 0 {
            out.par_chunks_mut(per_task * m * n).enumerate().try_for_each(|(t, dst)| {
                for (j, d) in dst.chunks_mut(m * n).enumerate() {
                    let i = t * per_task + j;
                    let (lhs, rhs) = (nth(a, i, ar, ac, self.ta), nth(b, i, br, bc, self.tb));
                    gemm_f32(d, n, lhs, rhs, false, gemm::Parallelism::None)
                        .map_err(|e| candle_core::Error::Msg(format!("batch_matmul: {e}")))?;
                }
                Ok::<(), candle_core::Error>(())
            })?;
        }
        let mut shape = l1.dims()[..l1.dims().len() - 2].to_vec();
        shape.extend([m, n]);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
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

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn products_and_gradients_match_candles_matmul_for_every_transpose() {
        let dev = Device::Cpu;
        let (m, k, n) = (5, 7, 3);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a_shape = if ta { (2, 3, k, m) } else { (2, 3, m, k) };
            let b_shape = if tb { (2, 3, n, k) } else { (2, 3, k, n) };
            let a = Var::from_tensor(&Tensor::randn(0f32, 1., a_shape, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 1., b_shape, &dev).unwrap()).unwrap();
            let weights = Tensor::randn(0f32, 1., (2, 3, m, n), &dev).unwrap();
            let t = |x: &Tensor, yes: bool| if yes { x.t().unwrap().contiguous().unwrap() } else { x.clone() };

            let ours = batch_matmul(&a, &b, ta, tb).unwrap();
            let reference = t(&a, ta).matmul(&t(&b, tb)).unwrap();
            assert_eq!(ours.dims(), [2, 3, m, n]);
            assert!(max_diff(&ours, &reference) < 1e-5, "ta {ta} tb {tb}");

            let g_ours = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let g_ref = (reference * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&a, &b] {
                let (x, y) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
                assert!(max_diff(x, y) < 1e-5, "gradient, ta {ta} tb {tb}");
            }
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
