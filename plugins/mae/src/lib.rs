//! MAE (He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners") as a Pretext
//! plugin. It needs a ViT backbone (`--backbone vit-tiny` or `vit-small`).
//!
//! Each image gets a random resized crop and a flip (the paper's only augmentations), and a
//! random 75% of its patches are dropped. The ViT encodes the visible patches only
//! ([`Vit::embed_patches`], then [`Vit::encode_tokens`] on the kept tokens); a light
//! decoder embeds the encoding, puts a shared learnable mask token at every dropped
//! position, restores the patch order, adds fixed 2-D sine-cosine position embeddings, runs
//! a few transformer blocks and predicts every patch's pixels. The loss is the mean squared
//! error on the dropped patches only, against pixels normalised per patch (the paper's
//! `norm_pix_loss`, its better target).
//!
//! Which patches are dropped is drawn in `make_views` from the seeded batch RNG and shipped
//! as the views' targets (each image's patch order, kept ones first), so a resumed run masks
//! exactly as the uninterrupted one. Names follow the MAE repository's `models_mae.py`
//! (`decoder_embed`, `mask_token`, `decoder_blocks`, `decoder_norm`, `decoder_pred`).
//! Defaults: mask ratio 0.75 (the paper's); a decoder of 2 blocks of width 128 (the paper's
//! Table 1 finds narrow, shallow decoders as good for fine-tuning; 128 wide and 4 heads of
//! 32 keep it a fraction of a ViT-Tiny's cost).

use candle_core::{D, DType, Tensor};
use candle_nn::{Init, VarBuilder};
use pretext_sdk::augment::{Image, SimclrAugment, check_crop_scale};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::model::{Block, LN_EPS, LayerNorm, Linear, vit_linear};
use pretext_sdk::task::{ImageRngs, InputSpec, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaeConfig {
    /// Fraction of each image's patches dropped before the encoder.
    pub mask_ratio: f64,
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
    /// Normalise each target patch to zero mean and unit variance (the paper's better
    /// target); off, the decoder predicts the normalised input pixels as they are.
    pub norm_pix_loss: bool,
    /// Area range of the random resized crop.
    pub crop_scale: (f32, f32),
}

impl Default for MaeConfig {
    fn default() -> Self {
        Self {
            mask_ratio: 0.75,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
            norm_pix_loss: true,
            crop_scale: (0.2, 1.0),
        }
    }
}

pub struct Mae {
    config: MaeConfig,
    augment: SimclrAugment,
    patch: usize,
    /// Patch rows and columns of a view.
    grid: (usize, usize),
    channels: usize,
}

/// The decoder, on top of the encoder's tokens.
pub struct MaeDecoder {
    embed: Linear,
    mask_token: Tensor,
    /// (1, 1 + L, decoder_dim), fixed.
    pos: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pred: Linear,
}

impl MaeDecoder {
    /// `latent` (N, 1 + kept, D) from the encoder, `restore` (N, L) the position of each
    /// patch in the shuffled order → predicted pixels (N, L, p²·C).
    pub fn forward(&self, latent: &Tensor, restore: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.embed.forward(latent)?;
        let (n, t, dim) = x.dims3()?;
        let (kept, patches) = (t - 1, restore.dim(1)?);
        let masks = self.mask_token.broadcast_as((n, patches - kept, dim))?;
        let ordered = unshuffle(&x.narrow(1, 1, kept)?, &masks, restore)?;
        let mut x = Tensor::cat(&[&x.narrow(1, 0, 1)?, &ordered], 1)?.broadcast_add(&self.pos)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.pred.forward(&self.norm.forward(&x)?)?.narrow(1, 1, patches)
    }
}

/// Tokens (N, L, D) picked per image by `index` (N, K) of token positions: (N, K, D).
pub fn take_tokens(tokens: &Tensor, index: &Tensor) -> candle_core::Result<Tensor> {
    let (n, k) = index.dims2()?;
    let index = index.unsqueeze(2)?.broadcast_as((n, k, tokens.dim(2)?))?.contiguous()?;
    tokens.contiguous()?.gather(&index, 1)
}

/// The kept tokens (N, kept, D) followed by the fill tokens for the dropped ones, put back
/// in image order: `restore` (N, L) holds each patch's place in the shuffled order.
pub fn unshuffle(kept: &Tensor, fill: &Tensor, restore: &Tensor) -> candle_core::Result<Tensor> {
    take_tokens(&Tensor::cat(&[kept, fill], 1)?, restore)
}

/// MAE's `get_2d_sincos_pos_embed` with a zero row for the CLS token: token `r·cols + c`
/// holds (sin, cos)(c·ω) then (sin, cos)(r·ω), ω = 10000^(−k/(dim/4)), k < dim/4.
pub fn sincos_positions(dim: usize, rows: usize, cols: usize) -> Vec<f32> {
    let quarter = dim / 4;
    let mut out = vec![0f32; dim];
    for r in 0..rows {
        for c in 0..cols {
            for coord in [c, r] {
                #[allow(clippy::cast_precision_loss)]
                let angles: Vec<f64> =
                    (0..quarter).map(|k| coord as f64 / 10_000f64.powf(k as f64 / quarter as f64)).collect();
                #[allow(clippy::cast_possible_truncation)]
                {
                    out.extend(angles.iter().map(|a| a.sin() as f32));
                    out.extend(angles.iter().map(|a| a.cos() as f32));
                }
            }
        }
    }
    out
}

/// MAE's `patchify`: (N, C, H, W) → (N, L, p·p·C), patches row-major, each patch's pixels
/// row-major with the channels innermost.
pub fn patchify(x: &Tensor, p: usize) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (rows, cols) = (h / p, w / p);
    x.reshape((n, c, rows, p, cols, p))?.permute((0, 2, 4, 3, 5, 1))?.contiguous()?.reshape((n, rows * cols, p * p * c))
}

