//! Loss pieces shared by pretext tasks: the classification loss of tasks that predict what
//! was done to the input (rotation angle, jigsaw permutation), BYOL's normalised MSE (any
//! student-predicts-teacher task), and the row normalisation and matrix diagonal that the
//! contrastive and redundancy-reduction losses are built from.

use candle_core::{DType, Tensor};

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

/// The diagonal of a square matrix, as a vector.
pub fn diagonal(m: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, cols) = m.dims2()?;
    if rows != cols {
        candle_core::bail!("the diagonal of a {rows}×{cols} matrix: it must be square");
    }
    (m * Tensor::eye(rows, m.dtype(), m.device())?)?.sum(1)
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
    fn rows_are_normalised_and_the_diagonal_is_read() {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        assert_eq!(l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap(), [[0.6, 0.8], [0.0, 0.0]]);
        assert_eq!(diagonal(&x).unwrap().to_vec1::<f32>().unwrap(), [3.0, 0.0]);
        assert!(diagonal(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
