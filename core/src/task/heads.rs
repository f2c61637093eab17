//! The layers that tasks put on top of the backbone's features: [`Dense`] (Linear →
//! (BatchNorm) → ReLU) and [`Mlp`] (a `Dense` then a Linear).
//!
//! Variables are named as in PyTorch's `nn.Sequential` (`0` the linear layer, `1` the batch
//! norm, and for the MLP `2` or `3` the output layer after the ReLU), so that checkpoints
//! read like the papers' code and stay loadable. They hold no task logic: the loss is the
//! task's.

use candle_core::{Result, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, Linear, Module, ModuleT, VarBuilder};

/// Linear → (BatchNorm) → ReLU: the hidden layer of an [`Mlp`], or a layer applied to every
/// item on its own (jigsaw's per-tile layer).
pub struct Dense {
    linear: Linear,
    norm: Option<BatchNorm>,
}

impl Dense {
    /// `input → output`, with a batch norm before the ReLU if `batch_norm`.
    // By value like candle_nn's constructors, so callers can pass `vb.pp(..)` inline.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(input: usize, output: usize, batch_norm: bool, vb: VarBuilder) -> Result<Self> {
        let norm = if batch_norm {
            Some(candle_nn::batch_norm(output, BatchNormConfig::default(), vb.pp("1"))?)
        } else {
            None
        };
        Ok(Self { linear: candle_nn::linear(input, output, vb.pp("0"))?, norm })
    }

    /// `train` selects batch statistics (and updates the running ones) in the batch norm.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = self.linear.forward(xs)?;
        if let Some(norm) = &self.norm {
            h = norm.forward_t(&h, train)?;
        }
        h.relu()
    }
}

pub struct Mlp {
    hidden: Dense,
    out: Linear,
}

impl Mlp {
    /// `input → hidden → output`, with a batch norm after the hidden layer if `batch_norm`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(input: usize, hidden: usize, output: usize, batch_norm: bool, vb: VarBuilder) -> Result<Self> {
        let out_name = if batch_norm { "3" } else { "2" };
        Ok(Self {
            hidden: Dense::new(input, hidden, batch_norm, vb.clone())?,
            out: candle_nn::linear(hidden, output, vb.pp(out_name))?,
        })
    }

    /// `train` selects batch statistics (and updates the running ones) in the batch norm.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward_t(xs, train)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn variables_are_named_like_a_torch_sequential() {
        for (batch_norm, want) in [
            (false, vec!["0.bias", "0.weight", "2.bias", "2.weight"]),
            (
                true,
                vec![
                    "0.bias",
                    "0.weight",
                    "1.bias",
                    "1.running_mean",
                    "1.running_var",
                    "1.weight",
                    "3.bias",
                    "3.weight",
                ],
            ),
        ] {
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
            let mlp = Mlp::new(6, 5, 3, batch_norm, vb).unwrap();
            let mut names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
            names.sort();
            assert_eq!(names, want);
            let y = mlp.forward_t(&Tensor::ones((4, 6), DType::F32, &Device::Cpu).unwrap(), true).unwrap();
            assert_eq!(y.dims(), &[4, 3]);
        }
    }
}
