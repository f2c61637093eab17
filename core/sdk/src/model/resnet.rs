//! CIFAR-style ResNet-18 with torchvision's parameter names.
//!
//! The stem is a 3×3 stride-1 convolution without max-pool (the ImageNet 7×7/stride-2 stem
//! and pool throw away most of a 32 px image), and there is no `fc`: the network ends at the
//! global average pool. Names must stay identical to torchvision's `resnet18` state dict so
//! that PyTorch users can load the weights.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::Conv2d;
use super::norm::BatchNorm;
use super::residual::add_relu;

/// Global average pool: (N, C, H, W) → (N, C).
pub(crate) fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean((2, 3))
}

#[derive(Clone, Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(in_c: usize, out_c: usize, stride: usize, vb: &VarBuilder) -> Result<Self> {
        let downsample = if stride != 1 || in_c != out_c {
            let vd = vb.pp("downsample");
            Some((Conv2d::new(in_c, out_c, 1, stride, 0, false, vd.pp("0"))?, BatchNorm::new(out_c, vd.pp("1"))?))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::new(in_c, out_c, 3, stride, 1, false, vb.pp("conv1"))?,
            bn1: BatchNorm::new(out_c, vb.pp("bn1"))?,
            conv2: Conv2d::new(out_c, out_c, 3, 1, 1, false, vb.pp("conv2"))?,
            bn2: BatchNorm::new(out_c, vb.pp("bn2"))?,
            downsample,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        let out = self.bn2.forward_t(&self.conv2.forward(&out)?, train)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        add_relu(&out, &identity)
    }
}

/// ResNet-18 (BasicBlocks, [2, 2, 2, 2]) with stage widths `[w, 2w, 4w, 8w]`; `w = 64` is
/// torchvision's network.
#[derive(Clone, Debug)]
pub struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: Vec<Vec<BasicBlock>>,
    width: usize,
    in_channels: usize,
}

impl ResNet18 {
    // By value like candle_nn's constructors, so callers can pass `vb.pp(..)` inline.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(in_channels: usize, width: usize, vb: VarBuilder) -> Result<Self> {
        let conv1 = Conv2d::new(in_channels, width, 3, 1, 1, false, vb.pp("conv1"))?;
        let bn1 = BatchNorm::new(width, vb.pp("bn1"))?;
        let mut layers = Vec::with_capacity(4);
        let mut in_c = width;
        for (l, stride) in [1usize, 2, 2, 2].into_iter().enumerate() {
            let out_c = width << l;
            let vl = vb.pp(format!("layer{}", l + 1));
            let blocks = vec![
                BasicBlock::new(in_c, out_c, stride, &vl.pp("0"))?,
                BasicBlock::new(out_c, out_c, 1, &vl.pp("1"))?,
            ];
            layers.push(blocks);
            in_c = out_c;
        }
        Ok(Self { conv1, bn1, layers, width, in_channels })
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

    /// The (N, C, H, W) output of each of the four stages.
    pub fn stage_maps_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut h = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        let mut maps = Vec::with_capacity(self.layers.len());
        for blocks in &self.layers {
            for block in blocks {
                h = block.forward_t(&h, train)?;
            }
            maps.push(h.clone());
        }
        Ok(maps)
    }

    /// (N, in, H, W) → (N, 8w).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let maps = self.stage_maps_t(x, train)?;
        match maps.last() {
            Some(last) => global_avg_pool(last),
            None => candle_core::bail!("resnet has no stages"),
        }
    }
}
