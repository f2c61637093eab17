//! The join of a residual block, `relu(a + b)`, as one pass forward and one backward on the
//! CPU.
//!
//! Composed, it is candle's addition then its ReLU, whose backward builds a tensor of zeros,
//! compares the input with it, converts the mask to floats and multiplies: four passes and
//! three buffers the size of the block's output, in each of a ResNet's eight blocks. Here
//! the backward is `g·[y > 0]` from the output `y`, one pass, and both inputs take that
//! same gradient. At `a + b = 0` exactly the gradient is 0, as in PyTorch (candle's ReLU
//! passes it). Other devices and dtypes compose candle's ops. This file must not know
//! about blocks or networks.

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{contiguous_pair, zip_map};
#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use candle_core::{Result, Tensor};

/// `relu(a + b)` for two tensors of one shape.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    if a.device().is_cpu() && a.dtype() == candle_core::DType::F32 && b.dtype() == candle_core::DType::F32 {
        if a.dims() != b.dims() {
            candle_core::bail!("add_relu: shapes {:?} and {:?} differ", a.dims(), b.dims());
        }
        return a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu);
    }
    (a + b)?.relu()
}

#[cfg(not(target_arch = "wasm32"))]
struct AddRelu;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "pretext-add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = contiguous_pair((s1, l1), (s2, l2), "add_relu")?;
        Ok((CpuStorage::F32(zip_map(a, b, |x, y| (x + y).max(0.0))), l1.shape().clone()))
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = res.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// (y, dy) → dy·[y > 0].
#[cfg(not(target_arch = "wasm32"))]
struct ReluGrad;

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "pretext-relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, g) = contiguous_pair((s1, l1), (s2, l2), "add_relu")?;
        Ok((CpuStorage::F32(zip_map(y, g, |y, g| if y > 0.0 { g } else { 0.0 })), l1.shape().clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::model::tests::max_diff;

    #[test]
    fn matches_candles_add_then_relu_forward_and_backward() {
        let dev = Device::Cpu;
        // Large enough to be split over the threads.
        let shape = (4, 8, 33, 33);
        let a = Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let (ours, theirs) = (add_relu(&a, &b).unwrap(), (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap());
        assert_eq!(max_diff(&ours, &theirs), 0.0);
        let grad = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (g_ours, g_theirs) = (grad(&ours), grad(&theirs));
        for v in [&a, &b] {
            assert_eq!(max_diff(g_ours.get(v).unwrap(), g_theirs.get(v).unwrap()), 0.0);
        }
    }

    #[test]
    fn the_gradient_passes_where_the_sum_is_positive_only() {
        // Sums 2, −1, 0 (as PyTorch: no gradient at exactly 0) and 0.5.
        let a = Var::from_tensor(&Tensor::new(&[1f32, -2., 1., 0.25], &Device::Cpu).unwrap()).unwrap();
        let b = Tensor::new(&[1f32, 1., -1., 0.25], &Device::Cpu).unwrap();
        let y = add_relu(&a, &b).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), [2., 0., 0., 0.5]);
        let g = (&y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec1::<f32>().unwrap(), [3., 0., 0., 3.]);
    }

    #[test]
    fn different_shapes_are_an_error() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(add_relu(&a, &b).is_err());
    }
}
