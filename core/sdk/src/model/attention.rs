//! Multi-head self-attention from a packed `qkv` projection, `(N, T, 3·D)` → `(N, T, D)`
//! (timm's layout: q, k and v side by side, each `heads` blocks of `D / heads`),
//! differentiable, with a fused CPU kernel.
//!
//! Composed of tensor ops, attention copies q, k and v out of the projection, scales q,
//! multiplies, takes the softmax, multiplies and merges the heads with one more copy; its
//! backward pads q's, k's and v's gradients with zeros to the projection's size and adds
//! the three, all on full-size tensors, which made it a fifth of an MAE step. On the CPU in
//! f32 one op does it per image instead, reading each head's q, k and v in place and
//! writing its output into its columns; the backward recomputes each head's T×T attention
//! (cheap next to the projections) rather than keep it, and writes q's, k's and v's
//! gradients straight into the projection's gradient. Elsewhere (CUDA, wasm32) the
//! composed ops run. This file must not know about blocks or networks.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use candle_core::{Result, Tensor};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{MatRef, contiguous, gemm_error, gemm_f32, vectorized};

/// The name the errors of this file's ops give.
#[cfg(not(target_arch = "wasm32"))]
const OP: &str = "attention";
use super::matmul::batch_matmul;
use super::softmax::softmax_last_dim;
#[cfg(not(target_arch = "wasm32"))]
use super::softmax::{softmax_grad_row, softmax_row};

/// `softmax(q·kᵀ/√d)·v` per head, heads merged: `(N, T, 3·D)` → `(N, T, D)`.
pub fn self_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let shape = AttentionShape::of(qkv, heads)?;
    #[cfg(not(target_arch = "wasm32"))]
    if qkv.device().is_cpu() && qkv.dtype() == candle_core::DType::F32 {
        return qkv.contiguous()?.apply_op1(SelfAttention { shape });
    }
    composed(qkv, shape).map(|(out, _)| out)
}

/// The attention weights `softmax(q·kᵀ/√d)`, `(N, heads, T, T)`, each row summing to one;
/// not differentiated (they are for looking at).
pub fn attention_weights(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let shape = AttentionShape::of(qkv, heads)?;
    #[cfg(not(target_arch = "wasm32"))]
    if qkv.device().is_cpu() && qkv.dtype() == candle_core::DType::F32 {
        return qkv.contiguous()?.apply_op1_no_bwd(&AttentionWeights { shape });
    }
    composed(qkv, shape).map(|(_, attn)| attn.detach())
}

#[derive(Clone, Copy, Debug)]
struct AttentionShape {
    n: usize,
    tokens: usize,
    /// D: the width of q, k, v and the output.
    dim: usize,
    heads: usize,
}

impl AttentionShape {
    fn of(qkv: &Tensor, heads: usize) -> Result<Self> {
        let (n, tokens, packed) = qkv.dims3()?;
        let dim = packed / 3;
        if heads == 0 || packed % 3 != 0 || dim % heads != 0 {
            candle_core::bail!(
                "attention: a projection of width {packed} does not split into q, k, v of {heads} heads"
            );
        }
        Ok(Self { n, tokens, dim, heads })
    }

    fn head_dim(self) -> usize {
        self.dim / self.heads
    }

    #[allow(clippy::cast_precision_loss)]
    fn scale(self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }
}

/// The same attention in candle ops (timm's reshape and permute), with its weights; also the
/// tests' reference.
fn composed(qkv: &Tensor, s: AttentionShape) -> Result<(Tensor, Tensor)> {
    let AttentionShape { n, tokens: t, dim, heads } = s;
    let qkv = qkv.reshape((n, t, 3, heads, s.head_dim()))?.permute((2, 0, 3, 1, 4))?;
    let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
    let scores = batch_matmul(&(q * f64::from(s.scale()))?, &k, false, true)?;
    let attn = softmax_last_dim(&scores)?;
    let out = batch_matmul(&attn, &v, false, false)?.transpose(1, 2)?.reshape((n, t, dim))?;
    Ok((out, attn))
}

/// One image's q, k and v of head `h`: `T × head_dim` views into its `T × 3D` projection.
#[cfg(not(target_arch = "wasm32"))]
fn head_views(x: &[f32], s: AttentionShape, h: usize) -> [MatRef<'_>; 3] {
    let (hd, packed) = (s.head_dim(), 3 * s.dim);
    [0, 1, 2].map(|part| MatRef::strided(&x[part * s.dim + h * hd..], s.tokens, hd, packed))
}

