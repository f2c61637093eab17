//! The convolution as candle custom ops: forward, input gradient and kernel gradient.
//!
//! [`Conv2dOp`] is what the autograd graph records; its `bwd` builds the two gradients with
//! [`InputGradOp`] and [`KernelGradOp`], which run the `cpu.rs` kernels directly and so never
//! go through candle's `conv_transpose2d`. These ops are CPU- and f32-only: the caller in
//! `mod.rs` must route every other device or dtype to candle's own `conv2d`. This module
//! must not hold state between calls; anything an op needs travels in its fields.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::cpu::{self, Geometry};

fn wrap(e: cpu::ConvError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// The elements of a 4-D f32 storage in row-major order: borrowed when the layout already
/// is, gathered through the strides when it is a view (transposed, narrowed, broadcast).
fn dense<'a>(s: &'a CpuStorage, l: &Layout) -> Result<Cow<'a, [f32]>> {
    let data = s.as_slice::<f32>()?;
    if let Some((a, b)) = l.contiguous_offsets() {
        return data
            .get(a..b)
            .map(Cow::Borrowed)
            .ok_or_else(|| candle_core::Error::Msg(format!("conv2d: layout {l:?} overruns its storage")));
    }
    let (dims, st) = (l.dims(), l.stride());
    if dims.len() != 4 {
        candle_core::bail!("conv2d takes 4-D tensors, got shape {dims:?}");
    }
    let mut out = Vec::with_capacity(l.shape().elem_count());
    for i0 in 0..dims[0] {
        for i1 in 0..dims[1] {
            for i2 in 0..dims[2] {
                let base = l.start_offset() + i0 * st[0] + i1 * st[1] + i2 * st[2];
                for i3 in 0..dims[3] {
                    let v = data
                        .get(base + i3 * st[3])
                        .ok_or_else(|| candle_core::Error::Msg(format!("conv2d: layout {l:?} overruns its storage")))?;
                    out.push(*v);
                }
            }
        }
    }
    Ok(Cow::Owned(out))
}

fn dims4(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match *l.dims() {
        [a, b, c, d] => Ok((a, b, c, d)),
        ref other => candle_core::bail!("conv2d: the {what} must be 4-D, got shape {other:?}"),
    }
}

/// The geometry of `x` (N, C, H, W) convolved with `w` (O, C, k, k), checking that they fit.
fn geometry(x: &Layout, w: &Layout, stride: usize, padding: usize) -> Result<Geometry> {
    let (n, c, h, wd) = dims4(x, "input")?;
    let (o, wc, kh, kw) = dims4(w, "kernel")?;
    if wc != c || kh != kw {
        candle_core::bail!(
            "conv2d: a ({o}, {wc}, {kh}, {kw}) kernel does not fit a ({n}, {c}, {h}, {wd}) input (needs {c} channels and a square kernel)"
        );
    }
    Geometry::new((n, c, h, wd), o, kh, stride, padding).map_err(wrap)
}

/// `y = conv2d(x, w)` with zero padding, no dilation and one group.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
    /// Whether Winograd's method may be used where it applies (`cpu::forward`).
    pub winograd: bool,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "pretext-conv2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = geometry(xl, wl, self.stride, self.padding)?;
        let y = cpu::forward(&g, &dense(xs, xl)?, &dense(ws, wl)?, self.winograd).map_err(wrap)?;
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        // The images usually need no gradient (a first layer): skip its GEMM and col2im.
        let dx = if x.track_op() {
            let op = InputGradOp { stride: self.stride, padding: self.padding, h, w: wd, winograd: self.winograd };
            Some(dy.apply_op2_no_bwd(w, &op)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let op = KernelGradOp { stride: self.stride, padding: self.padding, k: w.dim(2)?, winograd: self.winograd };
            Some(x.apply_op2_no_bwd(dy, &op)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// `dx` from (`dy`, `w`). The input's height and width are carried along because a strided
/// convolution maps several input sizes onto one output size.
#[derive(Clone, Copy, Debug)]
pub struct InputGradOp {
    pub stride: usize,
    pub padding: usize,
    pub h: usize,
    pub w: usize,
    pub winograd: bool,
}

impl CustomOp2 for InputGradOp {
    fn name(&self) -> &'static str {
        "pretext-conv2d-input-grad"
    }

    fn cpu_fwd(&self, dys: &CpuStorage, dyl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, o, ho, wo) = dims4(dyl, "output gradient")?;
        let (wo_c, c, k, _) = dims4(wl, "kernel")?;
        if wo_c != o {
            candle_core::bail!("conv2d backward: kernel has {wo_c} outputs, the gradient {o}");
        }
        let g = Geometry::new((n, c, self.h, self.w), o, k, self.stride, self.padding).map_err(wrap)?;
        if (g.ho, g.wo) != (ho, wo) {
            candle_core::bail!("conv2d backward: gradient is {ho}×{wo}, the forward made {}×{}", g.ho, g.wo);
        }
        let dx = cpu::input_grad(&g, &dense(dys, dyl)?, &dense(ws, wl)?, self.winograd).map_err(wrap)?;
        Ok((CpuStorage::F32(dx), Shape::from((n, c, self.h, self.w))))
    }
}

/// `dw` from (`x`, `dy`).
#[derive(Clone, Copy, Debug)]
pub struct KernelGradOp {
    pub stride: usize,
    pub padding: usize,
    pub k: usize,
    pub winograd: bool,
}

impl CustomOp2 for KernelGradOp {
    fn name(&self) -> &'static str {
        "pretext-conv2d-kernel-grad"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, dys: &CpuStorage, dyl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(xl, "input")?;
        let (dn, o, ho, wo) = dims4(dyl, "output gradient")?;
        let g = Geometry::new((n, c, h, w), o, self.k, self.stride, self.padding).map_err(wrap)?;
        if (dn, g.ho, g.wo) != (n, ho, wo) {
            candle_core::bail!(
                "conv2d backward: gradient is ({dn}, {o}, {ho}, {wo}), the forward made ({n}, {o}, {}, {})",
                g.ho,
                g.wo
            );
        }
        let dw = cpu::kernel_grad(&g, &dense(xs, xl)?, &dense(dys, dyl)?, self.winograd).map_err(wrap)?;
        Ok((CpuStorage::F32(dw), Shape::from((o, c, self.k, self.k))))
    }
}
