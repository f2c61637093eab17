//! The `pretext` command line: `plugins`, `train`, `eval`, `embed`, `export`, `gui`, `serve`
//! (see `pretext --help`).
//!
//! Errors reach the user as one sentence on stderr and a non-zero exit code; nothing here
//! panics on input.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;
    // First, while the process has one thread: it may set environment variables.
    pretext_core::host::tune_for_training();
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::sentence(&e));
            ExitCode::FAILURE
        }
    }
}

/// The command line is native-only; the browser viewer uses the library (see `web/`).
#[cfg(target_arch = "wasm32")]
fn main() {}
