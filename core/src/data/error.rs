//! Why a dataset could not be opened, as one sentence a user can act on.
//!
//! Every message names the file or folder at fault and the cause, because the CLI prints it
//! as the whole error. Variants carry plain data (paths, counts) so callers and tests can
//! match on them; this file must not do any I/O or decide policy (what to retry, where to
//! look): it only describes failures found elsewhere.

use std::path::PathBuf;

use thiserror::Error;

/// A dataset that could not be found, read or understood.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{} does not exist", .path.display())]
    NotFound { path: PathBuf },

    // The I/O error is part of the sentence rather than a `source`, so that printing the
    // error alone (as the CLI does) already says what went wrong, without repeating it
    // when a chain is printed.
    #[error("could not read {}: {cause}", .path.display())]
    Io { path: PathBuf, cause: std::io::Error },

    #[error("{} is truncated: expected {expected} bytes, found {actual}", .path.display())]
    Truncated { path: PathBuf, expected: u64, actual: u64 },

    #[error(
        "{} is not an IDX {kind} file: its magic number is 0x{found:08x}, expected 0x{expected:08x}",
        .path.display()
    )]
    BadMagic { path: PathBuf, kind: &'static str, expected: u32, found: u32 },

    #[error("{} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("{} is in an unsupported format: {reason}", .path.display())]
    Unsupported { path: PathBuf, reason: String },

    #[error("{} contains no {what}", .path.display())]
    Empty { path: PathBuf, what: &'static str },

    #[error("{} is inconsistent: {reason}", .path.display())]
    Inconsistent { path: PathBuf, reason: String },

    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        .images_path.display(),
        .labels_path.display()
    )]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },

    #[error("could not decode image {}: {reason}", .path.display())]
    Decode { path: PathBuf, reason: String },

    #[error(
        "cannot use the pixel cache in {}: {cause}; choose another folder with --cache-dir, or --no-cache",
        .path.display()
    )]
    Cache { path: PathBuf, cause: String },

    #[error(
        "dataset '{name}' was not found (looked in {}); {hint}",
        display_paths(.searched)
    )]
    DatasetNotFound { name: String, searched: Vec<PathBuf>, hint: String },

    #[error(
        "unknown dataset '{spec}': use shapes, fashion-mnist, mnist, cifar10 or the path of \
         IDX files, CIFAR-10 batches, a folder of images or a list file of image paths"
    )]
    UnknownSpec { spec: String },

    #[error(
        "{} is not a dataset this program can read: expected IDX files, CIFAR-10 `*.bin` \
         batches, a folder holding images (JPEG, PNG, WebP, BMP, TIFF, GIF) or a list file \
         (.txt, .csv) of image paths",
        .path.display()
    )]
    Undetected { path: PathBuf },
}

// The constructors serve the file parsers, which are native-only.
#[cfg(not(target_arch = "wasm32"))]
impl DataError {
    pub(crate) fn io(path: &std::path::Path, cause: std::io::Error) -> Self {
        if cause.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound { path: path.to_path_buf() }
        } else {
            Self::Io { path: path.to_path_buf(), cause }
        }
    }

    pub(crate) fn inconsistent(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::Inconsistent { path: path.to_path_buf(), reason: reason.into() }
    }

    pub(crate) fn unsupported(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::Unsupported { path: path.to_path_buf(), reason: reason.into() }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nowhere".to_owned();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_sentence_naming_the_path() {
        let e = DataError::Truncated { path: "/d/x.gz".into(), expected: 10, actual: 4 };
        assert_eq!(e.to_string(), "/d/x.gz is truncated: expected 10 bytes, found 4");
        let e = DataError::BadMagic { path: "f".into(), kind: "images", expected: 0x803, found: 0x801 };
        assert!(e.to_string().contains("0x00000801"));
        let e = DataError::DatasetNotFound {
            name: "mnist".into(),
            searched: vec!["/a".into(), "/b".into()],
            hint: "set PRETEXT_DATA".into(),
        };
        assert_eq!(e.to_string(), "dataset 'mnist' was not found (looked in /a, /b); set PRETEXT_DATA");
        let e = DataError::io(std::path::Path::new("/nope"), std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(e, DataError::NotFound { .. }));
    }
}
