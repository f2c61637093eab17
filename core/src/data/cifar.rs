//! Reading CIFAR-10's binary batches (`data_batch_1..5.bin`, `test_batch.bin`).
//!
//! Each record is one label byte and 3072 bytes of 32×32 RGB, planar, which is already the
//! NCHW layout of [`ByteImages`], so pixels are copied as they are. A file that is not a
//! whole number of records, or a label with no class, is a [`DataError`] naming the file.
//! This file only parses: it must not decide where datasets live (that is `spec.rs`).

use std::path::{Path, PathBuf};

use super::ByteImages;
use super::dataset::{DataSplits, Dataset};
use super::error::DataError;
use super::report::DataReport;

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
/// Bytes in one record: the label, then the pixels.
pub const RECORD: usize = 1 + PIXELS;

const CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The batch files of a CIFAR-10 folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CifarFiles {
    /// Training batches in order (`data_batch_1.bin` … `data_batch_5.bin`).
    pub train: Vec<PathBuf>,
    pub test: Option<PathBuf>,
    /// `batches.meta.txt`, one class name a line, when present.
    pub meta: Option<PathBuf>,
}

/// The batches in `dir`, if it has any training batch: every `*.bin` except
/// `test_batch.bin` counts as one.
pub fn find_files(dir: &Path) -> Option<CifarFiles> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut train = Vec::new();
    let mut test = None;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_bin = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin"));
        if !is_bin || !path.is_file() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "test_batch.bin") {
            test = Some(path);
        } else {
            train.push(path);
        }
    }
    if train.is_empty() {
        return None;
    }
    train.sort_by_key(|p| natural_key(p));
    let meta = Some(dir.join("batches.meta.txt")).filter(|p| p.is_file());
    Some(CifarFiles { train, test, meta })
}

/// Sorts `data_batch_10` after `data_batch_9`.
fn natural_key(path: &Path) -> (String, u64, String) {
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = name[prefix.len()..].parse().unwrap_or(0);
    (prefix.to_owned(), number, name)
}

/// Class names from `batches.meta.txt` (non-empty lines), or CIFAR-10's own.
pub fn read_classes(meta: Option<&Path>) -> Result<Vec<String>, DataError> {
    let Some(path) = meta else {
        return Ok(CLASSES.iter().map(|&s| s.to_owned()).collect());
    };
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if names.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf(), what: "class names" });
    }
    Ok(names)
}

/// Appends the records of one batch file to `images` and `labels`.
pub fn read_batch(
    path: &Path,
    classes: usize,
    images: &mut ByteImages,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf(), what: "CIFAR records" });
    }
    if bytes.len() % RECORD != 0 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: bytes.len().div_ceil(RECORD) as u64 * RECORD as u64,
            actual: bytes.len() as u64,
        });
    }
    let n = bytes.len() / RECORD;
    images.data.reserve(n * PIXELS);
    labels.reserve(n);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= classes {
            return Err(DataError::inconsistent(
                path,
                format!("record {i} has label {label} but there are only {classes} classes"),
            ));
        }
        labels.push(u32::from(label));
        images.data.extend_from_slice(&record[1..]);
        images.n += 1;
    }
    Ok(())
}

fn load_batches(paths: &[PathBuf], classes: &[String], name: &str) -> Result<Dataset, DataError> {
    let mut images = ByteImages::empty(3, SIDE, SIDE);
    let mut labels = Vec::new();
    for path in paths {
        read_batch(path, classes.len(), &mut images, &mut labels)?;
    }
    Ok(Dataset { name: name.to_owned(), images: images.into(), labels, classes: classes.to_vec() })
}

/// Loads the training batches and, when present, `test_batch.bin` as the test split.
pub fn load_files(files: &CifarFiles, name: &str) -> Result<DataSplits, DataError> {
    let classes = read_classes(files.meta.as_deref())?;
    let train = load_batches(&files.train, &classes, name)?;
    let test = match &files.test {
        Some(path) => Some(load_batches(std::slice::from_ref(path), &classes, name)?),
        None => None,
    };
    Ok(DataSplits { train, test, report: DataReport::default() })
}

pub fn load_dir(dir: &Path, name: &str) -> Result<DataSplits, DataError> {
    let files = find_files(dir)
        .ok_or(DataError::Empty { path: dir.to_path_buf(), what: "CIFAR-10 training batches (*.bin)" })?;
    load_files(&files, name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// `n` records whose label is `i % 10` and whose pixels are all `i`.
    pub(crate) fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut r = vec![i as u8; RECORD];
                r[0] = (i % 10) as u8;
                r
            })
            .collect()
    }

    pub(crate) fn write_cifar_dir(dir: &Path) {
        std::fs::write(dir.join("data_batch_1.bin"), records(3)).unwrap();
        std::fs::write(dir.join("data_batch_2.bin"), records(2)).unwrap();
        std::fs::write(dir.join("test_batch.bin"), records(4)).unwrap();
    }

    #[test]
    fn parses_batches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar_dir(dir.path());
        std::fs::write(dir.path().join("data_batch_10.bin"), records(1)).unwrap();
        let splits = load_dir(dir.path(), "cifar10").unwrap();
        let train = &splits.train;
        assert_eq!((train.len(), train.channels(), train.height(), train.width()), (6, 3, 32, 32));
        assert_eq!(train.labels, vec![0, 1, 2, 0, 1, 0]);
        assert!(train.images.image(2).iter().all(|&v| v == 2));
        assert_eq!(train.classes[9], "truck");
        assert_eq!(splits.test.unwrap().len(), 4);
    }

    #[test]
    fn meta_names_classes() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar_dir(dir.path());
        std::fs::write(dir.path().join("batches.meta.txt"), "a\nb\nc\n\n").unwrap();
        let e = load_dir(dir.path(), "c").unwrap_err();
        assert!(e.to_string().contains("label 3"), "{e}");
        std::fs::write(dir.path().join("batches.meta.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n").unwrap();
        assert_eq!(load_dir(dir.path(), "c").unwrap().train.classes[9], "j");
    }

    #[test]
    fn truncated_batch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = records(2);
        bytes.pop();
        std::fs::write(dir.path().join("data_batch_1.bin"), bytes).unwrap();
        match load_dir(dir.path(), "c").unwrap_err() {
            DataError::Truncated { path, expected, actual } => {
                assert!(path.ends_with("data_batch_1.bin"));
                assert_eq!((expected, actual), (2 * RECORD as u64, 2 * RECORD as u64 - 1));
            }
            e => panic!("{e}"),
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(load_dir(empty.path(), "c"), Err(DataError::Empty { .. })));
    }
}
