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

    /// The inverse of [`InputNorm::apply`]: network input `(N, C, H, W)` back to images,
    /// clamped to `0..=1`.
    pub fn invert(&self, x: &Tensor) -> candle_core::Result<crate::images::FloatImages> {
        let (n, c, h, w) = x.dims4()?;
        let images = x.broadcast_mul(&self.std)?.broadcast_add(&self.mean)?.clamp(0f32, 1f32)?;
        let data = images.detach().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        crate::images::FloatImages::new(n, c, h, w, data).map_err(|e| candle_core::Error::Msg(e.to_string()))
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

    /// The last block's CLS attention over the patches for a ViT; `None` for a CNN.
    pub fn attention(&self, images: &impl ImageSource) -> candle_core::Result<Option<AttentionMaps>> {
        let Some(vit) = self.backbone.as_vit() else { return Ok(None) };
        let p = vit.shape().patch;
        let (mut rows, mut cols) = (0, 0);
        let mut data = Vec::new();
        for x in input_chunks(images, |batch| self.norm.apply(batch)) {
            let x = x?;
            let (_, _, h, w) = x.dims4()?;
            (rows, cols) = (h.div_ceil(p), w.div_ceil(p));
            let attn = vit.last_attention(&x)?.detach().to_dtype(DType::F32)?;
            data.extend(attn.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Some(AttentionMaps { images: images.count(), heads: vit.shape().heads, rows, cols, patch: p, data }))
    }
}

/// The CLS token's attention over the patches in a ViT's last block: for each image and
/// head a `rows × cols` map (row-major), the patch grid of the image. Each map sums to one
/// minus the CLS token's attention to itself.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMaps {
    pub images: usize,
    pub heads: usize,
    pub rows: usize,
    pub cols: usize,
    /// The patch side in pixels; the grid covers the image padded to whole patches.
    pub patch: usize,
    /// `images × heads × rows × cols` weights.
    pub data: Vec<f32>,
}

impl AttentionMaps {
    /// Image `i`'s map for `head`.
    pub fn map(&self, i: usize, head: usize) -> &[f32] {
        let len = self.rows * self.cols;
        let start = (i * self.heads + head) * len;
        &self.data[start..start + len]
    }
}

/// `images` in order, [`CHUNK`] at a time, as network input: `input` normalises a chunk of
/// unit-float images.
fn input_chunks<'a>(
    images: &'a impl ImageSource,
    input: impl Fn(&crate::images::FloatImages) -> candle_core::Result<Tensor> + 'a,
) -> impl Iterator<Item = candle_core::Result<Tensor>> + 'a {
    (0..images.count()).step_by(CHUNK).map(move |start| {
        let idx: Vec<usize> = (start..(start + CHUNK).min(images.count())).collect();
        input(&images.gather(&idx).to_unit_float())
    })
}

/// Eval-mode stage features of `images`, computed in chunks; `input` normalises a chunk.
pub fn stage_matrices(
    backbone: &Backbone,
    images: &impl ImageSource,
    input: impl Fn(&crate::images::FloatImages) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Matrix>> {
    let mut stages: Vec<Vec<Tensor>> = vec![Vec::new(); backbone.stage_dims().len()];
    for x in input_chunks(images, input) {
        let x = x?;
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
