//! SimCLR (Chen et al. 2020) as a Pretext plugin.
//!
//! Two augmented views of every image (random resized crop, flip, colour jitter, random
//! grayscale, optional blur) go through the shared backbone and an MLP projector; the
//! projections are L2-normalised and the NT-Xent loss is taken over all 2N views, each
//! view's positive being the other view of its image. The seed article's listing left out
//! the normalisation (SimCLR uses cosine similarity); `nt_xent` normalises.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use pretext_sdk::augment::{Image, SimclrAugment, check_crop_scale};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::task::heads::Mlp;
use pretext_sdk::task::losses::l2_normalize;
use pretext_sdk::task::{InputSpec, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrConfig {
    /// Softmax temperature of NT-Xent (0.2, solo-learn's CIFAR setting for SimCLR).
    pub temperature: f64,
    /// Output size of the projector.
    pub projection_dim: usize,
    /// Hidden size of the projector; 0 uses the backbone's feature size, as SimCLR does.
    pub hidden_dim: usize,
    /// Area range of the random resized crop.
    pub crop_scale: (f32, f32),
    /// Colour jitter (brightness, contrast, saturation, hue) and its probability.
    pub jitter: (f32, f32, f32, f32),
    pub jitter_p: f32,
    pub gray_p: f32,
    pub blur_p: f32,
    /// Encode the first and the second views as two batches, each normalised by its own
    /// batch statistics, as the seed article's listing does (`model(x_i)`, `model(x_j)`);
    /// off, all 2N views share one batch, as SimCLR's reference code.
    pub separate_views: bool,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        let aug = SimclrAugment::default();
        Self {
            temperature: 0.2,
            projection_dim: 128,
            hidden_dim: 0,
            crop_scale: aug.crop_scale,
            jitter: aug.jitter,
            jitter_p: aug.jitter_p,
            gray_p: aug.gray_p,
            blur_p: aug.blur_p,
            separate_views: false,
        }
    }
}

pub struct Simclr {
    config: SimclrConfig,
    augment: SimclrAugment,
}

/// NT-Xent over `2N` projections: rows `i` and `i + N` are the two views of image `i`.
/// Rows are L2-normalised, similarities divided by `temperature`, each row's own similarity
/// left out, and the cross-entropy of picking the positive averaged over all `2N` rows.
/// Returns the loss and the fraction of rows whose most similar other row is the positive.
pub fn nt_xent(z: &Tensor, temperature: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let (rows, _) = z.dims2()?;
    if rows % 2 != 0 || rows == 0 {
        candle_core::bail!("NT-Xent needs an even, non-zero number of rows, got {rows}");
    }
    let n = rows / 2;
    let z = l2_normalize(z)?;
    let sim = (z.matmul(&z.t()?)? / temperature)?;
    // A large negative on the diagonal removes self-similarity from the softmax.
    let eye = Tensor::eye(rows, DType::F32, z.device())?;
    let sim = (sim - (eye * 1e9)?)?;
    let targets: Vec<u32> = (0..rows).map(|i| u32::try_from((i + n) % rows).unwrap_or(0)).collect();
    let targets = Tensor::from_vec(targets, rows, z.device())?;
    let loss = candle_nn::loss::cross_entropy(&sim, &targets)?;
    let acc = sim.argmax(1)?.eq(&targets)?.to_dtype(DType::F32)?.mean_all()?;
    Ok((loss, acc))
}

impl Simclr {
    fn view(&self, batch: &ByteImages, i: usize, rng: &mut StdRng) -> Image {
        self.augment.apply(&Image::from_bytes(batch, i), rng)
    }
}

impl PretextTask for Simclr {
    type Config = SimclrConfig;
    /// Linear → BatchNorm → ReLU → Linear, SimCLR's projection head (the paper's and
    /// solo-learn's; the batch norm speeds up early training of a small network markedly).
    type Head = Mlp;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "simclr".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "SimCLR: contrast two augmented views of each image (NT-Xent)".into(),
            samples: "pairs of augmented views of the same image".into(),
        }
    }

    /// Twice the host's 1e-3: chosen on Fashion-MNIST's validation split at 5 epochs, where
    /// it narrows the gap to the seed listing's PyTorch SimCLR (docs/benchmarks.md, "SimCLR
    /// against the seed listing's PyTorch SimCLR at 5 epochs").
    fn adamw_lr() -> Option<f64> {
        Some(2e-3)
    }

    fn new(config: SimclrConfig, input: InputSpec) -> Result<Self, TaskError> {
        if !(config.temperature > 0.0 && config.temperature.is_finite()) {
            return Err(TaskError::Config("temperature must be a positive number".into()));
        }
        check_crop_scale(config.crop_scale).map_err(TaskError::Config)?;
        if input.height != input.width {
            return Err(TaskError::Config(format!("SimCLR needs square images, got {}×{}", input.height, input.width)));
        }
        let augment = SimclrAugment {
            size: input.height,
            crop_scale: config.crop_scale,
            jitter: config.jitter,
            jitter_p: config.jitter_p,
            gray_p: config.gray_p,
            blur_p: config.blur_p,
            ..SimclrAugment::default()
        };
        Ok(Self { config, augment })
    }

    fn make_views(&self, batch: &ByteImages, rng: &mut StdRng) -> Result<Views, TaskError> {
        let s = self.augment.size;
        // First views of every image, then second views: rows i and i + N are a pair. With
        // `separate_views` they are two groups, which `Step::features` encodes one after the
        // other, rows still concatenated in that order.
        let groups = if self.config.separate_views { 2 } else { 1 };
        let mut images = vec![FloatImages::empty(batch.c, s, s); groups];
        for g in &mut images {
            g.data.reserve(2 * batch.n / groups * g.image_len());
        }
        for k in 0..2 * batch.n {
            let group = &mut images[k * groups / (2 * batch.n)];
            self.view(batch, k % batch.n, rng).push_to(group).map_err(|e| TaskError::Input(e.to_string()))?;
        }
        Ok(Views { groups: images, targets: Vec::new() })
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Mlp> {
        let hidden = if self.config.hidden_dim == 0 { feature_dim } else { self.config.hidden_dim };
        Mlp::new(feature_dim, hidden, self.config.projection_dim, true, vb)
    }

    fn loss(&self, step: &mut Step<'_, Mlp>) -> candle_core::Result<TaskOutput> {
        let (loss, acc) = nt_xent(&step.head().forward_t(&step.features()?, true)?, self.config.temperature)?;
        Ok(TaskOutput { loss, metrics: vec![("pretext_acc".into(), acc)] })
    }

    fn samples(&self, batch: &ByteImages, rng: &mut StdRng) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            for v in 1..=2 {
                out.push(Sample {
                    group: i,
                    caption: format!("view {v}"),
                    image: self.view(batch, i, rng).into_batch(),
                });
            }
        }
        Ok(out)
    }
}

