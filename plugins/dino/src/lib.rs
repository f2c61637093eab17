//! DINO (Caron et al. 2021, "Emerging properties in self-supervised vision transformers") as
//! a Pretext plugin, on any backbone.
//!
//! Multi-crop: two global crops and several small local crops of every image. The student
//! (backbone + DINO head) sees all crops; the teacher, an exponential moving average of the
//! student, sees only the global ones. The teacher's outputs are centred (a running mean kept
//! as task state, so it is checkpointed) and sharpened by a low temperature; the loss is the
//! cross-entropy between the teacher's distribution for one global crop and the student's
//! for every other crop. The head's last layer is weight-normalised and frozen in the first
//! epoch, and every parameter's gradient is clipped to a norm of 3, as in the paper's code.
//!
//! Sources (cite these when changing a default): the authors' `main_dino.py`,
//! `vision_transformer.py` (`DINOHead`) and `utils.py` (`clip_gradients`,
//! `cancel_gradients_last_layer`, `cosine_scheduler`) in facebookresearch/dino; solo-learn's
//! CIFAR settings (`scripts/pretrain/cifar/dino.yaml`, `solo/methods/dino.py` in
//! vturrisi/solo-learn). Head 2048 → 2048 → 256, 4096 prototypes, no batch norm, GELU
//! (solo-learn CIFAR); student temperature 0.1, teacher 0.04 → 0.07 warmed up linearly over 30
//! epochs (lightly's `DINOLoss` default); centre momentum 0.9; teacher momentum 0.996 → 1
//! (the paper's default; solo-learn's 0.9995 is for 1000-epoch runs); clip 3.0; last layer
//! frozen for 1 epoch. Crops: global scale 0.4–1 and local 0.05–0.4 with the local side 96/224
//! of the image's (the paper's ImageNet ratios), 4 local crops (the paper uses 8; 4 keeps a
//! CPU step affordable), no blur at small sizes (solo-learn CIFAR) and solarisation p 0.2 on
//! the second global crop only (the paper's asymmetry).

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use pretext_sdk::augment::{SimclrAugment, check_crop_scale};
use pretext_sdk::images::ByteImages;
use pretext_sdk::model::{Linear, batch_matmul, gelu};
use pretext_sdk::task::losses::l2_normalize;
use pretext_sdk::task::{
    CropGroup, Freeze, GradClip, ImageRngs, InputSpec, Momentum, MultiCrop, PretextTask, Sample, Step, TaskError,
    TaskInfo, TaskOutput, Training, Views,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DinoConfig {
    /// Hidden width of the head's MLP, its bottleneck, and the number of prototypes.
    pub hidden_dim: usize,
    pub bottleneck_dim: usize,
    pub out_dim: usize,
    pub student_temp: f64,
    /// Teacher temperature at epoch 1, after the warm-up, and the warm-up's length in epochs.
    pub warmup_teacher_temp: f64,
    pub teacher_temp: f64,
    pub warmup_teacher_temp_epochs: u64,
    /// Momentum of the running centre of the teacher's outputs.
    pub center_momentum: f64,
    /// Teacher momentum at the first step and after the last (cosine in between).
    pub momentum_teacher: f64,
    pub final_momentum_teacher: f64,
    /// Per-parameter gradient norm limit; 0 turns clipping off.
    pub clip_grad: f64,
    /// Epochs during which the head's last layer does not train.
    pub freeze_last_layer: u64,
    pub global_crop_scale: (f32, f32),
    pub local_crops: usize,
    /// Side of the local crops; 0 takes 96/224 of the image's side.
    pub local_size: usize,
    pub local_crop_scale: (f32, f32),
    /// Colour jitter (brightness, contrast, saturation, hue) and its probability.
    pub jitter: (f32, f32, f32, f32),
    pub jitter_p: f32,
    pub gray_p: f32,
    /// Blur probability of the first global crop, the second, and the local crops.
    pub blur_p: (f32, f32, f32),
    /// Solarisation probability of the second global crop.
    pub solarize_p: f32,
}

impl Default for DinoConfig {
    fn default() -> Self {
        Self {
            hidden_dim: 2048,
            bottleneck_dim: 256,
            out_dim: 4096,
            student_temp: 0.1,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.07,
            warmup_teacher_temp_epochs: 30,
            center_momentum: 0.9,
            momentum_teacher: 0.996,
            final_momentum_teacher: 1.0,
            clip_grad: 3.0,
            freeze_last_layer: 1,
            global_crop_scale: (0.4, 1.0),
            local_crops: 4,
            local_size: 0,
            local_crop_scale: (0.05, 0.4),
            jitter: (0.4, 0.4, 0.2, 0.1),
            jitter_p: 0.8,
            gray_p: 0.2,
            blur_p: (0.0, 0.0, 0.0),
            solarize_p: 0.2,
        }
    }
}

pub struct Dino {
    config: DinoConfig,
    crops: MultiCrop,
}

/// DINO's projection head: Linear → GELU → Linear → GELU → Linear to the bottleneck, L2
/// normalisation, then a weight-normalised linear layer without bias to the prototypes with
/// its scale fixed at 1 (`norm_last_layer`, the default of the paper and of solo-learn; the
/// learnt-scale variant is not offered). Names follow `DINOHead` (`mlp.0`, `mlp.2`, `mlp.4`,
/// `last_layer.weight_v`).
pub struct DinoHead {
    mlp: [Linear; 3],
    /// The direction `v` of every prototype (out_dim × bottleneck).
    last_v: Tensor,
}

/// A linear layer initialised as DINO's `_init_weights`: normal weights with std 0.02 (the
/// paper truncates at ±2 std, which moves 5% of the draws; not reproduced) and zero bias.
fn dino_linear(input: usize, output: usize, vb: &VarBuilder) -> candle_core::Result<Linear> {
    let weight = vb.get_with_hints((output, input), "weight", Init::Randn { mean: 0.0, stdev: 0.02 })?;
    let bias = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

impl DinoHead {
    fn new(input: usize, c: &DinoConfig, vb: &VarBuilder) -> candle_core::Result<Self> {
        let mlp = vb.pp("mlp");
        let mlp = [
            dino_linear(input, c.hidden_dim, &mlp.pp("0"))?,
            dino_linear(c.hidden_dim, c.hidden_dim, &mlp.pp("2"))?,
            dino_linear(c.hidden_dim, c.bottleneck_dim, &mlp.pp("4"))?,
        ];
        // nn.Linear's default initialisation, kept by DINO for the last layer.
        #[allow(clippy::cast_precision_loss)]
        let bound = 1.0 / (c.bottleneck_dim as f64).sqrt();
        let last_v = vb.pp("last_layer").get_with_hints(
            (c.out_dim, c.bottleneck_dim),
            "weight_v",
            Init::Uniform { lo: -bound, up: bound },
        )?;
        Ok(Self { mlp, last_v })
    }

    /// Prototype scores of backbone features (rows).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = gelu(&self.mlp[0].forward(x)?)?;
        let h = gelu(&self.mlp[1].forward(&h)?)?;
        let h = l2_normalize(&self.mlp[2].forward(&h)?)?;
        batch_matmul(&h, &l2_normalize(&self.last_v)?, false, true)
    }
}

/// The DINO loss: `teacher` holds the two global crops' scores (2N rows), `student` every
/// crop's (crop-major, a multiple of N rows: the global crops first, then the local ones). Teacher scores are centred by `center` (1 × K), sharpened
/// by `teacher_temp` and softmaxed; student scores log-softmaxed at `student_temp`. The loss
/// averages the cross-entropy `−Σ q·log p` over the batch and over every (global teacher crop,
/// other student crop) pair. Returns the loss and the centre updated with this batch:
/// `m·center + (1 − m)·mean(teacher)`.
pub fn dino_loss(
    student: &Tensor,
    teacher: &Tensor,
    center: &Tensor,
    temps: (f64, f64),
    center_momentum: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (student_temp, teacher_temp) = temps;
    let (rows, student_rows) = (teacher.dim(0)?, student.dim(0)?);
    let n = rows / 2;
    if n == 0 || rows % 2 != 0 || student_rows % n != 0 || student_rows < rows {
        candle_core::bail!(
            "DINO needs the teacher's 2 global crops of N images and the student's crops of the same N, got {rows} teacher and {student_rows} student rows"
        );
    }
    let crops = student_rows / n;
    let log_p = candle_nn::ops::log_softmax(&(student / student_temp)?, D::Minus1)?;
    let q = candle_nn::ops::softmax_last_dim(&(teacher.broadcast_sub(center)? / teacher_temp)?)?.detach();
    // Σ over the pairs (teacher crop iq, student crop v ≠ iq) of −q_iq·log p_v is one
    // weighted sum: student crop 0 is weighted by q_1, crop 1 by q_0, every local crop by
    // q_0 + q_1. The weights are constants (the teacher has no gradient), so the loss is one
    // product with log p, where pair by pair it was 2·(crops − 1) products and as many
    // crop-sized slices, each differentiated into a zero-padded copy of all crops.
    let (q0, q1) = (q.narrow(0, 0, n)?, q.narrow(0, n, n)?);
    let both = (&q0 + &q1)?;
    let mut weights = vec![q1, q0];
    weights.resize(crops, both);
    let weights = Tensor::cat(&weights, 0)?;
    let terms = 2 * (crops - 1);
    #[allow(clippy::cast_precision_loss)]
    let loss = ((weights * log_p)?.sum_all()? * (-1.0 / (n * terms) as f64))?;
    // Over the global batch in a data-parallel run, as DINO's `update_center` all-reduces it.
    let batch_center = pretext_sdk::dist::mean_over_ranks(&teacher.detach().mean_keepdim(0)?)?;
    let new_center = ((center * center_momentum)? + (batch_center * (1.0 - center_momentum))?)?;
    Ok((loss, new_center))
}

impl Dino {
    /// 96/224 of the input side by default; on a ViT, the nearest multiple of its patch
    /// side (DINO's 96 px local crops are 6 patches of 16), so no crop is padded.
    fn local_size(&self, input: &InputSpec) -> usize {
        match (self.config.local_size, input.patch_size) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            (0, Some(p)) => ((input.height as f64 * 96.0 / 224.0 / p as f64).round() as usize).max(1) * p,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            (0, None) => ((input.height as f64 * 96.0 / 224.0).round() as usize).max(4),
            (s, _) => s,
        }
    }
}

