//! The pixel cache: a folder's images decoded and resized once into a file of
//! ready-to-train bytes, memory-mapped by every later run while the source is unchanged.
//!
//! Where: `--cache-dir DIR`, else `$PRETEXT_CACHE`, else `$XDG_CACHE_HOME/pretext`, else
//! `~/.cache/pretext` (never inside the user's image folder, which may be read-only or
//! synced). Under it, one folder per source and decode options, `<name>-<key>/`, holds
//! `<fingerprint>.pixels` (the bytes, image after image, train then test) and
//! `<fingerprint>.json` (sizes, labels, skipped files). The fingerprint hashes every listed
//! file's path, size and modification time: any change makes a new one, and building it
//! deletes the stale entries beside it. Both files are written under temporary names and
//! renamed, the JSON last, so a crash never leaves an entry that looks complete.
//!
//! With `--limit N`, a complete cache of the whole source serves the first N files;
//! without one, only those N are decoded (into an entry of their own). [`entries`] and
//! [`clear`] serve `pretext cache`. This file must not decode images itself
//! (`imagefiles.rs` does).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Progress;
use super::dataset::DataSplits;
use super::error::DataError;
use super::imagefiles::{DecodeOptions, Decoded, Pixels, assemble, decode_into, limited};
use super::listing::Listing;
use super::pixels::map_file;
use super::report::CacheUse;

/// Environment variable naming the cache folder.
pub const CACHE_ENV: &str = "PRETEXT_CACHE";
/// Version of the cache's layout; a change makes every old entry a miss.
const CACHE_VERSION: u32 = 1;

/// The cache folder when none is given: `$PRETEXT_CACHE`, `$XDG_CACHE_HOME/pretext`,
/// `$HOME/.cache/pretext`, or the system's temporary folder.
pub fn default_root() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var(CACHE_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("pretext")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("pretext")))
        .unwrap_or_else(|| std::env::temp_dir().join("pretext-cache"))
}

/// An entry's JSON: what [`Decoded`] says, and what it was made from.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    cache_version: u32,
    source: String,
    fingerprint: String,
    decoded: Decoded,
}

fn hex(bytes: &[u8], chars: usize) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()[..chars].to_owned()
}

/// The folder of `listing`'s entries under `root`: one per source and decode options.
fn entry_dir(root: &Path, listing: &Listing, opts: &DecodeOptions) -> PathBuf {
    let mut h = Sha256::new();
    h.update(listing.source.as_os_str().as_encoded_bytes());
    h.update(format!("\0{:?}\0{}", opts.image_size, listing.is_labelled()).as_bytes());
    let name: String =
        listing.name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    root.join(format!("{name}-{}", hex(&h.finalize(), 12)))
}

/// Size and modification time (ns) of every listed file, split by split.
fn stat_all(listing: &Listing) -> Result<Vec<Vec<(u64, u128)>>, DataError> {
    listing
        .splits()
        .map(|(_, files)| {
            files
                .par_iter()
                .map(|f| {
                    let m = std::fs::metadata(&f.path).map_err(|e| DataError::io(&f.path, e))?;
                    let mtime =
                        m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
                    Ok((m.len(), mtime))
                })
                .collect()
        })
        .collect()
}

/// Hash of every listed file's path, label, size and modification time (`stats`, from
/// [`stat_all`] of this listing or one it is the start of), and the options.
fn fingerprint(listing: &Listing, stats: &[Vec<(u64, u128)>], opts: &DecodeOptions) -> String {
    let mut h = Sha256::new();
    h.update(format!("pretext-cache {CACHE_VERSION} {:?} {:?}\0", opts.image_size, listing.classes).as_bytes());
    for ((name, files), stats) in listing.splits().zip(stats) {
        h.update(format!("{name} {}\0", files.len()).as_bytes());
        for (f, (len, mtime)) in files.iter().zip(stats) {
            h.update(f.path.as_os_str().as_encoded_bytes());
            h.update(format!("\0{} {len} {mtime}\0", f.label).as_bytes());
        }
    }
    hex(&h.finalize(), 24)
}

/// A complete entry, if `dir` has one for `fingerprint`.
fn read_entry(dir: &Path, fingerprint: &str) -> Option<(Meta, PathBuf, Arc<memmap2::Mmap>)> {
    let text = std::fs::read(dir.join(format!("{fingerprint}.json"))).ok()?;
    let meta: Meta = serde_json::from_slice(&text).ok()?;
    if meta.cache_version != CACHE_VERSION || meta.fingerprint != fingerprint {
        return None;
    }
    let path = dir.join(format!("{fingerprint}.pixels"));
    let file = File::open(&path).ok()?;
    let map = map_file(&file).ok()?;
    (map.len() == meta.decoded.pixel_bytes()).then(|| (meta, path, Arc::new(map)))
}

fn cache_error(dir: &Path, e: &std::io::Error) -> DataError {
    DataError::Cache { path: dir.to_path_buf(), cause: e.to_string() }
}

