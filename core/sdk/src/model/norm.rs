//! Batch normalisation with PyTorch's names, defaults and running statistics: `BatchNorm2d`
//! over (N, C, H, W) feature maps and `BatchNorm1d` over (N, C) rows (the heads' hidden
//! layers), one type for both as the arithmetic is the same.
//!
//! A thin wrapper over `candle_nn::BatchNorm`: it fixes PyTorch's defaults (eps 1e-5,
//! momentum 0.1, affine) and refuses training-mode batches with a single value per channel,
//! whose unbiased variance would write `inf` into the running variance. It must not keep
//! statistics of its own: the running mean and variance live in the `VarBuilder`'s store
//! (`running_mean`, `running_var`) so that checkpoints carry them.
//!
//! Training on the CPU in f32 runs the fused kernels of `norm_op.rs` (optionally with the
//! following ReLU folded in, see [`BatchNorm::forward_relu_t`]); everything else, and
//! everything under `PRETEXT_CONV=stock` / [`super::ConvImpl::Stock`], uses candle-nn's.

use candle_core::{Result, Tensor};
use candle_nn::{BatchNormConfig, ModuleT, VarBuilder};

/// Whether a variable name is a batch norm's running statistic (a buffer, not trained):
/// optimizers skip these because they have no gradient, the EMA teacher because its own
/// forward passes keep them.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// `nn.BatchNorm2d(num_features)` or `nn.BatchNorm1d(num_features)`: parameters `weight`, `bias`, buffers `running_mean`,
/// `running_var`.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    inner: candle_nn::BatchNorm,
}

impl BatchNorm {
    pub const EPS: f64 = 1e-5;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(num_features: usize, vb: VarBuilder) -> Result<Self> {
        let config = BatchNormConfig { eps: Self::EPS, remove_mean: true, affine: true, momentum: Self::MOMENTUM };
        Ok(Self { inner: candle_nn::batch_norm(num_features, config, vb)? })
    }

    pub fn running_mean(&self) -> &Tensor {
        self.inner.running_mean()
    }

    pub fn running_var(&self) -> &Tensor {
        self.inner.running_var()
    }

    /// Training mode normalises with the batch statistics and updates the running ones in
    /// place; eval mode uses the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_maybe_relu(x, train, false)
    }

    /// `relu(forward_t(x, train))`, fused into one pass where the fast kernels apply.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_maybe_relu(x, train, true)
    }

    fn forward_maybe_relu(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        if train {
            let dims = x.dims();
            let per_channel: usize = dims.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, d)| d).product();
            if dims.len() < 2 || per_channel < 2 {
                candle_core::bail!(
                    "batch norm in training mode needs more than one value per channel, got input {dims:?}"
                );
            }
            if let Some(comm) = crate::dist::sync_batch_norm() {
                let y = self.sync_train(x, comm.world(), per_channel)?;
                return if relu { y.relu() } else { Ok(y) };
            }
            #[cfg(not(target_arch = "wasm32"))]
            if super::conv_impl() != super::ConvImpl::Stock
                && x.device().is_cpu()
                && x.dtype() == candle_core::DType::F32
                && matches!(dims.len(), 2 | 4)
                && dims[1] == self.running_mean().elem_count()
                && let Some((weight, bias)) = self.inner.weight_and_bias()
            {
                if let [n, c] = *dims {
                    // Rows are feature maps of one pixel.
                    let y = self.fused_train(&x.reshape((n, c, 1, 1))?, weight, bias, relu, per_channel)?;
                    return y.reshape((n, c));
                }
                return self.fused_train(x, weight, bias, relu, per_channel);
            }
        }
        let y = self.inner.forward_t(x, train)?;
        if relu { y.relu() } else { Ok(y) }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn fused_train(&self, x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool, count: usize) -> Result<Tensor> {
        use super::norm_op::{BatchNormTrain, ChannelStats};
        let x = x.contiguous()?;
        let stats = x.apply_op1_no_bwd(&ChannelStats)?;
        let m = Self::MOMENTUM;
        // candle-nn's update, PyTorch's too: the running variance takes the unbiased estimate.
        let unbias = count as f64 / (count as f64 - 1.0);
        let update = |running: &Tensor, batch: Tensor, mul: f64| -> Result<()> {
            let new = ((running * (1.0 - m))? + (batch * (m * mul))?)?;
            candle_core::Var::from_tensor(running)?.set(&new)
        };
        update(self.running_mean(), stats.get(0)?, 1.0)?;
        update(self.running_var(), stats.get(1)?, unbias)?;
        let wb = Tensor::stack(&[weight, bias], 0)?;
        x.apply_op3(&stats, &wb, BatchNormTrain { eps: Self::EPS, relu })
    }
}