impl PretextTask for Dino {
    type Config = DinoConfig;
    type Head = DinoHead;

    fn info() -> TaskInfo {
        TaskInfo {
            name: "dino".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "DINO: self-distillation from a momentum teacher over global and local crops".into(),
            samples: "two global crops and the local crops of each image".into(),
        }
    }

    fn new(config: DinoConfig, input: InputSpec) -> Result<Self, TaskError> {
        if input.height != input.width {
            return Err(TaskError::Config(format!("DINO needs square images, got {}×{}", input.height, input.width)));
        }
        check_crop_scale(config.global_crop_scale).map_err(TaskError::Config)?;
        check_crop_scale(config.local_crop_scale).map_err(TaskError::Config)?;
        if [config.hidden_dim, config.bottleneck_dim, config.out_dim].contains(&0) {
            return Err(TaskError::Config("the head sizes must be positive".into()));
        }
        let temps = [config.student_temp, config.teacher_temp, config.warmup_teacher_temp];
        if temps.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(TaskError::Config("the temperatures must be positive numbers".into()));
        }
        if !(0.0..=1.0).contains(&config.center_momentum) {
            return Err(TaskError::Config("center_momentum must lie in 0..1".into()));
        }
        if !(config.clip_grad.is_finite() && config.clip_grad >= 0.0) {
            return Err(TaskError::Config("clip_grad must be a number ≥ 0 (0 turns clipping off)".into()));
        }
        let c = &config;
        let aug = |size, crop_scale, blur_p, solarize_p| SimclrAugment {
            size,
            crop_scale,
            jitter: c.jitter,
            jitter_p: c.jitter_p,
            gray_p: c.gray_p,
            blur_p,
            solarize_p,
            ..SimclrAugment::default()
        };
        let mut task = Self { crops: MultiCrop { groups: Vec::new() }, config: config.clone() };
        let local_size = task.local_size(&input);
        let mut groups = vec![CropGroup {
            name: "global".into(),
            augments: vec![
                aug(input.height, c.global_crop_scale, c.blur_p.0, 0.0),
                aug(input.height, c.global_crop_scale, c.blur_p.1, c.solarize_p),
            ],
        }];
        if c.local_crops > 0 {
            groups.push(CropGroup {
                name: "local".into(),
                augments: vec![aug(local_size, c.local_crop_scale, c.blur_p.2, 0.0); c.local_crops],
            });
        }
        task.crops = MultiCrop { groups };
        task.crops.check()?;
        Ok(task)
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        self.crops.views(batch, rngs)
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<DinoHead> {
        DinoHead::new(feature_dim, &self.config, &vb)
    }

