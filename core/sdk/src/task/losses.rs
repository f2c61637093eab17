//! Loss pieces shared by pretext tasks: the classification loss of tasks that predict what
//! was done to the input (rotation angle, jigsaw permutation), BYOL's normalised MSE (any
//! student-predicts-teacher task), and the row normalisation and the sums over a D × D
//! cross-product (its diagonal, its squared entries) that the contrastive and
//! redundancy-reduction losses are built from.

use candle_core::{DType, Tensor};

use crate::model::batch_matmul;

use super::TaskOutput;

/// Mean cross-entropy of `logits` (N × K) against `targets` (N, u32), with the top-1
/// accuracy as the metric `pretext_acc`.
pub fn classification(logits: &Tensor, targets: &Tensor) -> candle_core::Result<TaskOutput> {
    let loss = candle_nn::loss::cross_entropy(logits, targets)?;
    let correct = logits.argmax(1)?.eq(targets)?.to_dtype(DType::F32)?.mean_all()?;
    Ok(TaskOutput { loss, metrics: vec![("pretext_acc".into(), correct)] })
}

/// Every row of `x` scaled to unit L2 norm (rows of zeros stay zero): cosine similarity as a
/// matrix product.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?)
}

/// BYOL's regression loss: `2 − 2·cos(p_i, z_i)` averaged over the rows, i.e. the mean
/// squared distance of the L2-normalised vectors.
pub fn normalized_mse(p: &Tensor, z: &Tensor) -> candle_core::Result<Tensor> {
    (l2_normalize(p)? * l2_normalize(z)?)?.sum(1)?.mean_all()?.affine(-2.0, 2.0)
}

/// The diagonal of `aᵀ·b` for two N × D matrices, as a D-vector: `Σ_r a_ri·b_ri`, read
/// from the factors, without the D × D product.
pub fn cross_diagonal(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a * b)?.sum(0)
}

/// `Σ_ij (aᵀ·b)_ij²`, the squared Frobenius norm of the D × D cross-product of two N × D
/// matrices (Barlow Twins' cross-correlation, VICReg's covariance, up to scale).
///
/// With fewer rows than columns (a batch of 256 projected to 2048 dimensions) the D × D
/// matrix is never formed: `‖aᵀb‖² = tr(aᵀb·bᵀa) = Σ_rs (a·aᵀ)_rs·(b·bᵀ)_rs`, two N × N
/// Gram matrices, D/2N times fewer multiply-adds, and element-wise work on N² values instead
/// of D² (a 16 MB matrix, squared, summed and differentiated, was most of Barlow Twins'
/// loss). The two forms agree up to float rounding; the other is used when N ≥ D.
pub fn cross_norm_sq(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (n, d) = a.dims2()?;
    if b.dims2()? != (n, d) {
        candle_core::bail!("cross_norm_sq: {:?} and {:?} differ in shape", a.dims(), b.dims());
    }
    if n < d {
        let gram = |x: &Tensor| batch_matmul(x, x, false, true);
        let ga = gram(a)?;
        // VICReg passes one matrix twice: one Gram matrix serves both.
        let gb = if a.id() == b.id() { ga.clone() } else { gram(b)? };
        (ga * gb)?.sum_all()
    } else {
        batch_matmul(a, b, true, false)?.sqr()?.sum_all()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn matches_a_hand_computed_cross_entropy() {
        // Row 0: logits (0, ln 3) target 1 → -ln(3/4); row 1: (0, 0) target 0 → ln 2.
        let logits = Tensor::new(&[[0.0f32, 3f32.ln()], [0.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let out = classification(&logits, &targets).unwrap();
        let want = (-(0.75f32).ln() + 2f32.ln()) / 2.0;
        assert!((out.loss.to_scalar::<f32>().unwrap() - want).abs() < 1e-6);
        // Row 0 is right; row 1 is a tie, which argmax breaks to the first index: right.
        assert!((out.metrics[0].1.to_scalar::<f32>().unwrap() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn normalized_mse_matches_a_hand_computed_value() {
        // Row 0: p = (1, 0), z = (3, 3) → cos = 1/√2. Row 1: p = (0, 2), z = (0, −5) → cos = −1.
        // Mean cos = (1/√2 − 1)/2; loss = 2 − 2·mean = 2 − (1/√2 − 1) = 3 − 1/√2.
        let p = Tensor::new(&[[1.0f32, 0.0], [0.0, 2.0]], &Device::Cpu).unwrap();
        let z = Tensor::new(&[[3.0f32, 3.0], [0.0, -5.0]], &Device::Cpu).unwrap();
        let got = normalized_mse(&p, &z).unwrap().to_scalar::<f32>().unwrap();
        let want = 3.0 - 1.0 / 2f32.sqrt();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Identical directions give 0 whatever the lengths.
        let same = normalized_mse(&p, &(p.clone() * 4.0).unwrap()).unwrap().to_scalar::<f32>().unwrap();
        assert!(same.abs() < 1e-6);
    }

    #[test]
    fn rows_are_normalised() {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        assert_eq!(l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap(), [[0.6, 0.8], [0.0, 0.0]]);
    }

    #[test]
    fn cross_product_sums_match_the_formed_matrix_and_its_gradients() {
        // Both forms of cross_norm_sq (fewer rows than columns and not), against the D × D
        // product formed, squared and summed as the papers write it; gradients too.
        let dev = Device::Cpu;
        for (n, d) in [(5, 12), (12, 5), (4, 4)] {
            let a = candle_core::Var::randn(0f32, 1., (n, d), &dev).unwrap();
            let b = candle_core::Var::randn(0f32, 1., (n, d), &dev).unwrap();
            let c = a.t().unwrap().matmul(&b).unwrap();
            let want_norm = c.sqr().unwrap().sum_all().unwrap();
            let got_norm = cross_norm_sq(&a, &b).unwrap();
            let (w, g) = (want_norm.to_scalar::<f32>().unwrap(), got_norm.to_scalar::<f32>().unwrap());
            assert!((w - g).abs() <= 1e-5 * w.abs(), "{n}×{d}: {g} vs {w}");

            let eye = Tensor::eye(d, DType::F32, &dev).unwrap();
            let want_diag = (c * eye).unwrap().sum(1).unwrap();
            let got_diag = cross_diagonal(&a, &b).unwrap();
            let diff = (want_diag.clone() - got_diag.clone()).unwrap().abs().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "{n}×{d}: diagonal");

            // One scalar of both, so both gradients are checked at once.
            let want = (want_norm + want_diag.sqr().unwrap().sum_all().unwrap()).unwrap().backward().unwrap();
            let got = (got_norm + got_diag.sqr().unwrap().sum_all().unwrap()).unwrap().backward().unwrap();
            for v in [&a, &b] {
                let (x, y) = (want.get(v).unwrap(), got.get(v).unwrap());
                let scale = x.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                let diff = (x - y).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() <= 1e-5 * scale, "{n}×{d}: gradient");
            }
        }
        let (a, b) =
            (Tensor::zeros((2, 3), DType::F32, &dev).unwrap(), Tensor::zeros((3, 2), DType::F32, &dev).unwrap());
        assert!(cross_norm_sq(&a, &b).is_err());
    }
}
