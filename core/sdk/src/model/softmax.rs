//! Softmax over the last dimension, differentiable, with one-pass CPU kernels.
//!
//! candle-nn's fused `softmax_last_dim` has no backward and the differentiable `softmax` is
//! five whole-tensor passes forward and more backward; attention runs one per block over
//! (N, heads, T, T) scores. On the CPU in f32 the forward here is one vectorised pass per
//! row (with `math.rs`'s `exp`) and the backward, `dx = y·(dy − Σ dy·y)`, one more;
//! elsewhere candle-nn's `softmax` runs.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use candle_core::{D, Result, Tensor};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{chunk_len, contiguous, contiguous_pair, sum_in, vectorized, zeroed};
#[cfg(not(target_arch = "wasm32"))]
use super::math::exp;

/// `softmax(x, dim = -1)`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() > 0 {
        return x.contiguous()?.apply_op1(Softmax);
    }
    candle_nn::ops::softmax(x, D::Minus1)
}

#[cfg(not(target_arch = "wasm32"))]
struct Softmax;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "pretext-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "softmax")?;
        let d = l.dims().last().copied().unwrap_or(1);
        let mut y = zeroed(x.len());
        if d > 0 {
            y.par_chunks_mut(chunk_len(d)).zip(x.par_chunks(chunk_len(d))).for_each(|(yc, xc)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                            softmax_row(yr, xr, 1.0);
                        }
                    },
                );
            });
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxGrad)?))
    }
}

/// (y, dy) → y·(dy − Σ dy·y) per row.
#[cfg(not(target_arch = "wasm32"))]
struct SoftmaxGrad;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "pretext-softmax-grad"
    }

    fn cpu_fwd(&self, ys: &CpuStorage, yl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, g) = contiguous_pair((ys, yl), (gs, gl), "softmax grad")?;
        let d = yl.dims().last().copied().unwrap_or(1);
        let mut dx = zeroed(y.len());
        if d > 0 {
            dx.par_chunks_mut(chunk_len(d)).zip(y.par_chunks(chunk_len(d)).zip(g.par_chunks(chunk_len(d)))).for_each(
                |(dc, (yc, gc))| {
                    for ((dr, yr), gr) in dc.chunks_mut(d).zip(yc.chunks(d)).zip(gc.chunks(d)) {
                        softmax_grad_row(dr, yr, gr, 1.0);
                    }
                },
            );
        }
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}

/// `y = softmax(scale·x)` for one row (`scale` > 0); inlined, so that it takes the vector
/// width of the caller's [`vectorized`].
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
pub(crate) fn softmax_row(y: &mut [f32], x: &[f32], scale: f32) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // The exponentials first, then their sum: a running sum in the same loop is a serial
    // chain that keeps it one value at a time.
    for (o, &v) in y.iter_mut().zip(x) {
        *o = exp(scale * (v - max));
    }
    let inv = 1.0 / sum_in(y);
    y.iter_mut().for_each(|o| *o *= inv);
}

/// The gradient of `softmax(scale·x)` for one row, from its output `y` and the output's
/// gradient `dy`: `scale · y·(dy − Σ dy·y)`.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
pub(crate) fn softmax_grad_row(dx: &mut [f32], y: &[f32], dy: &[f32], scale: f32) {
    let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
    for ((o, &yv), &gv) in dx.iter_mut().zip(y).zip(dy) {
        *o = scale * yv * (gv - dot);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn matches_candle_nn_forward_and_backward() {
        #[allow(clippy::cast_precision_loss)]
        let values: Vec<f32> = (0..2 * 3 * 5).map(|i| (0.7 * i as f32).sin() * 4.0).collect();
        let x = Var::from_tensor(&Tensor::from_vec(values, (2, 3, 5), &Device::Cpu).unwrap()).unwrap();
        #[allow(clippy::cast_precision_loss)]
        let r =
            Tensor::from_vec((0..30).map(|i| (1.3 * i as f32).cos()).collect::<Vec<f32>>(), (2, 3, 5), &Device::Cpu)
                .unwrap();
        let run = |y: Tensor| {
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (flat(&y), flat(g.get(x.as_tensor()).unwrap()))
        };
        let (ours, ours_g) = run(softmax_last_dim(x.as_tensor()).unwrap());
        let (theirs, theirs_g) = run(candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap());
        for (a, b) in ours.iter().zip(&theirs).chain(ours_g.iter().zip(&theirs_g)) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // Rows sum to one; (0, ln 3) → (1/4, 3/4) by hand.
        let two = softmax_last_dim(&Tensor::new(&[0f32, 3f32.ln()], &Device::Cpu).unwrap()).unwrap();
        let two: Vec<f32> = two.to_vec1().unwrap();
        assert!((two[0] - 0.25).abs() < 1e-6 && (two[1] - 0.75).abs() < 1e-6);
    }
}
