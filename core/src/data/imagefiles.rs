//! Image files to a dataset: read every header, choose the training size and channels,
//! decode and resize each file once (in parallel, in order), and lay the pixels out as the
//! trainer reads them — into memory, or into a pixel cache file (`cache.rs`) that is then
//! memory-mapped.
//!
//! A file that cannot be used is skipped and recorded, or, with `strict`, stops the open.
//! Both destinations run the same decode, so a dataset read from its cache and the same
//! dataset decoded directly hold identical bytes. This file must not decide where caches
//! live or when one is reused (`cache.rs`), nor list folders (`folder.rs`, `listfile.rs`).

use std::io::Write;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dataset::{DataSplits, Dataset};
use super::decode::{self, Probe};
use super::error::DataError;
use super::listing::{ListedFile, Listing};
use super::pixels::PixelStore;
use super::report::{DataReport, SizeSource};
use super::{ByteImages, Progress};

/// The training size of images that are not all of one square size, unless `--image-size`
/// says otherwise: small enough for CPU training, large enough for crops to keep detail.
pub const DEFAULT_IMAGE_SIZE: usize = 64;
/// Largest `--image-size`.
pub const MAX_IMAGE_SIZE: usize = 1024;
/// Bytes decoded per ordered chunk: bounds the memory a decode pass holds at once.
const CHUNK_BYTES: usize = 16 << 20;

/// How to decode a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The training size; `None` picks it (see [`choose_size`]).
    pub image_size: Option<usize>,
    /// Stop at the first file that cannot be used instead of skipping it.
    pub strict: bool,
}

/// A file left out, with its place in its split's listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkippedAt {
    pub index: usize,
    pub path: String,
    pub reason: String,
}

/// One split as decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DecodedSplit {
    /// Files listed (decoded or skipped).
    pub files: usize,
    /// The class of each decoded image; empty when unlabeled.
    pub labels: Vec<u32>,
    pub skipped: Vec<SkippedAt>,
}

impl DecodedSplit {
    fn kept(&self) -> usize {
        self.files - self.skipped.len()
    }
}

/// What a decode pass wrote, besides the pixels: enough to read them back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decoded {
    pub size: usize,
    pub channels: usize,
    pub size_source: SizeSource,
    pub resized: bool,
    pub classes: Vec<String>,
    pub ignored: usize,
    pub train: DecodedSplit,
    pub test: Option<DecodedSplit>,
}

impl Decoded {
    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    fn splits(&self) -> impl Iterator<Item = &DecodedSplit> {
        std::iter::once(&self.train).chain(self.test.as_ref())
    }

    /// Image files the pass read, decoded or skipped.
    pub fn files(&self) -> usize {
        self.splits().map(|s| s.files).sum()
    }

    /// Images the splits hold.
    pub fn images(&self) -> usize {
        self.splits().map(DecodedSplit::kept).sum()
    }

    /// Bytes of pixels the splits hold.
    pub fn pixel_bytes(&self) -> usize {
        self.images() * self.image_len()
    }
}

/// The size and channels to train at: the requested size, else the one square size every
/// image has, else [`DEFAULT_IMAGE_SIZE`]; one channel when every image is grey.
pub fn choose_size(probes: &[Probe], requested: Option<usize>) -> (usize, usize, SizeSource) {
    let channels = if !probes.is_empty() && probes.iter().all(|p| p.grey) { 1 } else { 3 };
    if let Some(n) = requested {
        return (n, channels, SizeSource::Requested);
    }
    let first = probes.first().map(|p| (p.width, p.height));
    match first {
        Some((w, h)) if w == h && probes.iter().all(|p| (p.width, p.height) == (w, h)) => {
            (w as usize, channels, SizeSource::Native)
        }
        _ => (DEFAULT_IMAGE_SIZE, channels, SizeSource::Default),
    }
}

fn skip_or_fail(file: &ListedFile, reason: String, strict: bool) -> Result<String, DataError> {
    if strict { Err(DataError::Decode { path: file.path.clone(), reason }) } else { Ok(reason) }
}

