//! Backbones: the networks a pretext task trains and evaluation reads features from.
//!
//! Two are provided, a CIFAR-style ResNet-18 and a small ConvNet, both ending in a global
//! average pool (no classifier). Parameter names follow torchvision's `resnet18` state dict;
//! the caller places them under `backbone.` with `vb.pp("backbone")`. Every convolution goes
//! through [`Conv2d`] so a faster kernel can be dropped in at one place. This module compiles
//! for wasm32 (the browser viewer runs backbones), so it must not use threads or files there:
//! the multi-threaded CPU convolution kernels are compiled only off wasm32.

mod conv;
mod convnet;
mod init;
mod norm;
#[cfg(not(target_arch = "wasm32"))]
mod norm_op;
mod resnet;

use std::fmt;
use std::str::FromStr;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use conv::{Conv2d, ConvImpl, conv_impl, conv2d, set_conv_impl};
pub use convnet::ConvNet;
pub use init::seeded_var_builder;
pub use norm::{BatchNorm2d, is_buffer};
pub use resnet::ResNet18;

/// Name of the first convolution's weight in every backbone (without the `backbone.` prefix).
pub const FIRST_CONV: &str = "conv1.weight";

/// Which backbone architecture.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    Resnet18,
    Convnet,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 2] = [BackboneKind::Resnet18, BackboneKind::Convnet];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resnet18 => "resnet18",
            Self::Convnet => "convnet",
        }
    }
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backbone `{0}` (expected `resnet18` or `convnet`)")]
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

/// Everything needed to rebuild a backbone: architecture, base width and input channels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BackboneSpec {
    pub kind: BackboneKind,
    /// Base width `w`; stages have `w, 2w, 4w, 8w` channels and features are `8w`-wide.
    pub width: usize,
    pub in_channels: usize,
}

impl BackboneSpec {
    /// 64 for ResNet-18 (torchvision's network), 16 for the ConvNet (128 features).
    pub fn default_width(kind: BackboneKind) -> usize {
        match kind {
            BackboneKind::Resnet18 => 64,
            BackboneKind::Convnet => 16,
        }
    }

    /// The spec with the default width of `kind`.
    pub fn new(kind: BackboneKind, in_channels: usize) -> Self {
        Self { kind, width: Self::default_width(kind), in_channels }
    }

    /// Width of the features `forward_t` returns.
    pub fn feature_dim(&self) -> usize {
        8 * self.width
    }

    /// Widths of the features `stage_features_t` returns.
    pub fn stage_dims(&self) -> Vec<usize> {
        (0..4).map(|l| self.width << l).collect()
    }
}

/// A built backbone.
#[derive(Clone, Debug)]
pub enum Backbone {
    Resnet18(ResNet18),
    Convnet(ConvNet),
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
        Ok(match spec.kind {
            BackboneKind::Resnet18 => Self::Resnet18(ResNet18::new(spec.in_channels, spec.width, vb)?),
            BackboneKind::Convnet => Self::Convnet(ConvNet::new(spec.in_channels, spec.width, vb)?),
        })
    }

    pub fn feature_dim(&self) -> usize {
        match self {
            Self::Resnet18(m) => m.feature_dim(),
            Self::Convnet(m) => m.feature_dim(),
        }
    }

    pub fn stage_dims(&self) -> Vec<usize> {
        match self {
            Self::Resnet18(m) => m.stage_dims(),
            Self::Convnet(m) => m.stage_dims(),
        }
    }

    fn in_channels(&self) -> usize {
        match self {
            Self::Resnet18(m) => m.in_channels(),
            Self::Convnet(m) => m.in_channels(),
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
    /// (and updates the running ones) in the batch norms.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(x)?;
        match self {
            Self::Resnet18(m) => m.forward_t(x, train),
            Self::Convnet(m) => m.forward_t(x, train),
        }
    }

    /// The globally pooled output of each of the four stages, shallowest first, of widths
    /// [`Backbone::stage_dims`]; the last equals `forward_t`.
    pub fn stage_features_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        self.check_input(x)?;
        let maps = match self {
            Self::Resnet18(m) => m.stage_maps_t(x, train)?,
            Self::Convnet(m) => m.stage_maps_t(x, train)?,
        };
        maps.iter().map(resnet::global_avg_pool).collect()
    }
}

#[cfg(test)]
mod tests;
