//! Linear probe: a softmax classifier trained on frozen, standardised features, the second
//! number (after kNN) the SSL literature reports for a representation.

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::steps::LrSchedule;
use crate::task::{Optimizer, OptimizerConfig, OptimizerKind};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { epochs: 30, batch_size: 256, lr: 1e-2, weight_decay: 1e-4, seed: 0 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeResult {
    pub train_top1: f64,
    pub test_top1: f64,
}

/// Per-column mean and standard deviation of `data` (rows of `cols`).
fn column_stats(data: &[f32], cols: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = (data.len() / cols.max(1)).max(1);
    let mut mean = vec![0f64; cols];
    let mut sq = vec![0f64; cols];
    for row in data.chunks_exact(cols) {
        for (c, &v) in row.iter().enumerate() {
            mean[c] += f64::from(v);
            sq[c] += f64::from(v) * f64::from(v);
        }
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let stats = mean
        .iter()
        .zip(&sq)
        .map(|(m, s)| {
            let m = m / rows as f64;
            let var = (s / rows as f64 - m * m).max(0.0);
            (m as f32, (var.sqrt() as f32).max(1e-6))
        })
        .unzip();
    stats
}

fn standardise(data: &[f32], cols: usize, mean: &[f32], std: &[f32]) -> Vec<f32> {
    data.chunks_exact(cols)
        .flat_map(|row| row.iter().zip(mean.iter().zip(std)).map(|(v, (m, s))| (v - m) / s))
        .collect()
}

/// Trains a linear classifier on `train` features and reports top-1 on both splits.
pub fn linear_probe(
    train: &[f32],
    train_labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    cols: usize,
    num_classes: usize,
    config: ProbeConfig,
) -> candle_core::Result<ProbeResult> {
    let n = train_labels.len();
    if n == 0 || cols == 0 || train.len() != n * cols || test.len() != test_labels.len() * cols {
        candle_core::bail!("the probe needs non-empty features with one label per row");
    }
    let dev = Device::Cpu;
    let (mean, std) = column_stats(train, cols);
    let x_train = Tensor::from_vec(standardise(train, cols, &mean, &std), (n, cols), &dev)?;
    let y_train = Tensor::from_slice(train_labels, n, &dev)?;
    let w = Var::from_tensor(&Tensor::zeros((cols, num_classes), DType::F32, &dev)?)?;
    let b = Var::from_tensor(&Tensor::zeros(num_classes, DType::F32, &dev)?)?;
    let opt_config = OptimizerConfig {
        kind: OptimizerKind::Adamw,
        weight_decay: Some(config.weight_decay),
        ..OptimizerConfig::default()
    };
    let mut opt = Optimizer::new(opt_config, vec![("w".into(), w.clone()), ("b".into(), b.clone())]);
    let batch = config.batch_size.clamp(1, n);
    let steps_per_epoch = n.div_ceil(batch);
    let schedule = LrSchedule {
        base: config.lr,
        warmup_steps: 0,
        total_steps: (steps_per_epoch * config.epochs) as u64,
        decay: crate::steps::LrDecay::Cosine,
    };
    let mut order: Vec<u32> = (0..u32::try_from(n).unwrap_or(u32::MAX)).collect();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut step = 0u64;
    let logits = |x: &Tensor| x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor());
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(batch) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &dev)?;
            let loss = candle_nn::loss::cross_entropy(
                &logits(&x_train.index_select(&idx, 0)?)?,
                &y_train.index_select(&idx, 0)?,
            )?;
            opt.step(&loss.backward()?, schedule.at(step))?;
            step += 1;
        }
    }
    let top1 = |x: &Tensor, labels: &[u32]| -> candle_core::Result<f64> {
        let predicted = logits(x)?.argmax(1)?.to_vec1::<u32>()?;
        Ok(super::accuracy(&predicted, labels))
    };
    let x_test = Tensor::from_vec(standardise(test, cols, &mean, &std), (test_labels.len(), cols), &dev)?;
    Ok(ProbeResult { train_top1: top1(&x_train, train_labels)?, test_top1: top1(&x_test, test_labels)? })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_precision_loss)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn separates_linearly_separable_classes_and_not_noise() {
        let mut rng = StdRng::seed_from_u64(1);
        let (cols, classes, n) = (8, 3, 600);
        let labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
        // Class c shifts column c by 3: separable. Column 7 is huge noise, so the probe
        // only works if it standardises and learns to ignore it.
        let data: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..cols).map(move |c| (c, l)).collect::<Vec<_>>())
            .map(|(c, l)| {
                if c == 7 {
                    rng.random_range(-1000.0..1000.0)
                } else {
                    f32::from(u8::from(c == l as usize)) * 3.0 + rng.random_range(-1.0..1.0)
                }
            })
            .collect();
        let (tr, te) = data.split_at(400 * cols);
        let cfg = ProbeConfig { epochs: 20, ..ProbeConfig::default() };
        let r = linear_probe(tr, &labels[..400], te, &labels[400..], cols, classes, cfg).unwrap();
        assert!(r.test_top1 > 0.95, "{r:?}");

        let shuffled: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes as u32)).collect();
        let r = linear_probe(tr, &shuffled[..400], te, &shuffled[400..], cols, classes, cfg).unwrap();
        assert!(r.test_top1 < 0.5, "random labels cannot be predicted: {r:?}");
    }
}
