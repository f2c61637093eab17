//! The `pretext` command line: `plugins` and `train` (see `pretext --help`).
//!
//! Errors reach the user as one sentence on stderr and a non-zero exit code; nothing here
//! panics on input.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
