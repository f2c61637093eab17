//! VICReg (Bardes, Ponce and LeCun 2022) as a Pretext plugin.
//!
//! Two augmented views of every image go through the backbone and a three-layer expander.
//! The loss has three terms: invariance (the mean squared error between the views'
//! embeddings), variance (a hinge keeping each dimension's standard deviation over the batch
//! at 1 or more, so the embeddings cannot collapse to a point) and covariance (the squared
//! off-diagonal covariances, decorrelating the dimensions).
//!
//! The loss follows the authors' code (`main_vicreg.py` in facebookresearch/vicreg):
//! standard deviation `√(var + 1e-4)` with the unbiased variance, each view's hinge averaged
//! and halved, covariance over `N − 1`, each view's squared off-diagonal sum divided by `D`,
//! weights 25 / 25 / 1 (the paper's λ, μ, ν). Defaults for small images are solo-learn's CIFAR
//! settings (`scripts/pretrain/cifar/vicreg.yaml` in vturrisi/solo-learn): expander
//! 2048-2048-2048, crops of 20–100% of the area, solarisation p 0.1 on both views, no blur.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use pretext_sdk::dist;
use pretext_sdk::images::ByteImages;
use pretext_sdk::task::heads::Mlp;
use pretext_sdk::task::losses::cross_norm_sq;
use pretext_sdk::task::{
    ImageRngs, InputSpec, MultiCrop, PairAugment, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VicregConfig {
    /// Hidden sizes and output size of the expander.
    pub proj_hidden_dim: usize,
    pub proj_output_dim: usize,
    /// Weights of the invariance, variance and covariance terms.
    pub sim_loss_weight: f64,
    pub var_loss_weight: f64,
    pub cov_loss_weight: f64,
    #[serde(flatten)]
    pub views: PairAugment,
}

impl Default for VicregConfig {
    fn default() -> Self {
        Self {
            proj_hidden_dim: 2048,
            proj_output_dim: 2048,
            sim_loss_weight: 25.0,
            var_loss_weight: 25.0,
            cov_loss_weight: 1.0,
            views: PairAugment { crop_scale: (0.2, 1.0), solarize_p: (0.1, 0.1), ..PairAugment::default() },
        }
    }
}

pub struct Vicreg {
    config: VicregConfig,
    crops: MultiCrop,
}

/// The three VICReg terms of two views' embeddings (N × D each), unweighted.
pub struct VicregTerms {
    pub invariance: Tensor,
    pub variance: Tensor,
    pub covariance: Tensor,
}

/// Variance hinge `mean(relu(1 − √(var + 1e-4)))` and covariance `Σ_{i≠j} C_ij² / D` of one view.
fn spread_terms(z: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let (n, d) = z.dims2()?;
    let centred = z.broadcast_sub(&z.mean_keepdim(0)?)?;
    #[allow(clippy::cast_precision_loss)]
    let (n1, d) = ((n - 1) as f64, d as f64);
    // The covariance matrix's diagonal is the variance; its squared entries are summed
    // without forming it (see cross_norm_sq).
    let var = (centred.sqr()?.sum(0)? / n1)?;
    let std = (&var + 1e-4)?.sqrt()?;
    let variance = std.affine(-1.0, 1.0)?.relu()?.mean_all()?;
    let off = ((cross_norm_sq(&centred, &centred)? / (n1 * n1))? - var.sqr()?.sum_all()?)?;
    Ok((variance, (off / d)?))
}

pub fn vicreg_terms(z1: &Tensor, z2: &Tensor) -> candle_core::Result<VicregTerms> {
    let n = z1.dim(0)?;
    if n < 2 {
        candle_core::bail!("VICReg needs at least two images per batch, got {n}");
    }
    let invariance = (z1 - z2)?.sqr()?.mean_all()?;
    let (v1, c1) = spread_terms(z1)?;
    let (v2, c2) = spread_terms(z2)?;
    Ok(VicregTerms { invariance, variance: ((v1 + v2)? / 2.0)?, covariance: (c1 + c2)? })
}

impl PretextTask for Vicreg {
    type Config = VicregConfig;
    type Head = Mlp;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "vicreg".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "VICReg: variance, invariance and covariance terms on two views' embeddings".into(),
            samples: "pairs of augmented views".into(),
        }
    }

    fn new(config: VicregConfig, input: InputSpec) -> Result<Self, TaskError> {
        if input.height != input.width {
            return Err(TaskError::Config(format!("VICReg needs square images, got {}×{}", input.height, input.width)));
        }
        if config.proj_hidden_dim == 0 || config.proj_output_dim == 0 {
            return Err(TaskError::Config("the expander sizes must be positive".into()));
        }
        let weights = [config.sim_loss_weight, config.var_loss_weight, config.cov_loss_weight];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(TaskError::Config("the loss weights must be numbers ≥ 0".into()));
        }
        let crops = config.views.crops(input.height)?;
        Ok(Self { config, crops })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        self.crops.views(batch, rngs)
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Mlp> {
        let c = &self.config;
        Mlp::deep(feature_dim, &[c.proj_hidden_dim, c.proj_hidden_dim], c.proj_output_dim, true, vb.pp("expander"))
    }

    fn loss(&self, step: &mut Step<'_, Mlp>) -> candle_core::Result<TaskOutput> {
        let expand = |v: &Tensor| step.head().forward_t(&step.encode(v)?, true);
        let (z1, z2) = (expand(step.view(0)?)?, expand(step.view(1)?)?);
        // Variance and covariance are over the global batch in a data-parallel run.
        let t = vicreg_terms(&dist::gather(&z1)?, &dist::gather(&z2)?)?;
        let c = &self.config;
        let loss = (((&t.invariance * c.sim_loss_weight)? + (&t.variance * c.var_loss_weight)?)?
            + (&t.covariance * c.cov_loss_weight)?)?;
        let metrics = vec![
            ("invariance".into(), t.invariance),
            ("variance".into(), t.variance),
            ("covariance".into(), t.covariance),
        ];
        Ok(TaskOutput { loss, metrics })
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        Ok(self.crops.samples(batch, rngs))
    }
}