/// Decodes every file of `listing` into `sink`, split after split, in listing order.
pub(crate) fn decode_into(
    listing: &Listing,
    opts: &DecodeOptions,
    sink: &mut dyn Write,
    progress: &mut dyn FnMut(Progress),
) -> Result<Decoded, DataError> {
    let splits: Vec<&[ListedFile]> = listing.splits().map(|(_, f)| f).collect();
    let total: usize = splits.iter().map(|s| s.len()).sum();
    progress(Progress { stage: "reading headers", done: 0, total });
    let probes: Vec<Vec<Result<Probe, String>>> =
        splits.iter().map(|files| files.par_iter().map(|f| decode::probe(&f.path)).collect()).collect();
    let good: Vec<Probe> = probes.iter().flatten().filter_map(|p| p.as_ref().ok().copied()).collect();
    let (size, channels, size_source) = choose_size(&good, opts.image_size);
    let resized = good.iter().any(|p| (p.width as usize, p.height as usize) != (size, size));
    let image_len = channels * size * size;
    let side = u32::try_from(size).map_err(|_| DataError::Inconsistent {
        path: listing.source.clone(),
        reason: format!("the image size {size} is too large"),
    })?;
    let chunk = (CHUNK_BYTES / image_len.max(1)).clamp(16, 4096);
    let mut done = 0;
    let mut out = Vec::with_capacity(splits.len());
    for (files, probes) in splits.iter().zip(&probes) {
        let mut split = DecodedSplit { files: files.len(), labels: Vec::new(), skipped: Vec::new() };
        for (start, (files, probes)) in
            files.chunks(chunk).zip(probes.chunks(chunk)).enumerate().map(|(k, c)| (k * chunk, c))
        {
            let decoded: Vec<Result<Vec<u8>, String>> = files
                .par_iter()
                .zip(probes)
                .map(|(f, p)| match p {
                    Ok(_) => decode::load(&f.path, side, channels),
                    Err(e) => Err(e.clone()),
                })
                .collect();
            for (i, (file, pixels)) in files.iter().zip(decoded).enumerate() {
                match pixels {
                    Ok(bytes) => {
                        sink.write_all(&bytes).map_err(|e| DataError::io(&listing.source, e))?;
                        if listing.is_labelled() {
                            split.labels.push(file.label);
                        }
                    }
                    Err(reason) => {
                        let reason = skip_or_fail(file, reason, opts.strict)?;
                        split.skipped.push(SkippedAt { index: start + i, path: listing.display(&file.path), reason });
                    }
                }
            }
            done += files.len();
            progress(Progress { stage: "decoding", done, total });
        }
        out.push(split);
    }
    let mut out = out.into_iter();
    let train = out.next().unwrap_or(DecodedSplit { files: 0, labels: Vec::new(), skipped: Vec::new() });
    if train.kept() == 0 {
        return Err(DataError::Empty { path: listing.source.clone(), what: "image files that decode" });
    }
    Ok(Decoded {
        size,
        channels,
        size_source,
        resized,
        classes: listing.classes.clone(),
        ignored: listing.ignored,
        train,
        test: out.next(),
    })
}

/// Where decoded pixels are read back from.
pub(crate) enum Pixels {
    Memory(Vec<u8>),
    Mapped(std::sync::Arc<memmap2::Mmap>),
}

/// The splits of `decoded`, whose pixels are in `pixels`; `limit` keeps the images of the
/// first N training files. Fills the report's files and size fields.
pub(crate) fn assemble(
    name: &str,
    decoded: &Decoded,
    mut pixels: Pixels,
    limit: Option<usize>,
) -> Result<(DataSplits, DataReport), DataError> {
    let (s, c, len) = (decoded.size, decoded.channels, decoded.image_len());
    let mut report = DataReport {
        ignored_count: decoded.ignored,
        size_source: decoded.size_source,
        resized: decoded.resized,
        ..DataReport::default()
    };
    let train_files = limit.map_or(decoded.train.files, |l| l.min(decoded.train.files));
    let mut parts = Vec::new();
    for (split, files) in
        std::iter::once((&decoded.train, train_files)).chain(decoded.test.as_ref().map(|t| (t, t.files)))
    {
        let skipped: Vec<&SkippedAt> = split.skipped.iter().filter(|k| k.index < files).collect();
        for k in &skipped {
            report.skip(k.path.clone(), k.reason.clone());
        }
        parts.push((split, files - skipped.len()));
    }
    let shape_error = |e: super::ShapeError| DataError::Corrupt { path: name.into(), reason: e.to_string() };
    // The next split starts after every image this split decoded, kept or not.
    let mut offset = 0;
    let mut sets = Vec::new();
    for (split, n) in parts {
        let images = match &mut pixels {
            Pixels::Mapped(map) => {
                PixelStore::mapped(std::sync::Arc::clone(map), offset, (n, c, s, s)).map_err(shape_error)?
            }
            Pixels::Memory(rest) => {
                // Each split takes its bytes off the front of the buffer: nothing is copied.
                let tail = rest.split_off((split.kept() * len).min(rest.len()));
                let mut bytes = std::mem::replace(rest, tail);
                bytes.truncate(n * len);
                PixelStore::from(ByteImages::new(n, c, s, s, bytes).map_err(shape_error)?)
            }
        };
        offset += split.kept() * len;
        let labels = if decoded.classes.is_empty() { Vec::new() } else { split.labels[..n].to_vec() };
        sets.push(Dataset { name: name.to_owned(), images, labels, classes: decoded.classes.clone() });
    }
    let mut sets = sets.into_iter();
    let train = sets.next().ok_or_else(|| DataError::Empty { path: name.into(), what: "images" })?;
    Ok((DataSplits { train, test: sets.next(), report: DataReport::default() }, report))
}

/// Decodes `listing` straight into memory (no cache).
pub fn load(
    listing: &Listing,
    opts: &DecodeOptions,
    limit: Option<usize>,
    progress: &mut dyn FnMut(Progress),
) -> Result<DataSplits, DataError> {
    let listing = limited(listing, limit);
    let mut bytes = Vec::new();
    let decoded = decode_into(&listing, opts, &mut bytes, progress)?;
    let (mut splits, mut report) = assemble(&listing.name, &decoded, Pixels::Memory(bytes), None)?;
    report.decoded = decoded.files();
    splits.report = report;
    Ok(splits)
}

/// `listing` with only its first `limit` training files.
pub(crate) fn limited(listing: &Listing, limit: Option<usize>) -> Listing {
    let mut out = listing.clone();
    if let Some(l) = limit {
        out.train.truncate(l);
    }
    out
}
