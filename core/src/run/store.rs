//! Reading and writing run directories on disk.
//!
//! Every file is written to a temporary name in the same directory, synced, and renamed
//! over its final name, so a reader (or `--resume` after a crash) sees either the old file
//! or the new one, never a torn one. `metrics.jsonl` is the one appended file; its reader
//! skips a torn last line. Checkpoints are trusted only after their SHA-256 matches.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{CheckpointMeta, FORMAT_VERSION, Latest, MetricRecord, RunInfo, RunLayout, checkpoint_stem, parse_metrics};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} has format version {found}, but this build reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("checkpoint {path} is damaged: its SHA-256 does not match the one recorded when it was written")]
    Corrupt { path: PathBuf },
    #[error("{path} has no complete checkpoint to resume from")]
    NoCheckpoint { path: PathBuf },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The last component of `path` as text (empty if it has none).
pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = file_name(path);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable only once the directory entry is; failure here is not fatal on
    // file systems that cannot sync directories.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| StoreError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| StoreError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?;
    let found = value.get("format_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if found != u64::from(FORMAT_VERSION) {
        return Err(StoreError::Version { path: path.to_path_buf(), found: u32::try_from(found).unwrap_or(u32::MAX) });
    }
    serde_json::from_value(value).map_err(|e| StoreError::Invalid { path: path.to_path_buf(), reason: e.to_string() })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A run directory opened for reading and writing.
#[derive(Clone, Debug)]
pub struct RunStore {
    pub layout: RunLayout,
}

impl RunStore {
    /// Creates the directory tree of a run (the root may already exist).
    pub fn create(root: &Path) -> Result<Self, StoreError> {
        let layout = RunLayout::new(root);
        for dir in [layout.root().to_path_buf(), layout.checkpoints(), layout.samples()] {
            fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        }
        Ok(Self { layout })
    }

    pub fn open(root: &Path) -> Self {
        Self { layout: RunLayout::new(root) }
    }

    pub fn read_info(&self) -> Result<RunInfo, StoreError> {
        read_json(&self.layout.run_json())
    }

    pub fn write_info(&self, info: &RunInfo) -> Result<(), StoreError> {
        write_json(&self.layout.run_json(), info)
    }

    pub fn read_metrics(&self) -> Result<Vec<MetricRecord>, StoreError> {
        let path = self.layout.metrics();
        match fs::read_to_string(&path) {
            Ok(text) => parse_metrics(&text).map_err(|reason| StoreError::Invalid { path, reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Appends one line. A crash mid-append leaves a torn last line that readers skip and
    /// [`RunStore::rewrite_metrics`] removes on resume.
    pub fn append_metric(&self, record: &MetricRecord) -> Result<(), StoreError> {
        let path = self.layout.metrics();
        let mut line = serde_json::to_vec(record)
            .map_err(|e| StoreError::Invalid { path: path.clone(), reason: e.to_string() })?;
        line.push(b'\n');
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io("open", &path))?;
        file.write_all(&line).map_err(io("append to", &path))
    }

    /// Replaces `metrics.jsonl` with `records`, atomically.
    pub fn rewrite_metrics(&self, records: &[MetricRecord]) -> Result<(), StoreError> {
        let path = self.layout.metrics();
        let mut text = Vec::new();
        for record in records {
            let line = serde_json::to_vec(record)
                .map_err(|e| StoreError::Invalid { path: path.clone(), reason: e.to_string() })?;
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        write_atomic(&path, &text)
    }

    /// Writes a checkpoint in the order that makes it crash-safe: weights, then their
    /// metadata (with the hash), then `latest.json`.
    pub fn write_checkpoint(
        &self,
        epoch: u64,
        step: u64,
        weights: &[u8],
        metrics: Option<MetricRecord>,
    ) -> Result<CheckpointMeta, StoreError> {
        let weights_path = self.layout.checkpoint_weights(epoch);
        write_atomic(&weights_path, weights)?;
        let meta = CheckpointMeta {
            format_version: FORMAT_VERSION,
            epoch,
            step,
            file: format!("{}.safetensors", checkpoint_stem(epoch)),
            sha256: sha256_hex(weights),
            bytes: weights.len() as u64,
            created_unix: now_unix(),
            metrics,
        };
        write_json(&self.layout.checkpoint_meta(epoch), &meta)?;
        let latest =
            Latest { format_version: FORMAT_VERSION, epoch, checkpoint: format!("{}.json", checkpoint_stem(epoch)) };
        write_json(&self.layout.latest(), &latest)?;
        Ok(meta)
    }

    /// Reads a checkpoint's metadata from its JSON file.
    pub fn read_checkpoint_meta(&self, meta_path: &Path) -> Result<CheckpointMeta, StoreError> {
        read_json(meta_path)
    }

    /// Reads the weights a checkpoint names and checks their hash.
    pub fn read_checkpoint_weights(&self, meta: &CheckpointMeta) -> Result<Vec<u8>, StoreError> {
        let path = self.layout.checkpoints().join(&meta.file);
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        if bytes.len() as u64 != meta.bytes || sha256_hex(&bytes) != meta.sha256 {
            return Err(StoreError::Corrupt { path });
        }
        Ok(bytes)
    }

    /// The checkpoint `latest.json` names, with its verified weights.
    pub fn latest_checkpoint(&self) -> Result<(CheckpointMeta, Vec<u8>), StoreError> {
        let latest_path = self.layout.latest();
        if !latest_path.exists() {
            return Err(StoreError::NoCheckpoint { path: self.layout.root().to_path_buf() });
        }
        let latest: Latest = read_json(&latest_path)?;
        let meta = self.read_checkpoint_meta(&self.layout.checkpoints().join(&latest.checkpoint))?;
        let weights = self.read_checkpoint_weights(&meta)?;
        Ok((meta, weights))
    }

    /// Every checkpoint whose metadata parses, oldest first (weights are not verified).
    pub fn list_checkpoints(&self) -> Result<Vec<CheckpointMeta>, StoreError> {
        let dir = self.layout.checkpoints();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        let mut metas: Vec<CheckpointMeta> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))
            })
            .filter_map(|p| self.read_checkpoint_meta(&p).ok())
            .collect();
        metas.sort_by_key(|m| m.epoch);
        Ok(metas)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::create(dir.path()).unwrap();
        store.write_checkpoint(1, 10, b"first", None).unwrap();
        store.write_checkpoint(2, 20, b"second", None).unwrap();
        let (meta, weights) = store.latest_checkpoint().unwrap();
        assert_eq!((meta.epoch, weights.as_slice()), (2, b"second".as_slice()));
        assert_eq!(store.list_checkpoints().unwrap().len(), 2);

        fs::write(store.layout.checkpoint_weights(2), b"secomd").unwrap();
        assert!(matches!(store.latest_checkpoint(), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn no_temp_files_are_left_and_versions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_json(&path, &serde_json::json!({"format_version": 99})).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = read_json::<Latest>(&path).unwrap_err();
        assert!(err.to_string().contains("format version 99"));
    }

    #[test]
    fn metrics_append_and_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::create(dir.path()).unwrap();
        for epoch in 1..=3 {
            store.append_metric(&MetricRecord { epoch, ..Default::default() }).unwrap();
        }
        let mut all = store.read_metrics().unwrap();
        assert_eq!(all.len(), 3);
        all.truncate(1);
        store.rewrite_metrics(&all).unwrap();
        assert_eq!(store.read_metrics().unwrap().len(), 1);
    }
}
