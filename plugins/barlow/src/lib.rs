//! Barlow Twins (Zbontar et al. 2021) as a Pretext plugin.
//!
//! Two augmented views of every image go through the backbone and a three-layer projector;
//! each view's projections are standardised over the batch, and the loss drives their
//! cross-correlation matrix towards the identity: `Σ(1 − C_ii)² + λ·Σ_{i≠j} C_ij²`. No
//! negatives, no teacher: redundancy reduction alone keeps the representation from collapsing.
//!
//! Defaults are solo-learn's CIFAR settings (`scripts/pretrain/cifar/barlow.yaml` and
//! `solo/losses/barlow.py` in vturrisi/solo-learn): projector 2048-2048-2048 (Linear-BN-ReLU
//! twice, then Linear, the paper's shape at CIFAR width), λ = 0.0051 (the paper's), the loss
//! scaled by 0.1 (solo-learn's `scale_loss` for CIFAR; the paper has none), and the
//! asymmetric two-view recipe ([`PairAugment`]'s defaults).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use pretext_sdk::dist;
use pretext_sdk::images::ByteImages;
use pretext_sdk::task::heads::Mlp;
use pretext_sdk::task::losses::{cross_diagonal, cross_norm_sq};
use pretext_sdk::task::{
    ImageRngs, InputSpec, MultiCrop, PairAugment, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BarlowConfig {
    /// Hidden sizes and output size of the projector.
    pub proj_hidden_dim: usize,
    pub proj_output_dim: usize,
    /// Weight of the off-diagonal (redundancy) term.
    pub lambda: f64,
    /// Factor on the whole loss.
    pub scale_loss: f64,
    #[serde(flatten)]
    pub views: PairAugment,
}

impl Default for BarlowConfig {
    fn default() -> Self {
        Self {
            proj_hidden_dim: 2048,
            proj_output_dim: 2048,
            lambda: 0.0051,
            scale_loss: 0.1,
            views: PairAugment::default(),
        }
    }
}

pub struct Barlow {
    config: BarlowConfig,
    crops: MultiCrop,
}

/// Each column standardised over the rows with the batch statistics (biased variance,
/// eps 1e-5): PyTorch's `BatchNorm1d(D, affine=False)` in training mode.
fn standardize(z: &Tensor) -> candle_core::Result<Tensor> {
    let centred = z.broadcast_sub(&z.mean_keepdim(0)?)?;
    let var = centred.sqr()?.mean_keepdim(0)?;
    centred.broadcast_div(&(var + 1e-5)?.sqrt()?)
}

/// The Barlow Twins loss of two views' projections (N × D each), and the mean of the
/// cross-correlation's diagonal (1 when the views agree perfectly).
pub fn barlow_twins(z1: &Tensor, z2: &Tensor, lambda: f64, scale: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let n = z1.dim(0)?;
    if n < 2 {
        candle_core::bail!("Barlow Twins needs at least two images per batch, got {n}");
    }
    // C = z1nᵀ·z2n / N, summed through its diagonal and its squared entries without forming
    // it (see cross_norm_sq).
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    let (a, b) = (standardize(z1)?, standardize(z2)?);
    let diag = (cross_diagonal(&a, &b)? / n)?;
    let on_diag = diag.affine(1.0, -1.0)?.sqr()?.sum_all()?;
    let off_diag = ((cross_norm_sq(&a, &b)? / (n * n))? - diag.sqr()?.sum_all()?)?;
    let loss = ((on_diag + (off_diag * lambda)?)? * scale)?;
    Ok((loss, diag.mean_all()?))
}

impl PretextTask for Barlow {
    type Config = BarlowConfig;
    type Head = Mlp;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "barlow".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Barlow Twins: make the cross-correlation of two views' projections the identity".into(),
            samples: "pairs of augmented views".into(),
        }
    }

    fn new(config: BarlowConfig, input: InputSpec) -> Result<Self, TaskError> {
        if input.height != input.width {
            return Err(TaskError::Config(format!(
                "Barlow Twins needs square images, got {}×{}",
                input.height, input.width
            )));
        }
        if config.proj_hidden_dim == 0 || config.proj_output_dim == 0 {
            return Err(TaskError::Config("the projector sizes must be positive".into()));
        }
        if !(config.lambda >= 0.0
            && config.scale_loss > 0.0
            && config.lambda.is_finite()
            && config.scale_loss.is_finite())
        {
            return Err(TaskError::Config("lambda must be ≥ 0 and scale_loss > 0".into()));
        }
        let crops = config.views.crops(input.height)?;
        Ok(Self { config, crops })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        self.crops.views(batch, rngs)
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Mlp> {
        let c = &self.config;
        Mlp::deep(feature_dim, &[c.proj_hidden_dim, c.proj_hidden_dim], c.proj_output_dim, true, vb.pp("projector"))
    }

    fn loss(&self, step: &mut Step<'_, Mlp>) -> candle_core::Result<TaskOutput> {
        let project = |v: &Tensor| step.head().forward_t(&step.encode(v)?, true);
        let (z1, z2) = (project(step.view(0)?)?, project(step.view(1)?)?);
        // The cross-correlation is over the global batch in a data-parallel run.
        let (z1, z2) = (dist::gather(&z1)?, dist::gather(&z2)?);
        let (loss, diag) = barlow_twins(&z1, &z2, self.config.lambda, self.config.scale_loss)?;
        Ok(TaskOutput { loss, metrics: vec![("cross_corr_diag".into(), diag)] })
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        Ok(self.crops.samples(batch, rngs))
    }
}

