//! Backbone features of a set of images, stage by stage, in eval mode.
//!
//! One function serves the plugin's `embed` and the host's evaluation: the host rebuilds the
//! backbone from a checkpoint's `backbone.*` tensors in its own copy of candle, so a run can
//! be evaluated without its plugin and no tensor ever crosses the plugin boundary.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::images::ImageSource;
use crate::model::{Backbone, BackboneSpec};
use crate::task::Normalize;
use crate::task::wire::Matrix;

/// Images per forward pass: bounds activation memory on large evaluation sets.
const CHUNK: usize = 256;

/// Per-channel input normalisation on a device: unit-float images in, network input out.
pub struct InputNorm {
    mean: Tensor,
    std: Tensor,
    device: Device,
}

impl InputNorm {
    pub fn new(normalize: &Normalize, device: &Device) -> candle_core::Result<Self> {
        let c = normalize.mean.len();
        Ok(Self {
            mean: Tensor::from_slice(&normalize.mean, (1, c, 1, 1), device)?,
            std: Tensor::from_slice(&normalize.std, (1, c, 1, 1), device)?,
            device: device.clone(),
        })
    }

    pub fn apply(&self, images: &crate::images::FloatImages) -> candle_core::Result<Tensor> {
        let x = Tensor::from_slice(&images.data, (images.n, images.c, images.h, images.w), &self.device)?;
        x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)
    }
}

/// A backbone in eval mode with its input normalisation.
pub struct FeatureExtractor {
    backbone: Backbone,
    norm: InputNorm,
}

impl FeatureExtractor {
    pub fn new(backbone: Backbone, normalize: &Normalize, device: &Device) -> candle_core::Result<Self> {
        Ok(Self { backbone, norm: InputNorm::new(normalize, device)? })
    }

    /// Rebuilds the backbone from safetensors bytes holding `backbone.*` (a checkpoint).
    pub fn from_checkpoint(
        spec: &BackboneSpec,
        normalize: &Normalize,
        weights: &[u8],
        device: &Device,
    ) -> candle_core::Result<Self> {
        let vb = VarBuilder::from_buffered_safetensors(weights.to_vec(), DType::F32, device)?;
        let backbone = Backbone::new(spec, vb.pp("backbone"))?;
        Self::new(backbone, normalize, device)
    }

    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// `stage1`..`stageK` (globally pooled) and `features` (the last stage), N rows each.
    pub fn stages(&self, images: &impl ImageSource) -> candle_core::Result<Vec<Matrix>> {
        stage_matrices(&self.backbone, images, |batch| self.norm.apply(batch))
    }
}

/// Eval-mode stage features of `images`, computed in chunks; `input` normalises a chunk.
pub fn stage_matrices(
    backbone: &Backbone,
    images: &impl ImageSource,
    input: impl Fn(&crate::images::FloatImages) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Matrix>> {
    let mut stages: Vec<Vec<Tensor>> = vec![Vec::new(); backbone.stage_dims().len()];
    for start in (0..images.count()).step_by(CHUNK) {
        let idx: Vec<usize> = (start..(start + CHUNK).min(images.count())).collect();
        let x = input(&images.gather(&idx).to_unit_float())?;
        // Detached: with trainable weights each output would otherwise keep its whole
        // forward graph, activations included, alive until the end (gigabytes).
        for (acc, t) in stages.iter_mut().zip(backbone.stage_features_t(&x, false)?) {
            acc.push(t.detach());
        }
    }
    let mut out = Vec::with_capacity(stages.len() + 1);
    for (k, parts) in stages.into_iter().enumerate() {
        if parts.is_empty() {
            continue;
        }
        let t = Tensor::cat(&parts, 0)?.to_dtype(DType::F32)?;
        let (rows, cols) = t.dims2()?;
        let data = t.flatten_all()?.to_vec1::<f32>()?;
        out.push(Matrix { name: format!("stage{}", k + 1), rows, cols, data });
    }
    if let Some(last) = out.last() {
        out.push(Matrix { name: "features".into(), ..last.clone() });
    }
    Ok(out)
}
