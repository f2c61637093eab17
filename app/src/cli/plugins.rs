//! `pretext plugins [--json]`: what the host found in its plugin directories.

use clap::Args;
use pretext_core::host::{discover, plugin_dirs};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// One row of the listing, also the JSON shape.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    version: String,
    abi_version: Option<u32>,
    core_version: String,
    cuda: bool,
    path: String,
    status: &'static str,
    description: String,
    /// Why the plugin was refused, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_config: Option<serde_json::Value>,
}

pub fn run(args: &PluginsArgs) -> anyhow::Result<()> {
    let dirs = plugin_dirs();
    let found = discover(&dirs);
    let mut rows: Vec<Row> = found
        .plugins
        .iter()
        .map(|p| Row {
            name: p.name().to_string(),
            version: p.version().to_string(),
            abi_version: Some(p.abi_version),
            core_version: p.description.core_version.clone(),
            cuda: p.cuda(),
            path: p.path.display().to_string(),
            status: "ok",
            description: p.description.info.description.clone(),
            reason: None,
            default_config: Some(p.description.default_config.clone()),
        })
        .collect();
    rows.extend(found.refused.iter().map(|r| {
        Row {
            name: r
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().trim_start_matches("libpretext_").to_string())
                .unwrap_or_default(),
            version: String::new(),
            abi_version: None,
            core_version: String::new(),
            cuda: false,
            path: r.path.display().to_string(),
            status: "refused",
            description: String::new(),
            reason: Some(r.reason.clone()),
            default_config: None,
        }
    }));

    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        println!("no plugins found (searched: {}); set PRETEXT_PLUGIN_PATH or pass --task PATH", searched.join(", "));
        return Ok(());
    }
    println!("{:<12} {:<9} {:<4} {:<5} {:<8} PATH", "NAME", "VERSION", "ABI", "CUDA", "STATUS");
    for r in &rows {
        let abi = r.abi_version.map_or_else(|| "-".to_string(), |v| v.to_string());
        let cuda = if r.cuda { "yes" } else { "no" };
        println!("{:<12} {:<9} {:<4} {:<5} {:<8} {}", r.name, r.version, abi, cuda, r.status, r.path);
        if let Some(reason) = &r.reason {
            println!("{:<12} reason: {reason}", "");
        }
    }
    Ok(())
}
