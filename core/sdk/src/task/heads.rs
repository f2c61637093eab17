//! The layers that tasks put on top of the backbone's features: [`Dense`] (Linear →
//! (BatchNorm) → ReLU) and [`Mlp`] (one or more `Dense` then a Linear: SimCLR's and BYOL's
//! projectors, BYOL's predictor, the three-layer projectors of Barlow Twins and VICReg).
//!
//! Variables are named as in PyTorch's `nn.Sequential` (`0` the linear layer, `1` the batch
//! norm, the ReLU taking the next index, then the next layer), so that checkpoints
//! read like the papers' code and stay loadable. They hold no task logic: the loss is the
//! task's.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::{BatchNorm, Linear, linear};

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
        Self::at(0, input, output, batch_norm, &vb)
    }

    /// As [`Dense::new`], its layers named from index `first` of a `Sequential`.
    fn at(first: usize, input: usize, output: usize, batch_norm: bool, vb: &VarBuilder) -> Result<Self> {
        let norm = if batch_norm { Some(BatchNorm::new(output, vb.pp((first + 1).to_string()))?) } else { None };
        Ok(Self { linear: linear(input, output, &vb.pp(first.to_string()))?, norm })
    }

    /// How many `Sequential` indices the block takes (Linear, BatchNorm, ReLU).
    fn span(batch_norm: bool) -> usize {
        if batch_norm { 3 } else { 2 }
    }

    /// `train` selects batch statistics (and updates the running ones) in the batch norm.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.linear.forward(xs)?;
        match &self.norm {
            Some(norm) => norm.forward_relu_t(&h, train),
            None => h.relu(),
        }
    }
}

pub struct Mlp {
    hidden: Vec<Dense>,
    out: Linear,
}

impl Mlp {
    /// `input → hidden → output`, with a batch norm after the hidden layer if `batch_norm`.
    // By value like candle_nn's constructors.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(input: usize, hidden: usize, output: usize, batch_norm: bool, vb: VarBuilder) -> Result<Self> {
        Self::deep(input, &[hidden], output, batch_norm, vb)
    }

    /// `input → hidden[0] → … → output`, a batch norm after every hidden layer if
    /// `batch_norm` (Barlow Twins' and VICReg's projectors: two hidden layers).
    #[allow(clippy::needless_pass_by_value)]
    pub fn deep(input: usize, hidden: &[usize], output: usize, batch_norm: bool, vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut width = input;
        for (k, &h) in hidden.iter().enumerate() {
            layers.push(Dense::at(k * Dense::span(batch_norm), width, h, batch_norm, &vb)?);
            width = h;
        }
        let out_name = (hidden.len() * Dense::span(batch_norm)).to_string();
        Ok(Self { hidden: layers, out: linear(width, output, &vb.pp(out_name))? })
    }

    /// `train` selects batch statistics (and updates the running ones) in the batch norms.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = xs.clone();
        for layer in &self.hidden {
            h = layer.forward_t(&h, train)?;
        }
        self.out.forward(&h)
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

    #[test]
    fn a_deep_mlp_is_named_like_nn_sequential() {
        // Linear, BatchNorm, ReLU, Linear, BatchNorm, ReLU, Linear: indices 0, 1, 3, 4, 6.
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let mlp = Mlp::deep(6, &[5, 4], 3, true, vb).unwrap();
        let mut names: Vec<String> =
            map.data().lock().unwrap().keys().filter(|k| k.ends_with("weight")).cloned().collect();
        names.sort();
        assert_eq!(names, ["0.weight", "1.weight", "3.weight", "4.weight", "6.weight"]);
        let y = mlp.forward_t(&Tensor::ones((4, 6), DType::F32, &Device::Cpu).unwrap(), true).unwrap();
        assert_eq!(y.dims(), &[4, 3]);
    }
}