/// `p = softmax(scale·q·kᵀ)` into `p` (T × T), with `scores` as scratch.
#[cfg(not(target_arch = "wasm32"))]
fn weights_into(p: &mut [f32], scores: &mut [f32], q: MatRef<'_>, k: MatRef<'_>, scale: f32) -> Result<()> {
    let t = q.rows;
    gemm_f32(scores, t, q, k.t(), false, gemm::Parallelism::None).map_err(gemm_error(OP))?;
    vectorized(
        #[inline(always)]
        || {
            for (pr, sr) in p.chunks_mut(t).zip(scores.chunks(t)) {
                softmax_row(pr, sr, scale);
            }
        },
    );
    Ok(())
}

/// The packed projection of a contiguous `(N, T, 3D)` input, checked against `s`.
#[cfg(not(target_arch = "wasm32"))]
fn projection<'a>(st: &'a CpuStorage, l: &Layout, s: AttentionShape) -> Result<&'a [f32]> {
    let x = contiguous(st, l, OP)?;
    if l.dims() != [s.n, s.tokens, 3 * s.dim] {
        candle_core::bail!(
            "attention: expected a projection of shape {:?}, got {:?}",
            [s.n, s.tokens, 3 * s.dim],
            l.dims()
        );
    }
    Ok(x)
}

#[cfg(not(target_arch = "wasm32"))]
struct SelfAttention {
    shape: AttentionShape,
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp1 for SelfAttention {
    fn name(&self) -> &'static str {
        "pretext-self-attention"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = self.shape;
        let x = projection(st, l, s)?;
        let (t, d) = (s.tokens, s.dim);
        let mut out = vec![0f32; s.n * t * d];
        if t * d > 0 {
            out.par_chunks_mut(t * d).zip(x.par_chunks(3 * t * d)).try_for_each_init(
                || vec![0f32; 2 * t * t],
                |scratch, (o, xi)| {
                    let (p, scores) = scratch.split_at_mut(t * t);
                    for h in 0..s.heads {
                        let [q, k, v] = head_views(xi, s, h);
                        weights_into(p, scores, q, k, s.scale())?;
                        let p = MatRef::row_major(p, t, t);
                        gemm_f32(&mut o[h * s.head_dim()..], d, p, v, false, gemm::Parallelism::None)
                            .map_err(gemm_error(OP))?;
                    }
                    Ok::<(), candle_core::Error>(())
                },
            )?;
        }
        Ok((CpuStorage::F32(out), Shape::from((s.n, t, d))))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(qkv.apply_op2_no_bwd(&grad.contiguous()?, &SelfAttentionGrad { shape: self.shape })?))
    }
}

/// (qkv, d out) → d qkv. Per head, with `p` the weights and `o = p·v`:
/// `dv = pᵀ·do`, `dp = do·vᵀ`, `ds = softmax′(dp)·scale`, `dq = ds·k`, `dk = dsᵀ·q`.
#[cfg(not(target_arch = "wasm32"))]
struct SelfAttentionGrad {
    shape: AttentionShape,
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp2 for SelfAttentionGrad {
    fn name(&self) -> &'static str {
        "pretext-self-attention-grad"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = self.shape;
        let x = projection(st, l, s)?;
        let (t, d, hd) = (s.tokens, s.dim, s.head_dim());
        let g = contiguous(gs, gl, OP)?;
        if gl.dims() != [s.n, t, d] {
            candle_core::bail!(
                "attention: expected an output gradient of shape {:?}, got {:?}",
                [s.n, t, d],
                gl.dims()
            );
        }
        let mut dx = vec![0f32; x.len()];
        if t * d > 0 {
            let parts = dx.par_chunks_mut(3 * t * d).zip(x.par_chunks(3 * t * d)).zip(g.par_chunks(t * d));
            parts.try_for_each_init(
                || vec![0f32; 4 * t * t],
                |scratch, ((dxi, xi), gi)| {
                    let (p, rest) = scratch.split_at_mut(t * t);
                    let (scores, rest) = rest.split_at_mut(t * t);
                    let (dp, ds) = rest.split_at_mut(t * t);
                    for h in 0..s.heads {
                        let [q, k, v] = head_views(xi, s, h);
                        let d_out = MatRef::strided(&gi[h * hd..], t, hd, d);
                        weights_into(p, scores, q, k, s.scale())?;
                        let pm = MatRef::row_major(p, t, t);
                        let none = gemm::Parallelism::None;
                        gemm_f32(&mut dxi[2 * d + h * hd..], 3 * d, pm.t(), d_out, false, none)
                            .map_err(gemm_error(OP))?;
                        gemm_f32(dp, t, d_out, v.t(), false, none).map_err(gemm_error(OP))?;
                        vectorized(
                            #[inline(always)]
                            || {
                                for ((dsr, pr), dpr) in ds.chunks_mut(t).zip(p.chunks(t)).zip(dp.chunks(t)) {
                                    softmax_grad_row(dsr, pr, dpr, s.scale());
                                }
                            },
                        );
                        let dsm = MatRef::row_major(ds, t, t);
                        gemm_f32(&mut dxi[h * hd..], 3 * d, dsm, k, false, none).map_err(gemm_error(OP))?;
                        gemm_f32(&mut dxi[d + h * hd..], 3 * d, dsm.t(), q, false, none).map_err(gemm_error(OP))?;
                    }
                    Ok::<(), candle_core::Error>(())
                },
            )?;
        }
        Ok((CpuStorage::F32(dx), l.shape().clone()))
    }
}

