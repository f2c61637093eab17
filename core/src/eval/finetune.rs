//! Fine-tuning: the whole backbone plus a linear classifier trained with labels, the second
//! stage of the seed article's recipe. From a checkpoint it measures how well pre-training
//! transfers; from the seeded random initialisation it is the supervised baseline.
//!
//! It runs in the host's own copy of candle on weights read from the checkpoint file, so it
//! needs no plugin.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::InputNorm;
use crate::augment::{Image, hflip, random_zoom};
use crate::data::{Dataset, FloatImages, Prefetch, batches, epoch_order};
use crate::model::{Backbone, BackboneSpec, linear, seeded_var_builder};
use crate::steps::{LrSchedule, batch_seed};
use crate::task::{Normalize, Optimizer, OptimizerConfig, OptimizerKind, named_vars};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FinetuneConfig {
    pub epochs: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub workers: usize,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self { epochs: 5, batch_size: 128, lr: 1e-3, weight_decay: 1e-4, seed: 0, workers: 2 }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneResult {
    pub test_top1: f64,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
}

/// The light augmentation of supervised training: a crop of 60–100% of the area, a flip.
fn augment(batch: &crate::data::ByteImages, rng: &mut StdRng) -> FloatImages {
    let mut out = FloatImages::empty(batch.c, batch.h, batch.w);
    for i in 0..batch.n {
        let img = Image::from_bytes(batch, i);
        let mut view = random_zoom(img, (0.6, 1.0), rng);
        if rng.random::<bool>() {
            view = hflip(&view);
        }
        out.data.extend_from_slice(&view.data);
        out.n += 1;
    }
    out
}

/// Fine-tunes `spec` (initialised from `weights`' `backbone.*` when given) on `train` and
/// reports top-1 on `test`. `on_epoch` gets each epoch's mean loss.
pub fn finetune(
    spec: &BackboneSpec,
    normalize: &Normalize,
    weights: Option<&[u8]>,
    train: &Arc<Dataset>,
    test: &Dataset,
    config: FinetuneConfig,
    on_epoch: &mut dyn FnMut(u64, f64),
) -> candle_core::Result<FinetuneResult> {
    if train.is_empty() || test.is_empty() {
        candle_core::bail!("fine-tuning needs labelled train and test images");
    }
    let dev = Device::Cpu;
    let params = VarMap::new();
    let vb = seeded_var_builder(&params, config.seed, DType::F32, &dev);
    let backbone = Backbone::new(spec, vb.pp("backbone"))?;
    let classes = train.num_classes().max(test.num_classes());
    let head = linear(backbone.feature_dim(), classes, &vb.pp("head"))?;
    let vars = named_vars(&params)?;
    if let Some(bytes) = weights {
        let saved = candle_core::safetensors::load_buffer(bytes, &dev)?;
        for (name, var) in vars.iter().filter(|(n, _)| n.starts_with("backbone.")) {
            let t =
                saved.get(name).ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint has no `{name}`")))?;
            var.set(t)?;
        }
    }
    let norm = InputNorm::new(normalize, &dev)?;
    let opt_config = OptimizerConfig {
        kind: OptimizerKind::Adamw,
        weight_decay: Some(config.weight_decay),
        ..OptimizerConfig::default()
    };
    let mut opt = Optimizer::new(opt_config, vars);
    let batch_size = config.batch_size.clamp(1, train.len());
    let per_epoch = (train.len() / batch_size).max(1) as u64;
    let schedule = LrSchedule {
        base: config.lr,
        warmup_steps: 0,
        total_steps: per_epoch * config.epochs,
        decay: crate::steps::LrDecay::Cosine,
    };
    let mut epoch_losses = Vec::new();
    for epoch in 1..=config.epochs {
        let jobs = Arc::new(batches(&epoch_order(train.len(), config.seed, epoch), batch_size));
        let (data, jobs_w, seed) = (Arc::clone(train), Arc::clone(&jobs), config.seed);
        let prefetch = Prefetch::new(jobs.len(), config.workers.max(1), 2, move |i: usize| {
            let idx = &jobs_w[i];
            let images = data.images.gather(idx);
            let labels: Vec<u32> = idx.iter().map(|&j| data.labels[j]).collect();
            (augment(&images, &mut StdRng::seed_from_u64(batch_seed(seed, epoch, i as u64))), labels)
        });
        let mut total = 0.0;
        let mut count = 0u64;
        for (b, (images, labels)) in prefetch.enumerate() {
            let x = norm.apply(&images)?;
            let y = Tensor::from_slice(&labels, labels.len(), &dev)?;
            let logits = head.forward(&backbone.forward_t(&x, true)?)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            total += f64::from(loss.to_scalar::<f32>()?);
            count += 1;
            opt.step(&loss.backward()?, schedule.at((epoch - 1) * per_epoch + b as u64))?;
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = total / count.max(1) as f64;
        on_epoch(epoch, mean);
        epoch_losses.push(mean);
    }
    let mut predicted = Vec::with_capacity(test.len());
    for start in (0..test.len()).step_by(256) {
        let idx: Vec<usize> = (start..(start + 256).min(test.len())).collect();
        let x = norm.apply(&test.images.gather(&idx).to_unit_float())?;
        predicted.extend(head.forward(&backbone.forward_t(&x, false)?)?.argmax(1)?.to_vec1::<u32>()?);
    }
    Ok(FinetuneResult { test_top1: super::accuracy(&predicted, &test.labels), epoch_losses })
}