/// Decodes `listing` into a new entry of `dir` named by `fingerprint`, and removes the
/// other entries there (they are stale).
fn build(
    dir: &Path,
    listing: &Listing,
    opts: &DecodeOptions,
    fingerprint: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), DataError> {
    let pid = std::process::id();
    let pixels = dir.join(format!("{fingerprint}.pixels"));
    let tmp = dir.join(format!(".{fingerprint}.pixels.tmp-{pid}"));
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| cache_error(dir, &e))?;
        let mut sink = BufWriter::with_capacity(1 << 20, file);
        let decoded = decode_into(listing, opts, &mut sink, progress)?;
        let file = sink.into_inner().map_err(|e| cache_error(dir, e.error()))?;
        file.sync_all().map_err(|e| cache_error(dir, &e))?;
        std::fs::rename(&tmp, &pixels).map_err(|e| cache_error(dir, &e))?;
        let meta = Meta {
            cache_version: CACHE_VERSION,
            source: listing.source.display().to_string(),
            fingerprint: fingerprint.to_owned(),
            decoded,
        };
        let json =
            serde_json::to_vec(&meta).map_err(|e| DataError::Cache { path: dir.into(), cause: e.to_string() })?;
        let json_tmp = dir.join(format!(".{fingerprint}.json.tmp-{pid}"));
        let written = std::fs::write(&json_tmp, json)
            .and_then(|()| std::fs::rename(&json_tmp, dir.join(format!("{fingerprint}.json"))));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&json_tmp);
            return Err(cache_error(dir, &e));
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Stale entries: another fingerprint of the same source. A run that still maps one
    // keeps reading it; the file goes when it is unmapped.
    if let Ok(read) = std::fs::read_dir(dir) {
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(fingerprint) || name.starts_with('.');
            if !ours && (name.ends_with(".pixels") || name.ends_with(".json")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// One complete entry of a cache folder, for `pretext cache`.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheEntry {
    /// The pixels file.
    pub path: PathBuf,
    /// The folder or list file it was decoded from.
    pub source: String,
    pub images: usize,
    pub size: usize,
    pub channels: usize,
    /// Bytes on disk (pixels and JSON).
    pub bytes: u64,
}

/// The complete entries under `root` (none when it does not exist), sorted by source.
pub fn entries(root: &Path) -> Vec<CacheEntry> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()) {
        for json in std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()) {
            let stem = json.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            if json.extension().is_none_or(|e| e != "json") || stem.starts_with('.') {
                continue;
            }
            let Some((meta, path, _)) = read_entry(&dir, &stem) else { continue };
            let d = &meta.decoded;
            let size_of = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
            out.push(CacheEntry {
                bytes: size_of(&path) + size_of(&json),
                path,
                source: meta.source,
                images: d.images(),
                size: d.size,
                channels: d.channels,
            });
        }
    }
    out.sort_by(|a, b| a.source.cmp(&b.source).then(a.path.cmp(&b.path)));
    out
}

/// Removes every entry folder under `root` (those holding cache entries or their temporary
/// files, nothing else), and returns how many entries and bytes went.
pub fn clear(root: &Path) -> Result<(usize, u64), DataError> {
    let listed = entries(root);
    let (count, bytes) = (listed.len(), listed.iter().map(|e| e.bytes).sum());
    for dir in std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()) {
        let ours = std::fs::read_dir(&dir).into_iter().flatten().flatten().all(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".pixels") || name.ends_with(".json") || name.contains(".tmp-")
        });
        if dir.is_dir() && ours {
            std::fs::remove_dir_all(&dir).map_err(|e| cache_error(&dir, &e))?;
        }
    }
    Ok((count, bytes))
}

/// Opens `listing` through the cache under `root`, building the entry it needs.
pub fn open(
    root: &Path,
    listing: &Listing,
    opts: &DecodeOptions,
    limit: Option<usize>,
    progress: &mut dyn FnMut(Progress),
) -> Result<DataSplits, DataError> {
    let dir = entry_dir(root, listing, opts);
    std::fs::create_dir_all(&dir).map_err(|e| cache_error(&dir, &e))?;
    // One stat per file serves both fingerprints: the first N files' are a prefix.
    let stats = stat_all(listing)?;
    let whole = fingerprint(listing, &stats, opts);
    let mut found = read_entry(&dir, &whole).map(|e| (e, limit));
    let mut built = false;
    if found.is_none() {
        let (target, key) = match limit.filter(|&l| l < listing.train.len()) {
            Some(l) => {
                let part = limited(listing, Some(l));
                let key = fingerprint(&part, &stats, opts);
                (part, key)
            }
            None => (listing.clone(), whole),
        };
        found = read_entry(&dir, &key).map(|e| (e, None));
        if found.is_none() {
            build(&dir, &target, opts, &key, progress)?;
            built = true;
            found = read_entry(&dir, &key).map(|e| (e, None));
        }
    }
    let Some(((meta, path, map), limit)) = found else {
        return Err(DataError::Cache { path: dir, cause: "the entry just written does not read back".into() });
    };
    let (mut splits, mut report) = assemble(&listing.name, &meta.decoded, Pixels::Mapped(map), limit)?;
    report.decoded = if built { meta.decoded.files() } else { 0 };
    report.cache = Some(CacheUse { path: path.display().to_string(), reused: !built });
    splits.report = report;
    Ok(splits)
}
