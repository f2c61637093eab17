//! SDK v2 through a real `Session`: a task with a momentum teacher, two view groups, task
//! state, an after-step hook, gradient clipping and a frozen head. After each step the
//! teacher equals the EMA formula applied to the student (so it got no gradient and no
//! optimizer step), frozen parameters hold still in their epochs, state advances only on a
//! finite loss, and a checkpoint carries teacher and state bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use pretext_sdk::augment::{Image, hflip};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::model::{BackboneKind, BackboneSpec};
use pretext_sdk::task::{
    AfterStep, Freeze, GradClip, ImageRngs, InputSpec, Momentum, Normalize, OptimizerConfig, PretextTask, Schedule,
    Session, SessionConfig, Step, TaskError, TaskInfo, TaskOutput, Training, Views,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const M: f64 = 0.9;

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct MirrorConfig {
    /// Make the loss NaN (for the failed-step check).
    nan: bool,
}

/// Predict the teacher's answer for the mirrored image from the image itself.
struct Mirror {
    /// Make the loss NaN (for the failed-step check).
    nan: bool,
}

impl PretextTask for Mirror {
    type Config = MirrorConfig;
    type Head = Linear;

    fn info() -> TaskInfo {
        TaskInfo { name: "mirror".into(), version: "0".into(), description: "test task".into(), samples: "-".into() }
    }

    fn new(config: MirrorConfig, _input: InputSpec) -> Result<Self, TaskError> {
        Ok(Self { nan: config.nan })
    }

    fn make_views(&self, batch: &ByteImages, _rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let mut plain = FloatImages::empty(batch.c, batch.h, batch.w);
        let mut mirrored = plain.clone();
        for i in 0..batch.n {
            let img = Image::from_bytes(batch, i);
            img.push_to(&mut plain).map_err(|e| TaskError::Input(e.to_string()))?;
            hflip(&img).push_to(&mut mirrored).map_err(|e| TaskError::Input(e.to_string()))?;
        }
        Ok(Views { groups: vec![plain, mirrored], targets: Vec::new() })
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
        candle_nn::linear(feature_dim, 3, vb.pp("fc"))
    }

    fn training(&self) -> Training {
        Training {
            teacher: Some(Momentum { start: M, end: M }),
            clip: Some(GradClip::PerParameter(0.5)),
            freeze: vec![Freeze { prefix: "head.".into(), epochs: 1 }],
        }
    }

    fn init_state(&self, _feature_dim: usize, device: &Device) -> candle_core::Result<Vec<(String, Tensor)>> {
        Ok(vec![
            ("losses".into(), Tensor::zeros(1, DType::F32, device)?),
            ("hooks".into(), Tensor::zeros(1, DType::F32, device)?),
        ])
    }

    fn loss(&self, step: &mut Step<'_, Linear>) -> candle_core::Result<TaskOutput> {
        let online = step.head().forward(&step.encode(step.view(0)?)?)?;
        let target = step.teacher(step.view(1)?, Module::forward)?;
        let mut loss = (online - target)?.sqr()?.mean_all()?;
        if self.nan {
            loss = loss.affine(f64::NAN, 0.0)?;
        }
        let count = (step.state("losses")? + 1.0)?;
        step.set_state("losses", &count)?;
        Ok(TaskOutput { loss, metrics: Vec::new() })
    }

    fn after_step(&self, step: &mut AfterStep<'_>) -> candle_core::Result<()> {
        assert!(step.param("head.fc.weight").is_some());
        let count = (step.state("hooks")? + 1.0)?;
        step.set_state("hooks", &count)
    }
}

const SIDE: usize = 16;

fn config(seed: u64, task: serde_json::Value) -> SessionConfig {
    SessionConfig {
        task,
        backbone: BackboneSpec { width: 4, ..BackboneSpec::new(BackboneKind::Convnet, 3) },
        input: InputSpec { channels: 3, height: SIDE, width: SIDE, patch_size: None },
        optimizer: OptimizerConfig::default(),
        device: "cpu".into(),
        seed,
        normalize: Normalize { mean: vec![0.5; 3], std: vec![0.25; 3] },
        sync_batch_norm: false,
    }
}

fn batch(seed: u64) -> ByteImages {
    let mut rng = StdRng::seed_from_u64(seed);
    ByteImages::new(8, 3, SIDE, SIDE, (0..8 * 3 * SIDE * SIDE).map(|_| rng.random::<u8>()).collect()).unwrap()
}

fn at(step: u64, epoch: u64) -> Schedule {
    Schedule { step, total_steps: 10, epoch, epochs: 2, lr: 1e-2 }
}

/// A saved state as name → f32 values.
fn tensors(session: &Session<Mirror>) -> BTreeMap<String, Vec<f32>> {
    let bytes = session.save_state().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (name, view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        })
        .collect()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + x.abs()))
}

