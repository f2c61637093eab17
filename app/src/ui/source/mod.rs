//! Where the UI's run data comes from: one small asynchronous abstraction over "list the runs,
//! list a run's folder, read a run's file", so the same views work on the local disk (native,
//! [`fs`]) and, in the browser, over HTTP.
//!
//! Every request completes later through a callback; the UI keeps a [`Pending`] and polls it
//! each frame, so nothing ever blocks the UI thread. A completed request asks egui for a
//! repaint. [`Loadable`] is a value that is (re)loaded this way and keeps showing the last
//! good value while a refresh is in flight.

#[cfg(not(target_arch = "wasm32"))]
pub mod fs;
#[cfg(target_arch = "wasm32")]
pub mod http;

use std::sync::{Arc, Mutex};

use pretext_core::run::FORMAT_VERSION;
use serde::de::DeserializeOwned;

/// Completion of a request: the result, or one sentence saying what went wrong.
pub type Callback<T> = Box<dyn FnOnce(Result<T, String>) + Send>;

/// A read-only view of a runs directory. Paths inside a run use `/` and are relative to it
/// (`metrics.jsonl`, `checkpoints/epoch-0001.json`).
pub trait RunSource: Send + Sync {
    /// Where the runs come from, for the title bar (`runs/`, a URL).
    fn describe(&self) -> String;
    /// The run names (folders of the runs directory), sorted.
    fn list_runs(&self, done: Callback<Vec<String>>);
    /// The file names in a folder of a run, sorted; an absent folder is an empty list.
    fn list(&self, run: &str, dir: &str, done: Callback<Vec<String>>);
    /// The bytes of one file of a run.
    fn read(&self, run: &str, path: &str, done: Callback<Vec<u8>>);
}

impl<'s> dyn RunSource + 's {
    /// Reads a file and turns its bytes into a value off the UI thread where the source can.
    pub fn fetch<T: Send + 'static>(
        &self,
        ctx: &egui::Context,
        run: &str,
        path: &str,
        parse: impl FnOnce(Vec<u8>) -> Result<T, String> + Send + 'static,
    ) -> Pending<T> {
        let (pending, done) = Pending::new(ctx);
        let what = format!("{run}/{path}");
        self.read(run, path, Box::new(move |r| done(r.and_then(parse).map_err(|e| with_context(&what, e)))));
        pending
    }

    /// Reads and parses a versioned JSON file of the run format.
    pub fn fetch_json<T: DeserializeOwned + Send + 'static>(
        &self,
        ctx: &egui::Context,
        run: &str,
        path: &str,
    ) -> Pending<T> {
        self.fetch(ctx, run, path, |bytes| parse_versioned_json(&bytes))
    }

    pub fn fetch_list(&self, ctx: &egui::Context, run: &str, dir: &str) -> Pending<Vec<String>> {
        let (pending, done) = Pending::new(ctx);
        self.list(run, dir, done);
        pending
    }

    pub fn fetch_runs(&self, ctx: &egui::Context) -> Pending<Vec<String>> {
        let (pending, done) = Pending::new(ctx);
        self.list_runs(done);
        pending
    }
}

fn with_context(what: &str, e: String) -> String {
    if e.contains(what) { e } else { format!("{what}: {e}") }
}

/// Parses a JSON file of the run format, refusing a format version this build does not read
/// (the same rule as `pretext_core::run::store::read_json`).
pub fn parse_versioned_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let found = value.get("format_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if found != u64::from(FORMAT_VERSION) {
        return Err(format!("format version {found}, but this build reads version {FORMAT_VERSION}"));
    }
    serde_json::from_value(value).map_err(|e| format!("not a valid file of its kind ({e})"))
}

/// The receiving end of a request.
pub struct Pending<T> {
    slot: Arc<Mutex<Option<Result<T, String>>>>,
}

impl<T: Send + 'static> Pending<T> {
    /// A pending result and the callback that completes it (and asks `ctx` to repaint).
    pub fn new(ctx: &egui::Context) -> (Self, Callback<T>) {
        let slot = Arc::new(Mutex::new(None));
        let writer = Arc::clone(&slot);
        let ctx = ctx.clone();
        let done: Callback<T> = Box::new(move |result| {
            if let Ok(mut guard) = writer.lock() {
                *guard = Some(result);
            }
            ctx.request_repaint();
        });
        (Self { slot }, done)
    }
}

impl<T> Pending<T> {
    /// The result once it has arrived (taken: a second call returns `None`).
    pub fn try_take(&self) -> Option<Result<T, String>> {
        self.slot.lock().ok().and_then(|mut guard| guard.take())
    }
}

/// A value loaded through a [`RunSource`], possibly being reloaded.
pub struct Loadable<T> {
    value: Option<Result<T, String>>,
    pending: Option<Pending<T>>,
}

impl<T> Default for Loadable<T> {
    fn default() -> Self {
        Self { value: None, pending: None }
    }
}

impl<T> Loadable<T> {
    /// Starts a (re)load unless one is already in flight.
    pub fn request(&mut self, start: impl FnOnce() -> Pending<T>) {
        if self.pending.is_none() {
            self.pending = Some(start());
        }
    }

    /// Takes an arrived result; returns whether the value changed.
    pub fn poll(&mut self) -> bool {
        let Some(result) = self.pending.as_ref().and_then(Pending::try_take) else { return false };
        self.pending = None;
        self.value = Some(result);
        true
    }

    pub fn get(&self) -> Option<&Result<T, String>> {
        self.value.as_ref()
    }

    pub fn ok(&self) -> Option<&T> {
        self.value.as_ref().and_then(|r| r.as_ref().ok())
    }

    pub fn error(&self) -> Option<&str> {
        self.value.as_ref().and_then(|r| r.as_ref().err()).map(String::as_str)
    }

    pub fn is_loading(&self) -> bool {
        self.pending.is_some()
    }

    /// Nothing arrived yet and nothing asked for.
    pub fn is_unrequested(&self) -> bool {
        self.value.is_none() && self.pending.is_none()
    }
}
