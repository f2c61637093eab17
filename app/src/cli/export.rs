//! `pretext export`: a run's backbone as a safetensors file for PyTorch users, with
//! torchvision `resnet18` names, or timm `VisionTransformer` names for a ViT
//! (`scripts/timm_check.py` loads one into timm).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pretext_core::eval::Evaluation;
use pretext_core::export::torchvision_state_dict;
use pretext_core::run::store::write_atomic;

use super::weights::WeightsArgs;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    weights: WeightsArgs,
    /// Where to write the backbone.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    if args.weights.random_init {
        anyhow::bail!("export writes trained weights; --random-init has none");
    }
    let run = args.weights.run_dir()?;
    let eval =
        Evaluation::open(run, &args.weights.weights()).with_context(|| format!("cannot export {}", run.display()))?;
    let Some(meta) = &eval.checkpoint else { anyhow::bail!("no checkpoint was chosen") };
    let bytes = eval.store.read_checkpoint_weights(meta)?;
    let state = torchvision_state_dict(&bytes, meta.step).map_err(|e| anyhow::anyhow!("{}: {e}", meta.file))?;
    write_atomic(&args.out, &state)?;
    println!(
        "wrote the {} backbone of {} (epoch {}) to {}",
        eval.info.backbone.kind,
        run.display(),
        meta.epoch,
        args.out.display()
    );
    Ok(())
}
