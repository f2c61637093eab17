//! The one 2-D convolution every backbone goes through.
//!
//! Keeping a single type lets a faster custom kernel replace the body of
//! [`Conv2d::forward`] for all backbones at once; no backbone may call `Tensor::conv2d`
//! directly. Parameters are named as PyTorch's `nn.Conv2d` (`weight`, `bias`).
//!
//! On the CPU with f32 data the convolution runs as our own custom ops (`op.rs` over the
//! im2col/GEMM kernels of `cpu.rs`, and `winograd/` for wide 3×3 stride-1 layers), whose
//! backward pass avoids candle's slow direct-loop `conv_transpose2d`; every other device,
//! dtype or target (wasm32 has no threads) uses candle's `conv2d`. [`set_conv_impl`] or the
//! `PRETEXT_CONV` environment variable (`stock`, `lowered`) switch back to candle's or to
//! the lowering alone for comparisons. This module must not change results beyond
//! floating-point rounding (summation order; Winograd's transforms round differently).

#[cfg(not(target_arch = "wasm32"))]
mod cpu;
#[cfg(not(target_arch = "wasm32"))]
mod op;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod parity;
#[cfg(not(target_arch = "wasm32"))]
mod winograd;

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Which convolution implementation [`conv2d`] uses where both can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvImpl {
    /// candle's `Tensor::conv2d` and its backward.
    Stock,
    /// Pretext's custom ops (CPU, f32): Winograd's method for wide 3×3 stride-1 layers, the
    /// im2col/GEMM lowering for the rest; anything else still goes to candle's.
    Fast,
    /// Pretext's custom ops with every convolution lowered (no Winograd), for comparisons.
    Lowered,
}

const UNSET: u8 = 0;
const STOCK: u8 = 1;
const FAST: u8 = 2;
const LOWERED: u8 = 3;

// Process-wide, not per model: a benchmark flips it between two runs of the same network.
// Each plugin library carries its own copy of this crate, which is why the environment
// variable exists at all: it reaches every copy.
static CONV_IMPL: AtomicU8 = AtomicU8::new(UNSET);

/// Selects the implementation for every later convolution in this copy of the crate.
pub fn set_conv_impl(which: ConvImpl) {
    let v = match which {
        ConvImpl::Stock => STOCK,
        ConvImpl::Fast => FAST,
        ConvImpl::Lowered => LOWERED,
    };
    CONV_IMPL.store(v, Ordering::Relaxed);
}

/// The implementation in use: [`set_conv_impl`]'s choice, else `PRETEXT_CONV` (`stock`,
/// `lowered` or `fast`), else [`ConvImpl::Fast`].
pub fn conv_impl() -> ConvImpl {
    let mut v = CONV_IMPL.load(Ordering::Relaxed);
    if v == UNSET {
        let named = std::env::var("PRETEXT_CONV").map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
        v = match named.as_str() {
            "stock" => STOCK,
            "lowered" => LOWERED,
            _ => FAST,
        };
        // A racing `set_conv_impl` wins: only replace the unset marker.
        v = match CONV_IMPL.compare_exchange(UNSET, v, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => v,
            Err(current) => current,
        };
    }
    match v {
        STOCK => ConvImpl::Stock,
        LOWERED => ConvImpl::Lowered,
        _ => ConvImpl::Fast,
    }
}

/// `conv2d(x, w)` for (N, C, H, W) `x` and (O, C, k, k) `w`: zero padding, no dilation, one
/// group, no bias. Accepts non-contiguous inputs.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let which = conv_impl();
        if which != ConvImpl::Stock
            && x.device().is_cpu()
            && w.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && w.dtype() == candle_core::DType::F32
        {
            return x.apply_op2(w, op::Conv2dOp { stride, padding, winograd: which == ConvImpl::Fast });
        }
    }
    x.conv2d(w, padding, stride, 1, 1)
}

/// A square-kernel convolution with symmetric zero padding, no dilation and one group.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A `kernel`×`kernel` convolution from `in_c` to `out_c` channels. The weight gets
    /// torchvision ResNet's init, kaiming-normal with fan-out and ReLU gain
    /// (std = √(2 / (out_c·k²))); the optional bias gets PyTorch's default
    /// U(±1/√fan_in).
    // By value like candle_nn's constructors, so callers can pass `vb.pp(..)` inline.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if in_c == 0 || out_c == 0 || kernel == 0 || stride == 0 {
            candle_core::bail!(
                "conv2d needs positive sizes, got in {in_c}, out {out_c}, kernel {kernel}, stride {stride}"
            );
        }
        let fan_out = (out_c * kernel * kernel) as f64;
        let stdev = (2.0 / fan_out).sqrt();
        let weight = vb.get_with_hints((out_c, in_c, kernel, kernel), "weight", Init::Randn { mean: 0.0, stdev })?;
        let bias = if bias {
            let bound = 1.0 / ((in_c * kernel * kernel) as f64).sqrt();
            Some(vb.get_with_hints(out_c, "bias", Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Self { weight, bias, stride, padding })
    }

    /// Wraps existing parameters: `weight` of shape (out, in, k, k), `bias` of shape (out).
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: usize) -> Result<Self> {
        let (out_c, _, kh, kw) = weight.dims4()?;
        if kh != kw || stride == 0 {
            candle_core::bail!("conv2d needs a square kernel and a positive stride, got {kh}×{kw}, stride {stride}");
        }
        if let Some(b) = &bias
            && b.dims() != [out_c]
        {
            candle_core::bail!("conv2d bias has shape {:?}, expected [{out_c}]", b.dims());
        }
        Ok(Self { weight, bias, stride, padding })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn padding(&self) -> usize {
        self.padding
    }

    /// (N, in, H, W) → (N, out, H', W').
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv2d(x, &self.weight, self.stride, self.padding)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Conv2d::forward(self, x)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn shapes_bias_and_init_scale() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let conv = Conv2d::new(3, 64, 3, 2, 1, true, vb.pp("c")).unwrap();
        let x = Tensor::ones((2, 3, 9, 9), DType::F32, &dev).unwrap();
        assert_eq!(conv.forward(&x).unwrap().dims(), &[2, 64, 5, 5]);
        let w = conv.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        let want = (2.0f32 / (64.0 * 9.0)).sqrt();
        assert!((std / want - 1.0).abs() < 0.15, "std {std} want {want}");
        assert!(map.data().lock().unwrap().contains_key("c.bias"));
        // A wrong channel count is an error, not a panic.
        let bad = Tensor::ones((2, 4, 9, 9), DType::F32, &dev).unwrap();
        assert!(conv.forward(&bad).is_err());
        // Strided (non-contiguous) inputs are accepted.
        let t = Tensor::ones((3, 2, 9, 9), DType::F32, &dev).unwrap().transpose(0, 1).unwrap();
        assert!(!t.is_contiguous());
        assert_eq!(conv.forward(&t).unwrap().dims(), &[2, 64, 5, 5]);
    }
}