    fn training(&self) -> Training {
        let c = &self.config;
        Training {
            teacher: Some(Momentum { start: c.momentum_teacher, end: c.final_momentum_teacher }),
            clip: (c.clip_grad > 0.0).then_some(GradClip::PerParameter(c.clip_grad)),
            freeze: vec![Freeze { prefix: "head.last_layer".into(), epochs: c.freeze_last_layer }],
        }
    }

    fn init_state(&self, _feature_dim: usize, device: &Device) -> candle_core::Result<Vec<(String, Tensor)>> {
        Ok(vec![("center".into(), Tensor::zeros((1, self.config.out_dim), DType::F32, device)?)])
    }

    fn loss(&self, step: &mut Step<'_, DinoHead>) -> candle_core::Result<TaskOutput> {
        let c = &self.config;
        let global = step.view(0)?;
        // The student sees every crop, each size in one backbone pass; the teacher only the
        // global ones. The head (row by row, no batch statistics) takes all crops' features
        // at once: each of its weights then gets one gradient product, not one per crop size
        // added up (16 MB tensors, for the 2048-wide layers).
        let mut features = vec![step.encode(global)?];
        if let Ok(local) = step.view(1) {
            features.push(step.encode(local)?);
        }
        let student = step.head().forward(&Tensor::cat(&features, 0)?)?;
        let teacher = step.teacher(global, DinoHead::forward)?;
        let teacher_temp =
            step.schedule().warmup_by_epoch(c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_epochs);
        let center = step.state("center")?.clone();
        let (loss, new_center) =
            dino_loss(&student, &teacher, &center, (c.student_temp, teacher_temp), c.center_momentum)?;
        step.set_state("center", &new_center)?;
        #[allow(clippy::cast_possible_truncation)]
        let metrics = vec![("teacher_temp".into(), Tensor::new(teacher_temp as f32, loss.device())?)];
        Ok(TaskOutput { loss, metrics })
    }

