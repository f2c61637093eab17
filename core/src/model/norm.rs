//! 2-D batch normalisation with torchvision's names, defaults and running statistics.
//!
//! A thin wrapper over `candle_nn::BatchNorm`: it fixes PyTorch's defaults (eps 1e-5,
//! momentum 0.1, affine) and refuses training-mode batches with a single value per channel,
//! whose unbiased variance would write `inf` into the running variance. It must not keep
//! statistics of its own: the running mean and variance live in the `VarBuilder`'s store
//! (`running_mean`, `running_var`) so that checkpoints carry them.

use candle_core::{Result, Tensor};
use candle_nn::{BatchNormConfig, ModuleT, VarBuilder};

/// `nn.BatchNorm2d(num_features)`: parameters `weight`, `bias`, buffers `running_mean`,
/// `running_var`.
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    inner: candle_nn::BatchNorm,
}

impl BatchNorm2d {
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
        if train {
            let dims = x.dims();
            let per_channel: usize = dims.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, d)| d).product();
            if dims.len() < 2 || per_channel < 2 {
                candle_core::bail!(
                    "batch norm in training mode needs more than one value per channel, got input {dims:?}"
                );
            }
        }
        self.inner.forward_t(x, train)
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        BatchNorm2d::forward_t(self, x, train)
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
        let bn = BatchNorm2d::new(2, VarBuilder::from_varmap(&map, DType::F32, &dev).pp("bn")).unwrap();
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
        let bn = BatchNorm2d::new(3, VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
        let x = Tensor::ones((1, 3, 1, 1), DType::F32, &dev).unwrap();
        assert!(bn.forward_t(&x, true).is_err());
        assert!(bn.forward_t(&x, false).is_ok());
    }
}
