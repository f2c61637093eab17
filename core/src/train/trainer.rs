//! The training loop: load the plugin and data, prepare batches ahead on worker threads,
//! step the plugin, and record metrics and checkpoints in the run directory.
//!
//! A run can always be resumed from its newest complete checkpoint: the batch order and
//! augmentation seeds depend only on (seed, epoch, position), and `metrics.jsonl` is cut back
//! to that checkpoint on resume. A non-finite loss stops the run before the weights change,
//! so the last checkpoint stays good.
//!
//! In a data-parallel run ([`Ranks`] of several processes) every rank runs this loop on its
//! share of each global batch (`dist::shard_positions`), starting from rank 0's weights; only
//! rank 0 touches the run directory, reports events and runs the monitors. Every collective
//! call happens at the same point on every rank: the start (rank 0's state broadcast), each
//! step (the plugin's averages and the stop flag) and each checkpoint (a check that the
//! ranks hold identical weights).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::data::{self, ByteImages, DataSplits, Dataset, Progress};
use crate::data::{Prefetch, epoch_order};
use crate::dist::{Ranks, shard_positions};
use crate::host::{self, CallError, Plugin, PluginSession, PreparedBatch};
use crate::model::BackboneSpec;
use crate::run::store::{RunStore, StoreError, now_unix};
use crate::run::{DatasetInfo, FORMAT_VERSION, MetricRecord, RunInfo, RunStatus, TaskRef, checkpoint_stem};
use crate::task::abi::StepInfo;
use crate::task::wire::SampleImage;
use crate::task::{InputSpec, Normalize, OptimizerConfig, OptimizerKind, SessionConfig, merge_settings};

use super::monitor::{COLLAPSE_IMAGES, Monitor, collapse_stats};
use super::samples::write_samples;
use super::summary::DataSummary;
use super::{TrainConfig, TrainError};
use crate::steps::{LrSchedule, batch_seed, image_seed};

/// Progress reports for a CLI progress bar or a GUI.
#[derive(Clone, Debug)]
pub enum Event {
    /// Reading or decoding image files before training (the pixel cache being built).
    Preparing(Progress),
    /// Something a person should know that does not stop the run, in one sentence.
    Note(String),
    /// Something that looks wrong with the training itself (the representation collapsing),
    /// in one sentence; said once a run.
    Warning(String),
    Started {
        run_dir: PathBuf,
        plugin: String,
        first_epoch: u64,
        epochs: u64,
        batches_per_epoch: u64,
        /// The training data; `data.images` is how many images an epoch goes over.
        data: DataSummary,
    },
    Step {
        epoch: u64,
        batch: u64,
        batches: u64,
        loss: f64,
        lr: f64,
    },
    Epoch(MetricRecord),
    Checkpoint {
        epoch: u64,
        path: PathBuf,
    },
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub epochs_done: u64,
    pub last_loss: f64,
    pub images_per_sec: f64,
    pub status: RunStatus,
}

/// The first training images and what the task makes of them for `samples/`, with the
/// same seed every time so that the samples of successive checkpoints compare.
fn make_samples(
    session: &PluginSession,
    train_set: &Dataset,
    seed: u64,
) -> Result<(ByteImages, Vec<SampleImage>), TrainError> {
    let sources = train_set.images.take(SAMPLE_SOURCES);
    let made = session.sample(&sources, batch_seed(seed, 0, u64::MAX))?;
    Ok((sources, made))
}

/// Number of source images whose pretext inputs go to `samples/`.
const SAMPLE_SOURCES: usize = 8;
/// Batches prepared ahead of the training step.
const PREFETCH_DEPTH: usize = 2;

