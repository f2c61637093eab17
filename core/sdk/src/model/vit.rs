//! Vision Transformer (Dosovitskiy et al. 2021) with timm's `VisionTransformer` parameter
//! names, so that an exported state dict loads into `timm.create_model("vit_tiny_patch…")`.
//!
//! Patches of `patch × patch` pixels are embedded by a strided convolution
//! (`patch_embed.proj`), a learnable CLS token is prepended, learnable position embeddings
//! are added (`pos_embed`, laid out for the image size the network was built for and
//! resampled bicubically for any other, as DINO's `interpolate_pos_encoding`), then `depth`
//! pre-norm blocks of multi-head self-attention and a GELU MLP, and a final LayerNorm
//! (`norm`). The features are the normalised CLS token. Besides whole images, the network
//! takes token sequences ([`Vit::embed_patches`], [`Vit::encode_tokens`]) so a task such as
//! MAE can drop patches before the encoder, and it returns the last block's attention
//! ([`Vit::last_attention`]) for the viewers. Initialisation follows timm and MAE: normal
//! (σ 0.02) linear weights and position embeddings, zero biases, unit LayerNorms, a
//! Xavier-uniform patch embedding. This file must not know about tasks or training.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::attention::{attention_weights, self_attention};
use super::broadcast::add_repeated;
use super::conv::Conv2d;
use super::gelu::gelu;
use super::layer_norm::LayerNorm;
use super::linear::Linear;

/// timm's ViT LayerNorm epsilon.
pub const LN_EPS: f64 = 1e-6;
const WEIGHT_STD: f64 = 0.02;

/// A linear layer initialised as timm's ViT: normal (σ 0.02) weight, zero bias.
pub fn vit_linear(input: usize, output: usize, vb: &VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints((output, input), "weight", Init::Randn { mean: 0.0, stdev: WEIGHT_STD })?;
    let bias = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

#[derive(Clone, Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl Attention {
    /// (N, T, D) → the output (N, T, D) and, if asked, the attention (N, heads, T, T).
    fn forward(&self, x: &Tensor, keep_attention: bool) -> Result<(Tensor, Option<Tensor>)> {
        let qkv = self.qkv.forward(x)?;
        let attn = if keep_attention { Some(attention_weights(&qkv, self.heads)?) } else { None };
        Ok((self.proj.forward(&self_attention(&qkv, self.heads)?)?, attn))
    }
}

/// A pre-norm transformer block as timm's `Block`: `x + attn(norm1(x))`, then
/// `x + mlp(norm2(x))` with a 4× GELU MLP. Also MAE's decoder blocks.
#[derive(Clone, Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    /// Parameters `norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2` under `vb`.
    pub fn new(dim: usize, heads: usize, vb: &VarBuilder) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("a transformer block of width {dim} cannot split into {heads} heads");
        }
        let (va, vm) = (vb.pp("attn"), vb.pp("mlp"));
        Ok(Self {
            norm1: LayerNorm::new(dim, LN_EPS, &vb.pp("norm1"))?,
            attn: Attention {
                qkv: vit_linear(dim, 3 * dim, &va.pp("qkv"))?,
                proj: vit_linear(dim, dim, &va.pp("proj"))?,
                heads,
            },
            norm2: LayerNorm::new(dim, LN_EPS, &vb.pp("norm2"))?,
            fc1: vit_linear(dim, 4 * dim, &vm.pp("fc1"))?,
            fc2: vit_linear(4 * dim, dim, &vm.pp("fc2"))?,
        })
    }

    /// (N, T, D) → (N, T, D).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_keep(x, false)?.0)
    }

    fn forward_keep(&self, x: &Tensor, keep_attention: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (a, attn) = self.attn.forward(&self.norm1.forward(x)?, keep_attention)?;
        let x = (x + a)?;
        let m = self.fc2.forward(&gelu(&self.fc1.forward(&self.norm2.forward(&x)?)?)?)?;
        Ok(((x + m)?, attn))
    }
}

/// The shape of a ViT: embedding width, blocks, heads, patch side, and the image side its
/// position embeddings are laid out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitShape {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub patch: usize,
    pub image: usize,
}

