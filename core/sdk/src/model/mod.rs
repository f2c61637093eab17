//! Backbones: the networks a pretext task trains and evaluation reads features from.
//!
//! Three families are provided: a CIFAR-style ResNet-18 and a small ConvNet, both ending in a
//! global average pool (no classifier), and Vision Transformers (`vit-tiny`, `vit-small`)
//! whose features are the CLS token. Parameter names follow torchvision's `resnet18` and
//! timm's `VisionTransformer` state dicts; the caller places them under `backbone.` with
//! `vb.pp("backbone")`. Every convolution goes
//! through [`Conv2d`] so a faster kernel can be dropped in at one place. This module compiles
//! for wasm32 (the browser viewer runs backbones), so it must not use threads or files there:
//! the multi-threaded CPU convolution kernels are compiled only off wasm32.

mod attention;
mod broadcast;
mod conv;
mod convnet;
mod gelu;
mod init;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod kernels;
mod layer_norm;
mod linear;
#[cfg(not(target_arch = "wasm32"))]
mod math;
mod matmul;
mod norm;
#[cfg(not(target_arch = "wasm32"))]
mod norm_op;
mod residual;
mod resnet;
mod softmax;
mod vit;

use std::fmt;
use std::str::FromStr;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use conv::{Conv2d, ConvImpl, conv_impl, conv2d, set_conv_impl};
pub use convnet::ConvNet;
pub use gelu::gelu;
pub use init::seeded_var_builder;
pub use layer_norm::LayerNorm;
pub use linear::{Linear, linear};
pub use matmul::batch_matmul;
pub use norm::{BatchNorm, is_buffer};
pub use resnet::ResNet18;
pub use softmax::softmax_last_dim;
pub use vit::{Block, LN_EPS, Vit, VitShape, vit_linear};

/// Name of the first convolution's weight in every backbone (without the `backbone.` prefix).
pub const FIRST_CONV: &str = "conv1.weight";

/// Which backbone architecture.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    Resnet18,
    Convnet,
    /// ViT-Ti (DeiT-Tiny): width 192, 12 blocks, 3 heads.
    #[serde(rename = "vit-tiny")]
    VitTiny,
    /// ViT-S (DeiT-Small): width 384, 12 blocks, 6 heads.
    #[serde(rename = "vit-small")]
    VitSmall,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 4] =
        [BackboneKind::Resnet18, BackboneKind::Convnet, BackboneKind::VitTiny, BackboneKind::VitSmall];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resnet18 => "resnet18",
            Self::Convnet => "convnet",
            Self::VitTiny => "vit-tiny",
            Self::VitSmall => "vit-small",
        }
    }

    pub fn is_vit(self) -> bool {
        matches!(self, Self::VitTiny | Self::VitSmall)
    }

    /// The name of the first layer's weight (without `backbone.`), the filters the viewers show.
    pub fn first_layer(self) -> &'static str {
        if self.is_vit() { "patch_embed.proj.weight" } else { FIRST_CONV }
    }
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backbone `{0}` (expected `resnet18`, `convnet`, `vit-tiny` or `vit-small`)")]
pub struct UnknownBackbone(pub String);

impl FromStr for BackboneKind {
    type Err = UnknownBackbone;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownBackbone(s.to_string()))
    }
}

/// Everything needed to rebuild a backbone: architecture, width, input channels and, for a
/// ViT, its patch side and the image side its position embeddings are laid out for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BackboneSpec {
    pub kind: BackboneKind,
    /// CNNs: base width `w`; stages have `w, 2w, 4w, 8w` channels and features are
    /// `8w`-wide. ViTs: the embedding width, which is also the features' width.
    pub width: usize,
    pub in_channels: usize,
    /// ViTs: the side of the square patches ([`BackboneSpec::DEFAULT_PATCH`] if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<usize>,
    /// ViTs: the image side the network was built for (the training size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
}

impl BackboneSpec {
    /// A ViT's patch side unless given: 4, which gives 7×7 patches of a 28 px image and 8×8
    /// of a 32 px one.
    pub const DEFAULT_PATCH: usize = 4;

    /// 64 for ResNet-18 (torchvision's network), 16 for the ConvNet (128 features), 192 and
    /// 384 for ViT-Tiny and ViT-Small.
    pub fn default_width(kind: BackboneKind) -> usize {
        match kind {
            BackboneKind::Resnet18 => 64,
            BackboneKind::Convnet => 16,
            BackboneKind::VitTiny => 192,
            BackboneKind::VitSmall => 384,
        }
    }

    /// The spec with the default width of `kind` (and a ViT's default patch side).
    pub fn new(kind: BackboneKind, in_channels: usize) -> Self {
        let patch_size = kind.is_vit().then_some(Self::DEFAULT_PATCH);
        Self { kind, width: Self::default_width(kind), in_channels, patch_size, image_size: None }
    }

