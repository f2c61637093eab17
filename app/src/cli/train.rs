//! `pretext train`: flags and a `--config` file merged into a `TrainConfig`, then the
//! trainer, with a progress bar on a terminal and plain lines otherwise.
//!
//! Precedence: flags over the config file over defaults. With `--resume`, the run's own
//! recorded configuration takes the place of the file, so only the flags given change it.
//!
//! Under `mpirun`/`srun` this process is one rank of a data-parallel run: rank 0 shows the
//! progress and the result; a rank that fails says why in one line and ends every rank
//! (MPI_Abort), so none waits forever for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::Args;
use pretext_core::dist::Ranks;
use pretext_core::host::CallError;
use pretext_core::model::BackboneKind;
use pretext_core::run::store::RunStore;
use pretext_core::steps::LrDecay;
use pretext_core::task::OptimizerKind;
use pretext_core::train::{TrainConfig, TrainError, train_ranked};

use super::progress::Progress;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Task plugin: a name from `pretext plugins` or a path to a plugin library.
    #[arg(long, value_name = "NAME|PATH")]
    task: Option<String>,
    /// Dataset: shapes (built in), fashion-mnist, mnist, cifar10, or a path: a folder of
    /// images (class folders give labels), a list file of image paths, IDX or CIFAR files.
    #[arg(long, value_name = "SPEC")]
    data: Option<String>,
    /// Train at N×N pixels (shorter side resized to N, then centre-cropped). Default: the
    /// data's own size when every image has one square size, else 64.
    #[arg(long, value_name = "N")]
    image_size: Option<usize>,
    /// Treat class folders and label columns as unlabeled images.
    #[arg(long)]
    no_labels: bool,
    /// Stop at the first image file that cannot be used instead of skipping it.
    #[arg(long)]
    strict_data: bool,
    /// Where the pixel cache of image files lives (default: $PRETEXT_CACHE, else
    /// $XDG_CACHE_HOME/pretext, else ~/.cache/pretext).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Decode image files into memory on every run; write no pixel cache.
    #[arg(long)]
    no_cache: bool,
    /// A labelled dataset for the kNN monitor (--knn-every) when the training data has no
    /// labels or no test split.
    #[arg(long, value_name = "SPEC")]
    knn_data: Option<String>,
    #[arg(long, value_parser = parse_backbone, value_name = "resnet18|convnet|vit-tiny|vit-small")]
    backbone: Option<BackboneKind>,
    /// Width of the backbone: base channels of a CNN (resnet18: 64, convnet: 16), embedding
    /// width of a ViT (vit-tiny: 192, vit-small: 384).
    #[arg(long, value_name = "N")]
    width: Option<usize>,
    /// Side of a ViT's square patches (default 4); the image size must be a multiple of it.
    #[arg(long, value_name = "N")]
    patch_size: Option<usize>,
    #[arg(long, value_name = "N")]
    epochs: Option<u64>,
    /// Images per step over all ranks (the global batch): in a data-parallel run each of N
    /// ranks trains on batch-size / N of them.
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Peak learning rate (after warmup).
    #[arg(long, value_name = "F")]
    lr: Option<f64>,
    #[arg(long, value_parser = parse_optimizer, value_name = "adamw|sgd|lars")]
    optimizer: Option<OptimizerKind>,
    /// After the warmup: decay to zero on a cosine (default), or hold the peak rate.
    #[arg(long, value_name = "cosine|constant")]
    lr_schedule: Option<LrDecay>,
    #[arg(long, value_name = "F")]
    weight_decay: Option<f64>,
    #[arg(long, value_name = "cpu|cuda|cuda:N")]
    device: Option<String>,
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Train on the first N images only.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Run directory (default: runs/<task>-<seed>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in --out from its newest complete checkpoint.
    #[arg(long)]
    resume: bool,
    /// A TOML file with any of these settings (snake_case keys) and a [task_config] table.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Write a checkpoint every N epochs.
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u64>,
    /// Threads preparing batches ahead of the training step.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Measure kNN accuracy on held-out test images every N epochs.
    #[arg(long, value_name = "N")]
    knn_every: Option<u64>,
    /// Under mpirun/srun: batch norm uses the statistics of the global batch
    /// (SyncBatchNorm) rather than each rank's share.
    #[arg(long)]
    sync_bn: bool,
}

fn parse_backbone(s: &str) -> Result<BackboneKind, String> {
    s.parse().map_err(|e: pretext_core::model::UnknownBackbone| e.to_string())
}

fn parse_optimizer(s: &str) -> Result<OptimizerKind, String> {
    s.parse()
}

fn read_config_file(path: &PathBuf) -> anyhow::Result<TrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not a valid config file: {}", path.display(), e.message()))
}

