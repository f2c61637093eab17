//! A linear layer (`nn.Linear`: `y = x·Wᵀ + b`, weight `(out, in)`) over inputs of any rank,
//! whose weight gradient is one contiguous product and whose bias gradient is one pass on
//! the CPU.
//!
//! candle-nn's `Linear` adds the bias by broadcasting over every leading dimension, and the
//! backward of that broadcast is a reduction over leading dimensions, which candle's CPU
//! backend walks with strided loops: in a ViT, whose linear layers see (N, tokens, width)
//! inputs, those reductions cost a fifth of the step. Here the input is flattened to rows
//! and one op writes the bias into the output and adds the product to it (a separate bias
//! op zeroed one output-sized buffer and copied another); its backward sums the rows of the
//! gradient in one contiguous pass (`broadcast::row_sums`). Other devices broadcast as
//! candle-nn does.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

#[cfg(not(target_arch = "wasm32"))]
use super::broadcast::row_sums;
#[cfg(not(target_arch = "wasm32"))]
use super::kernels::contiguous;
use super::matmul::batch_matmul;
#[cfg(not(target_arch = "wasm32"))]
use super::matmul::cpu_batch_matmul;

#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// `input → output` with candle-nn's `linear` variables and initialisation (and so PyTorch's
/// `nn.Linear` up to the weight's distribution), multiplied by this layer.
pub fn linear(input: usize, output: usize, vb: &VarBuilder) -> Result<Linear> {
    let theirs = candle_nn::linear(input, output, vb.clone())?;
    Ok(Linear::new(theirs.weight().clone(), theirs.bias().cloned()))
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// (…, in) → (…, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let Some(&input) = dims.last() else { candle_core::bail!("a linear layer needs at least one dimension") };
        let rows = x.elem_count() / input.max(1);
        let x = x.reshape((rows, input))?;
        let y = match &self.bias {
            Some(b) => biased_product(&x, &self.weight, b)?,
            None => batch_matmul(&x, &self.weight, false, true)?,
        };
        if let Some(last) = dims.last_mut() {
            *last = self.weight.dim(0)?;
        }
        y.reshape(dims)
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Linear::forward(self, x)
    }
}

/// `x·wᵀ + b` for rows `x` (R, in), `w` (out, in) and `b` (out).
fn biased_product(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    if x.device().is_cpu() && [x.dtype(), w.dtype(), b.dtype()].iter().all(|&d| d == candle_core::DType::F32) {
        return x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, BiasedProduct);
    }
    batch_matmul(x, w, false, true)?.broadcast_add(b)
}

#[cfg(not(target_arch = "wasm32"))]
struct BiasedProduct;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp3 for BiasedProduct {
    fn name(&self) -> &'static str {
        "pretext-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let b = contiguous(bs, bl, "linear")?;
        cpu_batch_matmul((xs, xl), (ws, wl), false, true, Some(b))
    }

    /// The product's gradients as [`batch_matmul`]'s; the bias's, the sum of the rows.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = batch_matmul(grad, w, false, false)?;
        let dw = batch_matmul(grad, x, true, false)?;
        let db = row_sums(grad, b.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Module, Var};

    use super::*;

    #[test]
    fn matches_candle_nn_on_three_dimensional_inputs() {
        // A small layer, within 1e-5 of candle-nn, and one large enough for the GEMM to
        // split its product over the threads, adding to the bias it starts from: its
        // weight gradient sums 160 rows (values near 100), so within 1e-5 relative there.
        check_against_candle_nn((2, 3, 4, 5), |_| 1e-5);
        check_against_candle_nn((4, 40, 64, 96), |v| 1e-5 * v.abs().max(1.0));
    }

    fn check_against_candle_nn((n, t, input, output): (usize, usize, usize, usize), tolerance: fn(f32) -> f32) {
        let dev = Device::Cpu;
        #[allow(clippy::cast_precision_loss)]
        let wave = |n: usize, f: f32| -> Vec<f32> { (0..n).map(|i| (f * i as f32).sin()).collect() };
        let w = Var::from_tensor(&Tensor::from_vec(wave(output * input, 0.3), (output, input), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::from_vec(wave(output, 1.1), output, &dev).unwrap()).unwrap();
        let x = Var::from_tensor(&Tensor::from_vec(wave(n * t * input, 0.7), (n, t, input), &dev).unwrap()).unwrap();
        let r = Tensor::from_vec(wave(n * t * output, 0.9), (n, t, output), &dev).unwrap();
        let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let theirs = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let run = |y: Tensor| {
            assert_eq!(y.dims(), [n, t, output]);
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [
                flat(&y),
                flat(g.get(x.as_tensor()).unwrap()),
                flat(g.get(w.as_tensor()).unwrap()),
                flat(g.get(b.as_tensor()).unwrap()),
            ]
        };
        let (a, c) = (run(ours.forward(x.as_tensor()).unwrap()), run(theirs.forward(x.as_tensor()).unwrap()));
        for (p, q) in a.iter().zip(&c) {
            for (u, v) in p.iter().zip(q) {
                assert!((u - v).abs() < tolerance(*v), "{u} vs {v}");
            }
        }
    }
}
