//! Listing a folder of images: every image file under it, recursively, with class labels
//! when the folder is laid out as classes.
//!
//! The rules, in order:
//! - `root/train/` (with `root/test/` or `root/val/`) splits the data; otherwise `root` is
//!   the training split and there is no test split.
//! - A split is **labelled** when no image lies directly in it, at least two of its
//!   sub-folders hold images directly, and every image under it lies under such a folder:
//!   `cats/x.jpg`, `dogs/y.png` (torchvision's ImageFolder; a class folder's own sub-folders
//!   belong to it). Anything else — a flat folder, a photo archive like `2023/01/x.jpg` —
//!   is **unlabeled**, as is every folder when labels are turned off.
//! - Hidden files and folders (`.name`) and files whose extension is not an image's are
//!   left out and counted. Files are sorted by path; labelled files are interleaved class
//!   by class so that `--limit N` keeps every class.
//!
//! This file must not open image files (`decode.rs` does) nor decide where datasets live
//! (`spec.rs` does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::decode::is_image;
use super::error::DataError;
use super::listing::{ListedFile, Listing, interleave};

/// How deep a folder tree is followed (symbolic links can make loops).
const MAX_DEPTH: usize = 32;

/// The image files under a folder and how many other files it has.
#[derive(Default)]
struct Walk {
    /// Paths relative to the walked folder, sorted.
    images: Vec<PathBuf>,
    ignored: usize,
}

fn hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn walk(root: &Path) -> Result<Walk, DataError> {
    let mut out = Walk::default();
    walk_into(root, Path::new(""), 0, &mut out)?;
    out.images.sort();
    Ok(out)
}

fn walk_into(root: &Path, rel: &Path, depth: usize, out: &mut Walk) -> Result<(), DataError> {
    let dir = root.join(rel);
    let read = std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))?;
    for entry in read {
        let entry = entry.map_err(|e| DataError::io(&dir, e))?;
        let path = entry.path();
        let name = rel.join(entry.file_name());
        if hidden(&path) {
            out.ignored += 1;
        } else if path.is_dir() {
            if depth < MAX_DEPTH {
                walk_into(root, &name, depth + 1, out)?;
            }
        } else if is_image(&path) {
            out.images.push(name);
        } else {
            out.ignored += 1;
        }
    }
    Ok(())
}

/// Whether there is an image file anywhere under `root` (stopping at the first one).
pub fn looks_like_folder(root: &Path) -> bool {
    fn any(dir: &Path, depth: usize) -> bool {
        let Ok(read) = std::fs::read_dir(dir) else { return false };
        read.flatten()
            .map(|e| e.path())
            .filter(|p| !hidden(p))
            .any(|p| if p.is_dir() { depth < MAX_DEPTH && any(&p, depth + 1) } else { is_image(&p) })
    }
    root.is_dir() && any(root, 0)
}

/// The class of each image when `walk` is laid out as class folders, else `None`.
fn classes_of(walk: &Walk) -> Option<BTreeMap<String, Vec<PathBuf>>> {
    let mut direct: BTreeMap<String, bool> = BTreeMap::new();
    let mut per_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for rel in &walk.images {
        let mut parts = rel.components();
        let (Some(first), Some(_)) = (parts.next(), parts.next()) else { return None };
        let class = first.as_os_str().to_string_lossy().into_owned();
        *direct.entry(class.clone()).or_default() |= rel.components().count() == 2;
        per_class.entry(class).or_default().push(rel.clone());
    }
    (per_class.len() >= 2 && direct.values().all(|&d| d)).then_some(per_class)
}

/// Lists `root` (see the module docs); `labels: false` lists every folder unlabeled.
pub fn list(root: &Path, name: &str, labels: bool) -> Result<Listing, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound { path: root.to_path_buf() });
    }
    let source = root.canonicalize().map_err(|e| DataError::io(root, e))?;
    let train_dir = root.join("train");
    let (train_dir, test_dir) = if train_dir.is_dir() {
        (train_dir, ["test", "val"].iter().map(|d| root.join(d)).find(|d| d.is_dir()))
    } else {
        (root.to_path_buf(), None)
    };
    let train_walk = walk(&train_dir)?;
    if train_walk.images.is_empty() {
        return Err(DataError::Empty { path: train_dir, what: "image files (JPEG, PNG, WebP, BMP, TIFF or GIF)" });
    }
    let mut ignored = train_walk.ignored;
    let train_classes = if labels { classes_of(&train_walk) } else { None };
    let classes: Vec<String> = train_classes.as_ref().map(|c| c.keys().cloned().collect()).unwrap_or_default();
    let train = files_of(&train_dir, train_walk, train_classes.as_ref(), &classes)?;
    let test = match test_dir {
        Some(dir) => {
            let w = walk(&dir)?;
            ignored += w.ignored;
            let per_class = if classes.is_empty() {
                None
            } else {
                // The test split takes the training classes and may not add one.
                let found = classes_of(&w).ok_or_else(|| {
                    DataError::inconsistent(&dir, "the training split has class folders but this split does not")
                })?;
                Some(found)
            };
            Some(files_of(&dir, w, per_class.as_ref(), &classes)?)
        }
        None => None,
    };
    Ok(Listing { name: name.to_owned(), source, root: root.to_path_buf(), classes, train, test, ignored })
}

