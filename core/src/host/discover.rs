//! Where plugins are looked for, and turning `--task NAME|PATH` into a loaded plugin.
//!
//! Order: an explicit path, then each directory of `PRETEXT_PLUGIN_PATH`, then the
//! directory of the running executable (where cargo puts `libpretext_*.so` beside
//! `pretext`). The first plugin found with a name wins; later ones with the same name are
//! listed as shadowed so `pretext plugins` can say why they are not used.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{LoadError, Plugin, load};

/// A library that was found but not used, and why.
#[derive(Debug)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything found in the plugin directories.
#[derive(Debug, Default)]
pub struct Discovery {
    pub plugins: Vec<Plugin>,
    pub refused: Vec<Refusal>,
    pub searched: Vec<PathBuf>,
}

const PREFIX: &str = "libpretext_";

fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let ext_ok = [".so", ".dylib", ".dll"].iter().any(|ext| name.ends_with(ext));
    ext_ok && (name.starts_with(PREFIX) || name.starts_with("pretext_"))
}

/// The plugin directories, in search order.
pub fn plugin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PRETEXT_PLUGIN_PATH")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        dirs.push(dir);
    }
    dirs
}

/// Loads every plugin library in `dirs`.
pub fn discover(dirs: &[PathBuf]) -> Discovery {
    let mut found = Discovery { searched: dirs.to_vec(), ..Discovery::default() };
    let mut names = HashSet::new();
    let mut seen_files = HashSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> =
            entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_plugin_file(p)).collect();
        files.sort();
        for path in files {
            let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
            if !seen_files.insert(canonical) {
                continue;
            }
            match load(&path) {
                Ok(plugin) if names.insert(plugin.name().to_string()) => found.plugins.push(plugin),
                Ok(plugin) => found
                    .refused
                    .push(Refusal { reason: format!("shadowed by an earlier plugin named `{}`", plugin.name()), path }),
                Err(e) => found.refused.push(Refusal { path, reason: e.to_string() }),
            }
        }
    }
    found
}

/// Resolves `--task`: a path to a library (anything with a path separator or an existing
/// file) is loaded directly; otherwise the name is looked up in the plugin directories.
pub fn resolve(task: &str) -> Result<Plugin, LoadError> {
    let as_path = Path::new(task);
    if task.contains(std::path::MAIN_SEPARATOR) || task.contains('/') || as_path.is_file() {
        if !as_path.exists() {
            return Err(LoadError::NotALibrary { path: as_path.to_path_buf(), reason: "no such file".into() });
        }
        return load(as_path);
    }
    let dirs = plugin_dirs();
    let found = discover(&dirs);
    if let Some(p) = found.plugins.into_iter().find(|p| p.name() == task) {
        return Ok(p);
    }
    // A library named for the task that failed to load explains more than "not found".
    let wanted = format!("{PREFIX}{task}.");
    if let Some(r) = found
        .refused
        .into_iter()
        .find(|r| r.path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&wanted)))
    {
        return Err(LoadError::Refused { name: task.to_string(), path: r.path, reason: r.reason });
    }
    let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(LoadError::UnknownTask { name: task.to_string(), searched })
}
