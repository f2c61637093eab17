//! `pretext cache`: what the pixel cache holds (one line per decoded folder or list file:
//! images, size, disk space) and `--clear` to free it. The cache is rebuilt on the next run
//! that needs it, so clearing never loses anything but time.

use std::path::PathBuf;

use clap::Args;
use pretext_core::data::cache;

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The cache folder (default: $PRETEXT_CACHE, else $XDG_CACHE_HOME/pretext, else
    /// ~/.cache/pretext).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Remove every cached dataset.
    #[arg(long)]
    clear: bool,
}

fn datasets(n: usize) -> String {
    format!("{n} cached dataset{}", if n == 1 { "" } else { "s" })
}

fn mib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = bytes as f64 / f64::from(1 << 20);
    format!("{m:.1} MiB")
}

pub fn run(args: &CacheArgs) -> anyhow::Result<()> {
    let root = args.cache_dir.clone().unwrap_or_else(cache::default_root);
    if args.clear {
        let (count, bytes) = cache::clear(&root)?;
        println!("removed {} ({}) from {}", datasets(count), mib(bytes), root.display());
        return Ok(());
    }
    let entries = cache::entries(&root);
    println!("pixel cache: {}", root.display());
    for e in &entries {
        let colour = if e.channels == 1 { "grey" } else { "RGB" };
        println!("  {}  {} images, {}×{} {colour}, {}", e.source, e.images, e.size, e.size, mib(e.bytes));
    }
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    println!("{}, {} (pretext cache --clear removes them)", datasets(entries.len()), mib(total));
    Ok(())
}
