//! Command-line parsing and dispatch. Each subcommand lives in its own file.

mod cache;
mod embed;
mod eval;
mod export;
mod gui;
mod logging;
mod plugins;
mod progress;
mod serve;
mod train;
mod weights;

use clap::{Parser, Subcommand};

pub use logging::init_logging;

#[derive(Debug, Parser)]
#[command(name = "pretext", version, about = "Self-supervised pretext tasks as plugins, trained with candle")]
pub struct Cli {
    /// Print plugin log messages and more detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the task plugins found, with their versions and why any was refused.
    Plugins(plugins::PluginsArgs),
    /// Train a pretext task and write a run directory.
    Train(Box<train::TrainArgs>),
    /// Measure a run's features: kNN, linear probe, or fine-tuning on labelled data.
    Eval(Box<eval::EvalArgs>),
    /// Write a run's 2-D feature embedding, neighbours and thumbnails for the viewers.
    Embed(embed::EmbedArgs),
    /// Write a run's backbone as a PyTorch state dict (torchvision resnet18 names; timm ViT names).
    Export(export::ExportArgs),
    /// Open the desktop app: browse runs, curves, embeddings and filters, and train.
    Gui(gui::GuiArgs),
    /// Serve the browser viewer and the runs, read-only, over HTTP.
    Serve(serve::ServeArgs),
    /// List the pixel cache of decoded image folders, or clear it.
    Cache(cache::CacheArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plugins(args) => plugins::run(&args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(&args),
        Command::Embed(args) => embed::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Gui(args) => gui::run(args),
        Command::Serve(args) => serve::run(&args),
        Command::Cache(args) => cache::run(&args),
    }
}

/// An error chain as one sentence: the context, then each cause after a colon, without
/// repeating a cause that the outer message already quotes.
pub fn sentence(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        // Only the first line: candle appends a backtrace when RUST_BACKTRACE is set.
        let part = cause.to_string().lines().next().unwrap_or_default().trim_end().to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