    /// The spec for images of `size`×`size` pixels: a ViT lays its position embeddings out
    /// for them; CNNs take any size and keep no record.
    #[must_use]
    pub fn for_images(self, size: usize) -> Self {
        let image_size = self.kind.is_vit().then_some(size);
        Self { image_size, ..self }
    }

    /// Width of the features `forward_t` returns.
    pub fn feature_dim(&self) -> usize {
        if self.kind.is_vit() { self.width } else { 8 * self.width }
    }

    /// Widths of the features `stage_features_t` returns.
    pub fn stage_dims(&self) -> Vec<usize> {
        if self.kind.is_vit() { vec![self.width; 4] } else { (0..4).map(|l| self.width << l).collect() }
    }

    /// The ViT's shape, or an error naming what is missing; `None` for a CNN.
    pub fn vit_shape(&self) -> Result<Option<VitShape>> {
        let heads = match self.kind {
            BackboneKind::VitTiny => 3,
            BackboneKind::VitSmall => 6,
            BackboneKind::Resnet18 | BackboneKind::Convnet => return Ok(None),
        };
        let Some(image) = self.image_size else {
            candle_core::bail!("a {} backbone needs the image size it is built for", self.kind)
        };
        let patch = self.patch_size.unwrap_or(Self::DEFAULT_PATCH);
        Ok(Some(VitShape { dim: self.width, depth: 12, heads, patch, image }))
    }
}

/// A built backbone.
#[derive(Clone, Debug)]
pub enum Backbone {
    Resnet18(ResNet18),
    Convnet(ConvNet),
    Vit(Vit),
}

impl Backbone {
    /// Builds the backbone of `spec`, taking (or creating) its parameters from `vb`.
    pub fn new(spec: &BackboneSpec, vb: VarBuilder) -> Result<Self> {
        if spec.width == 0 || spec.in_channels == 0 {
            candle_core::bail!(
                "a backbone needs a positive width and channel count, got width {} and {} channels",
                spec.width,
                spec.in_channels
            );
        }
        Ok(match (spec.kind, spec.vit_shape()?) {
            (BackboneKind::Resnet18, _) => Self::Resnet18(ResNet18::new(spec.in_channels, spec.width, vb)?),
            (BackboneKind::Convnet, _) => Self::Convnet(ConvNet::new(spec.in_channels, spec.width, vb)?),
            (BackboneKind::VitTiny | BackboneKind::VitSmall, Some(shape)) => {
                Self::Vit(Vit::new(spec.in_channels, shape, vb)?)
            }
            (kind @ (BackboneKind::VitTiny | BackboneKind::VitSmall), None) => {
                candle_core::bail!("a {kind} backbone has no ViT shape")
            }
        })
    }

    pub fn feature_dim(&self) -> usize {
        match self {
            Self::Resnet18(m) => m.feature_dim(),
            Self::Convnet(m) => m.feature_dim(),
            Self::Vit(m) => m.feature_dim(),
        }
    }

    pub fn stage_dims(&self) -> Vec<usize> {
        match self {
            Self::Resnet18(m) => m.stage_dims(),
            Self::Convnet(m) => m.stage_dims(),
            Self::Vit(m) => vec![m.feature_dim(); 4],
        }
    }

    fn in_channels(&self) -> usize {
        match self {
            Self::Resnet18(m) => m.in_channels(),
            Self::Convnet(m) => m.in_channels(),
            Self::Vit(m) => m.in_channels(),
        }
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (_, c, h, w) = x.dims4()?;
        if c != self.in_channels() || h == 0 || w == 0 {
            candle_core::bail!("the backbone takes (N, {}, H, W) images, got {:?}", self.in_channels(), x.dims());
        }
        Ok(())
    }

    /// Features of a batch: (N, C, H, W) → (N, feature_dim). `train` selects batch statistics
    /// (and updates the running ones) in the batch norms; a ViT has none.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(x)?;
        match self {
            Self::Resnet18(m) => m.forward_t(x, train),
            Self::Convnet(m) => m.forward_t(x, train),
            Self::Vit(m) => m.forward(x),
        }
    }

    /// The ViT, for tasks that drive it on tokens (MAE) and for attention maps.
    pub fn as_vit(&self) -> Option<&Vit> {
        match self {
            Self::Vit(m) => Some(m),
            Self::Resnet18(_) | Self::Convnet(_) => None,
        }
    }

    /// The globally pooled output of each of the four stages (a ViT's CLS token after each
    /// quarter of its blocks), shallowest first, of widths [`Backbone::stage_dims`]; the last
    /// equals `forward_t`.
    pub fn stage_features_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        self.check_input(x)?;
        let maps = match self {
            Self::Resnet18(m) => m.stage_maps_t(x, train)?,
            Self::Convnet(m) => m.stage_maps_t(x, train)?,
            Self::Vit(m) => return m.stage_features(x),
        };
        maps.iter().map(resnet::global_avg_pool).collect()
    }
}

#[cfg(test)]
mod tests;
