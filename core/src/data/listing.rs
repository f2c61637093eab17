//! The image files a dataset is made of, before any is decoded: paths in training order,
//! with class indices when the source has labels. Folders (`folder.rs`) and list files
//! (`listfile.rs`) produce one; `imagefiles.rs` turns it into pixels.
//!
//! Plain data; this file must not read files.

use std::path::PathBuf;

/// One image file and its class (an index into [`Listing::classes`]; 0 when unlabeled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    pub path: PathBuf,
    pub label: u32,
}

/// The files of a dataset's splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// A short human name: the folder's or the list file's.
    pub name: String,
    /// The folder or list file, canonical: what the pixel cache is keyed by.
    pub source: PathBuf,
    /// The folder the files are named relative to in reports (as the user gave it).
    pub root: PathBuf,
    /// Class names in label order; empty when the files are unlabeled.
    pub classes: Vec<String>,
    pub train: Vec<ListedFile>,
    pub test: Option<Vec<ListedFile>>,
    /// Hidden files and files that are not images, left out.
    pub ignored: usize,
}

impl Listing {
    /// `path` as a person wants to read it in a report: relative to the dataset's folder.
    pub fn display(&self, path: &std::path::Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    pub fn is_labelled(&self) -> bool {
        !self.classes.is_empty()
    }

    /// The splits in order, named.
    pub fn splits(&self) -> impl Iterator<Item = (&'static str, &[ListedFile])> {
        std::iter::once(("train", self.train.as_slice())).chain(self.test.as_deref().map(|t| ("test", t)))
    }
}

/// Class-by-class round robin (first file of each class, then the second of each, …), so
/// that the first N files, as `--limit` keeps, hold every class.
pub fn interleave(per_class: Vec<Vec<ListedFile>>) -> Vec<ListedFile> {
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut iters: Vec<_> = per_class.into_iter().map(IntoIterator::into_iter).collect();
    let mut out = Vec::new();
    for _ in 0..longest {
        out.extend(iters.iter_mut().filter_map(Iterator::next));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaves_classes() {
        let f = |l: u32, n: &str| ListedFile { path: n.into(), label: l };
        let out = interleave(vec![vec![f(0, "a"), f(0, "b"), f(0, "c")], vec![f(1, "x")]]);
        let names: Vec<_> = out.iter().map(|f| f.path.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a", "x", "b", "c"]);
    }
}
