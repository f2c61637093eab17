//! Layer normalisation over the last dimension (`nn.LayerNorm(dim, eps)`), trainable, with
//! one-pass CPU kernels.
//!
//! candle-nn's fused `layer_norm` has no backward, and the differentiable composition is a
//! dozen whole-tensor passes forward and more backward; a ViT runs two of these per block.
//! On the CPU in f32 the forward here is one pass per row and the backward one pass plus a
//! reduction for the weight and bias gradients; elsewhere the composition runs. Parameters
//! are `weight` (ones) and `bias` (zeros), as PyTorch names them. This file holds the layer
//! only; which model uses it, with which epsilon, is the model's business.

#[cfg(not(target_arch = "wasm32"))]
use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use candle_core::{D, Result, Tensor};
use candle_nn::{Init, VarBuilder};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::kernels::{chunk_len, contiguous, sum, sum_sq_dev};

#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: &VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    /// (…, D) → (…, D), each row normalised to zero mean and unit variance, then scaled and
    /// shifted.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        #[cfg(not(target_arch = "wasm32"))]
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            return x.contiguous()?.apply_op3(&self.weight, &self.bias, FusedLayerNorm { eps: self.eps });
        }
        self.composed(x)
    }

    fn composed(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// (mean, 1/√(var + eps)) of one row, the variance taken around the mean (two passes).
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn moments(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let var = sum_sq_dev(row, mean) / n;
    (mean, (1.0 / (f64::from(var) + eps).sqrt()) as f32)
}

#[cfg(not(target_arch = "wasm32"))]
struct FusedLayerNorm {
    eps: f64,
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "pretext-layer-norm"
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
        let (x, w, b) =
            (contiguous(xs, xl, "layer norm")?, contiguous(ws, wl, "layer norm")?, contiguous(bs, bl, "layer norm")?);
        let d = w.len();
        if d == 0 || b.len() != d || xl.dims().last() != Some(&d) {
            candle_core::bail!("layer norm: input {:?} against {} weights and {} biases", xl.dims(), d, b.len());
        }
        let mut y = vec![0f32; x.len()];
        let chunk = chunk_len(d);
        y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                let (mean, rstd) = moments(xr, self.eps);
                for (((o, &v), &wv), &bv) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = (v - mean) * rstd * wv + bv;
                }
            }
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = weight.elem_count();
        let x2 = x.flatten_to(x.rank().saturating_sub(2))?;
        let grads = x2.apply_op3_no_bwd(&dy.contiguous()?, weight, &LayerNormGrad { eps: self.eps })?;
        // Rows 0..n are dx; the last two rows are dweight and dbias.
        let rows = grads.dim(0)?;
        let dx = grads.narrow(0, 0, rows - 2)?.reshape(x.shape())?;
        let dw = grads.get(rows - 2)?.reshape(d)?;
        let db = grads.get(rows - 1)?.reshape(d)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// (x as rows, dy, weight) → (rows + 2, D): dx, then Σ dy·x̂ and Σ dy over the rows.
#[cfg(not(target_arch = "wasm32"))]
struct LayerNormGrad {
    eps: f64,
}

#[cfg(not(target_arch = "wasm32"))]
impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "pretext-layer-norm-grad"
    }

    #[allow(clippy::cast_precision_loss)]
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g, w) =
            (contiguous(xs, xl, "layer norm")?, contiguous(gs, gl, "layer norm")?, contiguous(ws, wl, "layer norm")?);
        let d = w.len();
        if d == 0 || x.len() != g.len() || !x.len().is_multiple_of(d) {
            candle_core::bail!("layer norm grad: {} inputs, {} gradients, {} weights", x.len(), g.len(), d);
        }
        let rows = x.len() / d;
        let mut out = vec![0f32; (rows + 2) * d];
        let (dx, sums) = out.split_at_mut(rows * d);
        let chunk = chunk_len(d);
        let inv_d = 1.0 / d as f32;
        let partial: Vec<Vec<f32>> = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .map(|(dc, (xc, gc))| {
                // Σ dy·x̂ and Σ dy of this task's rows, side by side.
                let mut acc = vec![0f32; 2 * d];
                let mut xhat = vec![0f32; d];
                for ((dr, xr), gr) in dc.chunks_mut(d).zip(xc.chunks(d)).zip(gc.chunks(d)) {
                    let (mean, rstd) = moments(xr, self.eps);
                    let (mut mean_g, mut mean_gx) = (0f32, 0f32);
                    for k in 0..d {
                        xhat[k] = (xr[k] - mean) * rstd;
                        let gw = gr[k] * w[k];
                        mean_g += gw;
                        mean_gx += gw * xhat[k];
                        acc[k] += gr[k] * xhat[k];
                        acc[d + k] += gr[k];
                    }
                    mean_g *= inv_d;
                    mean_gx *= inv_d;
                    for k in 0..d {
                        dr[k] = rstd * (gr[k] * w[k] - mean_g - xhat[k] * mean_gx);
                    }
                }
                acc
            })
            .collect();
        for acc in partial {
            for (s, a) in sums.iter_mut().zip(acc) {
                *s += a;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, d))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    use super::*;

    /// The fused path against the composition: output and the gradients of input, weight
    /// and bias, on rows of a 3-D input with non-trivial weight and bias.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn fused_matches_the_composition() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let ln = LayerNorm::new(7, 1e-6, &VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
        #[allow(clippy::cast_precision_loss)]
        let wave =
            |n: usize, f: f32, o: f32| -> Vec<f32> { (0..n).map(|i| (f * i as f32 + o).sin() * 2.0 + o).collect() };
        map.data().lock().unwrap()["weight"].set(&Tensor::new(wave(7, 0.7, 1.0), &dev).unwrap()).unwrap();
        map.data().lock().unwrap()["bias"].set(&Tensor::new(wave(7, 1.3, -0.5), &dev).unwrap()).unwrap();
        let x = Var::from_tensor(&Tensor::from_vec(wave(2 * 3 * 7, 0.41, 0.3), (2, 3, 7), &dev).unwrap()).unwrap();
        let r = Tensor::from_vec(wave(2 * 3 * 7, 0.93, 0.1), (2, 3, 7), &dev).unwrap();
        let run = |fused: bool| {
            let y = if fused { ln.forward(x.as_tensor()) } else { ln.composed(x.as_tensor()) }.unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [
                flat(&y),
                flat(grads.get(x.as_tensor()).unwrap()),
                flat(grads.get(&ln.weight).unwrap()),
                flat(grads.get(&ln.bias).unwrap()),
            ]
        };
        let (fused, composed) = (run(true), run(false));
        for (name, (a, b)) in
            ["output", "input grad", "weight grad", "bias grad"].iter().zip(fused.iter().zip(&composed))
        {
            let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(diff < 1e-4, "{name} differs by {diff}");
        }
    }

    #[test]
    fn normalises_a_row_by_hand() {
        // Row (1, 2, 3): mean 2, biased variance 2/3, so (−1, 0, 1)·√(3/2) at weight 1, bias 0.
        let ln = LayerNorm::new(3, 0.0, &VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap();
        let ln = LayerNorm { weight: Tensor::ones(3, DType::F32, &Device::Cpu).unwrap(), ..ln };
        let y: Vec<Vec<f32>> =
            ln.forward(&Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu).unwrap()).unwrap().to_vec2().unwrap();
        let s = 1.5f32.sqrt();
        for (g, w) in y[0].iter().zip([-s, 0.0, s]) {
            assert!((g - w).abs() < 1e-6, "{y:?}");
        }
    }
}
