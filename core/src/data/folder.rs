//! Reading an ImageFolder tree: `root/<class>/<image>.png|jpg|jpeg`, or `root/train/<class>/…`
//! with `root/test/<class>/…` (or `val`) for a held-out split.
//!
//! Classes are the sub-folders sorted by name; each class's images are sorted by file name.
//! Images are decoded to RGB and resized (bilinear) to the size of the first one, so every
//! image of a dataset has one shape. The dataset lists images class by class in turn
//! (first image of each class, then the second of each, …) rather than class after class,
//! so that keeping the first N images, as `--limit` does, keeps every class. An empty
//! folder, a class with no image or a file that does not decode is a [`DataError`] naming
//! it. This file must not decide where datasets live (that is `spec.rs`).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::dataset::{DataSplits, Dataset};
use super::error::DataError;
use super::images::ByteImages;

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Visible sub-folders or files of `dir`, sorted by name.
fn entries(dir: &Path, want_dirs: bool) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in read {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path.is_dir() == want_dirs {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn class_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The class folders of `root` and the image files of each.
fn list_classes(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let dirs = entries(root, true)?;
    if dirs.is_empty() {
        return Err(DataError::Empty { path: root.to_path_buf(), what: "class folders" });
    }
    dirs.into_iter()
        .map(|dir| {
            let files: Vec<PathBuf> = entries(&dir, false)?.into_iter().filter(|p| is_image(p)).collect();
            if files.is_empty() {
                return Err(DataError::Empty { path: dir, what: "PNG or JPEG images" });
            }
            Ok((class_name(&dir), files))
        })
        .collect()
}

/// Whether `root` looks like an ImageFolder tree: a sub-folder (of `root`, or of
/// `root/train`) holding at least one image file.
pub fn looks_like_folder(root: &Path) -> bool {
    let base = if root.join("train").is_dir() { root.join("train") } else { root.to_path_buf() };
    entries(&base, true)
        .is_ok_and(|dirs| dirs.iter().any(|d| entries(d, false).is_ok_and(|files| files.iter().any(|f| is_image(f)))))
}

/// Loads `root`. With a `train` sub-folder, that is the training split and `test` (else
/// `val`) the test split; otherwise `root` itself holds the classes and there is no test
/// split. `limit` caps the training images before any is decoded.
pub fn load(root: &Path, name: &str, limit: Option<usize>) -> Result<DataSplits, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound { path: root.to_path_buf() });
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        let train = load_tree(root, name, limit, None)?;
        return Ok(DataSplits { train, test: None });
    }
    let train = load_tree(&train_dir, name, limit, None)?;
    let test_dir = ["test", "val"].iter().map(|d| root.join(d)).find(|d| d.is_dir());
    let test = match test_dir {
        Some(dir) => Some(load_tree(&dir, name, None, Some(&train))?),
        None => None,
    };
    Ok(DataSplits { train, test })
}

/// Loads one class tree. A test tree (`like` is the training set) takes the training
/// classes and image size, and may not add a class of its own.
fn load_tree(dir: &Path, name: &str, limit: Option<usize>, like: Option<&Dataset>) -> Result<Dataset, DataError> {
    let listed = list_classes(dir)?;
    let classes: Vec<String> = match like {
        Some(train) => train.classes.clone(),
        None => listed.iter().map(|(c, _)| c.clone()).collect(),
    };
    let mut per_class = Vec::with_capacity(listed.len());
    for (class, files) in listed {
        let Some(label) = classes.iter().position(|c| *c == class) else {
            return Err(DataError::inconsistent(
                &dir.join(&class),
                "it is a class folder that the training split does not have",
            ));
        };
        per_class.push((label as u32, files));
    }
    let mut order = interleave(&per_class);
    if let Some(limit) = limit {
        order.truncate(limit);
    }
    let Some(&(_, first)) = order.first() else {
        return Ok(Dataset { name: name.to_owned(), images: ByteImages::empty(3, 0, 0), labels: Vec::new(), classes });
    };
    let (w, h) = match like {
        Some(train) => (train.width() as u32, train.height() as u32),
        None => {
            let img = decode(first)?;
            (img.width(), img.height())
        }
    };
    let pixels: Vec<Vec<u8>> =
        order.par_iter().map(|&(_, path)| decode_resized(path, w, h)).collect::<Result<_, _>>()?;
    let mut images = ByteImages::empty(3, h as usize, w as usize);
    images.data.reserve(pixels.len() * images.image_len());
    for p in &pixels {
        images.data.extend_from_slice(p);
    }
    images.n = pixels.len();
    Ok(Dataset { name: name.to_owned(), images, labels: order.iter().map(|&(l, _)| l).collect(), classes })
}

