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
use pretext_sdk::dist;
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::task::heads::Mlp;
use pretext_sdk::task::losses::l2_normalize;
use pretext_sdk::task::{
    ImageRngs, InputSpec, LrDecay, PretextTask, Sample, Step, TaskError, TaskInfo, TaskOutput, Views,
};
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
    /// A batch norm after the projector's hidden layer, as SimCLR's reference code and
    /// solo-learn have; off, Linear → ReLU → Linear, as the seed article's listing.
    pub projector_batch_norm: bool,
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
            projector_batch_norm: true,
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
///
/// In a data-parallel run the negatives come from the global batch: this rank's rows are
/// compared with every rank's (`dist::gather`, whose backward sums the gradient over the
/// ranks), so the ranks' averaged gradients are those of one process over the global batch.
pub fn nt_xent(z: &Tensor, temperature: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let (rows, _) = z.dims2()?;
    if rows % 2 != 0 || rows == 0 {
        candle_core::bail!("NT-Xent needs an even, non-zero number of rows, got {rows}");
    }
    let n = rows / 2;
    let z = l2_normalize(z)?;
    let all = dist::gather(&z)?;
    // This rank's rows sit at `offset..offset + rows` of the gathered ones.
    let offset = dist::current().map_or(0, |c| c.rank() * rows);
    let total = all.dim(0)?;
    let sim = (z.matmul(&all.t()?)? / temperature)?;
    // A large negative on each row's own column removes self-similarity from the softmax.
    let own: Vec<f32> =
        (0..rows).flat_map(|i| (0..total).map(move |j| if j == offset + i { 1e9 } else { 0.0 })).collect();
    let sim = (sim - Tensor::from_vec(own, (rows, total), z.device())?)?;
    let targets: Vec<u32> = (0..rows).map(|i| u32::try_from(offset + (i + n) % rows).unwrap_or(0)).collect();
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

    /// 1e-3 held after the warmup (the seed listing's constant Adam rate): chosen on
    /// Fashion-MNIST's validation split at 5 epochs over three seeds, 80.35% kNN against
    /// 79.99% for the cosine decay from 2e-3 (docs/benchmarks.md, "SimCLR against the seed
    /// listing's PyTorch SimCLR at 5 epochs").
    fn adamw_lr() -> Option<f64> {
        Some(1e-3)
    }

    fn adamw_lr_decay() -> Option<LrDecay> {
        Some(LrDecay::Constant)
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

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
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
            self.view(batch, k % batch.n, rngs.image(k % batch.n))
                .push_to(group)
                .map_err(|e| TaskError::Input(e.to_string()))?;
        }
        Ok(Views { groups: images, targets: Vec::new() })
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Mlp> {
        let hidden = if self.config.hidden_dim == 0 { feature_dim } else { self.config.hidden_dim };
        Mlp::new(feature_dim, hidden, self.config.projection_dim, self.config.projector_batch_norm, vb)
    }

    fn loss(&self, step: &mut Step<'_, Mlp>) -> candle_core::Result<TaskOutput> {
        let (loss, acc) = nt_xent(&step.head().forward_t(&step.features()?, true)?, self.config.temperature)?;
        Ok(TaskOutput { loss, metrics: vec![("pretext_acc".into(), acc)] })
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        let mut out = Vec::new();
        for i in 0..batch.n {
            for v in 1..=2 {
                out.push(Sample {
                    group: i,
                    caption: format!("view {v}"),
                    image: self.view(batch, i, rngs.image(i)).into_batch(),
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
    fn two_ranks_with_gathered_negatives_match_one_process_on_the_global_batch() {
        use candle_core::Var;
        use pretext_sdk::dist::LocalGroup;
        // Rank r holds first views a_r and second views b_r of its 3 images (rows of 4).
        let rows = |r: usize, v: usize| -> Vec<f32> {
            (0..12).map(|k| ((k * 7 + r * 5 + v * 3) % 11) as f32 - 5.0 + 0.1 * k as f32).collect()
        };
        let local = |r: usize| Tensor::from_vec([rows(r, 0), rows(r, 1)].concat(), (6, 4), &cpu()).unwrap();
        let ranks = LocalGroup::run(2, false, |r| {
            let z = Var::from_tensor(&local(r)).unwrap();
            let (loss, _) = nt_xent(z.as_tensor(), 0.5).unwrap();
            let grad = loss.backward().unwrap().get(z.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
            (loss.to_scalar::<f32>().unwrap(), grad)
        });
        // One process: first views of all six images, then their second views.
        let global = [rows(0, 0), rows(1, 0), rows(0, 1), rows(1, 1)].concat();
        let z = Var::from_tensor(&Tensor::from_vec(global, (12, 4), &cpu()).unwrap()).unwrap();
        let (loss, _) = nt_xent(z.as_tensor(), 0.5).unwrap();
        let grad = loss.backward().unwrap().get(z.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let mean_loss = (ranks[0].0 + ranks[1].0) / 2.0;
        assert!((mean_loss - loss.to_scalar::<f32>().unwrap()).abs() < 1e-5);
        // The ranks' gradients, averaged as the session averages them, are the global ones.
        for (r, (_, g)) in ranks.iter().enumerate() {
            for (i, row) in g.iter().enumerate() {
                let global_row = if i < 3 { r * 3 + i } else { 6 + r * 3 + i - 3 };
                for (a, b) in row.iter().zip(&grad[global_row]) {
                    assert!((a / 2.0 - b).abs() < 1e-6, "rank {r} row {i}: {a}/2 vs {b}");
                }
            }
        }
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
    fn the_projector_has_a_batch_norm_unless_told_not_to() {
        let spec = InputSpec { channels: 1, height: 8, width: 8, patch_size: None };
        for (batch_norm, want) in [(true, vec!["0", "1", "3"]), (false, vec!["0", "2"])] {
            let config = SimclrConfig { projector_batch_norm: batch_norm, ..SimclrConfig::default() };
            let map = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &cpu());
            Simclr::new(config, spec).unwrap().build_head(16, vb).unwrap();
            let mut layers: Vec<String> =
                map.data().lock().unwrap().keys().map(|k| k.split('.').next().unwrap().to_string()).collect();
            layers.sort();
            layers.dedup();
            assert_eq!(layers, want, "batch norm {batch_norm}");
        }
    }

    #[test]
    fn views_come_in_pairs_of_the_input_size() {
        let task =
            Simclr::new(SimclrConfig::default(), InputSpec { channels: 3, height: 8, width: 8, patch_size: None })
                .unwrap();
        let batch = ByteImages::new(3, 3, 8, 8, (0..3 * 3 * 64).map(|v| (v % 251) as u8).collect()).unwrap();
        let mut rng = ImageRngs::from_seed(1, batch.n);
        let views = task.make_views(&batch, &mut rng).unwrap();
        assert_eq!(views.groups.len(), 1);
        assert_eq!((views.groups[0].n, views.groups[0].c, views.groups[0].h), (6, 3, 8));
        assert!(views.targets.is_empty());
        let again = task.make_views(&batch, &mut ImageRngs::from_seed(1, batch.n)).unwrap();
        assert_eq!(views, again);

        // Separate views: the same images as two batches, first views then second views.
        let config = SimclrConfig { separate_views: true, ..SimclrConfig::default() };
        let split = Simclr::new(config, InputSpec { channels: 3, height: 8, width: 8, patch_size: None }).unwrap();
        let two = split.make_views(&batch, &mut ImageRngs::from_seed(1, batch.n)).unwrap();
        assert_eq!(two.groups.len(), 2);
        let joined: Vec<f32> = two.groups.iter().flat_map(|g| g.data.iter().copied()).collect();
        assert_eq!(joined, views.groups[0].data);
    }
}
