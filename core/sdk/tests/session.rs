//! A checkpoint round trip through `Session`: train a few steps, save the state, load it into
//! a fresh session built with another seed, and the eval-mode features of the same batch are
//! bit-identical (for both backbones, so batch-norm running statistics must travel too). A
//! checkpoint of another task is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use candle_nn::{Linear, Module, VarBuilder};
use pretext_sdk::augment::{Image, hflip};
use pretext_sdk::images::{ByteImages, FloatImages};
use pretext_sdk::model::{BackboneKind, BackboneSpec};
use pretext_sdk::task::losses::classification;
use pretext_sdk::task::wire::decode_matrices;
use pretext_sdk::task::{
    ImageRngs, InputSpec, Normalize, OptimizerConfig, PretextTask, Schedule, Session, SessionConfig, Step, TaskError,
    TaskInfo, TaskOutput, Views,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// "Was this image flipped?": each image and its mirror, labelled 0 and 1.
struct Flip;

impl PretextTask for Flip {
    type Config = serde_json::Value;
    type Head = Linear;

    fn info() -> TaskInfo {
        TaskInfo { name: "flip".into(), version: "0".into(), description: "test task".into(), samples: "flips".into() }
    }

    fn new(_config: serde_json::Value, _input: InputSpec) -> Result<Self, TaskError> {
        Ok(Self)
    }

    fn make_views(&self, batch: &ByteImages, _rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        let mut images = FloatImages::empty(batch.c, batch.h, batch.w);
        let mut targets = Vec::new();
        for i in 0..batch.n {
            let img = Image::from_bytes(batch, i);
            img.push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
            hflip(&img).push_to(&mut images).map_err(|e| TaskError::Input(e.to_string()))?;
            targets.extend([0, 1]);
        }
        Ok(Views::new(images, targets))
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
        candle_nn::linear(feature_dim, 2, vb.pp("fc"))
    }

    fn loss(&self, step: &mut Step<'_, Linear>) -> candle_core::Result<TaskOutput> {
        classification(&step.head().forward(&step.features()?)?, step.targets()?)
    }
}

/// The same task under another name, whose checkpoints `Flip` must refuse.
struct Other;

impl PretextTask for Other {
    type Config = serde_json::Value;
    type Head = Linear;

    fn info() -> TaskInfo {
        TaskInfo { name: "other".into(), ..Flip::info() }
    }

    fn new(config: serde_json::Value, input: InputSpec) -> Result<Self, TaskError> {
        Flip::new(config, input).map(|_| Self)
    }

    fn make_views(&self, batch: &ByteImages, rngs: &mut ImageRngs) -> Result<Views, TaskError> {
        Flip.make_views(batch, rngs)
    }

    fn build_head(&self, feature_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
        Flip.build_head(feature_dim, vb)
    }

    fn loss(&self, step: &mut Step<'_, Linear>) -> candle_core::Result<TaskOutput> {
        Flip.loss(step)
    }
}

const SIDE: usize = 16;

/// Step `step` of a 10-step, 1-epoch run at a fixed rate.
fn at(step: u64) -> Schedule {
    Schedule { step, total_steps: 10, epoch: 1, epochs: 1, lr: 1e-2 }
}

fn config(kind: BackboneKind, seed: u64) -> SessionConfig {
    SessionConfig {
        task: serde_json::Value::Null,
        backbone: BackboneSpec { width: 4, ..BackboneSpec::new(kind, 3) },
        input: InputSpec { channels: 3, height: SIDE, width: SIDE, patch_size: None },
        optimizer: OptimizerConfig::default(),
        device: "cpu".into(),
        seed,
        normalize: Normalize { mean: vec![0.5; 3], std: vec![0.25; 3] },
        sync_batch_norm: false,
    }
}

fn random_batch(n: usize, seed: u64) -> ByteImages {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..n * 3 * SIDE * SIDE).map(|_| rng.random::<u8>()).collect();
    ByteImages::new(n, 3, SIDE, SIDE, data).unwrap()
}

