//! Adding a tensor that repeats over the leading dimensions of another (a bias, a ViT's
//! position embeddings), differentiable, with a backward that sums the gradient's rows in
//! one contiguous pass on the CPU.
//!
//! candle differentiates `broadcast_add` through a sum over the broadcast dimensions, which
//! its CPU backend walks with strided loops: for a ViT's (N, 49, 192) patch tokens and their
//! (1, 49, 192) position embeddings that sum was a seventh of the calling thread's samples
//! in an MAE step. Here both tensors are seen as rows: `x` as (R, K), the repeated tensor as
//! one row of K, and its gradient is the sum of the rows. Elsewhere candle broadcasts.
//! This file must not know which layer it serves.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use candle_core::{Result, Tensor};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{chunk_len, contiguous};

/// `x + b`, with `b`'s shape a trailing part of `x`'s after leading ones: `(N, L, D) +
/// (1, L, D)`, `(R, K) + (K)`.
pub fn add_repeated(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let trailing: Vec<usize> = b.dims().iter().copied().skip_while(|&d| d == 1).collect();
    if !x.dims().ends_with(&trailing) || b.rank() > x.rank() {
        candle_core::bail!("cannot add a tensor of shape {:?} repeated over one of {:?}", b.dims(), x.dims());
    }
    #[cfg(not(target_arch = "wasm32"))]
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && b.dtype() == candle_core::DType::F32 {
        return x.contiguous()?.apply_op2(&b.contiguous()?, AddRepeated);
    }
    x.broadcast_add(b)
}

/// The sum of the rows of `g` (R, K) as a tensor of `shape` (K values): a repeated
/// tensor's gradient, from the gradient of what it was added to (the CPU ops' backward).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn row_sums(g: &Tensor, shape: &Shape) -> Result<Tensor> {
    g.contiguous()?.apply_op1_no_bwd(&RowSums { k: shape.elem_count() })?.reshape(shape)
}

#[cfg(not(target_arch = "wasm32"))]
struct AddRepeated;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for AddRepeated {
    fn name(&self) -> &'static str {
        "pretext-add-repeated"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, bs: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (contiguous(xs, xl, "add")?, contiguous(bs, bl, "add")?);
        let k = b.len();
        if k == 0 || !x.len().is_multiple_of(k) {
            candle_core::bail!("add: {} values do not split into rows of {k}", x.len());
        }
        let mut z = x.to_vec();
        z.par_chunks_mut(chunk_len(k)).for_each(|c| {
            for row in c.chunks_mut(k) {
                row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
            }
        });
        Ok((CpuStorage::F32(z), xl.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(row_sums(grad, b.shape())?)))
    }
}

/// (R, K) → (K): the sum of the rows.
#[cfg(not(target_arch = "wasm32"))]
struct RowSums {
    k: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp1 for RowSums {
    fn name(&self) -> &'static str {
        "pretext-row-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = contiguous(s, l, "row sums")?;
        let k = self.k;
        if k == 0 || !g.len().is_multiple_of(k) {
            candle_core::bail!("row sums: {} values do not split into rows of {k}", g.len());
        }
        let partial: Vec<Vec<f32>> = g
            .par_chunks(chunk_len(k))
            .map(|c| {
                let mut acc = vec![0f32; k];
                for row in c.chunks(k) {
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
                }
                acc
            })
            .collect();
        let mut sums = vec![0f32; k];
        for acc in partial {
            sums.iter_mut().zip(acc).for_each(|(s, a)| *s += a);
        }
        Ok((CpuStorage::F32(sums), Shape::from(k)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::model::tests::max_diff;

    #[test]
    fn matches_candles_broadcast_add_forward_and_backward() {
        let dev = Device::Cpu;
        for (x_shape, b_shape) in [(vec![4, 7, 6], vec![1, 7, 6]), (vec![5, 3], vec![3]), (vec![300, 2, 40], vec![40])]
        {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., x_shape.clone(), &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 1., b_shape.clone(), &dev).unwrap()).unwrap();
            let r = Tensor::randn(0f32, 1., x_shape.clone(), &dev).unwrap();
            let (ours, theirs) = (add_repeated(&x, &b).unwrap(), x.broadcast_add(&b).unwrap());
            assert_eq!(ours.dims(), x_shape.as_slice());
            assert!(max_diff(&ours, &theirs) < 1e-7, "{x_shape:?} + {b_shape:?}");
            let grad = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (g_ours, g_theirs) = (grad(&ours), grad(&theirs));
            for v in [&x, &b] {
                let (p, q) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert_eq!(p.dims(), v.dims());
                assert!(max_diff(p, q) < 1e-4, "gradient, {x_shape:?} + {b_shape:?}");
            }
        }
    }

    #[test]
    fn a_tensor_that_does_not_repeat_over_the_other_is_an_error() {
        let x = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((1, 4, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(add_repeated(&x, &b).is_err());
        assert!(add_repeated(&b.narrow(2, 0, 1).unwrap(), &x).is_err(), "larger than x");
    }
}
