//! The HTTP interface between `pretext serve` and the browser viewer: the URL of each thing
//! the viewer reads, and the JSON listings. Both sides build and match URLs with the
//! functions here, so they cannot drift apart. Nothing here does I/O.
//!
//! - `GET api/runs` → [`Listing`] of the run folders;
//! - `GET api/list/RUN/DIR` → [`Listing`] of the files in one of a run's folders;
//! - `GET runs/RUN/PATH` → the bytes of one file of a run.
//!
//! Each segment is percent-encoded, so run names with spaces or `#` travel intact.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// What a segment keeps unencoded: the characters RFC 3986 calls unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The folders of a run that the viewer reads, besides `run.json` and `metrics.jsonl` at
/// its top. The server refuses everything else.
pub const RUN_FOLDERS: &[&str] = &["checkpoints", "embeddings", "samples"];

/// The files at the top of a run that the viewer reads.
pub const RUN_FILES: &[&str] = &["run.json", "metrics.jsonl"];

/// A sorted list of names: run folders, or the files of one folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub names: Vec<String>,
}

/// A request the server answers, parsed from a URL path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/` or `/index.html`, or another file of the built viewer (`viewer.js`).
    Viewer(String),
    Runs,
    List {
        run: String,
        dir: String,
    },
    File {
        run: String,
        path: Vec<String>,
    },
}

/// Why a path is not a [`Route`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadPath {
    /// Not one of the routes (404).
    Unknown,
    /// A segment that could leave its folder or that is not text (400).
    Unsafe,
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

pub fn runs_url() -> String {
    "api/runs".to_string()
}

pub fn list_url(run: &str, dir: &str) -> String {
    format!("api/list/{}/{}", encode(run), encode(dir))
}

pub fn file_url(run: &str, path: &str) -> String {
    format!("runs/{}/{}", encode(run), encode_path(path))
}

/// One decoded segment, refused if it is empty, `.` or `..`, or holds a separator or a
/// control character once decoded (`%2e%2e`, `%2f`, `%00` land here).
fn decode(segment: &str) -> Result<String, BadPath> {
    let text = percent_decode_str(segment).decode_utf8().map_err(|_| BadPath::Unsafe)?;
    let bad_char = |c: char| c == '/' || c == '\\' || c.is_control();
    if text.is_empty() || text == "." || text == ".." || text.contains(bad_char) {
        return Err(BadPath::Unsafe);
    }
    Ok(text.into_owned())
}

/// Parses the path of a request URL (without the query). Every run file must sit in one of
/// [`RUN_FILES`] or [`RUN_FOLDERS`], one level deep.
pub fn route(url_path: &str) -> Result<Route, BadPath> {
    let Some(rest) = url_path.strip_prefix('/') else { return Err(BadPath::Unknown) };
    let raw: Vec<&str> = rest.split('/').collect();
    if raw.len() == 1 {
        return match raw[0] {
            "" | "index.html" => Ok(Route::Viewer("index.html".into())),
            name => decode(name).map(Route::Viewer),
        };
    }
    let segments = raw.iter().map(|s| decode(s)).collect::<Result<Vec<_>, _>>()?;
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["api", "runs"] => Ok(Route::Runs),
        ["api", "list", run, dir] if RUN_FOLDERS.contains(dir) => {
            Ok(Route::List { run: (*run).to_string(), dir: (*dir).to_string() })
        }
        ["runs", run, file] if RUN_FILES.contains(file) => {
            Ok(Route::File { run: (*run).to_string(), path: vec![(*file).to_string()] })
        }
        ["runs", run, dir, file] if RUN_FOLDERS.contains(dir) => {
            Ok(Route::File { run: (*run).to_string(), path: vec![(*dir).to_string(), (*file).to_string()] })
        }
        _ => Err(BadPath::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_round_trip_through_the_router() {
        let run = "simclr run #2";
        assert_eq!(route(&format!("/{}", runs_url())), Ok(Route::Runs));
        assert_eq!(
            route(&format!("/{}", list_url(run, "checkpoints"))),
            Ok(Route::List { run: run.into(), dir: "checkpoints".into() })
        );
        assert_eq!(
            route(&format!("/{}", file_url(run, "samples/sample 0.png"))),
            Ok(Route::File { run: run.into(), path: vec!["samples".into(), "sample 0.png".into()] })
        );
        assert_eq!(
            route(&format!("/{}", file_url(run, "run.json"))),
            Ok(Route::File { run: run.into(), path: vec!["run.json".into()] })
        );
        assert_eq!(route("/"), Ok(Route::Viewer("index.html".into())));
        assert_eq!(route("/viewer.js"), Ok(Route::Viewer("viewer.js".into())));
    }

    #[test]
    fn leaving_a_folder_is_refused() {
        for path in [
            "/..",
            "/runs/../run.json",
            "/runs/%2e%2e/run.json",
            "/runs/a/samples/%2e%2e",
            "/runs/a%2f..%2f..%2fetc/run.json",
            "/runs/a/checkpoints/%00x",
            "/runs//run.json",
            "/runs/a/samples/..%5c..%5cx",
            "/api/list/../samples",
            "/runs/%ff/run.json",
        ] {
            assert_eq!(route(path), Err(BadPath::Unsafe), "{path}");
        }
    }

    #[test]
    fn only_the_viewer_files_of_a_run_are_routed() {
        for path in [
            "//etc/passwd",
            "/etc/passwd",
            "/runs/a/config.toml",
            "/runs/a/samples/deeper/x.png",
            "/runs/a/other/x",
            "/api/list/a/other",
            "/api/runs/x",
            "relative",
        ] {
            assert!(route(path).is_err(), "{path}");
        }
        // `//etc/passwd` has an empty first segment: refused before it could be a name.
        assert_eq!(route("//etc/passwd"), Err(BadPath::Unsafe));
    }
}