/// Two safetensors files hold the same metadata and bit-identical tensors of the same names.
fn assert_same_checkpoint(a: &[u8], b: &[u8]) {
    let (_, ha) = safetensors::SafeTensors::read_metadata(a).unwrap();
    let (_, hb) = safetensors::SafeTensors::read_metadata(b).unwrap();
    assert_eq!(ha.metadata(), hb.metadata());
    let (ta, tb) =
        (safetensors::SafeTensors::deserialize(a).unwrap(), safetensors::SafeTensors::deserialize(b).unwrap());
    let mut names: Vec<String> = ta.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut names_b: Vec<String> = tb.names().into_iter().map(str::to_string).collect();
    names_b.sort();
    assert_eq!(names, names_b);
    for name in &names {
        let (x, y) = (ta.tensor(name).unwrap(), tb.tensor(name).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{name}");
        assert!(x.data() == y.data(), "tensor {name} differs");
    }
}

fn round_trip(kind: BackboneKind) {
    let trained = Session::<Flip>::new(config(kind, 1)).unwrap();
    for step in 0..3 {
        let views = trained.prepare_seeded(&random_batch(8, step), step).unwrap();
        let metrics = trained.train_step(&views, at(step)).unwrap();
        assert!(metrics["loss"].is_finite());
    }
    let probe = random_batch(6, 99);
    let before = trained.embed(&probe).unwrap();
    let state = trained.save_state().unwrap();

    let fresh = Session::<Flip>::new(config(kind, 2)).unwrap();
    assert!(fresh.embed(&probe).unwrap() != before, "another seed must start from other weights");
    fresh.load_state(&state).unwrap();
    let after = fresh.embed(&probe).unwrap();
    assert!(after == before, "{kind:?}: features after a save/load round trip differ");

    // The same, read as matrices: every stage, every bit.
    let (a, b) = (decode_matrices(&before).unwrap(), decode_matrices(&after).unwrap());
    assert!(a.len() >= 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.rows, x.cols), (y.rows, y.cols));
        assert!(x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits()), "{} differs", x.name);
    }
    // Saving again gives the same tensors and metadata, so nothing was lost on the way. (Not
    // the same bytes: safetensors writes its metadata map in hash order.)
    assert_same_checkpoint(&fresh.save_state().unwrap(), &state);

    // Training on continues identically from the loaded state (optimizer moments included).
    let views = trained.prepare_seeded(&random_batch(8, 5), 5).unwrap();
    let m1 = trained.train_step(&views, at(3)).unwrap();
    let m2 = fresh.train_step(&views, at(3)).unwrap();
    assert_eq!(m1["loss"].to_bits(), m2["loss"].to_bits());
    assert!(trained.embed(&probe).unwrap() == fresh.embed(&probe).unwrap(), "training on diverged");
}

#[test]
fn convnet_checkpoint_round_trip_is_bit_identical() {
    round_trip(BackboneKind::Convnet);
}

#[test]
fn resnet18_checkpoint_round_trip_is_bit_identical() {
    round_trip(BackboneKind::Resnet18);
}

#[test]
fn a_checkpoint_of_another_task_is_refused() {
    let other = Session::<Other>::new(config(BackboneKind::Convnet, 1)).unwrap();
    let state = other.save_state().unwrap();
    let flip = Session::<Flip>::new(config(BackboneKind::Convnet, 1)).unwrap();
    let before = flip.embed(&random_batch(2, 3)).unwrap();
    let err = flip.load_state(&state).unwrap_err().to_string();
    assert!(err.contains("written by task `other`, not `flip`"), "{err}");
    assert!(flip.embed(&random_batch(2, 3)).unwrap() == before, "a refused checkpoint changes nothing");
    assert!(flip.load_state(b"not a checkpoint").is_err());
}

#[test]
fn a_checkpoint_of_another_backbone_is_refused() {
    let wide = Session::<Flip>::new(SessionConfig {
        backbone: BackboneSpec { width: 8, ..BackboneSpec::new(BackboneKind::Convnet, 3) },
        ..config(BackboneKind::Convnet, 1)
    })
    .unwrap();
    let narrow = Session::<Flip>::new(config(BackboneKind::Convnet, 1)).unwrap();
    let err = narrow.load_state(&wide.save_state().unwrap()).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
}