pretext_sdk::export_plugin!(Simclr);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;
    use rand::SeedableRng;

    use super::*;

    fn cpu() -> Device {
        Device::Cpu
    }

    #[test]
    fn nt_xent_matches_a_hand_computed_value() {
        // Views: a=(2,0), b=(0,3) for image 0; a'=(1,1), b'=(0,-1) for image 1 — rows 0,1
        // are first views, rows 2,3 second views. After normalisation: u0=(1,0),
        // u1=(0,1), u2=(1,1)/√2, u3=(0,-1). With T = 0.5, row 0's logits against rows
        // 1,2,3 are (0, 2/√2, 0), positive row 2: loss0 = -√2 + ln(1 + e^√2 + 1).
        let z = Tensor::new(&[[2.0f32, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, -1.0]], &cpu()).unwrap();
        let (loss, acc) = nt_xent(&z, 0.5).unwrap();
        let r2 = 2f64.sqrt();
        let lse = |xs: &[f64]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
        // Row 1 (0,1): others (0,√2,-2), positive row 3 (-2). Row 2: others (√2,√2,-√2),
        // positive row 0 (√2). Row 3: others (0,-2,-√2), positive row 1 (-2).
        let want = [
            lse(&[0.0, r2, 0.0]) - r2,
            lse(&[0.0, r2, -2.0]) + 2.0,
            lse(&[r2, r2, -r2]) - r2,
            lse(&[0.0, -2.0, -r2]) + 2.0,
        ];
        let want = want.iter().sum::<f64>() / 4.0;
        let got = f64::from(loss.to_scalar::<f32>().unwrap());
        assert!((got - want).abs() < 1e-5, "got {got}, want {want}");
        // Row 0's best match is row 2 (its positive); row 2's best is a tie between rows 0
        // and 1 that argmax breaks to row 0 (right); rows 1 and 3 pick wrong rows.
        assert!((acc.to_scalar::<f32>().unwrap() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn nt_xent_is_scale_invariant_and_rejects_odd_batches() {
        let z = Tensor::new(&[[1.0f32, 2.0], [3.0, -1.0], [0.5, 0.5], [2.0, 1.0]], &cpu()).unwrap();
        let a = nt_xent(&z, 0.1).unwrap().0.to_scalar::<f32>().unwrap();
        let b = nt_xent(&(z * 7.0).unwrap(), 0.1).unwrap().0.to_scalar::<f32>().unwrap();
        assert!((a - b).abs() < 1e-5);
        let odd = Tensor::zeros((3, 2), DType::F32, &cpu()).unwrap();
        assert!(nt_xent(&odd, 0.5).is_err());
    }

    #[test]
    fn views_come_in_pairs_of_the_input_size() {
        let task =
            Simclr::new(SimclrConfig::default(), InputSpec { channels: 3, height: 8, width: 8, patch_size: None })
                .unwrap();
        let batch = ByteImages::new(3, 3, 8, 8, (0..3 * 3 * 64).map(|v| (v % 251) as u8).collect()).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let views = task.make_views(&batch, &mut rng).unwrap();
        assert_eq!(views.groups.len(), 1);
        assert_eq!((views.groups[0].n, views.groups[0].c, views.groups[0].h), (6, 3, 8));
        assert!(views.targets.is_empty());
        let again = task.make_views(&batch, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(views, again);

        // Separate views: the same images as two batches, first views then second views.
        let config = SimclrConfig { separate_views: true, ..SimclrConfig::default() };
        let split = Simclr::new(config, InputSpec { channels: 3, height: 8, width: 8, patch_size: None }).unwrap();
        let two = split.make_views(&batch, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(two.groups.len(), 2);
        let joined: Vec<f32> = two.groups.iter().flat_map(|g| g.data.iter().copied()).collect();
        assert_eq!(joined, views.groups[0].data);
    }
}
