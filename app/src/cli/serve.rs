//! `pretext serve [RUNS_DIR] [--addr 127.0.0.1:8080]`: serves the browser viewer and the runs,
//! read-only, the way `tensorboard --logdir` does.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pretext::serve::{Server, is_viewer_dir, viewer_candidates};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The runs directory to serve.
    #[arg(value_name = "RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Address to listen on; loopback by default. Use 0.0.0.0:PORT to reach it from other
    /// machines (anyone who can reach the port can read the runs), or port 0 for a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// The built viewer (what web/build.sh writes); found next to the binary or in the
    /// source tree when not given.
    #[arg(long, value_name = "DIR")]
    dist: Option<PathBuf>,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let dist = match &args.dist {
        Some(dir) => dir.clone(),
        None => viewer_candidates().into_iter().find(|d| is_viewer_dir(d)).context(
            "the browser viewer is not built (no web/dist next to the binary or in the working directory): \
             run web/build.sh, or pass --dist DIR",
        )?,
    };
    let server = Server::bind(&args.runs_dir, &dist, &args.addr)?;
    let addr = server.addr().map_or_else(|| args.addr.clone(), |a| a.to_string());
    // Tests and scripts read this line to learn the port.
    println!("serving {} at http://{addr}/ (Ctrl-C stops)", args.runs_dir.display());
    std::io::stdout().flush().context("cannot write to stdout")?;
    server.run();
    Ok(())
}
