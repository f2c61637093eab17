//! `pretext gui [RUNS_DIR]`: opens the desktop app on a runs directory.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct GuiArgs {
    /// The runs directory to browse and train into.
    #[arg(value_name = "RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

pub fn run(args: GuiArgs) -> anyhow::Result<()> {
    if args.runs_dir.exists() && !args.runs_dir.is_dir() {
        anyhow::bail!("{} is not a directory", args.runs_dir.display());
    }
    pretext::ui::run_native(args.runs_dir).map_err(anyhow::Error::msg)
}
