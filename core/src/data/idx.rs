//! Reading IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.
//!
//! A file is checked (magic number, dimensions, exact length) before anything is trusted,
//! so a truncated download or a wrong file is a [`DataError`] naming it, never a panic or a
//! huge allocation. This file only parses: it must not decide where datasets live (that is
//! `spec.rs`) nor change pixel values.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::ByteImages;
use super::dataset::{DataSplits, Dataset};
use super::error::DataError;
use super::report::DataReport;

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The four files of an MNIST-style folder; the test pair is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test: Option<(PathBuf, PathBuf)>,
}

/// Reads a whole file, inflating it if it is gzip (recognised by content, not by name).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    // The trailer holds the inflated size modulo 2^32: a good capacity hint for files up to
    // 4 GiB, capped so a corrupt trailer cannot trigger a huge allocation.
    let hint = raw
        .get(raw.len().saturating_sub(4)..)
        .and_then(|t| <[u8; 4]>::try_from(t).ok())
        .map_or(0, |t| u32::from_le_bytes(t) as usize)
        .min(1 << 30);
    let mut out = Vec::with_capacity(hint);
    flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "the gzip stream ends early, so the file is probably truncated".to_owned()
        } else {
            format!("it is not valid gzip ({e})")
        };
        DataError::Corrupt { path: path.to_path_buf(), reason }
    })?;
    Ok(out)
}

/// Checks the header of IDX `bytes` against `magic` and returns its dimensions and the
/// header length, having checked that the data has exactly the bytes they call for.
fn parse_header(path: &Path, bytes: &[u8], magic: u32, kind: &'static str) -> Result<(Vec<usize>, usize), DataError> {
    let actual = bytes.len() as u64;
    let truncated = |expected: u64| DataError::Truncated { path: path.to_path_buf(), expected, actual };
    let word = |i: usize| -> Option<u32> {
        let b = bytes.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| truncated(4))?;
    if found != magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), kind, expected: magic, found });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let dims: Vec<usize> = (1..=ndims)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| truncated(header as u64))?;
    let body = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected = body
        .and_then(|b| b.checked_add(header))
        .ok_or_else(|| DataError::inconsistent(path, format!("its dimensions {dims:?} are too large to be real")))?;
    if bytes.len() < expected {
        return Err(truncated(expected as u64));
    }
    if bytes.len() > expected {
        return Err(DataError::inconsistent(
            path,
            format!("its dimensions {dims:?} call for {expected} bytes but it has {}", bytes.len()),
        ));
    }
    Ok((dims, header))
}

/// Reads an IDX images file (`n × h × w` bytes) as one-channel images.
pub fn read_images(path: &Path) -> Result<ByteImages, DataError> {
    let mut bytes = read_maybe_gz(path)?;
    let (dims, header) = parse_header(path, &bytes, IMAGES_MAGIC, "images")?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if n > 0 && (h == 0 || w == 0) {
        return Err(DataError::inconsistent(path, format!("its images are {h}×{w} pixels")));
    }
    bytes.drain(..header);
    Ok(ByteImages { n, c: 1, h, w, data: bytes })
}

/// Reads an IDX labels file (one byte per image).
pub fn read_labels(path: &Path) -> Result<Vec<u32>, DataError> {
    let bytes = read_maybe_gz(path)?;
    let (_, header) = parse_header(path, &bytes, LABELS_MAGIC, "labels")?;
    Ok(bytes[header..].iter().map(|&b| u32::from(b)).collect())
}

/// Class names for labels `0..count`: Fashion-MNIST's when `hint` mentions fashion, the
/// digits otherwise, and plain numbers past those.
pub fn class_names(hint: &str, count: usize) -> Vec<String> {
    let fashion = hint.to_lowercase().contains("fashion");
    (0..count.max(10))
        .map(|i| match FASHION_CLASSES.get(i) {
            Some(name) if fashion => (*name).to_owned(),
            _ => i.to_string(),
        })
        .collect()
}

