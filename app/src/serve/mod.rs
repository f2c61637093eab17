//! `pretext serve`'s HTTP server: the built browser viewer and, read-only, the files of a
//! runs directory that the viewer reads (see [`crate::api`] for the routes). Only GET and
//! HEAD; nothing outside the runs directory or the viewer's folder is reachable, whatever
//! the encoding or the symlinks. It never writes to either folder.

mod files;
mod http;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::api::{self, BadPath, Listing, Route};
pub use files::{VIEWER_FILES, is_viewer_dir, viewer_candidates};
use http::Reply;

/// Longer request paths are refused with 414: no file of a run has such a name.
const MAX_URL: usize = 4096;

/// Connections served at once (one thread each); more are closed at once.
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0} is not a runs directory ({1})")]
    RunsDir(PathBuf, std::io::Error),
    #[error("{0} does not hold a built viewer (it needs {files}); run web/build.sh first", files = VIEWER_FILES.join(", "))]
    NotBuilt(PathBuf),
    #[error("cannot listen on {0}: the port is already in use; pick another with --addr")]
    PortTaken(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

pub struct Server {
    listener: TcpListener,
    runs: PathBuf,
    viewer: PathBuf,
}

impl Server {
    /// Binds `addr` (`127.0.0.1:0` picks a free port) for `runs` and the viewer in `viewer`.
    pub fn bind(runs: &Path, viewer: &Path, addr: &str) -> Result<Self, ServeError> {
        let runs_real = runs.canonicalize().map_err(|e| ServeError::RunsDir(runs.to_path_buf(), e))?;
        if !runs_real.is_dir() {
            let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
            return Err(ServeError::RunsDir(runs.to_path_buf(), e));
        }
        if !is_viewer_dir(viewer) {
            return Err(ServeError::NotBuilt(viewer.to_path_buf()));
        }
        let viewer = viewer.canonicalize().map_err(|_| ServeError::NotBuilt(viewer.to_path_buf()))?;
        let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => ServeError::PortTaken(addr.to_string()),
            _ => ServeError::Bind(addr.to_string(), e),
        })?;
        Ok(Self { listener, runs: runs_real, viewer })
    }

    /// The address actually bound (the port, when 0 was asked for).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Answers connections, each on its own thread, until the process ends.
    pub fn run(self) {
        let server = Arc::new(self);
        let open = Arc::new(AtomicUsize::new(0));
        for stream in server.listener.incoming() {
            match stream {
                Ok(stream) => Self::spawn_connection(&server, &open, stream),
                Err(e) => {
                    // Out of file descriptors, say: wait for connections to close.
                    log::warn!("a connection could not be accepted: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }

    fn spawn_connection(server: &Arc<Self>, open: &Arc<AtomicUsize>, stream: TcpStream) {
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            // Closed unanswered: reading its request here would stall the accept loop.
            log::warn!("{MAX_CONNECTIONS} connections are open; a new one is closed");
            drop(stream);
            return;
        }
        let (server, done) = (Arc::clone(server), Arc::clone(open));
        let spawned = std::thread::Builder::new().name("pretext-serve".to_string()).spawn(move || {
            http::serve_connection(stream, &|method, url| server.respond(method, url));
            done.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = spawned {
            open.fetch_sub(1, Ordering::AcqRel);
            log::warn!("no thread for a new connection: {e}");
        }
    }

    /// The whole answer to one request, decided from its method and URL alone.
    fn respond(&self, method: &str, url: &str) -> Reply {
        if !matches!(method, "GET" | "HEAD") {
            return Reply::error(405, "only GET and HEAD are served").with("Allow", "GET, HEAD");
        }
        if url.len() > MAX_URL {
            return Reply::error(414, "the request path is too long");
        }
        let path = url.split_once('?').map_or(url, |(path, _)| path);
        match api::route(path) {
            Ok(Route::Viewer(name)) => self.file(&self.viewer, &[&name]),
            Ok(Route::Runs) => self.listing(&[], true),
            Ok(Route::List { run, dir }) => match files::confined(&self.runs, &[&run]) {
                Some(_) => self.listing(&[&run, &dir], false),
                None => Reply::error(404, "no such run"),
            },
            Ok(Route::File { run, path }) => {
                let mut parts: Vec<&str> = vec![&run];
                parts.extend(path.iter().map(String::as_str));
                self.file(&self.runs, &parts)
            }
            Err(BadPath::Unsafe) => Reply::error(400, "a path segment is not allowed"),
            Err(BadPath::Unknown) => Reply::error(404, "not found"),
        }
    }

    fn file(&self, root: &Path, parts: &[&str]) -> Reply {
        let Some(path) = files::confined(root, parts).filter(|p| p.is_file()) else {
            return Reply::error(404, "not found");
        };
        match std::fs::read(&path) {
            // no-cache: the viewer re-reads files of runs that are still training.
            Ok(bytes) => Reply::new(200, bytes)
                .with("Content-Type", files::content_type(parts.last().copied().unwrap_or_default()))
                .with("Cache-Control", "no-cache")
                .with("X-Content-Type-Options", "nosniff"),
            Err(e) => {
                log::warn!("cannot read {}: {e}", path.display());
                Reply::error(500, "the file could not be read")
            }
        }
    }

    /// The folders of the runs directory (`dirs`), or the files of one run folder.
    fn listing(&self, parts: &[&str], dirs: bool) -> Reply {
        let mut dir = self.runs.clone();
        dir.extend(parts);
        // A folder that is a symlink out of the runs directory lists as empty.
        let inside = files::confined(&self.runs, parts).is_none_or(|real| real == dir);
        let names = if inside { files::list(&dir, dirs) } else { Ok(Vec::new()) };
        match names.map(|names| serde_json::to_vec(&Listing { names })) {
            Ok(Ok(body)) => {
                Reply::new(200, body).with("Content-Type", "application/json").with("Cache-Control", "no-cache")
            }
            Ok(Err(e)) => {
                log::warn!("cannot encode a listing: {e}");
                Reply::error(500, "the listing could not be encoded")
            }
            Err(e) => {
                log::warn!("cannot list {}: {e}", dir.display());
                Reply::error(500, "the folder could not be listed")
            }
        }
    }
}
