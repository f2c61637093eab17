//! The files `pretext serve` may hand out: paths confined to a root folder (symlinks
//! included), folder listings, content types, and where the built viewer lives. It never
//! writes anything.

use std::path::{Path, PathBuf};

use crate::ui::source::fs::list_names;

/// The files `web/build.sh` writes; the server refuses to start without them.
pub const VIEWER_FILES: &[&str] = &["index.html", "viewer.js", "viewer_bg.wasm"];

/// `root/parts…` if, after following every symlink, it is still inside `root` (which must
/// itself be canonical). `None` when it does not exist or leaves the root.
pub fn confined(root: &Path, parts: &[&str]) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    path.extend(parts);
    let real = path.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

/// Sorted names of the folders (`want_dirs`) or plain files of `dir`, leaving out hidden
/// entries and symlinks. A missing folder lists as empty.
pub fn list(dir: &Path, want_dirs: bool) -> std::io::Result<Vec<String>> {
    let keep = if want_dirs { std::fs::FileType::is_dir } else { std::fs::FileType::is_file };
    match list_names(dir, keep) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        listed => listed,
    }
}

/// The `Content-Type` for a file name; browsers insist on `application/wasm` for streaming
/// compilation.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("jsonl" | "txt") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("css") => "text/css; charset=utf-8",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Whether `dir` holds a built viewer.
pub fn is_viewer_dir(dir: &Path) -> bool {
    VIEWER_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Where to look for the built viewer when `--dist` is not given: `$PRETEXT_WEB_DIST`,
/// `web/` beside the binary (the GPU bundle's layout), then `web/dist` in the working
/// directory and in each folder above the binary (a source checkout's `target/release/`).
pub fn viewer_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("PRETEXT_WEB_DIST") {
        out.push(PathBuf::from(dir));
    }
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(exe_dir) = &exe_dir {
        out.push(exe_dir.join("web"));
    }
    out.push(PathBuf::from("web/dist"));
    if let Some(exe_dir) = exe_dir {
        out.extend(exe_dir.ancestors().skip(1).map(|d| d.join("web/dist")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_the_root_are_not_confined() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("run"))?;
        std::fs::write(root.join("run/run.json"), "{}")?;
        std::fs::write(tmp.path().join("secret"), "x")?;
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("run/link"))?;
        std::os::unix::fs::symlink(root.join("run/run.json"), root.join("run/inside"))?;
        let root = root.canonicalize()?;
        assert!(confined(&root, &["run", "run.json"]).is_some());
        assert!(confined(&root, &["run", "inside"]).is_some());
        assert!(confined(&root, &["run", "link"]).is_none());
        assert!(confined(&root, &["run", "missing"]).is_none());
        assert_eq!(list(&root.join("run"), false)?, vec!["run.json".to_string()]);
        assert!(list(&root.join("absent"), false)?.is_empty());
        Ok(())
    }
}
