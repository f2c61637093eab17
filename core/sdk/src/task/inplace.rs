//! In-place CPU kernels for the per-step parameter updates: AdamW's moments and weights, and
//! the EMA teacher.
//!
//! Written as tensor expressions, one AdamW step is about fourteen whole-parameter passes,
//! each allocating a fresh buffer; for the multi-million-parameter projectors of BYOL, DINO,
//! Barlow Twins and VICReg that cost a tenth of the training step. These kernels overwrite
//! the buffers in one pass each and compute every element with the same f32 operations, in
//! the same order, as the tensor expressions in `optim.rs` and `teacher.rs`, so results are
//! bit-identical (at any vector width: see [`vectorized`]). They take contiguous f32 CPU
//! tensors only: [`applies`] says when, and callers keep the tensor expressions for
//! everything else (CUDA among it). They must not allocate per element or touch anything
//! but their destination.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

use crate::model::kernels::vectorized;

/// Elements per rayon task: large enough that splitting a small bias costs nothing.
const CHUNK: usize = 1 << 15;

/// Whether the in-place kernels can run on all of `tensors` (contiguous f32 on the CPU, one
/// shape).
pub(crate) fn applies(tensors: &[&Tensor]) -> bool {
    let Some(first) = tensors.first() else { return false };
    tensors.iter().all(|t| {
        t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous() && t.shape() == first.shape()
    })
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let (a, b) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("in-place update: not contiguous".into()))?;
    s.as_slice::<f32>()?.get(a..b).ok_or_else(|| candle_core::Error::Msg("in-place update: layout overruns".into()))
}

fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    let (a, b) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("in-place update: not contiguous".into()))?;
    match s {
        CpuStorage::F32(v) => {
            v.get_mut(a..b).ok_or_else(|| candle_core::Error::Msg("in-place update: layout overruns".into()))
        }
        _ => candle_core::bail!("in-place update: f32 tensors only"),
    }
}

fn same_len(a: &[f32], b: &[f32]) -> Result<()> {
    if a.len() != b.len() {
        candle_core::bail!("in-place update: {} elements against {}", a.len(), b.len());
    }
    Ok(())
}

/// `dst ← dst·keep + src·take` (a moment update, or the EMA with `take = 1 − keep`);
/// `square` uses `src²` (AdamW's second moment).
pub(crate) struct Blend {
    pub keep: f64,
    pub take: f64,
    pub square: bool,
}

impl InplaceOp2 for Blend {
    fn name(&self) -> &'static str {
        "blend"
    }

    #[allow(clippy::cast_possible_truncation)]
    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (keep, take, square) = (self.keep as f32, self.take as f32, self.square);
        let dst = slice_mut(s1, l1)?;
        let src = slice(s2, l2)?;
        same_len(dst, src)?;
        dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| {
            vectorized(
                #[inline(always)]
                || {
                    for (d, &s) in d.iter_mut().zip(s) {
                        let s = if square { s * s } else { s };
                        *d = *d * keep + s * take;
                    }
                },
            );
        });
        Ok(())
    }
}

/// AdamW's weight step from the updated moments:
/// `w ← w·decay − lr·(m·c1) / (√(v·c2) + eps)`, with `c1`, `c2` the reciprocal bias
/// corrections and `decay = 1 − lr·wd` (1 for parameters without weight decay).
pub(crate) struct AdamwWeights {
    pub decay: Option<f64>,
    pub lr: f64,
    pub c1: f64,
    pub c2: f64,
    pub eps: f64,
}

impl InplaceOp3 for AdamwWeights {
    fn name(&self) -> &'static str {
        "adamw-weights"
    }

    #[allow(clippy::cast_possible_truncation)]
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (lr, c1, c2, eps) = (self.lr as f32, self.c1 as f32, self.c2 as f32, self.eps as f32);
        let decay = self.decay.map(|d| d as f32);
        let w = slice_mut(s1, l1)?;
        let (m, v) = (slice(s2, l2)?, slice(s3, l3)?);
        same_len(w, m)?;
        same_len(w, v)?;
        w.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK)).zip(v.par_chunks(CHUNK)).for_each(|((w, m), v)| {
            // Square root and division sixteen lanes at a time where the CPU has AVX-512;
            // both are correctly rounded at every width, so results stay bit-identical.
            vectorized(
                #[inline(always)]
                || {
                    for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
                        let update = (m * c1) / ((v * c2).sqrt() + eps);
                        let decayed = match decay {
                            Some(d) => *w * d,
                            None => *w,
                        };
                        *w = decayed - update * lr;
                    }
                },
            );
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn blend_overwrites_only_its_destination() {
        let d = Tensor::new(&[1.0f32, -2.0, 4.0], &Device::Cpu).unwrap();
        let s = Tensor::new(&[3.0f32, 2.0, 0.5], &Device::Cpu).unwrap();
        d.inplace_op2(&s, &Blend { keep: 0.5, take: 2.0, square: true }).unwrap();
        // 0.5·1 + 2·9 = 18.5; 0.5·(−2) + 2·4 = 7; 0.5·4 + 2·0.25 = 2.5.
        assert_eq!(d.to_vec1::<f32>().unwrap(), vec![18.5, 7.0, 2.5]);
        assert_eq!(s.to_vec1::<f32>().unwrap(), vec![3.0, 2.0, 0.5]);
    }

    #[test]
    fn applies_to_contiguous_f32_cpu_tensors_of_one_shape_only() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let t = a.t().unwrap();
        let f64s = a.to_dtype(candle_core::DType::F64).unwrap();
        assert!(applies(&[&a, &a]));
        assert!(!applies(&[&a, &t]));
        assert!(!applies(&[&a, &f64s]));
        assert!(!applies(&[&a, &a.reshape(6).unwrap()]));
    }
}
