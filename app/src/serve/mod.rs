//! `pretext serve`'s HTTP server: the built browser viewer and, read-only, the files of a
//! runs directory that the viewer reads (see [`crate::api`] for the routes). Only GET and
//! HEAD; nothing outside the runs directory or the viewer's folder is reachable, whatever
//! the encoding or the symlinks. It never writes to either folder.

mod files;

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tiny_http::{Header, Method, Request, Response, StatusCode};

use crate::api::{self, BadPath, Listing, Route};
pub use files::{VIEWER_FILES, is_viewer_dir, viewer_candidates};

/// Longer request paths are refused with 414: no file of a run has such a name.
const MAX_URL: usize = 4096;

/// Requests served at once; a slow client never blocks the others.
const THREADS: usize = 4;

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
    #[error("the HTTP server did not start: {0}")]
    Server(String),
}

pub struct Server {
    http: tiny_http::Server,
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
        let http = tiny_http::Server::from_listener(listener, None).map_err(|e| ServeError::Server(e.to_string()))?;
        Ok(Self { http, runs: runs_real, viewer })
    }

    /// The address actually bound (the port, when 0 was asked for).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.http.server_addr().to_ip()
    }

    /// Answers requests until the process ends.
    pub fn run(self) {
        let server = Arc::new(self);
        let workers: Vec<_> = (1..THREADS)
            .filter_map(|i| {
                let server = Arc::clone(&server);
                std::thread::Builder::new()
                    .name(format!("pretext-serve-{i}"))
                    .spawn(move || server.serve_forever())
                    .ok()
            })
            .collect();
        server.serve_forever();
        for worker in workers {
            let _ = worker.join();
        }
    }

    fn serve_forever(&self) {
        loop {
            match self.http.recv() {
                Ok(request) => self.answer(request),
                Err(e) => log::warn!("a request could not be read: {e}"),
            }
        }
    }

    fn answer(&self, request: Request) {
        let method = request.method().clone();
        let url = request.url().to_string();
        let response = self.respond(&method, &url);
        let status = response.status_code().0;
        log::info!("{method} {} → {status}", shorten(&url));
        if let Err(e) = request.respond(response) {
            log::debug!("the client went away before the answer to {} was sent: {e}", shorten(&url));
        }
    }

    /// The whole answer to one request, decided from its method and URL alone.
    fn respond(&self, method: &Method, url: &str) -> Response<Cursor<Vec<u8>>> {
        if !matches!(method, Method::Get | Method::Head) {
            return with_headers(error(405, "only GET and HEAD are served"), &[("Allow", "GET, HEAD")]);
        }
        if url.len() > MAX_URL {
            return error(414, "the request path is too long");
        }
        let path = url.split_once('?').map_or(url, |(path, _)| path);
        match api::route(path) {
            Ok(Route::Viewer(name)) => self.file(&self.viewer, &[&name]),
            Ok(Route::Runs) => self.listing(&[], true),
            Ok(Route::List { run, dir }) => match files::confined(&self.runs, &[&run]) {
                Some(_) => self.listing(&[&run, &dir], false),
                None => error(404, "no such run"),
            },
            Ok(Route::File { run, path }) => {
                let mut parts: Vec<&str> = vec![&run];
                parts.extend(path.iter().map(String::as_str));
                self.file(&self.runs, &parts)
            }
            Err(BadPath::Unsafe) => error(400, "a path segment is not allowed"),
            Err(BadPath::Unknown) => error(404, "not found"),
        }
    }

    fn file(&self, root: &Path, parts: &[&str]) -> Response<Cursor<Vec<u8>>> {
        let Some(path) = files::confined(root, parts).filter(|p| p.is_file()) else {
            return error(404, "not found");
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let name = parts.last().copied().unwrap_or_default();
                // no-cache: the viewer re-reads files of runs that are still training.
                let headers = [
                    ("Content-Type", files::content_type(name)),
                    ("Cache-Control", "no-cache"),
                    ("X-Content-Type-Options", "nosniff"),
                ];
                with_headers(Response::from_data(bytes), &headers)
            }
            Err(e) => {
                log::warn!("cannot read {}: {e}", path.display());
                error(500, "the file could not be read")
            }
        }
    }

    /// The folders of the runs directory (`dirs`), or the files of one run folder.
    fn listing(&self, parts: &[&str], dirs: bool) -> Response<Cursor<Vec<u8>>> {
        let mut dir = self.runs.clone();
        dir.extend(parts);
        // A folder that is a symlink out of the runs directory lists as empty.
        let inside = files::confined(&self.runs, parts).is_none_or(|real| real == dir);
        let names = if inside { files::list(&dir, dirs) } else { Ok(Vec::new()) };
        match names.map(|names| serde_json::to_vec(&Listing { names })) {
            Ok(Ok(body)) => with_headers(
                Response::from_data(body),
                &[("Content-Type", "application/json"), ("Cache-Control", "no-cache")],
            ),
            Ok(Err(e)) => {
                log::warn!("cannot encode a listing: {e}");
                error(500, "the listing could not be encoded")
            }
            Err(e) => {
                log::warn!("cannot list {}: {e}", dir.display());
                error(500, "the folder could not be listed")
            }
        }
    }
}

/// `response` with these headers; the names and values are ASCII constants of this file.
fn with_headers(mut response: Response<Cursor<Vec<u8>>>, headers: &[(&str, &str)]) -> Response<Cursor<Vec<u8>>> {
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    response
}

fn error(code: u16, text: &str) -> Response<Cursor<Vec<u8>>> {
    let response = Response::from_string(format!("{text}\n")).with_status_code(StatusCode(code));
    with_headers(response, &[("Content-Type", "text/plain; charset=utf-8")])
}

/// A URL cut for the log, so a hostile request cannot flood it.
fn shorten(url: &str) -> String {
    if url.len() <= 120 {
        return url.to_string();
    }
    let cut = (0..=120).rev().find(|&i| url.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes)", &url[..cut], url.len())
}