/// The inverse of [`patchify`]: (N, L, p·p·C) on a `rows × cols` grid → (N, C, H, W).
pub fn unpatchify(x: &Tensor, p: usize, (rows, cols): (usize, usize), c: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(0)?;
    x.reshape((n, rows, cols, p, p, c))?.permute((0, 5, 1, 3, 2, 4))?.contiguous()?.reshape((n, c, rows * p, cols * p))
}

/// Each patch's mean and standard deviation (unbiased variance + 1e-6, as `models_mae.py`'s
/// `norm_pix_loss`), both (N, L, 1).
fn patch_stats(patches: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let k = patches.dim(D::Minus1)?;
    let mean = patches.mean_keepdim(D::Minus1)?;
    #[allow(clippy::cast_precision_loss)]
    let var = (patches.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (k.max(2) - 1) as f64)?;
    Ok((mean, (var + 1e-6)?.sqrt()?))
}

/// Mean over each patch of the squared error against `target` (normalised per patch with
/// the unbiased variance, as `models_mae.py`, when `norm_pix`), averaged over the dropped
/// patches (`mask` 1) only.
pub fn masked_loss(pred: &Tensor, target: &Tensor, mask: &Tensor, norm_pix: bool) -> candle_core::Result<Tensor> {
    let target = if norm_pix {
        let (mean, std) = patch_stats(target)?;
        target.broadcast_sub(&mean)?.broadcast_div(&std)?
    } else {
        target.clone()
    };
    let per_patch = (pred - target)?.sqr()?.mean(D::Minus1)?;
    (per_patch * mask)?.sum_all()? / mask.sum_all()?
}

