//! `pretext embed`: features of labelled test images through a checkpoint, projected to 2-D
//! (PCA and t-SNE), with each point's neighbours and a thumbnail atlas — and for a ViT the
//! last block's attention maps — written under `embeddings/` for the viewers.

use anyhow::Context;
use clap::Args;
use pretext_core::eval::{EmbedOptions, Evaluation, write_embedding};

use super::weights::WeightsArgs;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    weights: WeightsArgs,
    /// Labelled dataset (default: the one the run trained on); its test split is embedded.
    #[arg(long, value_name = "SPEC")]
    data: Option<String>,
    /// Number of test images to embed.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    limit: usize,
    /// PCA only (t-SNE is O(N²) and takes seconds to a minute at a few thousand points).
    #[arg(long)]
    no_tsne: bool,
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    if args.limit == 0 {
        anyhow::bail!("--limit must be at least 1");
    }
    let run = args.weights.run_dir()?;
    let eval =
        Evaluation::open(run, &args.weights.weights()).with_context(|| format!("cannot embed {}", run.display()))?;
    let options = EmbedOptions { limit: args.limit, tsne: !args.no_tsne, ..EmbedOptions::default() };
    let (path, file) = write_embedding(&eval, args.data.as_deref(), &options)?;
    let knn = file.knn_top1.map(|k| format!(", kNN top-1 {:.2}%", k * 100.0)).unwrap_or_default();
    let attention = file
        .attention
        .as_ref()
        .map(|a| format!(", with the last block's attention maps ({} heads)", a.heads))
        .unwrap_or_default();
    println!(
        "embedded {} images of {} (epoch {}{knn}{attention}) into {}",
        file.pca.len(),
        file.data,
        file.epoch,
        path.display()
    );
    Ok(())
}
