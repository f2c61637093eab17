//! A training session: one task with its backbone, head and optimizer on one device.
//!
//! This is the safe-Rust heart of every plugin; `export_plugin!` only wraps it in the C ABI.
//! `prepare` takes `&self` and touches no device state, so the host can call it from loader
//! threads while `train_step` runs; everything that mutates the model sits behind a mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::wire::{encode_matrices, encode_samples};
use super::{InputSpec, Optimizer, OptimizerConfig, PretextTask, TaskError, TaskInfo, Views, named_vars};
use crate::data::ByteImages;
use crate::eval::{InputNorm, stage_matrices};
use crate::model::{Backbone, BackboneSpec, seeded_var_builder};

/// Per-channel input normalisation, `(x - mean) / std` on values in `0..1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Everything a session is created from; it crosses the ABI as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// The task's own configuration; missing fields take the task's defaults.
    #[serde(default)]
    pub task: serde_json::Value,
    pub backbone: BackboneSpec,
    pub input: InputSpec,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub seed: u64,
    pub normalize: Normalize,
}

/// What `describe` returns: the task's info plus what the host needs to show and check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Description {
    #[serde(flatten)]
    pub info: TaskInfo,
    pub default_config: serde_json::Value,
    pub core_version: String,
    pub cuda: bool,
}

/// Metrics of one step: always `loss`, plus whatever the task reports.
pub type StepMetrics = BTreeMap<String, f64>;

/// The one metadata key of a saved state. One key, because safetensors writes its metadata
/// map in hash order and several keys would make identical states hash differently.
const META_KEY: &str = "pretext";

#[derive(Serialize, Deserialize)]
struct StateMeta {
    task: String,
    step: u64,
}

struct State<T: PretextTask> {
    params: VarMap,
    backbone: Backbone,
    head: T::Head,
    optimizer: Optimizer,
    norm: InputNorm,
}

pub struct Session<T: PretextTask> {
    task: T,
    config: SessionConfig,
    device: Device,
    state: Mutex<State<T>>,
}

/// Opens the device a spec names; without the `cuda` feature, CUDA is refused in words.
pub fn open_device(spec: &str) -> Result<Device, TaskError> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| TaskError::Device(format!("`{spec}` is not a device (use cpu, cuda or cuda:N)")))?,
        None => return Err(TaskError::Device(format!("`{spec}` is not a device (use cpu, cuda or cuda:N)"))),
    };
    if cfg!(feature = "cuda") {
        Device::new_cuda(ordinal).map_err(|e| TaskError::Device(format!("cannot open cuda:{ordinal}: {e}")))
    } else {
        Err(TaskError::Device(
            "this build has no CUDA support; rebuild with `--features cuda` (see scripts/cuda-build.sh)".into(),
        ))
    }
}

impl<T: PretextTask> Session<T> {
    pub fn describe() -> Description {
        Description {
            info: T::info(),
            default_config: serde_json::to_value(T::Config::default()).unwrap_or(serde_json::Value::Null),
            core_version: crate::CORE_VERSION.to_string(),
            cuda: cfg!(feature = "cuda"),
        }
    }

