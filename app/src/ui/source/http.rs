//! The browser's [`RunSource`]: the runs that `pretext serve` publishes, fetched over HTTP
//! (ehttp, i.e. the browser's `fetch`) with the URLs of [`crate::api`], relative to the page.

use super::{Callback, RunSource};
use crate::api::{self, Listing};

pub struct HttpSource {
    /// Prefix of every URL: empty for "the server that served this page".
    base: String,
}

impl HttpSource {
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into() }
    }

    fn get(&self, url: &str, done: Callback<Vec<u8>>) {
        let url = format!("{}{url}", self.base);
        ehttp::fetch(ehttp::Request::get(&url), move |result| {
            done(match result {
                Ok(r) if r.ok => Ok(r.bytes),
                Ok(r) => Err(format!("{url}: {} {}", r.status, r.status_text)),
                Err(e) => Err(format!("{url}: {e}")),
            });
        });
    }

    fn get_listing(&self, url: &str, done: Callback<Vec<String>>) {
        self.get(
            url,
            Box::new(move |bytes| {
                done(bytes.and_then(|b| {
                    serde_json::from_slice::<Listing>(&b)
                        .map(|l| l.names)
                        .map_err(|e| format!("the server's listing is not valid ({e})"))
                }));
            }),
        );
    }
}

impl RunSource for HttpSource {
    fn describe(&self) -> String {
        if self.base.is_empty() { "this server".to_string() } else { self.base.clone() }
    }

    fn list_runs(&self, done: Callback<Vec<String>>) {
        self.get_listing(&api::runs_url(), done);
    }

    fn list(&self, run: &str, dir: &str, done: Callback<Vec<String>>) {
        self.get_listing(&api::list_url(run, dir), done);
    }

    fn read(&self, run: &str, path: &str, done: Callback<Vec<u8>>) {
        self.get(&api::file_url(run, path), done);
    }
}