impl Mae {
    /// The decoder's prediction of every patch (N, L, p²·C), the view's patches (N, L, p²·C)
    /// and the mask (N, L; 1 where dropped).
    fn predict(&self, step: &Step<'_, MaeDecoder>) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let vit = step.backbone().as_vit().ok_or_else(|| {
            candle_core::Error::Msg("MAE masks a ViT's patches: train it with --backbone vit-tiny or vit-small".into())
        })?;
        let x = step.view(0)?;
        let (n, patches, kept) = (x.dim(0)?, self.patches(), self.kept());
        let order = step.targets()?.reshape((n, patches))?;
        let restore = order.arg_sort_last_dim(true)?.contiguous()?;
        let visible = take_tokens(&vit.embed_patches(x)?, &order.narrow(1, 0, kept)?)?;
        let latent = vit.encode_tokens(&visible)?;
        let pred = step.head().forward(&latent, &restore)?;
        // 1 at the dropped patches, in image order.
        let shuffled = Tensor::cat(
            &[
                Tensor::zeros((n, kept), DType::F32, x.device())?,
                Tensor::ones((n, patches - kept), DType::F32, x.device())?,
            ],
            1,
        )?;
        let mask = shuffled.contiguous()?.gather(&restore, 1)?;
        Ok((pred, patchify(x, self.patch)?, mask))
    }

    fn patches(&self) -> usize {
        self.grid.0 * self.grid.1
    }

    fn kept(&self) -> usize {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let kept = (self.patches() as f64 * (1.0 - self.config.mask_ratio)) as usize;
        kept.max(1)
    }

    /// One image's view and its patch order (kept patches first).
    fn draw(&self, batch: &ByteImages, i: usize, rng: &mut StdRng) -> (Image, Vec<u32>) {
        let view = self.augment.apply(&Image::from_bytes(batch, i), rng);
        let mut order: Vec<u32> = (0..u32::try_from(self.patches()).unwrap_or(u32::MAX)).collect();
        order.shuffle(rng);
        (view, order)
    }
}