/// Class-by-class round robin over the files of each class.
fn interleave(per_class: &[(u32, Vec<PathBuf>)]) -> Vec<(u32, &Path)> {
    let longest = per_class.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    (0..longest).flat_map(|i| per_class.iter().filter_map(move |(l, f)| f.get(i).map(|p| (*l, p.as_path())))).collect()
}

fn decode(path: &Path) -> Result<image::RgbImage, DataError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let img = reader.decode().map_err(|e| DataError::Decode { path: path.to_path_buf(), reason: e.to_string() })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::Decode { path: path.to_path_buf(), reason: "it has no pixels".to_owned() });
    }
    Ok(img.to_rgb8())
}

/// The image at `path` as planar RGB of `w`×`h`.
fn decode_resized(path: &Path, w: u32, h: u32) -> Result<Vec<u8>, DataError> {
    let mut img = decode(path)?;
    if img.dimensions() != (w, h) {
        img = image::imageops::resize(&img, w, h, FilterType::Triangle);
    }
    let plane = (w * h) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = px.0[ch];
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    fn save(path: &Path, w: u32, h: u32, value: u8) {
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

    #[test]
    fn classes_labels_and_order() {
        let dir = tempfile::tempdir().unwrap();
        write_tree(dir.path());
        assert!(looks_like_folder(dir.path()));
        let d = load(dir.path(), "pets", None).unwrap().train;
        assert_eq!(d.classes, vec!["cats", "dogs"]);
        assert_eq!(d.labels, vec![0, 1, 0, 1, 0]);
        assert_eq!((d.len(), d.channels(), d.height(), d.width()), (5, 3, 4, 4));
        // cats/x, dogs/a, cats/y (resized from 8×6), dogs/b: planes R, G, B.
        assert_eq!(d.images.image(1)[..16], [20; 16]);
        assert_eq!(d.images.image(1)[16..32], [10; 16]);
        assert_eq!(d.images.image(2)[0], 11);
        assert_eq!(d.images.image(3)[32], 225);
        let limited = load(dir.path(), "pets", Some(2)).unwrap().train;
        assert_eq!(limited.labels, vec![0, 1]);
    }

    #[test]
    fn train_and_test_split() {
        let dir = tempfile::tempdir().unwrap();
        write_tree(&dir.path().join("train"));
        save(&dir.path().join("val/dogs/q.png"), 5, 5, 40);
        let splits = load(dir.path(), "pets", None).unwrap();
        let test = splits.test.unwrap();
        assert_eq!(test.labels, vec![1]);
        assert_eq!(test.classes, splits.train.classes);
        assert_eq!((test.height(), test.width()), (4, 4));
        save(&dir.path().join("val/birds/q.png"), 4, 4, 40);
        let e = load(dir.path(), "pets", None).unwrap_err();
        assert!(e.to_string().contains("birds"), "{e}");
    }

    #[test]
    fn bad_trees_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path(), "x", None), Err(DataError::Empty { .. })));
        assert!(!looks_like_folder(dir.path()));
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let e = load(dir.path(), "x", None).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        write_tree(dir.path());
        std::fs::remove_dir(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("dogs/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        match load(dir.path(), "x", None).unwrap_err() {
            DataError::Decode { path, .. } => assert!(path.ends_with("broken.png")),
            e => panic!("{e}"),
        }
        assert!(matches!(load(&dir.path().join("nope"), "x", None), Err(DataError::NotFound { .. })));
    }
}