/// The walked files with their labels, in training order.
fn files_of(
    dir: &Path,
    walk: Walk,
    per_class: Option<&BTreeMap<String, Vec<PathBuf>>>,
    classes: &[String],
) -> Result<Vec<ListedFile>, DataError> {
    let Some(per_class) = per_class else {
        return Ok(walk.images.into_iter().map(|rel| ListedFile { path: dir.join(rel), label: 0 }).collect());
    };
    let mut grouped = Vec::with_capacity(per_class.len());
    for (class, files) in per_class {
        let Some(label) = classes.iter().position(|c| c == class) else {
            return Err(DataError::inconsistent(
                &dir.join(class),
                "it is a class folder that the training split does not have",
            ));
        };
        let label = u32::try_from(label).unwrap_or(u32::MAX);
        grouped.push(files.iter().map(|rel| ListedFile { path: dir.join(rel), label }).collect());
    }
    Ok(interleave(grouped))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn save(path: &Path, w: u32, h: u32, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value])).save(path).unwrap();
    }

    /// `cats` (3 images, one of them a different size) and `dogs` (2 images) under `root`.
    pub(crate) fn write_tree(root: &Path) {
        save(&root.join("dogs/b.png"), 4, 4, 30);
        save(&root.join("dogs/a.png"), 4, 4, 20);
        save(&root.join("cats/x.png"), 4, 4, 10);
        save(&root.join("cats/y.PNG"), 8, 6, 11);
        save(&root.join("cats/z.jpg"), 4, 4, 12);
        std::fs::write(root.join("cats/notes.txt"), "not an image").unwrap();
    }

    fn names(files: &[ListedFile], root: &Path) -> Vec<String> {
        files.iter().map(|f| f.path.strip_prefix(root).unwrap().display().to_string()).collect()
    }

    #[test]
    fn class_folders_are_labelled_and_interleaved() {
        let dir = tempfile::tempdir().unwrap();
        write_tree(dir.path());
        assert!(looks_like_folder(dir.path()));
        let l = list(dir.path(), "pets", true).unwrap();
        assert_eq!(l.classes, vec!["cats", "dogs"]);
        assert_eq!(names(&l.train, dir.path()), ["cats/x.png", "dogs/a.png", "cats/y.PNG", "dogs/b.png", "cats/z.jpg"]);
        assert_eq!(l.train.iter().map(|f| f.label).collect::<Vec<_>>(), [0, 1, 0, 1, 0]);
        assert_eq!((l.ignored, l.test.is_none()), (1, true));
        let off = list(dir.path(), "pets", false).unwrap();
        assert!(off.classes.is_empty());
        assert_eq!(names(&off.train, dir.path())[0], "cats/x.png");
    }

    #[test]
    fn flat_and_nested_folders_are_unlabeled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        save(&root.join("b.png"), 3, 3, 1);
        save(&root.join("a/deep/er/c.jpg"), 3, 3, 1);
        save(&root.join(".hidden.png"), 3, 3, 1);
        std::fs::create_dir(root.join(".git")).unwrap();
        let l = list(root, "flat", true).unwrap();
        assert!(l.classes.is_empty());
        assert_eq!(names(&l.train, root), ["a/deep/er/c.jpg", "b.png"]);
        assert_eq!(l.ignored, 2);
        // A photo archive by year and month: no folder holds images directly.
        let dir = tempfile::tempdir().unwrap();
        save(&dir.path().join("2023/01/x.jpg"), 3, 3, 1);
        save(&dir.path().join("2024/02/y.jpg"), 3, 3, 1);
        assert!(list(dir.path(), "photos", true).unwrap().classes.is_empty());
    }

    #[test]
    fn train_and_test_split() {
        let dir = tempfile::tempdir().unwrap();
        write_tree(&dir.path().join("train"));
        save(&dir.path().join("val/dogs/q.png"), 5, 5, 40);
        save(&dir.path().join("val/cats/r.png"), 5, 5, 40);
        let l = list(dir.path(), "pets", true).unwrap();
        let test = l.test.unwrap();
        assert_eq!(test.iter().map(|f| f.label).collect::<Vec<_>>(), [0, 1]);
        save(&dir.path().join("val/birds/q.png"), 4, 4, 40);
        let e = list(dir.path(), "pets", true).unwrap_err();
        assert!(e.to_string().contains("birds"), "{e}");
    }

    #[test]
    fn empty_and_missing_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(list(dir.path(), "x", true), Err(DataError::Empty { .. })));
        assert!(!looks_like_folder(dir.path()));
        std::fs::write(dir.path().join("readme.txt"), "hi").unwrap();
        assert!(!looks_like_folder(dir.path()));
        assert!(matches!(list(&dir.path().join("nope"), "x", true), Err(DataError::NotFound { .. })));
    }
}