/// Reads one images file and its labels file into a dataset called `name`.
pub fn load_pair(images_path: &Path, labels_path: &Path, name: &str) -> Result<Dataset, DataError> {
    let images = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    if labels.len() != images.n {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.n,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    let count = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let hint = format!("{name} {}", images_path.display());
    Ok(Dataset { name: name.to_owned(), images: images.into(), labels, classes: class_names(&hint, count) })
}

/// The first of `stems` (each tried plain and with `.gz`) that exists in `dir`.
fn find_file(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    stems.iter().flat_map(|stem| [dir.join(stem), dir.join(format!("{stem}.gz"))]).find(|p| p.is_file())
}

/// The MNIST-style files in `dir`, if it has at least the training pair.
///
/// Besides the canonical `train-images-idx3-ubyte[.gz]` names (as Debian's
/// `dataset-fashion-mnist` installs them), the dotted `train-images.idx3-ubyte` spelling
/// of some mirrors is accepted.
pub fn find_files(dir: &Path) -> Option<IdxFiles> {
    let pick = |split: &str, what: &str, dims: &str| {
        find_file(dir, &[&format!("{split}-{what}-{dims}-ubyte"), &format!("{split}-{what}.{dims}-ubyte")])
    };
    let train_images = pick("train", "images", "idx3")?;
    let train_labels = pick("train", "labels", "idx1")?;
    let test = pick("t10k", "images", "idx3").zip(pick("t10k", "labels", "idx1"));
    Some(IdxFiles { train_images, train_labels, test })
}

/// Loads an MNIST-style folder: the training pair, and the `t10k` pair as the test split
/// when both of its files are present.
pub fn load_dir(dir: &Path, name: &str) -> Result<DataSplits, DataError> {
    let files = find_files(dir).ok_or_else(|| DataError::Empty {
        path: dir.to_path_buf(),
        what: "IDX training files (train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz])",
    })?;
    load_files(&files, name)
}

pub fn load_files(files: &IdxFiles, name: &str) -> Result<DataSplits, DataError> {
    let train = load_pair(&files.train_images, &files.train_labels, name)?;
    let test = match &files.test {
        Some((images, labels)) => {
            let mut test = load_pair(images, labels, name)?;
            check_compatible(&train, &test, images)?;
            // Both splits name the same classes, even if the test labels stop short.
            if test.classes.len() < train.classes.len() {
                test.classes.clone_from(&train.classes);
            }
            Some(test)
        }
        None => None,
    };
    Ok(DataSplits { train, test, report: DataReport::default() })
}

fn check_compatible(train: &Dataset, test: &Dataset, test_path: &Path) -> Result<(), DataError> {
    let (a, b) = (&train.images, &test.images);
    if (a.c, a.h, a.w) != (b.c, b.h, b.w) {
        return Err(DataError::inconsistent(
            test_path,
            format!("its images are {}×{} but the training images are {}×{}", b.h, b.w, a.h, a.w),
        ));
    }
    Ok(())
}

/// Whether `path` is a file that starts like an IDX images or labels file.
pub fn looks_like_idx(path: &Path) -> bool {
    let head = read_head(path, 4);
    head.as_deref().is_some_and(|h| h == IMAGES_MAGIC.to_be_bytes() || h == LABELS_MAGIC.to_be_bytes())
}

/// The first `n` bytes of a file, inflated if it is gzip; `None` if it cannot be read.
fn read_head(path: &Path, n: usize) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut raw = Vec::new();
    let mut file = file.take(2);
    file.read_to_end(&mut raw).ok()?;
    let mut out = Vec::with_capacity(n);
    let reader: Box<dyn Read> = if raw == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(std::fs::File::open(path).ok()?))
    } else {
        Box::new(std::fs::File::open(path).ok()?)
    };
    reader.take(n as u64).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Loads a single IDX file given as a path: the images file or the labels file of a pair,
