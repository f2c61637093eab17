//! Losses shared by pretext tasks that classify what was done to the input (rotation
//! angle, jigsaw permutation): cross-entropy plus the accuracy it reports.

use candle_core::{DType, Tensor};

use super::TaskOutput;

/// Mean cross-entropy of `logits` (N × K) against `targets` (N, u32), with the top-1
/// accuracy as the metric `pretext_acc`.
pub fn classification(logits: &Tensor, targets: &Tensor) -> candle_core::Result<TaskOutput> {
    let loss = candle_nn::loss::cross_entropy(logits, targets)?;
    let correct = logits.argmax(1)?.eq(targets)?.to_dtype(DType::F32)?.mean_all()?;
    Ok(TaskOutput { loss, metrics: vec![("pretext_acc".into(), correct)] })
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
}