    fn samples(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Vec<Sample>, TaskError> {
        Ok(self.crops.samples(batch, rngs))
    }
}

pretext_sdk::export_plugin!(Dino);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::*;

    fn cpu() -> Device {
        Device::Cpu
    }

    #[test]
    fn dino_loss_matches_a_hand_computed_value() {
        // N = 1, K = 2, three crops (two global, one local). Teacher rows t0 = (1, 0),
        // t1 = (0, 0); centre (0.5, 0); teacher temperature 1 → q0 = softmax(0.5, 0),
        // q1 = softmax(−0.5, 0). Student rows s0 = (0, 0), s1 = (ln 3, 0), s2 = (0, ln 3),
        // temperature 1 → p0 = (1/2, 1/2), p1 = (3/4, 1/4), p2 = (1/4, 3/4).
        // Pairs (teacher crop, student crop): (0,1), (0,2), (1,0), (1,2); loss = mean of H(q, p).
        let t = Tensor::new(&[[1.0f32, 0.0], [0.0, 0.0]], &cpu()).unwrap();
        let s = Tensor::new(&[[0.0f32, 0.0], [3f32.ln(), 0.0], [0.0, 3f32.ln()]], &cpu()).unwrap();
        let center = Tensor::new(&[[0.5f32, 0.0]], &cpu()).unwrap();
        let (loss, new_center) = dino_loss(&s, &t, &center, (1.0, 1.0), 0.9).unwrap();
        let softmax = |a: f64, b: f64| (a.exp() / (a.exp() + b.exp()), b.exp() / (a.exp() + b.exp()));
        let (q0, q1) = (softmax(0.5, 0.0), softmax(-0.5, 0.0));
        let h = |q: (f64, f64), p: (f64, f64)| -(q.0 * p.0.ln() + q.1 * p.1.ln());
        let (p0, p1, p2) = ((0.5, 0.5), (0.75, 0.25), (0.25, 0.75));
        let want = (h(q0, p1) + h(q0, p2) + h(q1, p0) + h(q1, p2)) / 4.0;
        let got = f64::from(loss.to_scalar::<f32>().unwrap());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Centre: 0.9·(0.5, 0) + 0.1·mean(t) = (0.45 + 0.05, 0).
        let c: Vec<Vec<f32>> = new_center.to_vec2().unwrap();
        assert!((c[0][0] - 0.5).abs() < 1e-6 && c[0][1].abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn the_weighted_sum_matches_the_pairs_written_out_with_their_gradient() {
        // Four crops of three images, five prototypes: DINO's loop over (teacher crop,
        // student crop) pairs, as in the paper's listing, against dino_loss.
        let (n, crops, k) = (3, 4, 5);
        let s = candle_core::Var::randn(0f32, 2., (crops * n, k), &cpu()).unwrap();
        let t = Tensor::randn(0f32, 2., (2 * n, k), &cpu()).unwrap();
        let center = Tensor::randn(0f32, 0.1, (1, k), &cpu()).unwrap();
        let (loss, _) = dino_loss(&s, &t, &center, (0.1, 0.04), 0.9).unwrap();
        let log_p = candle_nn::ops::log_softmax(&(s.as_tensor() / 0.1).unwrap(), D::Minus1).unwrap();
        let q = candle_nn::ops::softmax_last_dim(&(t.broadcast_sub(&center).unwrap() / 0.04).unwrap()).unwrap();
        let mut pairs = Vec::new();
        for iq in 0..2 {
            for v in (0..crops).filter(|&v| v != iq) {
                let q_i = q.narrow(0, iq * n, n).unwrap();
                let ce = (q_i.neg().unwrap() * log_p.narrow(0, v * n, n).unwrap()).unwrap();
                pairs.push(ce.sum(D::Minus1).unwrap().mean_all().unwrap());
            }
        }
        let want = (Tensor::stack(&pairs, 0).unwrap().sum_all().unwrap() / pairs.len() as f64).unwrap();
        let (w, g) = (want.to_scalar::<f32>().unwrap(), loss.to_scalar::<f32>().unwrap());
        assert!((w - g).abs() < 1e-5 * w.abs(), "{g} vs {w}");
        let (gw, gg) = (want.backward().unwrap(), loss.backward().unwrap());
        let (a, b) = (gw.get(&s).unwrap(), gg.get(&s).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "gradient differs by {diff}");
    }

    #[test]
    fn the_teacher_temperature_warms_up_per_epoch() {
        let task = Dino::new(
            DinoConfig { warmup_teacher_temp_epochs: 3, ..DinoConfig::default() },
            InputSpec { channels: 1, height: 28, width: 28, patch_size: None },
        )
        .unwrap();
        let c = &task.config;
        let at = |epoch| pretext_sdk::task::Schedule { step: 0, total_steps: 1, epoch, epochs: 9, lr: 0.0 };
        let temps: Vec<f64> = (1..=4)
            .map(|e| at(e).warmup_by_epoch(c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_epochs))
            .collect();
        for (got, want) in temps.iter().zip([0.04, 0.055, 0.07, 0.07]) {
            assert!((got - want).abs() < 1e-12, "{temps:?}");
        }
    }

    #[test]
    fn multi_crop_views_have_two_global_and_the_local_crops() {
        let task = Dino::new(DinoConfig::default(), InputSpec { channels: 1, height: 28, width: 28, patch_size: None })
            .unwrap();
        let batch = ByteImages::new(3, 1, 28, 28, (0..3 * 784).map(|v| (v % 251) as u8).collect()).unwrap();
        let views = task.make_views(&batch, &mut ImageRngs::from_seed(2, batch.n)).unwrap();
        let shapes: Vec<_> = views.groups.iter().map(|g| (g.n, g.c, g.h, g.w)).collect();
        // 96/224 of 28 px is 12 px.
        assert_eq!(shapes, [(6, 1, 28, 28), (12, 1, 12, 12)]);
        let training = task.training();
        assert_eq!(training.clip, Some(GradClip::PerParameter(3.0)));
        assert_eq!(training.freeze, [Freeze { prefix: "head.last_layer".into(), epochs: 1 }]);
    }

    #[test]
    fn local_crops_on_a_vit_are_whole_patches() {
        // 96/224 of 32 px is 13.7 px: 14 on a CNN; on a ViT the nearest whole patches, 12
        // (3 of 4 px) or 16 (2 of 8 px).
        let local = |patch_size| {
            let task =
                Dino::new(DinoConfig::default(), InputSpec { channels: 3, height: 32, width: 32, patch_size }).unwrap();
            task.crops.groups[1].augments[0].size
        };
        assert_eq!((local(None), local(Some(4)), local(Some(8))), (14, 12, 16));
    }

    #[test]
    fn the_head_ends_in_unit_prototypes() {
        let config = DinoConfig { hidden_dim: 8, bottleneck_dim: 4, out_dim: 5, ..DinoConfig::default() };
        let task = Dino::new(config, InputSpec { channels: 1, height: 28, width: 28, patch_size: None }).unwrap();
        let map = VarMap::new();
        let head = task.build_head(6, VarBuilder::from_varmap(&map, DType::F32, &cpu())).unwrap();
        let mut names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "last_layer.weight_v",
                "mlp.0.bias",
                "mlp.0.weight",
                "mlp.2.bias",
                "mlp.2.weight",
                "mlp.4.bias",
                "mlp.4.weight"
            ]
        );
        // Scores are cosines between a unit bottleneck vector and unit prototypes: |s| ≤ 1.
        let x = Tensor::randn(0f32, 3.0, (7, 6), &cpu()).unwrap();
        let scores = head.forward(&x).unwrap();
        assert_eq!(scores.dims(), &[7, 5]);
        let max = scores.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max <= 1.0 + 1e-5, "{max}");
    }
}