/// the other one being found next to it by swapping `images`/`labels` and `idx3`/`idx1`
/// in its name.
pub fn load_single(path: &Path, name: &str) -> Result<DataSplits, DataError> {
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file_name.strip_suffix(".gz").unwrap_or(&file_name);
    let (images_stem, labels_stem) = if stem.contains("images") {
        (stem.to_owned(), stem.replace("images", "labels").replace("idx3", "idx1"))
    } else if stem.contains("labels") {
        (stem.replace("labels", "images").replace("idx1", "idx3"), stem.to_owned())
    } else {
        return Err(DataError::unsupported(
            path,
            "an IDX file's name must contain `images` or `labels` so its partner can be found",
        ));
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let images = find_file(dir, &[&images_stem]).ok_or_else(|| DataError::NotFound { path: dir.join(&images_stem) })?;
    let labels = find_file(dir, &[&labels_stem]).ok_or_else(|| DataError::NotFound { path: dir.join(&labels_stem) })?;
    let train = load_pair(&images, &labels, name)?;
    Ok(DataSplits { train, test: None, report: DataReport::default() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    pub(crate) fn idx_bytes(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    pub(crate) fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Writes a tiny MNIST-style folder: 3 train and 2 test images of 2×3 pixels.
    pub(crate) fn write_mnist_dir(dir: &Path, compress: bool) {
        let write = |name: &str, bytes: Vec<u8>| {
            let (name, bytes) = if compress { (format!("{name}.gz"), gz(&bytes)) } else { (name.to_owned(), bytes) };
            std::fs::write(dir.join(name), bytes).unwrap();
        };
        let body: Vec<u8> = (0..18).collect();
        write("train-images-idx3-ubyte", idx_bytes(IMAGES_MAGIC, &[3, 2, 3], &body));
        write("train-labels-idx1-ubyte", idx_bytes(LABELS_MAGIC, &[3], &[4, 0, 9]));
        write("t10k-images-idx3-ubyte", idx_bytes(IMAGES_MAGIC, &[2, 2, 3], &body[..12]));
        write("t10k-labels-idx1-ubyte", idx_bytes(LABELS_MAGIC, &[2], &[1, 2]));
    }

    #[test]
    fn plain_and_gz_folders() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_mnist_dir(dir.path(), compress);
            let splits = load_dir(dir.path(), "mnist").unwrap();
            let train = &splits.train;
            assert_eq!((train.len(), train.channels(), train.height(), train.width()), (3, 1, 2, 3));
            assert_eq!(train.labels, vec![4, 0, 9]);
            assert_eq!(train.images.image(1), &[6, 7, 8, 9, 10, 11]);
            assert_eq!(train.classes[3], "3");
            let test = splits.test.unwrap();
            assert_eq!(test.labels, vec![1, 2]);
            assert_eq!(test.classes.len(), 10);
        }
    }

    #[test]
    fn fashion_names_and_single_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("fashion");
        std::fs::create_dir(&dir).unwrap();
        write_mnist_dir(&dir, true);
        let d = load_single(&dir.join("t10k-labels-idx1-ubyte.gz"), "x").unwrap();
        assert_eq!(d.train.len(), 2);
        assert_eq!(d.train.classes[9], "Ankle boot");
        assert!(d.test.is_none());
        assert!(looks_like_idx(&dir.join("train-images-idx3-ubyte.gz")));
        assert!(!looks_like_idx(root.path()));
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let good = idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &[0; 8]);

        std::fs::write(p("short"), &good[..good.len() - 3]).unwrap();
        match read_images(&p("short")).unwrap_err() {
            DataError::Truncated { expected, actual, .. } => assert_eq!((expected, actual), (24, 21)),
            e => panic!("{e}"),
        }
        std::fs::write(p("tiny"), [0, 0]).unwrap();
        assert!(matches!(read_images(&p("tiny")), Err(DataError::Truncated { expected: 4, .. })));
        std::fs::write(p("head"), &good[..10]).unwrap();
        assert!(matches!(read_images(&p("head")), Err(DataError::Truncated { expected: 16, .. })));

        let gz_short = gz(&good);
        std::fs::write(p("short.gz"), &gz_short[..gz_short.len() / 2]).unwrap();
        let e = read_images(&p("short.gz")).unwrap_err();
        assert!(matches!(e, DataError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("short.gz"));

        std::fs::write(p("labels"), idx_bytes(LABELS_MAGIC, &[2], &[0, 1])).unwrap();
        let e = read_images(&p("labels")).unwrap_err();
        assert!(matches!(e, DataError::BadMagic { found: LABELS_MAGIC, .. }), "{e}");

        std::fs::write(p("long"), [good.as_slice(), &[1]].concat()).unwrap();
        assert!(matches!(read_images(&p("long")), Err(DataError::Inconsistent { .. })));

        std::fs::write(p("huge"), idx_bytes(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[])).unwrap();
        assert!(read_images(&p("huge")).is_err());

        std::fs::write(p("images"), &good).unwrap();
        std::fs::write(p("three"), idx_bytes(LABELS_MAGIC, &[3], &[0, 1, 2])).unwrap();
        let e = load_pair(&p("images"), &p("three"), "m").unwrap_err();
        assert!(matches!(e, DataError::CountMismatch { images: 2, labels: 3, .. }), "{e}");

        assert!(matches!(read_images(&p("missing")), Err(DataError::NotFound { .. })));
        assert!(matches!(load_dir(dir.path(), "m"), Err(DataError::Empty { .. })));
    }

    /// Loads Debian's `dataset-fashion-mnist` when it is installed.
    #[test]
    fn debian_fashion_mnist() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        if !dir.is_dir() {
            eprintln!("skipped: {} is absent (apt-get install dataset-fashion-mnist)", dir.display());
            return;
        }
        let t = std::time::Instant::now();
        let splits = load_dir(dir, "fashion-mnist").unwrap();
        eprintln!("loaded Fashion-MNIST in {:?}", t.elapsed());
        assert_eq!((splits.train.len(), splits.train.height(), splits.train.width()), (60_000, 28, 28));
        assert_eq!(splits.test.as_ref().map(Dataset::len), Some(10_000));
        assert_eq!(splits.train.classes[0], "T-shirt/top");
        assert!(splits.train.class_counts().iter().all(|&c| c == 6000));
    }
}
