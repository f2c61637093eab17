//! GELU (the exact, erf form of `nn.GELU()`) with a one-pass CPU backward.
//!
//! candle's `gelu_erf` backward is a chain of about a dozen whole-tensor ops, each allocating
//! an activation-sized buffer; in DINO's head and a ViT's MLP blocks that chain costs more
//! than the activation's matmuls are worth. On the CPU in f32, the forward and the backward
//! here are one vectorised pass each, through the branch-free `erf` and `exp` of `math.rs`
//! (libm's, one value per call, made GELU a fifth of a ViT-Tiny step); they agree with
//! candle's `gelu_erf` to float rounding (tested). Other devices and dtypes use candle's op
//! throughout. This module computes nothing but the activation.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use candle_core::{Result, Tensor};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{chunk_len, contiguous, contiguous_pair, vectorized, zeroed, zip_map};
#[cfg(not(target_arch = "wasm32"))]
use super::math::{erf, exp};

/// `gelu(x) = x·Φ(x)` with the normal CDF `Φ`, as `nn.GELU()` (not the tanh approximation).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return x.contiguous()?.apply_op1(Gelu);
    }
    x.gelu_erf()
}

#[cfg(not(target_arch = "wasm32"))]
struct Gelu;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "pretext-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "gelu")?;
        let mut y = zeroed(x.len());
        y.par_chunks_mut(chunk_len(1)).zip(x.par_chunks(chunk_len(1))).for_each(|(y, x)| {
            vectorized(
                #[inline(always)]
                || {
                    for (y, &v) in y.iter_mut().zip(x) {
                        *y = (erf(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v;
                    }
                },
            );
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &GeluGrad)?))
    }
}

/// (x, dy) → dy·(Φ(x) + x·φ(x)), φ the normal density.
#[cfg(not(target_arch = "wasm32"))]
struct GeluGrad;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "pretext-gelu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g) = contiguous_pair((s1, l1), (s2, l2), "gelu")?;
        // 1/√(2π)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let dx = zip_map(x, g, |v, gv| {
            let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * v * v);
            gv * (cdf + v * pdf)
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn matches_candles_gelu_forward_and_backward() {
        let values: Vec<f32> = (0..41).map(|i| -5.0 + 0.25 * i as f32).collect();
        let r = Tensor::new(values.iter().map(|v| (v * 1.7).sin()).collect::<Vec<f32>>(), &Device::Cpu).unwrap();
        let x = Var::new(values.as_slice(), &Device::Cpu).unwrap();
        let ours = gelu(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().gelu_erf().unwrap();
        for (p, q) in ours.to_vec1::<f32>().unwrap().iter().zip(theirs.to_vec1::<f32>().unwrap()) {
            assert!((p - q).abs() <= 1e-6 * q.abs().max(1.0), "{p} vs {q}");
        }
        let grad = |y: &Tensor| {
            let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
        };
        let (a, b) = (grad(&ours), grad(&theirs));
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!((p - q).abs() < 1e-5, "x = {}: {p} vs {q}", values[i]);
        }
        // Hand values: gelu(0) = 0 and gelu'(0) = 1/2; far right the identity, far left zero.
        let y = ours.to_vec1::<f32>().unwrap();
        assert_eq!(y[20], 0.0);
        assert!((y[40] - 5.0).abs() < 1e-5 && y[0].abs() < 1e-5);
        let slope = gelu(x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        assert!((slope.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[20] - 0.5).abs() < 1e-7);
    }
}