#[cfg(not(target_arch = "wasm32"))]
struct AttentionWeights {
    shape: AttentionShape,
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp1 for AttentionWeights {
    fn name(&self) -> &'static str {
        "pretext-attention-weights"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = self.shape;
        let x = projection(st, l, s)?;
        let t = s.tokens;
        let mut out = vec![0f32; s.n * s.heads * t * t];
        if t > 0 && s.dim > 0 {
            out.par_chunks_mut(s.heads * t * t).zip(x.par_chunks(3 * t * s.dim)).try_for_each_init(
                || vec![0f32; t * t],
                |scores, (o, xi)| {
                    for (h, p) in o.chunks_mut(t * t).enumerate() {
                        let [q, k, _] = head_views(xi, s, h);
                        weights_into(p, scores, q, k, s.scale())?;
                    }
                    Ok::<(), candle_core::Error>(())
                },
            )?;
        }
        Ok((CpuStorage::F32(out), Shape::from((s.n, s.heads, t, t))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::model::tests::max_diff;

    #[test]
    fn matches_the_composed_ops_forward_and_backward() {
        // ViT-Tiny's encoder on 13 kept tokens (3 heads of 64), MAE's decoder's shape
        // (4 heads of 32), and one token.
        for (n, t, dim, heads) in [(3, 13, 192, 3), (2, 50, 128, 4), (2, 1, 8, 2)] {
            let dev = Device::Cpu;
            let qkv = Var::from_tensor(&Tensor::randn(0f32, 1.5, (n, t, 3 * dim), &dev).unwrap()).unwrap();
            let r = Tensor::randn(0f32, 1., (n, t, dim), &dev).unwrap();
            let shape = AttentionShape::of(&qkv, heads).unwrap();
            let (reference, weights) = composed(&qkv, shape).unwrap();
            let ours = self_attention(&qkv, heads).unwrap();
            assert_eq!(ours.dims(), [n, t, dim]);
            assert!(max_diff(&ours, &reference) < 1e-5, "output, {n}×{t}×{dim}");
            assert!(max_diff(&attention_weights(&qkv, heads).unwrap(), &weights) < 1e-6, "weights");

            let grad = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (g_ours, g_ref) = (grad(&ours), grad(&reference));
            let (a, b) = (g_ours.get(&qkv).unwrap(), g_ref.get(&qkv).unwrap());
            assert!(max_diff(a, b) < 1e-5, "gradient, {n}×{t}×{dim}: {}", max_diff(a, b));
        }
    }

    #[test]
    fn uniform_keys_average_the_values() {
        // All keys equal: every weight is 1/T, so each output row is the mean of v's rows.
        let (t, dim) = (4, 2);
        let mut qkv = vec![0f32; t * 3 * dim];
        for (i, row) in qkv.chunks_mut(3 * dim).enumerate() {
            #[allow(clippy::cast_precision_loss)]
            row.copy_from_slice(&[i as f32, 1.0, 0.5, 0.5, (i * i) as f32, 2.0]);
        }
        let qkv = Tensor::from_vec(qkv, (1, t, 3 * dim), &Device::Cpu).unwrap();
        let out: Vec<Vec<f32>> = self_attention(&qkv, 1).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        // v's first column is 0, 1, 4, 9 (mean 3.5); its second is all 2.
        for row in out {
            assert!((row[0] - 3.5).abs() < 1e-6 && (row[1] - 2.0).abs() < 1e-6, "{row:?}");
        }
        let weights: Vec<f32> = attention_weights(&qkv, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(weights.iter().all(|w| (w - 0.25).abs() < 1e-7));
    }

    #[test]
    fn a_projection_that_does_not_split_is_an_error() {
        let x = Tensor::zeros((1, 2, 10), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(self_attention(&x, 1).is_err(), "10 is not 3·D");
        let x = Tensor::zeros((1, 2, 12), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(self_attention(&x, 3).is_err(), "D = 4 does not split into 3 heads");
    }
}