#[test]
fn the_teacher_follows_the_ema_and_frozen_parameters_hold_still() {
    let session = Session::<Mirror>::new(config(1, serde_json::Value::Null)).unwrap();
    let before = tensors(&session);
    let names: Vec<&String> = before.keys().filter(|n| n.starts_with("backbone.") || n.starts_with("head.")).collect();
    for n in &names {
        assert_eq!(before[*n], before[&format!("teacher.{n}")], "the teacher starts as a copy of the student: {n}");
    }
    assert!(!before.keys().any(|n| n.starts_with("optim.") && n.contains("teacher")));

    for (step, epoch) in [(0, 1), (1, 1), (5, 2)] {
        let views = session.prepare_seeded(&batch(step), step).unwrap();
        let prev = tensors(&session);
        session.train_step(&views, at(step, epoch)).unwrap();
        let now = tensors(&session);
        for n in &names {
            let (student, teacher, old_teacher) =
                (&now[*n], &now[&format!("teacher.{n}")], &prev[&format!("teacher.{n}")]);
            if n.ends_with("running_mean") || n.ends_with("running_var") {
                continue;
            }
            #[allow(clippy::cast_possible_truncation)]
            let want: Vec<f32> =
                old_teacher.iter().zip(student).map(|(t, s)| (M as f32) * t + (1.0 - M as f32) * s).collect();
            assert!(close(teacher, &want), "step {step}: teacher {n} is not the EMA of the student");
            if n.starts_with("head.") {
                assert_eq!(prev[*n] == now[*n], epoch == 1, "step {step}: the head is frozen in epoch 1 only");
            }
        }
        assert!(prev["backbone.conv1.weight"] != now["backbone.conv1.weight"], "the backbone trains");
        #[allow(clippy::cast_precision_loss)]
        let count = [prev["state.losses"][0] + 1.0];
        assert_eq!(now["state.losses"], count);
        assert_eq!(now["state.hooks"], count);
    }
}

#[test]
fn a_non_finite_step_changes_neither_teacher_nor_state() {
    let session = Session::<Mirror>::new(config(1, serde_json::json!({ "nan": true }))).unwrap();
    let before = tensors(&session);
    let views = session.prepare_seeded(&batch(0), 0).unwrap();
    assert!(session.train_step(&views, at(0, 1)).is_err());
    // Batch-norm running statistics move in the forward pass, as in PyTorch; everything a
    // step decides (weights, optimizer moments, teacher, state) stays.
    let after = tensors(&session);
    let changed: Vec<&String> = after
        .keys()
        .filter(|n| !n.ends_with("running_mean") && !n.ends_with("running_var") && after[*n] != before[*n])
        .collect();
    assert!(changed.is_empty(), "a failed step changed {changed:?}");
    assert_eq!(after.len(), before.len());
}

#[test]
fn teacher_and_state_survive_a_checkpoint_bit_for_bit() {
    let trained = Session::<Mirror>::new(config(1, serde_json::Value::Null)).unwrap();
    for step in 0..3 {
        trained.train_step(&trained.prepare_seeded(&batch(step), step).unwrap(), at(step, 2)).unwrap();
    }
    let fresh = Session::<Mirror>::new(config(2, serde_json::Value::Null)).unwrap();
    assert!(tensors(&fresh) != tensors(&trained));
    fresh.load_state(&trained.save_state().unwrap()).unwrap();
    assert_eq!(tensors(&fresh), tensors(&trained));
    let views = trained.prepare_seeded(&batch(9), 9).unwrap();
    let (a, b) = (trained.train_step(&views, at(3, 2)).unwrap(), fresh.train_step(&views, at(3, 2)).unwrap());
    assert_eq!(a["loss"].to_bits(), b["loss"].to_bits());
    assert_eq!(tensors(&fresh), tensors(&trained), "training on diverged (teacher or state not restored)");
}
