//! Turning a `--data SPEC` into train and test splits: the built-in `shapes`, a named dataset
//! looked for in the usual places, or a path whose format is detected.
//!
//! All knowledge of where datasets live (`$PRETEXT_DATA`, `/usr/share/datasets`, folder
//! names, install hints) is here and nowhere else. This file must not parse file formats
//! itself (`idx.rs`, `cifar.rs`, `folder.rs`, `listfile.rs` do) nor decode images
//! (`imagefiles.rs` does); it only brings in-memory sets to a requested `--image-size`.

use std::path::{Path, PathBuf};

use super::dataset::{DataSplits, Dataset};
use super::error::DataError;
use super::imagefiles::{DecodeOptions, MAX_IMAGE_SIZE};
use super::report::SizeSource;
use super::{Progress, cache, cifar, decode, folder, idx, imagefiles, listfile, shapes};

/// Environment variable naming a folder of datasets (or a dataset folder itself).
pub const DATA_ENV: &str = "PRETEXT_DATA";
/// Where Debian's `dataset-*` packages install datasets.
pub const SYSTEM_DATA: &str = "/usr/share/datasets";
/// Training images of the built-in `shapes` set when no limit is given.
pub const SHAPES_TRAIN: usize = 10_000;
/// Test images of the built-in `shapes` set.
pub const SHAPES_TEST: usize = 2_000;

/// Where the pixels of image files are kept between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// The default cache folder ([`cache::default_root`]).
    #[default]
    Default,
    /// A cache folder of the user's choosing.
    Dir(PathBuf),
    /// Decode into memory every time; write nothing.
    Off,
}

/// How to open a dataset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Keep only the first N training images (the test split is kept whole).
    pub limit: Option<usize>,
    /// Seed of the procedural `shapes` set; file datasets ignore it. Keep it fixed across
    /// runs that should be compared on the same images.
    pub seed: u64,
    /// Bring every image to N×N; `None` keeps the data's own square size, or picks the
    /// default training size for image files of mixed sizes.
    pub image_size: Option<usize>,
    /// Ignore class folders and label columns: every image unlabeled.
    pub no_labels: bool,
    /// Stop at the first image file that cannot be used instead of skipping it.
    pub strict: bool,
    pub cache: CacheMode,
}