impl BatchNorm {
    /// Training mode with the statistics of the global batch (PyTorch's `SyncBatchNorm`):
    /// per-channel sums all-reduced over the `world` ranks, the mean first and then the
    /// centred squares (two passes, as the one-process kernels compute them). The sums are
    /// differentiable collectives, so the gradient is that of the one-process global batch.
    #[allow(clippy::cast_precision_loss)]
    fn sync_train(&self, x: &Tensor, world: usize, per_channel: usize) -> Result<Tensor> {
        use crate::dist::all_reduce_sum;
        let dims = x.dims().to_vec();
        let c = dims[1];
        // Channels first, everything else flattened: (C, M).
        let rows = x.transpose(0, 1)?.contiguous()?.reshape((c, per_channel))?;
        let count = (per_channel * world) as f64;
        let mean = (all_reduce_sum(&rows.sum_keepdim(1)?)? / count)?;
        let centred = rows.broadcast_sub(&mean)?;
        let var = (all_reduce_sum(&centred.sqr()?.sum_keepdim(1)?)? / count)?;
        let mut y = centred.broadcast_div(&(var.clone() + Self::EPS)?.sqrt()?)?;
        if let Some((weight, bias)) = self.inner.weight_and_bias() {
            y = y.broadcast_mul(&weight.reshape((c, 1))?)?.broadcast_add(&bias.reshape((c, 1))?)?;
        }
        let m = Self::MOMENTUM;
        let update = |running: &Tensor, batch: Tensor| -> Result<()> {
            let new = ((running * (1.0 - m))? + (batch.detach().flatten_all()? * m)?)?;
            candle_core::Var::from_tensor(running)?.set(&new)
        };
        update(self.running_mean(), mean)?;
        update(self.running_var(), (var * (count / (count - 1.0)))?)?;
        let mut shape = dims.clone();
        shape.swap(0, 1);
        y.reshape(shape)?.transpose(0, 1)?.contiguous()
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        BatchNorm::forward_t(self, x, train)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    use super::*;

    fn stored(map: &VarMap, name: &str) -> Vec<f32> {
        map.data().lock().unwrap()[name].as_tensor().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn running_stats_update_in_the_varmap() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let bn = BatchNorm::new(2, VarBuilder::from_varmap(&map, DType::F32, &dev).pp("bn")).unwrap();
        // Channel 0 holds 1..=4, channel 1 holds 10 everywhere: batch means 2.5 and 10,
        // unbiased variances 5/3 and 0.
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]], [[10., 10.], [10., 10.]]]], &dev).unwrap();
        let y = bn.forward_t(&x, true).unwrap();
        let mean = stored(&map, "bn.running_mean");
        let var = stored(&map, "bn.running_var");
        assert!((mean[0] - 0.25).abs() < 1e-6 && (mean[1] - 1.0).abs() < 1e-6, "{mean:?}");
        assert!((var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-5 && (var[1] - 0.9).abs() < 1e-6, "{var:?}");
        assert_eq!(bn.running_mean().to_vec1::<f32>().unwrap(), mean);
        // Training output is normalised with the batch statistics.
        let y0 = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = (1.0 - 2.5) / (1.25f32 + 1e-5).sqrt();
        assert!((y0[0] - want).abs() < 1e-4, "{y0:?}");

        // Eval mode uses the running statistics and leaves them alone.
        let rm = Var::from_tensor(&map.data().lock().unwrap()["bn.running_mean"].as_tensor().clone()).unwrap();
        rm.set(&Tensor::new(&[1f32, 2.], &dev).unwrap()).unwrap();
        let rv = map.data().lock().unwrap()["bn.running_var"].clone();
        rv.set(&Tensor::new(&[4f32, 1.], &dev).unwrap()).unwrap();
        let e = bn.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((e[0] - 0.0).abs() < 1e-5 && (e[3] - 1.5).abs() < 1e-4 && (e[4] - 8.0).abs() < 1e-3, "{e:?}");
        assert_eq!(stored(&map, "bn.running_mean"), vec![1.0, 2.0]);
    }

    #[test]
    fn single_value_per_channel_is_refused_in_training() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let bn = BatchNorm::new(3, VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
        let x = Tensor::ones((1, 3, 1, 1), DType::F32, &dev).unwrap();
        assert!(bn.forward_t(&x, true).is_err());
        assert!(bn.forward_t(&x, false).is_ok());
    }

    /// The fused training path against candle-nn's, on 4-D and 2-D inputs: output, gradients of the input, weight
    /// and bias, and the running statistics, with and without the ReLU.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn fused_training_matches_candle_nn() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(1);
        let mut random = |dims: &[usize], lo: f32, hi: f32| {
            let len = dims.iter().product::<usize>();
            Tensor::from_vec((0..len).map(|_| rng.random_range(lo..hi)).collect::<Vec<f32>>(), dims, &dev).unwrap()
        };
        // Feature maps (BatchNorm2d) and rows (BatchNorm1d, the heads' hidden layers). Maps
        // under 64 pixels go through the row kernels too (`norm_op::ROW_PLANE`), larger ones
        // plane by plane; more than 64 images cross a block of the rows' f32 sums.
        let cases: [(bool, &[usize]); 8] = [
            (false, &[3, 4, 5, 6]),
            (true, &[5, 3, 2, 2]),
            (true, &[2, 6, 7, 3]),
            (true, &[8, 37]),
            (false, &[5, 9]),
            (true, &[2, 3, 9, 8]),
            (false, &[3, 2, 8, 8]),
            (true, &[70, 3, 2, 2]),
        ];
        for (relu, dims) in cases {
            let x0 = (random(dims, -2.0, 2.0) + 0.7).unwrap();
            let r = random(dims, -1.0, 1.0);
            let c = dims[1];
            let w0 = random(&[c], 0.5, 1.5);
            let b0 = random(&[c], -0.5, 0.5);
            let mut results = Vec::new();
            for fused in [false, true] {
                let map = VarMap::new();
                let bn = BatchNorm::new(c, VarBuilder::from_varmap(&map, DType::F32, &dev).pp("bn")).unwrap();
                map.data().lock().unwrap()["bn.weight"].set(&w0).unwrap();
                map.data().lock().unwrap()["bn.bias"].set(&b0).unwrap();
                let x = Var::from_tensor(&x0).unwrap();
                let y = if fused {
                    bn.forward_maybe_relu(x.as_tensor(), true, relu).unwrap()
                } else {
                    let y = bn.inner.forward_t(x.as_tensor(), true).unwrap();
                    if relu { y.relu().unwrap() } else { y }
                };
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let get = |t: &Tensor| grads.get(t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let weight = map.data().lock().unwrap()["bn.weight"].as_tensor().clone();
                let bias = map.data().lock().unwrap()["bn.bias"].as_tensor().clone();
                results.push([
                    y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    get(x.as_tensor()),
                    get(&weight),
                    get(&bias),
                    stored(&map, "bn.running_mean"),
                    stored(&map, "bn.running_var"),
                ]);
            }
            let names = ["output", "input grad", "weight grad", "bias grad", "running mean", "running var"];
            for ((name, a), b) in names.iter().zip(&results[0]).zip(&results[1]) {
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(diff / scale < 1e-4, "{name} differs by {diff} (scale {scale}) for {dims:?}, relu {relu}");
            }
        }
    }

    /// Synchronised batch norm on two ranks of 3 images each against one process on all 6:
    /// outputs, the input's gradient (averaged as the session averages), the weight and bias
    /// gradients (averaged) and the running statistics.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn synchronised_statistics_match_one_process_on_the_global_batch() {
        use crate::dist::LocalGroup;
        let dev = Device::Cpu;
        let value = |i: usize| ((i * 37 + 11) % 29) as f32 / 7.0 - 2.0;
        let dims = [6usize, 2, 2, 3];
        let len: usize = dims.iter().product();
        let global = Tensor::from_vec((0..len).map(value).collect::<Vec<f32>>(), &dims[..], &dev).unwrap();
        let weights = Tensor::from_vec((0..len).map(|i| value(i + 5)).collect::<Vec<f32>>(), &dims[..], &dev).unwrap();
        let run = |x: &Tensor, r: &Tensor| {
            let map = VarMap::new();
            let bn = BatchNorm::new(2, VarBuilder::from_varmap(&map, DType::F32, &dev).pp("bn")).unwrap();
            let x = Var::from_tensor(x).unwrap();
            let y = bn.forward_relu_t(x.as_tensor(), true).unwrap();
            let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
            let get = |t: &Tensor| grads.get(t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let data = map.data().lock().unwrap();
            [
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                get(x.as_tensor()),
                get(data["bn.weight"].as_tensor()),
                get(data["bn.bias"].as_tensor()),
                data["bn.running_mean"].as_tensor().to_vec1::<f32>().unwrap(),
                data["bn.running_var"].as_tensor().to_vec1::<f32>().unwrap(),
            ]
        };
        let one = run(&global, &weights);
        let ranks = LocalGroup::run(2, true, |rank| {
            run(&global.narrow(0, 3 * rank, 3).unwrap(), &weights.narrow(0, 3 * rank, 3).unwrap())
        });
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (p, q) in a.iter().zip(b) {
                assert!((p - q).abs() < 1e-5, "{what}: {p} vs {q}");
            }
        };
        // Each rank's output and input gradient are its rows of the global ones; the loss of
        // the one process is the sum of the ranks', so the input gradient is not averaged.
        close(&[ranks[0][0].clone(), ranks[1][0].clone()].concat(), &one[0], "output");
        close(&[ranks[0][1].clone(), ranks[1][1].clone()].concat(), &one[1], "input gradient");
        for k in 2..4 {
            let summed: Vec<f32> = ranks[0][k].iter().zip(&ranks[1][k]).map(|(a, b)| a + b).collect();
            close(&summed, &one[k], "parameter gradient");
        }
        for rank in &ranks {
            close(&rank[4], &one[4], "running mean");
            close(&rank[5], &one[5], "running variance");
        }
    }
}
