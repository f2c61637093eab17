//! A small four-block ConvNet for quick CPU runs and tests.
//!
//! Each block is conv 3×3 (no bias) → BatchNorm → ReLU; strides 1, 2, 2, 2 and widths
//! `[w, 2w, 4w, 8w]`, then a global average pool. The first block is named `conv1`/`bn1` like
//! the ResNet stem so that "the first conv layer" is always `conv1.weight`; later blocks are
//! `layer2.conv`/`layer2.bn` … `layer4.conv`/`layer4.bn`. Renaming breaks checkpoints.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::Conv2d;
use super::norm::BatchNorm;
use super::resnet::global_avg_pool;

#[derive(Clone, Debug)]
pub struct ConvNet {
    blocks: Vec<(Conv2d, BatchNorm)>,
    width: usize,
    in_channels: usize,
}

impl ConvNet {
    // By value like candle_nn's constructors, so callers can pass `vb.pp(..)` inline.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(in_channels: usize, width: usize, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::with_capacity(4);
        let mut in_c = in_channels;
        for (l, stride) in [1usize, 2, 2, 2].into_iter().enumerate() {
            let out_c = width << l;
            let (vc, vn) = if l == 0 {
                (vb.pp("conv1"), vb.pp("bn1"))
            } else {
                let vl = vb.pp(format!("layer{}", l + 1));
                (vl.pp("conv"), vl.pp("bn"))
            };
            blocks.push((Conv2d::new(in_c, out_c, 3, stride, 1, false, vc)?, BatchNorm::new(out_c, vn)?));
            in_c = out_c;
        }
        Ok(Self { blocks, width, in_channels })
    }

    pub fn feature_dim(&self) -> usize {
        8 * self.width
    }

    pub fn stage_dims(&self) -> Vec<usize> {
        (0..4).map(|l| self.width << l).collect()
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// The (N, C, H, W) output of each block.
    pub fn stage_maps_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut h = x.clone();
        let mut maps = Vec::with_capacity(self.blocks.len());
        for (conv, bn) in &self.blocks {
            h = bn.forward_relu_t(&conv.forward(&h)?, train)?;
            maps.push(h.clone());
        }
        Ok(maps)
    }

    /// (N, in, H, W) → (N, 8w).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for (conv, bn) in &self.blocks {
            h = bn.forward_relu_t(&conv.forward(&h)?, train)?;
        }
        global_avg_pool(&h)
    }
}