impl PretextTask for Mae {
    type Config = MaeConfig;
    type Head = MaeDecoder;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "mae".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "MAE: reconstruct the 75% of a ViT's patches it did not see".into(),
            samples: "each view, its visible patches, and the decoder's reconstruction".into(),
        }
    }

    fn new(config: MaeConfig, input: InputSpec) -> Result<Self, TaskError> {
        let Some(patch) = input.patch_size else {
            return Err(TaskError::Config(
                "MAE masks a ViT's patches: train it with --backbone vit-tiny or vit-small".into(),
            ));
        };
        if !input.height.is_multiple_of(patch) || !input.width.is_multiple_of(patch) || input.height != input.width {
            return Err(TaskError::Config(format!(
                "MAE needs square images whose side is a multiple of the {patch}-pixel patch, got {}×{}",
                input.height, input.width
            )));
        }
        if !(config.mask_ratio > 0.0 && config.mask_ratio < 1.0) {
            return Err(TaskError::Config("mask_ratio must lie strictly between 0 and 1".into()));
        }
        let c = &config;
        if c.decoder_depth == 0 || c.decoder_heads == 0 || !c.decoder_dim.is_multiple_of(4 * c.decoder_heads.max(1)) {
            return Err(TaskError::Config(
                "decoder_dim must be a positive multiple of 4 × decoder_heads, and decoder_depth positive".into(),
            ));
        }
        check_crop_scale(config.crop_scale).map_err(TaskError::Config)?;
        let augment = SimclrAugment {
            crop_scale: config.crop_scale,
            jitter_p: 0.0,
            gray_p: 0.0,
            ..SimclrAugment::with_size(input.height)
        };
        let grid = (input.height / patch, input.width / patch);
        Ok(Self { config, augment, patch, grid, channels: input.channels })
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let s = self.augment.size;
        let mut images = FloatImages::empty(batch.c, s, s);
        let mut orders = Vec::with_capacity(batch.n * self.patches());
        for i in 0..batch.n {
            let (view, order) = self.draw(batch, i, rngs.image(i));
            view.push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
            orders.extend(order);
        }
        Ok(Views::new(images, orders))
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<MaeDecoder> {
        let c = &self.config;
        let (rows, cols) = self.grid;
        let pos = sincos_positions(c.decoder_dim, rows, cols);
        let blocks = (0..c.decoder_depth)
            .map(|i| Block::new(c.decoder_dim, c.decoder_heads, &vb.pp("decoder_blocks").pp(i.to_string())))
            .collect::<candle_core::Result<_>>()?;
        Ok(MaeDecoder {
            embed: vit_linear(feature_dim, c.decoder_dim, &vb.pp("decoder_embed"))?,
            mask_token: vb.get_with_hints(
                (1, 1, c.decoder_dim),
                "mask_token",
                Init::Randn { mean: 0.0, stdev: 0.02 },
            )?,
            pos: Tensor::from_vec(pos, (1, 1 + rows * cols, c.decoder_dim), vb.device())?,
            blocks,
            norm: LayerNorm::new(c.decoder_dim, LN_EPS, &vb.pp("decoder_norm"))?,
            pred: vit_linear(c.decoder_dim, self.patch * self.patch * self.channels, &vb.pp("decoder_pred"))?,
        })
    }

    fn loss(&self, step: &mut Step<'_, MaeDecoder>) -> candle_core::Result<TaskOutput> {
        let (pred, target, mask) = self.predict(step)?;
        let loss = masked_loss(&pred, &target, &mask, self.config.norm_pix_loss)?;
        Ok(TaskOutput { loss, metrics: Vec::new() })
    }

    /// Each view with its dropped patches filled in by the decoder, as the MAE paper's
    /// figures show them: a prediction of normalised patches is brought back to the
    /// pixels with the true patch's mean and variance, the visible patches are the input's.
    fn predicted_samples(&self, step: &mut Step<'_, MaeDecoder>) -> candle_core::Result<Vec<Sample>> {
        let (pred, target, mask) = self.predict(step)?;
        let pred = if self.config.norm_pix_loss {
            let (mean, std) = patch_stats(&target)?;
            pred.broadcast_mul(&std)?.broadcast_add(&mean)?
        } else {
            pred
        };
        let mask = mask.unsqueeze(2)?;
        let filled = (pred.broadcast_mul(&mask)? + target.broadcast_mul(&(1.0 - &mask)?)?)?;
        let images = step.to_images(&unpatchify(&filled, self.patch, self.grid, self.channels)?)?;
        Ok((0..images.n)
            .map(|i| Sample { group: i, caption: "reconstruction".into(), image: images.gather(&[i]) })
            .collect())
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        let p = self.patch;
        for i in 0..batch.n {
            let (view, order) = self.draw(batch, i, rngs.image(i));
            let mut masked = view.clone();
            for &k in &order[self.kept()..] {
                let (r, c) = (k as usize / self.grid.1, k as usize % self.grid.1);
                for ch in 0..self.channels {
                    for y in r * p..(r + 1) * p {
                        for x in c * p..(c + 1) * p {
                            masked.set(ch, y, x, 0.5);
                        }
                    }
                }
            }
            out.push(Sample { group: i, caption: "view".into(), image: view.into_batch() });
            out.push(Sample { group: i, caption: "masked input".into(), image: masked.into_batch() });
        }
        Ok(out)
    }
}