pretext_sdk::export_plugin!(Vicreg);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn scalar(t: &Tensor) -> f64 {
        f64::from(t.to_scalar::<f32>().unwrap())
    }

    #[test]
    fn vicreg_terms_match_hand_computed_values() {
        // z1 rows (0, 0), (2, 4); z2 rows (1, 0), (1, 4). N = 2, D = 2.
        // Invariance: ((0−1)² + 0 + (2−1)² + 0) / 4 = 0.5.
        // z1: unbiased variances 2 and 8, std √2.0001 and √8.0001, both ≥ 1: hinge 0.
        //     covariance of the columns: (−1·−2 + 1·2)/1 = 4 → off-diagonal sum 2·16 = 32, / D = 16.
        // z2: variances 0 and 8: hinge (1 − √0.0001)/2 = 0.495 for the mean over 2 dims; the
        //     constant column has no covariance: 0.
        // Variance term: (0 + 0.495) / 2 = 0.2475; covariance term: 16 + 0 = 16.
        let z1 = Tensor::new(&[[0.0f32, 0.0], [2.0, 4.0]], &Device::Cpu).unwrap();
        let z2 = Tensor::new(&[[1.0f32, 0.0], [1.0, 4.0]], &Device::Cpu).unwrap();
        let t = vicreg_terms(&z1, &z2).unwrap();
        assert!((scalar(&t.invariance) - 0.5).abs() < 1e-6);
        assert!((scalar(&t.variance) - 0.2475).abs() < 1e-5, "{}", scalar(&t.variance));
        assert!((scalar(&t.covariance) - 16.0).abs() < 1e-4, "{}", scalar(&t.covariance));
    }

    #[test]
    fn the_covariance_term_matches_the_formed_matrix_when_dimensions_outnumber_images() {
        // 6 images of 10 dimensions: cross_norm_sq takes its Gram-matrix form here.
        let z = Tensor::randn(0f32, 1., (6, 10), &Device::Cpu).unwrap();
        let centred = z.broadcast_sub(&z.mean_keepdim(0).unwrap()).unwrap();
        let cov = (centred.t().unwrap().matmul(&centred).unwrap() / 5.0).unwrap();
        let eye = Tensor::eye(10, DType::F32, &Device::Cpu).unwrap();
        let off = (cov.sqr().unwrap() * eye.affine(-1.0, 1.0).unwrap()).unwrap().sum_all().unwrap();
        let want = scalar(&off) / 10.0;
        let (_, got) = spread_terms(&z).unwrap();
        assert!((scalar(&got) - want).abs() < 1e-5 * want, "{} vs {want}", scalar(&got));
    }

    #[test]
    fn a_collapsed_embedding_pays_the_full_variance_hinge() {
        let z = Tensor::ones((8, 4), DType::F32, &Device::Cpu).unwrap();
        let t = vicreg_terms(&z, &z).unwrap();
        assert!(scalar(&t.invariance).abs() < 1e-9 && scalar(&t.covariance).abs() < 1e-9);
        assert!((scalar(&t.variance) - (1.0 - 0.01)).abs() < 1e-5);
    }
}