pretext_sdk::export_plugin!(Barlow);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn barlow_twins_matches_a_hand_computed_value() {
        // Two images, two dimensions. Standardised columns of z1: (−1, 1) and (1, −1) (eps
        // aside); of z2: (−1, 1) and (−1, 1). C = z1nᵀ·z2n / 2 = [[1, 1], [−1, −1]].
        // On-diagonal: (1 − 1)² + (1 − (−1))² = 4; off-diagonal: 1² + (−1)² = 2.
        let z1 = Tensor::new(&[[0.0f32, 5.0], [2.0, 1.0]], &Device::Cpu).unwrap();
        let z2 = Tensor::new(&[[1.0f32, -3.0], [3.0, 7.0]], &Device::Cpu).unwrap();
        let (loss, diag) = barlow_twins(&z1, &z2, 0.5, 0.1).unwrap();
        // eps: each standardised value is x/√(var + 1e-5) with var 1, 4, 1, 25: C_ij shrinks
        // by √(var_i/(var_i + 1e-5))·√(var_j/(var_j + 1e-5)), under 1e-5 relative.
        let want = 0.1 * (4.0 + 0.5 * 2.0);
        let got = loss.to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        assert!(diag.to_scalar::<f32>().unwrap().abs() < 1e-4);
    }

    #[test]
    fn identical_views_of_decorrelated_features_cost_nothing() {
        // Columns (1, −1, 1, −1) and (1, 1, −1, −1) are uncorrelated with unit variance.
        let z = Tensor::new(&[[1.0f32, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], &Device::Cpu).unwrap();
        let (loss, diag) = barlow_twins(&z, &z, 0.0051, 1.0).unwrap();
        assert!(loss.to_scalar::<f32>().unwrap().abs() < 1e-4);
        assert!((diag.to_scalar::<f32>().unwrap() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn the_projector_has_three_layers() {
        let task =
            Barlow::new(BarlowConfig::default(), InputSpec { channels: 3, height: 8, width: 8, patch_size: None })
                .unwrap();
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let head = task.build_head(16, vb).unwrap();
        let y = head.forward_t(&Tensor::ones((4, 16), DType::F32, &Device::Cpu).unwrap(), true).unwrap();
        assert_eq!(y.dims(), &[4, 2048]);
        assert!(map.data().lock().unwrap().contains_key("projector.6.weight"));
    }
}