pretext_sdk::export_plugin!(Mae);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn input() -> InputSpec {
        InputSpec { channels: 1, height: 8, width: 8, patch_size: Some(4) }
    }

    #[test]
    fn needs_a_vit_and_keeps_a_quarter_of_the_patches_in_a_permutation() {
        let cnn = InputSpec { patch_size: None, ..input() };
        assert!(Mae::new(MaeConfig::default(), cnn).is_err());
        let task = Mae::new(MaeConfig::default(), InputSpec { height: 16, width: 16, ..input() }).unwrap();
        assert_eq!((task.patches(), task.kept()), (16, 4));
        let batch = ByteImages::new(3, 1, 16, 16, (0..3 * 256).map(|v| (v % 251) as u8).collect()).unwrap();
        let views = task.make_views(&batch, &mut ImageRngs::from_seed(3, batch.n)).unwrap();
        assert_eq!(views.targets.len(), 3 * 16);
        for order in views.targets.chunks(16) {
            let mut sorted = order.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..16).collect::<Vec<u32>>(), "each image's order is a permutation");
        }
    }

    #[test]
    fn kept_tokens_go_back_to_their_places_and_fill_the_rest() {
        // Five patches holding their own index; order (3, 0, 4, 1, 2) keeps patches 3 and 0.
        let dev = Device::Cpu;
        let order = Tensor::new(&[[3u32, 0, 4, 1, 2]], &dev).unwrap();
        let restore = order.arg_sort_last_dim(true).unwrap().contiguous().unwrap();
        let tokens = Tensor::new(&[[[0f32], [1.], [2.], [3.], [4.]]], &dev).unwrap();
        let kept = take_tokens(&tokens, &order.narrow(1, 0, 2).unwrap()).unwrap();
        assert_eq!(kept.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [3.0, 0.0]);
        let fill = Tensor::full(-1f32, (1, 3, 1), &dev).unwrap();
        let back = unshuffle(&kept, &fill, &restore).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(back, [0.0, -1.0, -1.0, 3.0, -1.0]);
    }

    #[test]
    fn patchify_lays_pixels_out_as_models_mae_and_unpatchify_undoes_it() {
        // One 2-channel 4×6 image, patch 2: patch 1 (top, middle) holds rows 0-1, columns
        // 2-3, pixels row-major, channels innermost.
        let x: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let x = Tensor::from_vec(x, (1, 2, 4, 6), &Device::Cpu).unwrap();
        let patches = patchify(&x, 2).unwrap();
        let p: Vec<Vec<Vec<f32>>> = patches.to_vec3().unwrap();
        assert_eq!(p[0].len(), 6);
        assert_eq!(p[0][1], vec![2.0, 26.0, 3.0, 27.0, 8.0, 32.0, 9.0, 33.0]);
        let back = unpatchify(&patches, 2, (2, 3), 2).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn masked_loss_by_hand() {
        // Two patches of two values; only the second is dropped. Without normalisation:
        // ((1−0)² + (3−1)²)/2 = 2.5. With it, target (1, 3) → centred (−1, 1), unbiased
        // variance 2: (−1, 1)/√2; pred (1, 3) → ((1 + 1/√2)² + (3 − 1/√2)²)/2.
        let dev = Device::Cpu;
        let pred = Tensor::new(&[[[9f32, 9.], [1., 3.]]], &dev).unwrap();
        let target = Tensor::new(&[[[0f32, 0.], [0., 1.]]], &dev).unwrap();
        let mask = Tensor::new(&[[0f32, 1.]], &dev).unwrap();
        let plain: f32 = masked_loss(&pred, &target, &mask, false).unwrap().to_scalar().unwrap();
        assert!((plain - 2.5).abs() < 1e-6, "{plain}");
        let target = Tensor::new(&[[[5f32, 5.], [1., 3.]]], &dev).unwrap();
        let normed: f32 = masked_loss(&pred, &target, &mask, true).unwrap().to_scalar().unwrap();
        let s = 0.5f32.sqrt();
        let want = ((1.0 + s).powi(2) + (3.0 - s).powi(2)) / 2.0;
        assert!((normed - want).abs() < 1e-5, "{normed} vs {want}");
    }

    #[test]
    fn sincos_positions_match_models_mae() {
        // get_2d_sincos_pos_embed(8, 2, cls_token=True)[3] (row 1, column 0): w = 0 then
        // h = 1 with ω = (1, 1/100).
        let pos = sincos_positions(8, 2, 2);
        assert_eq!(pos.len(), 5 * 8);
        assert!(pos[..8].iter().all(|&v| v == 0.0), "the CLS row is zero");
        let token = &pos[3 * 8..4 * 8];
        let want = [0.0, 0.0, 1.0, 1.0, 1f32.sin(), 0.01f32.sin(), 1f32.cos(), 0.01f32.cos()];
        for (g, w) in token.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{token:?}");
        }
    }
}