impl OpenOptions {
    /// Checks the options themselves; one sentence when they cannot work.
    pub fn validate(&self) -> Result<(), String> {
        match self.image_size {
            Some(n) if !(8..=MAX_IMAGE_SIZE).contains(&n) => {
                Err(format!("--image-size must be between 8 and {MAX_IMAGE_SIZE}, not {n}"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Idx,
    Cifar,
}

/// A dataset known by name: where to look for it and how to tell a user to get it.
struct Known {
    name: &'static str,
    aliases: &'static [&'static str],
    /// Folder names tried under each search root.
    dirs: &'static [&'static str],
    format: Format,
    hint: &'static str,
}

const KNOWN: [Known; 3] = [
    Known {
        name: "fashion-mnist",
        aliases: &["fashion-mnist", "fashion_mnist", "fashionmnist"],
        dirs: &["fashion-mnist"],
        format: Format::Idx,
        hint: "install it with `apt-get install dataset-fashion-mnist`, or put its four IDX files \
               in $PRETEXT_DATA/fashion-mnist",
    },
    Known {
        name: "mnist",
        aliases: &["mnist"],
        dirs: &["mnist"],
        format: Format::Idx,
        hint: "put its four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
               t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in $PRETEXT_DATA/mnist",
    },
    Known {
        name: "cifar10",
        aliases: &["cifar10", "cifar-10", "cifar_10"],
        dirs: &["cifar10", "cifar-10", "cifar-10-batches-bin"],
        format: Format::Cifar,
        hint: "extract the binary version (cifar-10-binary.tar.gz) into $PRETEXT_DATA/cifar10",
    },
];

/// Opens the dataset that `spec` names: `shapes`, `fashion-mnist`, `mnist`, `cifar10`, or a
/// path to IDX files, CIFAR-10 batches, a folder of images or a list file.
pub fn open(spec: &str, opts: &OpenOptions) -> Result<DataSplits, DataError> {
    open_with(spec, opts, &mut |_| {})
}

/// [`open`], reporting the progress of reading and decoding image files.
pub fn open_with(spec: &str, opts: &OpenOptions, progress: &mut dyn FnMut(Progress)) -> Result<DataSplits, DataError> {
    opts.validate().map_err(|reason| DataError::Inconsistent { path: spec.into(), reason })?;
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("shapes") {
        let splits = DataSplits {
            train: shapes::generate(opts.limit.unwrap_or(SHAPES_TRAIN), opts.seed),
            test: Some(shapes::generate(SHAPES_TEST, test_seed(opts.seed))),
            report: super::DataReport::default(),
        };
        // Generated at its limit already; only the size may change.
        return Ok(in_memory(splits, &OpenOptions { limit: None, ..opts.clone() }));
    }
    if let Some(known) = find_known(spec) {
        let env = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = locate(known, env.as_deref(), Path::new(SYSTEM_DATA))?;
        log::info!("dataset {} found in {}", known.name, dir.display());
        return Ok(in_memory(load_format(known.format, &dir, known.name)?, opts));
    }
    let path = Path::new(spec);
    if !path.exists() {
        // A bare word is more likely a misspelt dataset name than a missing file.
        let looks_like_name = !spec.contains(['/', '\\', '.']);
        return Err(if looks_like_name {
            DataError::UnknownSpec { spec: spec.to_owned() }
        } else {
            DataError::NotFound { path: path.to_path_buf() }
        });
    }
    open_path(path, opts, progress)
}

/// An in-memory set cut to `--limit` and brought to `--image-size` (image files arrive
/// with both done).
fn in_memory(mut splits: DataSplits, opts: &OpenOptions) -> DataSplits {
    if let Some(limit) = opts.limit {
        splits.train.truncate(limit);
    }
    if let Some(n) = opts.image_size
        && splits.report.size_source == SizeSource::Native
    {
        resize_in_memory(&mut splits, n);
    }
    splits
}

/// Brings an in-memory set (shapes, IDX, CIFAR) to `size`×`size`, as image files are.
fn resize_in_memory(splits: &mut DataSplits, size: usize) {
    let resize = |d: &mut Dataset| {
        let s = &d.images;
        if (s.h, s.w) == (size, size) {
            return;
        }
        let (c, h, w) = (s.c, s.h, s.w);
        let side = u32::try_from(size).unwrap_or(u32::MAX);
        let mut out = super::ByteImages::empty(c, size, size);
        out.data.reserve(s.n * c * size * size);
        for i in 0..s.n {
            match decode::from_planar(s.image(i), c, h, w).map(|img| decode::square(img, side, c)) {
                Some(Ok(img)) => out.data.extend(decode::to_planar(&img, c)),
                _ => out.data.extend(std::iter::repeat_n(0, c * size * size)),
            }
            out.n += 1;
        }
        d.images = out.into();
    };
    let resized = (splits.train.height(), splits.train.width()) != (size, size);
    resize(&mut splits.train);
    if let Some(t) = &mut splits.test {
        resize(t);
    }
    splits.report.size_source = SizeSource::Requested;
    splits.report.resized = resized;
}

/// The seed of the `shapes` test split: distinct from the training seed for every seed.
fn test_seed(seed: u64) -> u64 {
    seed ^ 0x5445_5354_5345_4544
}

fn find_known(spec: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.aliases.iter().any(|a| a.eq_ignore_ascii_case(spec)))
}

/// Whether `dir` holds `format`'s files.
fn holds(format: Format, dir: &Path) -> bool {
    match format {
        Format::Idx => idx::find_files(dir).is_some(),
        Format::Cifar => cifar::find_files(dir).is_some(),
    }
}

/// The folder holding `known`: `$PRETEXT_DATA/<dir>`, then `$PRETEXT_DATA` itself, then
/// `<system>/<dir>`; CIFAR's own `cifar-10-batches-bin` is also looked for inside each.
fn locate(known: &Known, env: Option<&Path>, system: &Path) -> Result<PathBuf, DataError> {
    let mut candidates = Vec::new();
    if let Some(root) = env {
        candidates.extend(known.dirs.iter().map(|d| root.join(d)));
        candidates.push(root.to_path_buf());
    }
    candidates.extend(known.dirs.iter().map(|d| system.join(d)));
    let mut searched = Vec::new();
    for dir in candidates {
        let mut tries = vec![dir.clone()];
        if known.format == Format::Cifar {
            tries.push(dir.join("cifar-10-batches-bin"));
        }
        for t in tries {
            if holds(known.format, &t) {
                return Ok(t);
            }
        }
        searched.push(dir);
    }
    let hint = if env.is_none() { format!("{} ({DATA_ENV} is not set)", known.hint) } else { known.hint.to_owned() };
    Err(DataError::DatasetNotFound { name: known.name.to_owned(), searched, hint })
}

fn load_format(format: Format, dir: &Path, name: &str) -> Result<DataSplits, DataError> {
    match format {
        Format::Idx => idx::load_dir(dir, name),
        Format::Cifar => cifar::load_dir(dir, name),
    }
}

/// A short name for a dataset at `path`: its folder's name.
fn name_of(path: &Path) -> String {
    let dir = if path.is_file() { path.parent().unwrap_or(path) } else { path };
    dir.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map_or_else(|| "data".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Opens an existing path, detecting its format. `opts.limit` lets image files skip
/// decoding images that would be dropped anyway.
fn open_path(path: &Path, opts: &OpenOptions, progress: &mut dyn FnMut(Progress)) -> Result<DataSplits, DataError> {
    let name = name_of(path);
    let labels = !opts.no_labels;
    if path.is_file() {
        if idx::looks_like_idx(path) {
            return Ok(in_memory(idx::load_single(path, &name)?, opts));
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin")) {
            let files = cifar::CifarFiles { train: vec![path.to_path_buf()], test: None, meta: None };
            return Ok(in_memory(cifar::load_files(&files, &name)?, opts));
        }
        if listfile::looks_like_list(path) {
            let stem = path.file_stem().map_or_else(|| name.clone(), |s| s.to_string_lossy().into_owned());
            return open_listing(&listfile::list(path, &stem, labels)?, opts, progress);
        }
        return Err(DataError::Undetected { path: path.to_path_buf() });
    }
    if let Some(files) = idx::find_files(path) {
        return Ok(in_memory(idx::load_files(&files, &name)?, opts));
    }
    for dir in [path.to_path_buf(), path.join("cifar-10-batches-bin")] {
        if let Some(files) = cifar::find_files(&dir) {
            return Ok(in_memory(cifar::load_files(&files, &name)?, opts));
        }
    }
    if folder::looks_like_folder(path) {
        return open_listing(&folder::list(path, &name, labels)?, opts, progress);
    }
    let is_empty = std::fs::read_dir(path).map_err(|e| DataError::io(path, e))?.next().is_none();
    Err(if is_empty {
        DataError::Empty { path: path.to_path_buf(), what: "files" }
    } else {
        DataError::Undetected { path: path.to_path_buf() }
    })
}

/// Decodes listed image files, through the pixel cache unless it is off.
fn open_listing(
    listing: &super::listing::Listing,
    opts: &OpenOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<DataSplits, DataError> {
    let decode = DecodeOptions { image_size: opts.image_size, strict: opts.strict };
    match &opts.cache {
        CacheMode::Off => imagefiles::load(listing, &decode, opts.limit, progress),
        CacheMode::Default => cache::open(&cache::default_root(), listing, &decode, opts.limit, progress),
        CacheMode::Dir(dir) => cache::open(dir, listing, &decode, opts.limit, progress),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::data::{cifar, folder, idx};

    #[test]
    fn shapes_splits_and_limit() {
        let s = open("shapes", &OpenOptions { limit: Some(50), seed: 3, ..OpenOptions::default() }).unwrap();
        assert_eq!(s.train.len(), 50);
        let test = s.test.unwrap();
        assert_eq!(test.len(), SHAPES_TEST);
        assert_ne!(test.images.image(0), s.train.images.image(0), "test comes from another seed");
        assert_eq!(s.train, shapes::generate(50, 3));
    }

    #[test]
    fn detects_formats_from_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (m, c, f) = (dir.path().join("m"), dir.path().join("c"), dir.path().join("f"));
        for d in [&m, &c, &f] {
            std::fs::create_dir(d).unwrap();
        }
        idx::tests::write_mnist_dir(&m, true);
        cifar::tests::write_cifar_dir(&c);
        folder::tests::write_tree(&f);
        let opts = OpenOptions { cache: CacheMode::Off, ..OpenOptions::default() };

        let s = open(m.to_str().unwrap(), &opts).unwrap();
        assert_eq!((s.train.len(), s.train.name.as_str()), (3, "m"));
        assert_eq!(s.test.unwrap().len(), 2);
        let s = open(m.join("train-images-idx3-ubyte.gz").to_str().unwrap(), &opts).unwrap();
        assert_eq!(s.train.len(), 3);

        let s = open(c.to_str().unwrap(), &OpenOptions { limit: Some(4), ..OpenOptions::default() }).unwrap();
        assert_eq!((s.train.len(), s.train.channels()), (4, 3));
        assert_eq!(s.test.unwrap().len(), 4);

        let s = open(f.to_str().unwrap(), &opts).unwrap();
        assert_eq!(s.train.classes, vec!["cats", "dogs"]);
        assert!(s.test.is_none());

        let empty = dir.path().join("e");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(open(empty.to_str().unwrap(), &opts), Err(DataError::Empty { .. })));
        std::fs::write(empty.join("readme.txt"), "hi").unwrap();
        assert!(matches!(open(empty.to_str().unwrap(), &opts), Err(DataError::Undetected { .. })));
        assert!(matches!(open("no-such-set", &opts), Err(DataError::UnknownSpec { .. })));
        assert!(matches!(open("./no/such/dir", &opts), Err(DataError::NotFound { .. })));
    }

    #[test]
    fn locates_named_datasets() {
        let root = tempfile::tempdir().unwrap();
        let system = tempfile::tempdir().unwrap();
        let fashion = find_known("Fashion-MNIST").unwrap();
        let e = locate(fashion, Some(root.path()), system.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");
        assert!(msg.contains(&root.path().join("fashion-mnist").display().to_string()), "{msg}");
        assert!(msg.contains(&system.path().join("fashion-mnist").display().to_string()), "{msg}");

        let sys_dir = system.path().join("fashion-mnist");
        std::fs::create_dir(&sys_dir).unwrap();
        idx::tests::write_mnist_dir(&sys_dir, true);
        assert_eq!(locate(fashion, Some(root.path()), system.path()).unwrap(), sys_dir);
        // $PRETEXT_DATA itself wins over the system folder.
        idx::tests::write_mnist_dir(root.path(), false);
        assert_eq!(locate(fashion, Some(root.path()), system.path()).unwrap(), root.path());

        let cifar_known = find_known("cifar10").unwrap();
        let inner = root.path().join("cifar10/cifar-10-batches-bin");
        std::fs::create_dir_all(&inner).unwrap();
        cifar::tests::write_cifar_dir(&inner);
        assert_eq!(locate(cifar_known, Some(root.path()), system.path()).unwrap(), inner);
    }

    /// Opens Debian's `dataset-fashion-mnist` by name when it is installed.
    #[test]
    fn opens_debian_fashion_mnist_by_name() {
        if !Path::new(SYSTEM_DATA).join("fashion-mnist").is_dir() || std::env::var_os(DATA_ENV).is_some() {
            eprintln!(
                "skipped: needs {SYSTEM_DATA}/fashion-mnist (apt-get install dataset-fashion-mnist) and no {DATA_ENV}"
            );
            return;
        }
        let s = open("fashion-mnist", &OpenOptions { limit: Some(1000), ..OpenOptions::default() }).unwrap();
        assert_eq!((s.train.len(), s.train.height(), s.train.classes[9].as_str()), (1000, 28, "Ankle boot"));
        assert_eq!(s.test.map(|t| t.len()), Some(10_000));
    }
}