impl TrainArgs {
    /// Overrides the fields of `base` that were given as flags.
    fn apply(self, mut c: TrainConfig) -> TrainConfig {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(task, data, backbone, epochs, batch_size, optimizer, device, seed, checkpoint_every, workers, knn_every);
        if self.width.is_some() {
            c.width = self.width;
        }
        if self.patch_size.is_some() {
            c.patch_size = self.patch_size;
        }
        if self.lr.is_some() {
            c.lr = self.lr;
        }
        if self.lr_schedule.is_some() {
            c.lr_schedule = self.lr_schedule;
        }
        if self.weight_decay.is_some() {
            c.weight_decay = self.weight_decay;
        }
        if self.limit.is_some() {
            c.limit = self.limit;
        }
        if self.out.is_some() {
            c.out = self.out;
        }
        if self.image_size.is_some() {
            c.image_size = self.image_size;
        }
        if self.cache_dir.is_some() {
            c.cache_dir = self.cache_dir;
        }
        if self.knn_data.is_some() {
            c.knn_data = self.knn_data;
        }
        c.no_labels |= self.no_labels;
        c.strict_data |= self.strict_data;
        c.no_cache |= self.no_cache;
        c.sync_batch_norm |= self.sync_bn;
        c
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let ranks = Arc::new(Ranks::from_env()?);
    if ranks.is_distributed() {
        report_when_ended(&ranks)?;
    }
    let result = run_as(args, &ranks);
    if let Err(e) = &result
        && ranks.is_distributed()
    {
        // Every rank meets a disagreement or a non-finite loss at the same step: rank 0
        // reports it, and the others stay quiet until it has. Any other failure is this
        // rank's own, and it says which rank it is.
        let shared = matches!(
            e.downcast_ref::<TrainError>(),
            Some(TrainError::Ranks(_) | TrainError::NonFinite { .. } | TrainError::Call(CallError::NonFinite { .. }))
        );
        if ranks.is_root() {
            eprintln!("error: {}", super::sentence(e));
        } else if !shared {
            eprintln!("error: rank {} of {}: {}", ranks.rank(), ranks.world(), super::sentence(e));
        }
        // This rank has said what it has to say: the launcher's stop signal that the abort
        // below brings adds nothing.
        QUIET.store(true, Ordering::SeqCst);
        if shared {
            // Rank 0 reports first: the others abort only once it has.
            ranks.barrier();
        }
        ranks.abort(1);
    }
    result
}

/// Set once this rank has reported its failure (or left it to rank 0).
static QUIET: AtomicBool = AtomicBool::new(false);

/// When the launcher ends this rank (mpirun sends SIGTERM to every rank once one has died
/// or aborted), say so in one line instead of vanishing; the checkpoints are whole, as every
/// write is atomic.
#[cfg(feature = "mpi")]
fn report_when_ended(ranks: &Ranks) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])
        .context("cannot watch for the launcher's stop signal")?;
    let (rank, world) = (ranks.rank(), ranks.world());
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if QUIET.load(Ordering::SeqCst) {
                std::process::exit(1);
            }
            eprintln!(
                "error: rank {rank} of {world}: the launcher stopped this rank because another rank ended or the job was interrupted; --resume continues from the newest checkpoint"
            );
            std::process::exit(1);
        }
    });
    Ok(())
}

#[cfg(not(feature = "mpi"))]
#[allow(clippy::unnecessary_wraps)]
fn report_when_ended(_: &Ranks) -> anyhow::Result<()> {
    Ok(())
}

fn run_as(args: TrainArgs, ranks: &Arc<Ranks>) -> anyhow::Result<()> {
    let resume = args.resume;
    let base = if resume {
        let Some(out) = &args.out else { bail!("--resume needs --out DIR naming the run to continue") };
        let info = RunStore::open(out).read_info().with_context(|| format!("cannot resume {}", out.display()))?;
        let mut stored: TrainConfig = serde_json::from_value(info.config)
            .with_context(|| format!("{} records no usable configuration", out.display()))?;
        // The plugin is found again by name, or by its recorded path if it was given as one.
        stored.out = Some(out.clone());
        stored
    } else if let Some(path) = &args.config {
        read_config_file(path)?
    } else {
        TrainConfig::default()
    };
    let config = args.apply(base);
    config.validate().map_err(|e| anyhow::anyhow!(e))?;

    let stop = AtomicBool::new(false);
    if !ranks.is_root() {
        train_ranked(&config, resume, &stop, &mut |_| {}, ranks)?;
        return Ok(());
    }
    let mut progress = Progress::new();
    let summary = train_ranked(&config, resume, &stop, &mut |event| progress.handle(&event), ranks);
    progress.finish();
    let summary = summary?;
    let ranks_note = if ranks.world() > 1 { format!(" on {} ranks", ranks.world()) } else { String::new() };
    println!(
        "{} {} epochs of {} on {}{ranks_note}: last loss {:.4}, {:.0} images/s, run in {}",
        if summary.status == pretext_core::run::RunStatus::Completed { "trained" } else { "stopped after" },
        summary.epochs_done,
        config.task,
        config.data,
        summary.last_loss,
        summary.images_per_sec,
        summary.run_dir.display()
    );
    Ok(())
}