    pub fn new(config: SessionConfig) -> Result<Self, TaskError> {
        let task_config = merge_defaults::<T::Config>(&config.task)?;
        let c = config.input.channels;
        if config.normalize.mean.len() != c || config.normalize.std.len() != c {
            return Err(TaskError::Config(format!("normalisation needs {c} means and stds")));
        }
        if config.normalize.std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            return Err(TaskError::Config("normalisation stds must be positive".into()));
        }
        if config.backbone.in_channels != c {
            return Err(TaskError::Config(format!(
                "the backbone takes {} channels but the images have {c}",
                config.backbone.in_channels
            )));
        }
        let device = open_device(&config.device)?;
        let task = T::new(task_config, config.input)?;
        let state = Self::build(&task, &config, &device)?;
        Ok(Self { task, config, device, state: Mutex::new(state) })
    }

    fn build(task: &T, config: &SessionConfig, device: &Device) -> Result<State<T>, TaskError> {
        let params = VarMap::new();
        let vb = seeded_var_builder(&params, config.seed, DType::F32, device);
        let backbone = Backbone::new(&config.backbone, vb.pp("backbone"))?;
        let head = task.build_head(backbone.feature_dim(), vb.pp("head"))?;
        let optimizer = Optimizer::new(config.optimizer.clone(), named_vars(&params)?);
        let norm = InputNorm::new(&config.normalize, device)?;
        Ok(State { params, backbone, head, optimizer, norm })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn task(&self) -> &T {
        &self.task
    }

    fn lock(&self) -> Result<MutexGuard<'_, State<T>>, TaskError> {
        self.state.lock().map_err(|_| TaskError::State("the session is unusable after an earlier panic".into()))
    }

    fn check_batch(&self, images: &ByteImages) -> Result<(), TaskError> {
        let i = self.config.input;
        if (images.c, images.h, images.w) != (i.channels, i.height, i.width) {
            return Err(TaskError::Input(format!(
                "expected {}×{}×{} images, got {}×{}×{}",
                i.channels, i.height, i.width, images.c, images.h, images.w
            )));
        }
        if images.is_empty() {
            return Err(TaskError::Input("the batch is empty".into()));
        }
        Ok(())
    }

    /// The pretext inputs of one batch; safe to call from several threads at once.
    pub fn prepare(&self, images: &ByteImages, seed: u64) -> Result<Views, TaskError> {
        self.check_batch(images)?;
        let views = self.task.make_views(images, &mut StdRng::seed_from_u64(seed))?;
        let v = &views.images;
        if v.data.len() != v.n * v.c * v.h * v.w || v.c != images.c {
            return Err(TaskError::Input("the task made views of an inconsistent shape".into()));
        }
        Ok(views)
    }

    /// One optimisation step. A non-finite loss is reported before any weight changes.
    pub fn train_step(&self, views: &Views, lr: f64) -> Result<StepMetrics, TaskError> {
        let mut state = self.lock()?;
        let x = state.norm.apply(&views.images)?;
        let features = state.backbone.forward_t(&x, true)?;
        let targets = if views.targets.is_empty() {
            None
        } else {
            Some(Tensor::from_slice(&views.targets, views.targets.len(), &self.device)?)
        };
        let out = self.task.loss(&state.head, &features, targets.as_ref(), true)?;
        let loss = f64::from(out.loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !loss.is_finite() {
            return Err(TaskError::NonFinite { loss, step: state.optimizer.steps() + 1 });
        }
        let grads = out.loss.backward()?;
        state.optimizer.step(&grads, lr)?;
        let mut metrics = StepMetrics::new();
        metrics.insert("loss".into(), loss);
        for (name, value) in out.metrics {
            metrics.insert(name, f64::from(value.to_dtype(DType::F32)?.to_scalar::<f32>()?));
        }
        Ok(metrics)
    }

    /// Backbone features (eval mode) of `images`: `features` (the last stage) and
    /// `stageK` (each stage, globally pooled), as safetensors bytes of f32 matrices.
    pub fn embed(&self, images: &ByteImages) -> Result<Vec<u8>, TaskError> {
        self.check_batch(images)?;
        let state = self.lock()?;
        let matrices = stage_matrices(&state.backbone, images, |batch| state.norm.apply(batch))?;
        encode_matrices(&matrices).map_err(TaskError::State)
    }

    /// The task's pretext inputs for a few images, as safetensors bytes of u8 images.
    pub fn sample(&self, images: &ByteImages, seed: u64) -> Result<Vec<u8>, TaskError> {
        self.check_batch(images)?;
        let samples = self.task.samples(images, &mut StdRng::seed_from_u64(seed))?;
        encode_samples(&samples).map_err(TaskError::State)
    }

    /// Model and optimizer state as safetensors bytes: `backbone.*`, `head.*`, `optim.*`.
    pub fn save_state(&self) -> Result<Vec<u8>, TaskError> {
        let state = self.lock()?;
        let mut tensors: Vec<(String, Tensor)> =
            named_vars(&state.params)?.into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
        tensors.extend(state.optimizer.state());
        let tensors = tensors
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let meta = StateMeta { task: T::info().name, step: state.optimizer.steps() };
        let meta = HashMap::from([(
            META_KEY.to_string(),
            serde_json::to_string(&meta).map_err(|e| TaskError::State(e.to_string()))?,
        )]);
        safetensors::serialize(tensors, Some(meta)).map_err(|e| TaskError::State(e.to_string()))
    }

    /// Restores what [`Session::save_state`] wrote; every model tensor must be present
    /// with the same shape, so a checkpoint of another task or backbone is refused.
    pub fn load_state(&self, bytes: &[u8]) -> Result<(), TaskError> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| TaskError::State(format!("not a checkpoint: {e}")))?;
        let meta: StateMeta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| TaskError::State("not a Pretext checkpoint: its metadata is missing".into()))?;
        let task = T::info().name;
        if meta.task != task {
            return Err(TaskError::State(format!("the checkpoint was written by task `{}`, not `{task}`", meta.task)));
        }
        let steps = meta.step;
        let tensors = candle_core::safetensors::load_buffer(bytes, &self.device)?;
        let mut state = self.lock()?;
        for (name, var) in named_vars(&state.params)? {
            let t = tensors.get(&name).ok_or_else(|| TaskError::State(format!("the checkpoint has no `{name}`")))?;
            if t.dims() != var.dims() {
                return Err(TaskError::State(format!(
                    "`{name}` has shape {:?} in the checkpoint but {:?} in this model",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        state.optimizer.load_state(&tensors, steps)?;
        Ok(())
    }
}

/// Fills fields missing from `given` with the defaults of `C`, so a user can set one field.
fn merge_defaults<C: PretextConfig>(given: &serde_json::Value) -> Result<C, TaskError> {
    let defaults = serde_json::to_value(C::default()).map_err(|e| TaskError::Config(e.to_string()))?;
    serde_json::from_value(merge_settings(defaults, given)?).map_err(|e| TaskError::Config(e.to_string()))
}

/// A task's settings: `defaults` (a table, as [`Description::default_config`]) with the
/// `given` ones in their place. A setting the defaults lack is refused, so a typo is an
/// error rather than silently ignored. The host records the result in `run.json`, so that a
/// run resumes with the settings it started with even if a newer plugin changes a default.
pub fn merge_settings(defaults: serde_json::Value, given: &serde_json::Value) -> Result<serde_json::Value, TaskError> {
    let mut merged = defaults;
    match (given, &mut merged) {
        (serde_json::Value::Null, _) => {}
        (serde_json::Value::Object(g), serde_json::Value::Object(m)) => {
            for (k, v) in g {
                if !m.contains_key(k) {
                    return Err(TaskError::Config(format!("unknown task setting `{k}`")));
                }
                m.insert(k.clone(), v.clone());
            }
        }
        _ => return Err(TaskError::Config("the task configuration must be a table of settings".into())),
    }
    Ok(merged)
}

trait PretextConfig: Serialize + serde::de::DeserializeOwned + Default {}
impl<C: Serialize + serde::de::DeserializeOwned + Default> PretextConfig for C {}