/// Trains `config.task` as configured. With `resume`, continues the run in `config.out_dir()`
/// from its newest complete checkpoint. `stop` is polled after every step.
///
/// Everything that can be refused (plugin, data, settings, the kNN monitor's data) is
/// checked before the run directory is created, and a run that fails before its first step
/// removes the directory it created, so a refused configuration leaves nothing behind.
pub fn train(
    config: &TrainConfig,
    resume: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary, TrainError> {
    train_ranked(config, resume, stop, on_event, &Arc::new(Ranks::alone()))
}

/// [`train`] as one rank of a data-parallel run. Rank 0 behaves as [`train`] does and
/// returns the run's summary; the other ranks train their shares, write nothing and report
/// no events.
pub fn train_ranked(
    config: &TrainConfig,
    resume: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
    ranks: &Arc<Ranks>,
) -> Result<Summary, TrainError> {
    config.validate().map_err(TrainError::Config)?;
    let world = ranks.world();
    if !config.batch_size.is_multiple_of(world) {
        return Err(TrainError::Config(format!(
            "--batch-size {} is the global batch and must split evenly over the {world} ranks",
            config.batch_size
        )));
    }
    let root = ranks.is_root();
    let mut quiet = |_: Event| {};
    let on_event: &mut dyn FnMut(Event) = if root { on_event } else { &mut quiet };
    let plugin = host::resolve(&config.task)?;
    // Every setting spelled out, defaults included: `run.json` then says exactly what ran.
    let task_config = merge_settings(plugin.description.default_config.clone(), &config.task_config)
        .map_err(|e| TrainError::Config(format!("plugin `{}`: {e}", plugin.name())))?;
    // A task tuned at another AdamW rate says so; `--lr` or another optimizer still wins.
    let adamw = config.optimizer == OptimizerKind::Adamw;
    let task_lr = plugin.description.adamw_lr.filter(|_| adamw);
    let task_decay = plugin.description.adamw_lr_decay.filter(|_| adamw);
    let config = &TrainConfig {
        task_config,
        lr: config.lr.or(task_lr),
        lr_schedule: Some(config.lr_schedule.or(task_decay).unwrap_or_default()),
        ..config.clone()
    };
    let run_dir = config.out_dir();
    if root {
        check_run_dir(&run_dir, resume)?;
    }
    // Rank 0 opens the data first, so a folder's pixel cache is built once rather than by
    // every rank of a machine at the same time; the others then map what it wrote.
    if !root {
        ranks.barrier();
    }
    let splits = data::open_with(&config.data, &config.open_options(), &mut |p| on_event(Event::Preparing(p)))?;
    if root {
        ranks.barrier();
    }
    let summary = DataSummary::new(&splits);
    let (monitor, monitor_note) = match Monitor::new(config, &splits, on_event)? {
        Ok(m) if root => (m, None),
        Ok(_) => (None, None),
        Err(note) => (None, Some(note)),
    };
    let DataSplits { train: train_set, test, .. } = splits;
    let train_set = Arc::new(train_set);
    if train_set.is_empty() {
        return Err(TrainError::Config(format!("the dataset `{}` has no training images", config.data)));
    }
    if ranks.is_distributed() {
        agree_on_data(ranks, &train_set)?;
    }

    let base = BackboneSpec::new(config.backbone, train_set.channels()).for_images(train_set.height());
    let spec = BackboneSpec {
        width: config.width.unwrap_or(base.width),
        patch_size: config.patch_size.or(base.patch_size),
        ..base
    };
    let (mean, std) = data::channel_stats(&train_set.images, 10_000);
    let session_config = SessionConfig {
        task: config.task_config.clone(),
        backbone: spec.clone(),
        input: InputSpec {
            channels: train_set.channels(),
            height: train_set.height(),
            width: train_set.width(),
            patch_size: spec.patch_size,
        },
        optimizer: OptimizerConfig {
            kind: config.optimizer,
            weight_decay: config.weight_decay,
            ..OptimizerConfig::default()
        },
        device: rank_device(&config.device, ranks),
        seed: config.seed,
        normalize: Normalize { mean, std: std.iter().map(|s| s.max(1e-3)).collect() },
        sync_batch_norm: config.sync_batch_norm,
    };
    let session = PluginSession::create_ranked(&plugin, &session_config, Some(Arc::clone(ranks)))?;
    if !root {
        return follow(config, &session, &train_set, ranks, stop);
    }
    // A new run makes its samples before its directory exists (a plugin that cannot is
    // refused with nothing left behind); a resumed run only needs them if it starts over.
    let mut samples = if resume { None } else { Some(make_samples(&session, &train_set, config.seed)?) };

    let created = !run_dir.exists();
    let store = RunStore::create(&run_dir)?;
    let mut first_step_done = false;
    let result = (|| {
        let test_images = test.as_ref().map_or(0, Dataset::len);
        let mut info = run_info(config, &plugin, &session_config, &train_set, test_images, &run_dir, &summary);
        info.world_size = world;
        info.batch_per_rank = (world > 1).then(|| config.batch_size / world);
        let mut first_epoch = 1;
        let mut history = Vec::new();
        // A run killed before its first checkpoint has nothing to continue: it starts over
        // in the same directory (its partial metrics are dropped).
        let checkpoint = if resume {
            match store.latest_checkpoint() {
                Ok(found) => Some(found),
                Err(StoreError::NoCheckpoint { .. }) => {
                    log::info!("{} has no complete checkpoint yet; starting it over from epoch 1", run_dir.display());
                    store.rewrite_metrics(&[])?;
                    None
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        if let Some((meta, weights)) = checkpoint {
            // The usual cause besides a damaged file: a run started before its plugin
            // changed a default, whose run.json then lacks the setting the checkpoint was
            // made with.
            session.load_state(&weights).map_err(|e| {
                TrainError::Config(format!(
                    "{e}; if this run was trained with other task settings, put them under `task_config` in {}",
                    store.layout.run_json().display()
                ))
            })?;
            first_epoch = meta.epoch + 1;
            history = store.read_metrics()?;
            history.retain(|r| r.epoch <= meta.epoch);
            store.rewrite_metrics(&history)?;
            if let Ok(old) = store.read_info() {
                info.created_unix = old.created_unix;
            }
            info.epochs_done = meta.epoch;
        } else {
            let (sources, made) = match samples.take() {
                Some(made) => made,
                None => make_samples(&session, &train_set, config.seed)?,
            };
            write_samples(&store.layout.samples(), &sources, &made)?;
        }
        store.write_info(&info)?;
        // Every rank starts from rank 0's weights, resumed or freshly initialised.
        start_ranks(&session, ranks, first_epoch)?;

        let ctx = Context {
            config,
            session: &session,
            train_set: &train_set,
            store: &store,
            monitor: monitor.as_ref(),
            monitor_note: monitor_note.as_deref(),
            data: &summary,
            ranks,
        };
        let result = run_epochs(&ctx, first_epoch, &mut info, &history, stop, on_event, &mut first_step_done);
        match result {
            Ok(summary) => {
                info.status = summary.status;
                info.updated_unix = now_unix();
                store.write_info(&info)?;
                Ok(summary)
            }
            Err(e) => {
                info.status = RunStatus::Failed;
                info.message = Some(e.to_string());
                info.updated_unix = now_unix();
                // The training error matters more than a failure to record it.
                let _ = store.write_info(&info);
                Err(e)
            }
        }
    })();
    if result.is_err() && created && !first_step_done {
        // Nothing was trained: leave no run behind for the viewers to list.
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

/// Refuses a run directory that cannot be used, before anything is loaded.
fn check_run_dir(dir: &std::path::Path, resume: bool) -> Result<(), TrainError> {
    let layout = crate::run::RunLayout::new(dir);
    if resume {
        if !layout.run_json().exists() {
            return Err(TrainError::Config(format!("{} holds no run to resume", dir.display())));
        }
    } else if layout.run_json().exists() {
        return Err(TrainError::RunExists { dir: dir.to_path_buf() });
    }
    Ok(())
}

fn run_info(
    config: &TrainConfig,
    plugin: &Plugin,
    session: &SessionConfig,
    train: &Dataset,
    test_images: usize,
    dir: &std::path::Path,
    data: &DataSummary,
) -> RunInfo {
    let now = now_unix();
    RunInfo {
        format_version: FORMAT_VERSION,
        name: dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
        status: RunStatus::Running,
        created_unix: now,
        updated_unix: now,
        task: TaskRef {
            name: plugin.name().to_string(),
            version: plugin.version().to_string(),
            abi_version: plugin.abi_version,
            path: plugin.path.display().to_string(),
        },
        backbone: session.backbone.clone(),
        dataset: DatasetInfo {
            spec: config.data.clone(),
            name: train.name.clone(),
            train_images: train.len(),
            test_images,
            channels: train.channels(),
            height: train.height(),
            width: train.width(),
            classes: data.classes.clone(),
            report: data.report.clone(),
        },
        seed: config.seed,
        normalize: session.normalize.clone(),
        epochs: config.epochs,
        epochs_done: 0,
        config: serde_json::to_value(config).unwrap_or(serde_json::Value::Null),
        message: None,
        world_size: 1,
        batch_per_rank: None,
    }
}

/// Running means of the step metrics since the last record.
#[derive(Default)]
struct Meter {
    sums: std::collections::BTreeMap<String, f64>,
    steps: u64,
    images: usize,
    started: Option<Instant>,
}

impl Meter {
    fn add(&mut self, metrics: &crate::task::StepMetrics, images: usize) {
        for (k, v) in metrics {
            *self.sums.entry(k.clone()).or_default() += v;
        }
        self.steps += 1;
        self.images += images;
    }

    fn record(&mut self, epoch: u64, step: u64, lr: f64, elapsed: f64, epoch_end: bool) -> MetricRecord {
        #[allow(clippy::cast_precision_loss)]
        let n = self.steps.max(1) as f64;
        let secs = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        #[allow(clippy::cast_precision_loss)]
        let ips = if secs > 0.0 { self.images as f64 / secs } else { 0.0 };
        let mut extra: std::collections::BTreeMap<String, f64> =
            self.sums.iter().map(|(k, v)| (k.clone(), v / n)).collect();
        let loss = extra.remove("loss").unwrap_or(f64::NAN);
        *self = Self { started: Some(Instant::now()), ..Self::default() };
        MetricRecord {
            epoch,
            step,
            loss,
            lr,
            images_per_sec: ips,
            elapsed_s: elapsed,
            knn_top1: None,
            epoch_end,
            extra,
        }
    }
}

/// What stays fixed while epochs run.
struct Context<'a> {
    config: &'a TrainConfig,
    session: &'a PluginSession,
    train_set: &'a Arc<Dataset>,
    store: &'a RunStore,
    monitor: Option<&'a Monitor>,
    /// Why the kNN monitor that was asked for is off.
    monitor_note: Option<&'a str>,
    data: &'a DataSummary,
    ranks: &'a Arc<Ranks>,
}

/// The shape of every epoch: the global batch, the steps and the learning rate of each.
struct Plan {
    batch_size: usize,
    batches_per_epoch: u64,
    total_steps: u64,
    schedule: LrSchedule,
}

impl Plan {
    fn new(config: &TrainConfig, images: usize, world: usize) -> Result<Self, TrainError> {
        let batch_size = config.batch_size.min(images);
        let batch_size = batch_size - batch_size % world;
        if batch_size == 0 {
            return Err(TrainError::Config(format!("{images} training images cannot be split over {world} ranks")));
        }
        let batches_per_epoch = (images / batch_size).max(1) as u64;
        let total_steps = batches_per_epoch * config.epochs;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let warmup_steps = ((config.warmup_epochs() * batches_per_epoch as f64).round() as u64).min(total_steps / 2);
        let schedule = LrSchedule {
            base: config.base_lr(),
            warmup_steps,
            total_steps,
            decay: config.lr_schedule.unwrap_or_default(),
        };
        Ok(Self { batch_size, batches_per_epoch, total_steps, schedule })
    }
}

/// The device a rank trains on: `cuda` means this rank's GPU on its machine.
fn rank_device(device: &str, ranks: &Ranks) -> String {
    if ranks.world() > 1 && device.trim().eq_ignore_ascii_case("cuda") {
        format!("cuda:{}", ranks.local_rank())
    } else {
        device.to_string()
    }
}

/// Gives every rank rank 0's state and first epoch; returns the first epoch. Rank 0 passes
/// its own, the others anything.
fn start_ranks(session: &PluginSession, ranks: &Ranks, first_epoch: u64) -> Result<u64, TrainError> {
    if !ranks.is_distributed() {
        return Ok(first_epoch);
    }
    let mut bytes = if ranks.is_root() {
        let mut b = first_epoch.to_le_bytes().to_vec();
        b.extend(session.save_state()?);
        b
    } else {
        Vec::new()
    };
    ranks.broadcast(&mut bytes);
    let (head, state) =
        bytes.split_at_checked(8).ok_or_else(|| TrainError::Config("rank 0 sent no state to start from".into()))?;
    if !ranks.is_root() {
        session.load_state(state)?;
    }
    let mut epoch = [0u8; 8];
    epoch.copy_from_slice(head);
    Ok(u64::from_le_bytes(epoch))
}

/// Checks that every rank reads the same number of images of the same shape: the shards
/// index one shared order, so ranks that read different data (another folder on another
/// machine) would train on images that no one chose.
fn agree_on_data(ranks: &Ranks, train_set: &Dataset) -> Result<(), TrainError> {
    let shape = [train_set.len(), train_set.channels(), train_set.height(), train_set.width()];
    let mine: Vec<u8> = shape.iter().flat_map(|&v| (v as u64).to_le_bytes()).collect();
    let all = ranks.all_gather_bytes(&mine);
    let describe = |bytes: &[u8]| {
        let v: Vec<u64> = bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
        format!("{} training images of {}×{}×{}", v[0], v[1], v[2], v[3])
    };
    let first = &all[..mine.len()];
    match all.chunks_exact(mine.len()).position(|theirs| theirs != first) {
        None => Ok(()),
        Some(rank) => Err(TrainError::Ranks(format!(
            "rank {rank} reads {} but rank 0 reads {}; every rank must see the same data",
            describe(&all[rank * mine.len()..(rank + 1) * mine.len()]),
            describe(first)
        ))),
    }
}

/// Whether epoch `epoch` ends with a checkpoint (the same answer on every rank).
fn checkpoint_due(config: &TrainConfig, epoch: u64, stopped: bool) -> bool {
    stopped || epoch.is_multiple_of(config.checkpoint_every) || epoch == config.epochs
}

/// The session's state, after checking that every rank holds exactly the same one.
fn agreed_state(session: &PluginSession, ranks: &Ranks, epoch: u64) -> Result<Vec<u8>, TrainError> {
    let state = session.save_state()?;
    if ranks.is_distributed() {
        let digest = Sha256::digest(&state);
        let all = ranks.all_gather_bytes(&digest);
        if let Some(rank) = all.chunks_exact(digest.len()).position(|d| d != digest.as_slice()) {
            return Err(TrainError::Ranks(format!(
                "after epoch {epoch} rank {rank} holds other weights than rank {}; the ranks fell out of step",
                ranks.rank()
            )));
        }
    }
    Ok(state)
}

/// What every rank's epoch loop works with.
struct RankLoop<'a> {
    config: &'a TrainConfig,
    plan: &'a Plan,
    session: &'a PluginSession,
    train_set: &'a Arc<Dataset>,
    ranks: &'a Ranks,
}

/// One finished step, as the epoch loop reports it.
struct StepDone {
    /// The step's index in its epoch.
    batch: u64,
    metrics: crate::task::StepMetrics,
    /// Images over all ranks.
    images: usize,
    lr: f64,
}

/// One epoch of this rank's steps: its share of each global batch, prepared ahead on
/// worker threads and stepped in order. `after_step` sees each step's batch index, metrics,
/// image count and rate. Returns the steps done and whether a stop request ended the epoch
/// early (agreed by all ranks).
fn run_epoch(
    rank: &RankLoop<'_>,
    epoch: u64,
    stop: &AtomicBool,
    after_step: &mut dyn FnMut(&StepDone) -> Result<(), TrainError>,
) -> Result<(u64, bool), TrainError> {
    let RankLoop { config, plan, session, train_set, ranks } = *rank;
    let order = epoch_order(train_set.len(), config.seed, epoch);
    #[allow(clippy::cast_possible_truncation)]
    let shard = shard_positions(plan.batches_per_epoch as usize, plan.batch_size, ranks.rank(), ranks.world());
    let jobs = Arc::new(shard.batches);
    let (data, sess, seed) = (Arc::clone(train_set), session.clone(), config.seed);
    let jobs_for_workers = Arc::clone(&jobs);
    let prefetch = Prefetch::new(jobs.len(), config.workers.max(1), PREFETCH_DEPTH, move |i: usize| {
        let positions = &jobs_for_workers[i];
        let indices: Vec<usize> = positions.iter().map(|&p| order[p]).collect();
        let seeds: Vec<u64> = positions.iter().map(|&p| image_seed(seed, epoch, p as u64)).collect();
        sess.prepare(&data.images.gather(&indices), &seeds)
    });
    let mut steps_done = 0;
    for (b, prepared) in prefetch.enumerate() {
        let b = b as u64;
        let step = (epoch - 1) * plan.batches_per_epoch + b;
        let lr = plan.schedule.at(step);
        let info = StepInfo { step, total_steps: plan.total_steps, epoch, epochs: config.epochs, lr };
        let (metrics, images) =
            prepared.and_then(|batch: PreparedBatch| session.train_step(&batch, info).map(|m| (m, batch.images)))?;
        after_step(&StepDone { batch: b, metrics, images: images * ranks.world(), lr })?;
        steps_done = b + 1;
        // A stop request ends the epoch here; it is then recorded and checkpointed like a
        // finished one, so --resume continues with the next epoch. Every rank stops at the
        // same step, wherever the request arrived.
        if ranks.any(stop.load(Ordering::Relaxed)) {
            return Ok((steps_done, true));
        }
    }
    Ok((steps_done, false))
}

/// The loop of a rank other than 0: the same steps and checks as rank 0's, nothing written.
fn follow(
    config: &TrainConfig,
    session: &PluginSession,
    train_set: &Arc<Dataset>,
    ranks: &Ranks,
    stop: &AtomicBool,
) -> Result<Summary, TrainError> {
    let first_epoch = start_ranks(session, ranks, 0)?;
    let plan = Plan::new(config, train_set.len(), ranks.world())?;
    let mut epochs_done = first_epoch.saturating_sub(1);
    let mut status = RunStatus::Completed;
    for epoch in first_epoch..=config.epochs {
        let rank = RankLoop { config, plan: &plan, session, train_set, ranks };
        let (_, stopped) = run_epoch(&rank, epoch, stop, &mut |_| Ok(()))?;
        if checkpoint_due(config, epoch, stopped) {
            agreed_state(session, ranks, epoch)?;
        }
        epochs_done = epoch;
        if stopped {
            status = RunStatus::Stopped;
            break;
        }
    }
    Ok(Summary { run_dir: config.out_dir(), epochs_done, last_loss: f64::NAN, images_per_sec: 0.0, status })
}

fn run_epochs(
    ctx: &Context<'_>,
    first_epoch: u64,
    info: &mut RunInfo,
    history: &[MetricRecord],
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
    first_step_done: &mut bool,
) -> Result<Summary, TrainError> {
    let Context { config, session, train_set, store, monitor, monitor_note, data, ranks } = *ctx;
    let plan = Plan::new(config, train_set.len(), ranks.world())?;
    let batches_per_epoch = plan.batches_per_epoch;
    let started = Instant::now();
    let elapsed_before = history.last().map_or(0.0, |r| r.elapsed_s);
    let mut last_epoch_record = history.iter().rev().find(|r| r.epoch_end).cloned();
    on_event(Event::Started {
        run_dir: store.layout.root().to_path_buf(),
        plugin: session.plugin().name().to_string(),
        first_epoch,
        epochs: config.epochs,
        batches_per_epoch,
        data: data.clone(),
    });
    if let Some(note) = monitor_note {
        on_event(Event::Note(note.to_string()));
    }
    let probe = train_set.images.take(COLLAPSE_IMAGES);
    let mut warned = false;

    let mut status = RunStatus::Completed;
    for epoch in first_epoch..=config.epochs {
        let mut epoch_meter = Meter { started: Some(Instant::now()), ..Meter::default() };
        let mut log_meter = Meter { started: Some(Instant::now()), ..Meter::default() };
        let comm_before = ranks.stats();
        let epoch_started = Instant::now();
        let mut after_step = |done: &StepDone| {
            let StepDone { batch: b, ref metrics, images, lr } = *done;
            let step = (epoch - 1) * batches_per_epoch + b;
            *first_step_done = true;
            epoch_meter.add(metrics, images);
            log_meter.add(metrics, images);
            on_event(Event::Step {
                epoch,
                batch: b + 1,
                batches: batches_per_epoch,
                loss: metrics.get("loss").copied().unwrap_or(f64::NAN),
                lr,
            });
            let elapsed = elapsed_before + started.elapsed().as_secs_f64();
            if config.log_every > 0 && (b + 1).is_multiple_of(config.log_every) && b + 1 < batches_per_epoch {
                store.append_metric(&log_meter.record(epoch, step + 1, lr, elapsed, false))?;
            }
            Ok(())
        };
        let (steps_done, stopped) =
            match run_epoch(&RankLoop { config, plan: &plan, session, train_set, ranks }, epoch, stop, &mut after_step)
            {
                Ok(done) => done,
                Err(TrainError::Call(e @ CallError::NonFinite { .. })) => {
                    let kept = match store.list_checkpoints().ok().and_then(|c| c.last().map(|m| m.epoch)) {
                        Some(done) => format!("the last good checkpoint, {}, is kept", checkpoint_stem(done)),
                        None => "no checkpoint had been written yet".to_string(),
                    };
                    return Err(TrainError::NonFinite { epoch, source: e, kept });
                }
                Err(e) => return Err(e),
            };
        let elapsed = elapsed_before + started.elapsed().as_secs_f64();
        let end_step = (epoch - 1) * batches_per_epoch + steps_done;
        let mut record =
            epoch_meter.record(epoch, end_step, plan.schedule.at(end_step.saturating_sub(1)), elapsed, true);
        if ranks.is_distributed() {
            let comm = ranks.stats();
            #[allow(clippy::cast_precision_loss)]
            let per_step = (comm.reduced_bytes - comm_before.reduced_bytes) as f64 / steps_done.max(1) as f64;
            let share = (comm.seconds - comm_before.seconds) / epoch_started.elapsed().as_secs_f64().max(1e-9);
            record.extra.insert("comm_share".into(), share);
            record.extra.insert("reduced_bytes_per_step".into(), per_step);
        }
        if let Some(m) = monitor.filter(|_| epoch.is_multiple_of(config.knn_every)) {
            record.knn_top1 = Some(m.measure(session)?);
        }
        let stats = collapse_stats(session, &probe)?;
        record.extra.insert("feature_std_ratio".into(), stats.std_ratio);
        record.extra.insert("effective_rank".into(), stats.effective_rank);
        store.append_metric(&record)?;
        on_event(Event::Epoch(record.clone()));
        if let Some(w) = stats.warning().filter(|_| !warned) {
            warned = true;
            on_event(Event::Warning(format!("epoch {epoch}: {w}")));
        }
        if checkpoint_due(config, epoch, stopped) {
            let weights = agreed_state(session, ranks, epoch)?;
            store.write_checkpoint(epoch, end_step, &weights, Some(record.clone()))?;
            // Again with the weights just saved: the samples show what the task's networks
            // make of them (MAE's reconstructions) at the newest checkpoint.
            let (sources, made) = make_samples(session, ctx.train_set, config.seed)?;
            write_samples(&store.layout.samples(), &sources, &made)?;
            on_event(Event::Checkpoint { epoch, path: store.layout.checkpoint_weights(epoch) });
        }
        info.epochs_done = epoch;
        info.updated_unix = now_unix();
        if stopped {
            info.message = Some(format!(
                "stopped on request after {steps_done} of {batches_per_epoch} batches of epoch {epoch}; --resume continues with epoch {}",
                epoch + 1
            ));
        }
        store.write_info(info)?;
        last_epoch_record = Some(record);
        if stopped {
            status = RunStatus::Stopped;
            break;
        }
    }
    let last = last_epoch_record.unwrap_or_default();
    Ok(Summary {
        run_dir: store.layout.root().to_path_buf(),
        epochs_done: info.epochs_done,
        last_loss: last.loss,
        images_per_sec: last.images_per_sec,
        status,
    })
}