impl VitShape {
    /// Patches along one side of the image the position embeddings are laid out for.
    pub fn grid(&self) -> usize {
        self.image / self.patch
    }
}

#[derive(Clone, Debug)]
pub struct Vit {
    patch_embed: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    shape: VitShape,
    in_channels: usize,
}

impl Vit {
    // By value like candle_nn's constructors, so callers can pass `vb.pp(..)` inline.
    #[allow(clippy::needless_pass_by_value)]
    pub fn new(in_channels: usize, shape: VitShape, vb: VarBuilder) -> Result<Self> {
        let VitShape { dim, depth, heads, patch, image } = shape;
        if depth == 0
            || heads == 0
            || !dim.is_multiple_of(heads)
            || patch == 0
            || image < patch
            || !image.is_multiple_of(patch)
        {
            candle_core::bail!(
                "a ViT needs at least one block ({depth}), a width divisible by its {heads} heads and an image side ({image}) that is a multiple of the patch side ({patch})"
            );
        }
        let fan_in = in_channels * patch * patch;
        #[allow(clippy::cast_precision_loss)]
        let bound = (6.0 / (fan_in + dim) as f64).sqrt();
        let vp = vb.pp("patch_embed").pp("proj");
        let weight =
            vp.get_with_hints((dim, in_channels, patch, patch), "weight", Init::Uniform { lo: -bound, up: bound })?;
        let bias = vp.get_with_hints(dim, "bias", Init::Const(0.0))?;
        let tokens = 1 + shape.grid() * shape.grid();
        let normal = Init::Randn { mean: 0.0, stdev: WEIGHT_STD };
        Ok(Self {
            patch_embed: Conv2d::from_parts(weight, Some(bias), patch, 0)?,
            cls_token: vb.get_with_hints((1, 1, dim), "cls_token", Init::Randn { mean: 0.0, stdev: 1e-6 })?,
            pos_embed: vb.get_with_hints((1, tokens, dim), "pos_embed", normal)?,
            blocks: (0..depth)
                .map(|i| Block::new(dim, heads, &vb.pp("blocks").pp(i.to_string())))
                .collect::<Result<_>>()?,
            norm: LayerNorm::new(dim, LN_EPS, &vb.pp("norm"))?,
            shape,
            in_channels,
        })
    }

    pub fn shape(&self) -> VitShape {
        self.shape
    }

