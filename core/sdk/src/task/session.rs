//! A training session: one task with its backbone, head and optimizer on one device.
//!
//! This is the safe-Rust heart of every plugin; `export_plugin!` only wraps it in the C ABI.
//! `prepare` takes `&self` and touches no device state, so the host can call it from loader
//! threads while `train_step` runs; everything that mutates the model sits behind a mutex.
//! One step runs: loss → finite check → backward → clip → freeze → optimizer → teacher EMA →
//! task state → after-step hook; nothing of the model or state changes before the check.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use candle_core::Var;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::ddp;
use super::rngs::derived_seeds;
use super::step::Nets;
use super::teacher::Teacher;
use super::training::{self, Training};
use super::wire::{encode_matrices, encode_samples};
use super::{
    AfterStep, ImageRngs, InputSpec, Optimizer, OptimizerConfig, PretextTask, Schedule, Step, TaskError, TaskInfo,
    Views, named_vars,
};
use crate::dist::{self, Comm};
use crate::features::{InputNorm, stage_matrices};
use crate::images::ByteImages;
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
    /// In a data-parallel run, batch norm normalises with the statistics of the global
    /// batch (PyTorch's `SyncBatchNorm`) rather than of each rank's share.
    #[serde(default)]
    pub sync_batch_norm: bool,
}

/// What `describe` returns: the task's info plus what the host needs to show and check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Description {
    #[serde(flatten)]
    pub info: TaskInfo,
    pub default_config: serde_json::Value,
    /// [`PretextTask::adamw_lr`].
    #[serde(default)]
    pub adamw_lr: Option<f64>,
    /// [`PretextTask::adamw_lr_decay`].
    #[serde(default)]
    pub adamw_lr_decay: Option<super::LrDecay>,
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

/// Checkpoint name prefixes of the teacher's parameters and the task's state.
const TEACHER_PREFIX: &str = "teacher.";
const STATE_PREFIX: &str = "state.";

struct State<T: PretextTask> {
    /// The student's parameters by name, sorted (the optimizer's and the checkpoint's order).
    vars: Vec<(String, Var)>,
    backbone: Backbone,
    head: T::Head,
    teacher: Option<Teacher<T::Head>>,
    task_state: BTreeMap<String, Tensor>,
    optimizer: Optimizer,
    norm: InputNorm,
    /// The schedule of the last training step (the run's start before any), for
    /// [`PretextTask::predicted_samples`].
    schedule: Schedule,
}

impl<T: PretextTask> State<T> {
    fn nets(&self) -> Nets<'_, T::Head> {
        Nets {
            backbone: &self.backbone,
            head: &self.head,
            teacher: self.teacher.as_ref().map(|t| (&t.backbone, &t.head)),
        }
    }

    /// The views normalised on the device, and their targets if the task made any.
    fn device_views(&self, views: &Views, device: &Device) -> candle_core::Result<(Vec<Tensor>, Option<Tensor>)> {
        let xs = views.groups.iter().map(|g| self.norm.apply(g)).collect::<candle_core::Result<Vec<_>>>()?;
        let targets = if views.targets.is_empty() {
            None
        } else {
            Some(Tensor::from_slice(&views.targets, views.targets.len(), device)?)
        };
        Ok((xs, targets))
    }
}

