//! The native [`RunSource`]: a runs directory on the local disk, read by two background
//! threads so that a slow disk or a large checkpoint never stalls the UI.

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use super::{Callback, RunSource};

type Job = Box<dyn FnOnce() + Send>;

const WORKERS: usize = 2;

pub struct FsSource {
    root: PathBuf,
    jobs: Mutex<Sender<Job>>,
}

impl FsSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new().name(format!("pretext-fs-{i}")).spawn(move || worker(&rx));
            if let Err(e) = spawned {
                log::warn!("cannot start a file reader thread: {e}");
            }
        }
        Self { root: root.into(), jobs: Mutex::new(tx) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn submit(&self, job: Job) {
        let sent = self.jobs.lock().map_err(|_| ()).and_then(|tx| tx.send(job).map_err(|_| ()));
        if sent.is_err() {
            log::warn!("the file reader threads have stopped");
        }
    }

    /// `root/run/path`, refusing anything that would leave the run's folder.
    fn resolve(&self, run: &str, path: &str) -> Result<PathBuf, String> {
        let rel = Path::new(run).join(path);
        if run.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("`{run}/{path}` is not a path inside the runs directory"));
        }
        Ok(self.root.join(rel))
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Sorted names of the entries of `dir` whose file type passes `keep`, leaving out hidden
/// ones (the run store writes its temporary files hidden). `pretext serve` lists with it too.
pub fn list_names(dir: &Path, keep: impl Fn(&std::fs::FileType) -> bool) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| keep(&t)))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The run folders (`want_dirs`) or a run folder's files; a missing run folder is empty,
/// a missing runs directory an error.
fn read_dir_names(dir: &Path, want_dirs: bool) -> Result<Vec<String>, String> {
    match list_names(dir, |t| t.is_dir() == want_dirs) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !want_dirs => Ok(Vec::new()),
        listed => listed.map_err(|e| format!("cannot list {}: {e}", dir.display())),
    }
}

impl RunSource for FsSource {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list_runs(&self, done: Callback<Vec<String>>) {
        let root = self.root.clone();
        self.submit(Box::new(move || done(read_dir_names(&root, true))));
    }

    fn list(&self, run: &str, dir: &str, done: Callback<Vec<String>>) {
        match self.resolve(run, dir) {
            Ok(path) => self.submit(Box::new(move || done(read_dir_names(&path, false)))),
            Err(e) => done(Err(e)),
        }
    }

    fn read(&self, run: &str, path: &str, done: Callback<Vec<u8>>) {
        match self.resolve(run, path) {
            Ok(full) => self.submit(Box::new(move || {
                done(std::fs::read(&full).map_err(|e| format!("cannot read {}: {e}", full.display())));
            })),
            Err(e) => done(Err(e)),
        }
    }
}