    pub fn feature_dim(&self) -> usize {
        self.shape.dim
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Patch tokens with their position embeddings: (N, C, H, W) → (N, L, D), L the patches
    /// in row-major order. Sides that are not multiples of the patch side are padded with
    /// zeros at the bottom and right first (timm's `dynamic_img_pad`), so any crop size
    /// works: DINO's local crops, say.
    pub fn embed_patches(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        if h == 0 || w == 0 {
            candle_core::bail!("a ViT takes non-empty images, got {h}×{w}");
        }
        let p = self.shape.patch;
        let (rows, cols) = (h.div_ceil(p), w.div_ceil(p));
        let x = x.pad_with_zeros(2, 0, rows * p - h)?.pad_with_zeros(3, 0, cols * p - w)?;
        let tokens = self.patch_embed.forward(&x)?.flatten_from(2)?.transpose(1, 2)?;
        add_repeated(&tokens, &self.patch_positions(rows, cols)?)
    }

    /// Position embeddings of an `rows × cols` patch grid, (1, rows·cols, D): the stored ones
    /// when the grid is the built one, else resampled bicubically (PyTorch's
    /// `interpolate(mode="bicubic", align_corners=False)`), as a fixed linear map so the
    /// gradient reaches the stored embeddings.
    fn patch_positions(&self, rows: usize, cols: usize) -> Result<Tensor> {
        let g = self.shape.grid();
        let stored = self.pos_embed.narrow(1, 1, g * g)?;
        if (rows, cols) == (g, g) {
            return Ok(stored);
        }
        let (wy, wx) = (bicubic_matrix(g, rows), bicubic_matrix(g, cols));
        // out[r·cols + c][i·g + j] = wy[r][i]·wx[c][j]
        let mut m = Vec::with_capacity(rows * cols * g * g);
        for r in 0..rows {
            for c in 0..cols {
                for i in 0..g {
                    m.extend((0..g).map(|j| wy[r * g + i] * wx[c * g + j]));
                }
            }
        }
        let m = Tensor::from_vec(m, (rows * cols, g * g), stored.device())?.to_dtype(stored.dtype())?;
        m.matmul(&stored.squeeze(0)?)?.unsqueeze(0)
    }

    /// Prepends the CLS token (with its position embedding) to patch tokens from
    /// [`Vit::embed_patches`] — all of them or a subset, in any order — and runs the blocks
    /// and the final norm: (N, L', D) → (N, 1 + L', D).
    pub fn encode_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self.run_blocks(tokens, false)?.0)
    }

    /// The CLS token, with its position embedding, in front of `tokens`: (N, 1 + L', D).
    fn with_cls(&self, tokens: &Tensor) -> Result<Tensor> {
        let n = tokens.dim(0)?;
        let cls = (&self.cls_token + self.pos_embed.narrow(1, 0, 1)?)?.broadcast_as((n, 1, self.shape.dim))?;
        Tensor::cat(&[&cls, tokens], 1)
    }

    fn run_blocks(&self, tokens: &Tensor, keep_attention: bool) -> Result<(Tensor, Option<Tensor>)> {
        let mut x = self.with_cls(tokens)?;
        let mut attention = None;
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            let (y, a) = block.forward_keep(&x, keep_attention && i == last)?;
            x = y;
            attention = a.or(attention);
        }
        Ok((self.norm.forward(&x)?, attention))
    }

    /// The normalised CLS token: (N, C, H, W) → (N, D).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.encode_tokens(&self.embed_patches(x)?)?.narrow(1, 0, 1)?.squeeze(1)
    }

    /// The CLS token after each quarter of the blocks, (N, D) each, shallowest first; the
    /// last is normalised and equals [`Vit::forward`]. Evaluation's per-stage features.
    pub fn stage_features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut h = self.with_cls(&self.embed_patches(x)?)?;
        // Blocks after which a quarter, a half and three quarters of the depth are done; each
        // lies in 1..=depth since a ViT has at least one block, so three stages come out.
        let depth = self.blocks.len();
        let marks: Vec<usize> = (1..=3).map(|q| (q * depth).div_ceil(4)).collect();
        let mut out = Vec::with_capacity(4);
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h)?;
            for &m in &marks {
                if i + 1 == m {
                    out.push(h.narrow(1, 0, 1)?.squeeze(1)?);
                }
            }
        }
        out.push(self.norm.forward(&h)?.narrow(1, 0, 1)?.squeeze(1)?);
        Ok(out)
    }

    /// The last block's attention of the CLS token over the patches, per head:
    /// (N, C, H, W) → (N, heads, L), each row summing to one with the CLS's own weight.
    pub fn last_attention(&self, x: &Tensor) -> Result<Tensor> {
        let (_, attn) = self.run_blocks(&self.embed_patches(x)?, true)?;
        let Some(attn) = attn else { candle_core::bail!("a ViT without blocks has no attention") };
        let tokens = attn.dim(3)?;
        attn.narrow(2, 0, 1)?.squeeze(2)?.narrow(2, 1, tokens - 1)
    }
}

/// PyTorch's bicubic resampling weights from `input` to `output` samples
/// (`align_corners=False`, A = −0.75, indices clamped at the borders), row-major
/// (`output × input`).
fn bicubic_matrix(input: usize, output: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let cubic1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cubic2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    #[allow(clippy::cast_precision_loss)]
    let scale = input as f64 / output as f64;
    let mut m = vec![0f32; output * input];
    for o in 0..output {
        #[allow(clippy::cast_precision_loss)]
        let src = (o as f64 + 0.5) * scale - 0.5;
        let floor = src.floor();
        let t = src - floor;
        let weights = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
        #[allow(clippy::cast_possible_truncation)]
        let base = floor as i64 - 1;
        for (k, w) in weights.iter().enumerate() {
            #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = (base + k as i64).clamp(0, input as i64 - 1) as usize;
            #[allow(clippy::cast_possible_truncation)]
            {
                m[o * input + i] += *w as f32;
            }
        }
    }
    m
}

#[cfg(test)]
#[path = "vit_tests.rs"]
mod tests;