pub struct Session<T: PretextTask> {
    task: T,
    training: Training,
    config: SessionConfig,
    device: Device,
    /// The ranks of a data-parallel run; `None` (or one rank) trains alone.
    comm: Option<Comm>,
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
            adamw_lr: T::adamw_lr(),
            adamw_lr_decay: T::adamw_lr_decay(),
            core_version: crate::CORE_VERSION.to_string(),
            cuda: cfg!(feature = "cuda"),
        }
    }

    pub fn new(config: SessionConfig) -> Result<Self, TaskError> {
        Self::with_comm(config, None)
    }

    /// A session that is one rank of a data-parallel run: each step averages its gradients
    /// (and metrics and batch-norm statistics) with the other ranks' through `comm`.
    pub fn with_comm(config: SessionConfig, comm: Option<Comm>) -> Result<Self, TaskError> {
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
        let training = task.training();
        training::check(&training).map_err(TaskError::Config)?;
        let state = Self::build(&task, &training, &config, &device)?;
        let comm = comm.filter(|c| c.world() > 1);
        Ok(Self { task, training, config, device, comm, state: Mutex::new(state) })
    }

    fn build(task: &T, training: &Training, config: &SessionConfig, device: &Device) -> Result<State<T>, TaskError> {
        let params = VarMap::new();
        let vb = seeded_var_builder(&params, config.seed, DType::F32, device);
        let backbone = Backbone::new(&config.backbone, vb.pp("backbone"))?;
        let dim = backbone.feature_dim();
        let head = task.build_head(dim, vb.pp("head"))?;
        let vars = named_vars(&params)?;
        let teacher = match training.teacher {
            Some(momentum) => {
                // Built like the student, then overwritten with the student's values.
                let teacher_params = VarMap::new();
                let tvb = seeded_var_builder(&teacher_params, config.seed, DType::F32, device);
                let t_backbone = Backbone::new(&config.backbone, tvb.pp("backbone"))?;
                let t_head = task.build_head(dim, tvb.pp("head"))?;
                Some(Teacher::new(t_backbone, t_head, named_vars(&teacher_params)?, &vars, momentum)?)
            }
            None => None,
        };
        let mut task_state = BTreeMap::new();
        for (name, value) in task.init_state(dim, device)? {
            if task_state.insert(name.clone(), value.detach()).is_some() {
                return Err(TaskError::Config(format!("the task declares state `{name}` twice")));
            }
        }
        let optimizer = Optimizer::new(config.optimizer.clone(), vars.clone());
        let norm = InputNorm::new(&config.normalize, device)?;
        let schedule = Schedule { step: 0, total_steps: 1, epoch: 1, epochs: 1, lr: 0.0 };
        Ok(State { vars, backbone, head, teacher, task_state, optimizer, norm, schedule })
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

    /// The pretext inputs of one batch, image `i` augmented from `seeds[i]`; safe to call
    /// from several threads at once.
    pub fn prepare(&self, images: &ByteImages, seeds: &[u64]) -> Result<Views, TaskError> {
        self.check_batch(images)?;
        if seeds.len() != images.n {
            return Err(TaskError::Input(format!("{} images came with {} seeds", images.n, seeds.len())));
        }
        let views = self.task.make_views(images, &mut ImageRngs::from_seeds(seeds))?;
        let consistent = |v: &crate::images::FloatImages| v.data.len() == v.n * v.c * v.h * v.w && v.c == images.c;
        if views.groups.is_empty() || !views.groups.iter().all(consistent) {
            return Err(TaskError::Input("the task made views of an inconsistent shape".into()));
        }
        Ok(views)
    }

    /// [`Session::prepare`] with the images' seeds derived from one.
    pub fn prepare_seeded(&self, images: &ByteImages, seed: u64) -> Result<Views, TaskError> {
        self.prepare(images, &derived_seeds(seed, images.n))
    }

    /// One optimisation step. A non-finite loss is reported before any weight or state
    /// changes.
    pub fn train_step(&self, views: &Views, schedule: Schedule) -> Result<StepMetrics, TaskError> {
        let mut guard = self.lock()?;
        let state = &mut *guard;
        let (xs, targets) = state.device_views(views, &self.device)?;
        state.schedule = schedule;
        // Batch norm and the task's `dist::gather` calls find the ranks through this.
        let _ranks = dist::scope(self.comm.as_ref(), self.config.sync_batch_norm);
        let nets = state.nets();
        let mut step = Step::new(nets, &xs, targets.as_ref(), schedule, &state.task_state, &state.norm);
        let out = self.task.loss(&mut step)?;
        let updates = step.into_updates();
        let scalar =
            |t: &Tensor| -> candle_core::Result<f64> { Ok(f64::from(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)) };
        let mut values = vec![scalar(&out.loss)?];
        for (_, value) in &out.metrics {
            values.push(scalar(value)?);
        }
        if let Some(comm) = &self.comm {
            ddp::average_values(comm, &mut values)?;
        }
        // Averaged, so a non-finite loss on any rank stops every rank at this step.
        let loss = values[0];
        if !loss.is_finite() {
            return Err(TaskError::NonFinite { loss, step: state.optimizer.steps() + 1 });
        }
        let mut grads = out.loss.backward()?;
        if let Some(comm) = &self.comm {
            ddp::average_gradients(comm, &mut grads, &state.vars)?;
        }
        if let Some(clip) = self.training.clip {
            training::clip(&mut grads, &state.vars, clip)?;
        }
        training::freeze(&mut grads, &state.vars, &self.training.freeze, schedule.epoch);
        state.optimizer.step(&grads, schedule.lr)?;
        if let Some(teacher) = &state.teacher {
            teacher.update(&state.vars, schedule.cosine(teacher.momentum.start, teacher.momentum.end))?;
        }
        if let Some(comm) = &self.comm {
            let teacher_vars = state.teacher.as_ref().map_or(&[][..], |t| t.vars());
            ddp::average_buffers(comm, state.vars.iter().chain(teacher_vars))?;
        }
        state.task_state.extend(updates);
        self.task.after_step(&mut AfterStep { params: &state.vars, state: &mut state.task_state, schedule })?;
        let mut metrics = StepMetrics::new();
        metrics.insert("loss".into(), loss);
        for ((name, _), value) in out.metrics.into_iter().zip(&values[1..]) {
            metrics.insert(name, *value);
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

    /// The task's pretext inputs for a few images, then what its networks make of them as
    /// they are now ([`PretextTask::predicted_samples`], from the views `make_views` draws
    /// with the same seed), as safetensors bytes of u8 images.
    pub fn sample(&self, images: &ByteImages, seed: u64) -> Result<Vec<u8>, TaskError> {
        self.check_batch(images)?;
        let seeds = derived_seeds(seed, images.n);
        let mut samples = self.task.samples(images, &mut ImageRngs::from_seeds(&seeds))?;
        let views = self.prepare(images, &seeds)?;
        let state = self.lock()?;
        let (xs, targets) = state.device_views(&views, &self.device)?;
        let mut step = Step::new(state.nets(), &xs, targets.as_ref(), state.schedule, &state.task_state, &state.norm);
        let predicted = self.task.predicted_samples(&mut step)?;
        if predicted.iter().any(|p| p.group >= images.n) {
            return Err(TaskError::Input("a predicted sample names a source image the batch does not have".into()));
        }
        samples.extend(predicted);
        encode_samples(&samples).map_err(TaskError::State)
    }

    /// Model and optimizer state as safetensors bytes: `backbone.*`, `head.*`, the teacher's
    /// `teacher.backbone.*` and `teacher.head.*`, the task's `state.*`, and `optim.*`.
    pub fn save_state(&self) -> Result<Vec<u8>, TaskError> {
        let state = self.lock()?;
        let mut tensors: Vec<(String, Tensor)> =
            state.vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        if let Some(teacher) = &state.teacher {
            tensors.extend(teacher.vars().iter().map(|(n, v)| (format!("{TEACHER_PREFIX}{n}"), v.as_tensor().clone())));
        }
        tensors.extend(state.task_state.iter().map(|(n, t)| (format!("{STATE_PREFIX}{n}"), t.clone())));
        tensors.extend(state.optimizer.state()?);
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
        let mut guard = self.lock()?;
        let state = &mut *guard;
        // Every tensor is found and checked before the first is set: a refused checkpoint
        // leaves the session as it was.
        let mut sets: Vec<(&Var, &Tensor)> = Vec::new();
        let teacher_vars = state.teacher.as_ref().map_or(&[][..], |t| t.vars());
        let named = state.vars.iter().map(|(n, v)| (n.clone(), v));
        let named = named.chain(teacher_vars.iter().map(|(n, v)| (format!("{TEACHER_PREFIX}{n}"), v)));
        for (name, var) in named {
            sets.push((var, lookup(&tensors, &name, var.dims())?));
        }
        let mut task_state = BTreeMap::new();
        for (name, old) in &state.task_state {
            let t = lookup(&tensors, &format!("{STATE_PREFIX}{name}"), old.dims())?;
            task_state.insert(name.clone(), t.to_dtype(old.dtype())?);
        }
        for (var, t) in sets {
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        state.task_state = task_state;
        state.optimizer.load_state(&tensors, steps)?;
        Ok(())
    }
}

/// Checkpoint tensor `name`, which must have shape `dims`.
fn lookup<'t>(tensors: &'t HashMap<String, Tensor>, name: &str, dims: &[usize]) -> Result<&'t Tensor, TaskError> {
    let t = tensors.get(name).ok_or_else(|| TaskError::State(format!("the checkpoint has no `{name}`")))?;
    if t.dims() != dims {
        return Err(TaskError::State(format!(
            "`{name}` has shape {:?} in the checkpoint but {dims:?} in this model",
            t.dims()
        )));
    }
    Ok(t)
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
