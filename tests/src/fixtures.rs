//! Small on-disk datasets in the formats `--data PATH` detects: an ImageFolder tree of PNGs,
//! CIFAR-10 binary batches, and IDX files (gzip-compressed or not).
//!
//! The pixels come from the built-in `shapes` generator, so the fixtures hold learnable
//! images (a pretext task's loss can fall on them) and every format carries the same ones.

use std::io::Write;
use std::path::Path;

use pretext_core::data::Dataset;
use pretext_core::data::shapes;

/// `n` labelled 32×32 RGB images of the `shapes` set.
pub fn shapes_images(n: usize, seed: u64) -> Dataset {
    shapes::generate(n, seed)
}

/// Image `i` of an RGB dataset as an RGB image.
pub fn png(data: &Dataset, i: usize) -> image::RgbImage {
    pretext_core::data::decode::from_planar(data.images.image(i), data.channels(), data.height(), data.width())
        .expect("a dataset image has its dataset's shape")
        .to_rgb8()
}

fn write_class_tree(root: &Path, data: &Dataset) {
    for i in 0..data.len() {
        let class = &data.classes[data.labels[i] as usize];
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        png(data, i).save(dir.join(format!("img-{i:05}.png"))).unwrap();
    }
}

/// An ImageFolder tree: `root/train/<class>/*.png` with `train` images and
/// `root/test/<class>/*.png` with `test` images.
pub fn write_image_folder(root: &Path, train: usize, test: usize) {
    write_class_tree(&root.join("train"), &shapes_images(train, 1));
    write_class_tree(&root.join("test"), &shapes_images(test, 2));
}

fn cifar_records(data: &Dataset) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(data.len() * (1 + data.images.image_len()));
    for i in 0..data.len() {
        bytes.push(u8::try_from(data.labels[i]).unwrap());
        // CIFAR stores 32×32 RGB planes, the same CHW layout as `ByteImages`.
        bytes.extend_from_slice(data.images.image(i));
    }
    bytes
}

/// A CIFAR-10 binary folder: `data_batch_1.bin` and `data_batch_2.bin` splitting `train`
/// images, `test_batch.bin` with `test` images, and `batches.meta.txt` naming the classes.
pub fn write_cifar_dir(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let data = shapes_images(train, 1);
    let half = train / 2;
    let first = data.take(half);
    let second = data.subset(&(half..train).collect::<Vec<_>>());
    std::fs::write(dir.join("data_batch_1.bin"), cifar_records(&first)).unwrap();
    std::fs::write(dir.join("data_batch_2.bin"), cifar_records(&second)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), cifar_records(&shapes_images(test, 2))).unwrap();
    std::fs::write(dir.join("batches.meta.txt"), data.classes.join("\n") + "\n").unwrap();
}

fn idx_images(data: &Dataset) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [0x0803u32, u32::try_from(data.len()).unwrap(), data.height() as u32, data.width() as u32] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    // Grayscale: the mean of the three channels.
    let plane = data.height() * data.width();
    for i in 0..data.len() {
        let img = data.images.image(i);
        bytes.extend(
            (0..plane)
                .map(|p| ((u16::from(img[p]) + u16::from(img[plane + p]) + u16::from(img[2 * plane + p])) / 3) as u8),
        );
    }
    bytes
}

fn idx_labels(data: &Dataset) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [0x0801u32, u32::try_from(data.len()).unwrap()] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.extend(data.labels.iter().map(|&l| u8::try_from(l).unwrap()));
    bytes
}

fn write_maybe_gz(path: &Path, bytes: &[u8], gz: bool) {
    if gz {
        let file = std::fs::File::create(path.with_extension("gz")).unwrap();
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// An MNIST-style folder of four IDX files (grayscale 32×32), `.gz` when `gz`.
pub fn write_idx_dir(dir: &Path, train: usize, test: usize, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let (tr, te) = (shapes_images(train, 1), shapes_images(test, 2));
    write_maybe_gz(&dir.join("train-images-idx3-ubyte"), &idx_images(&tr), gz);
    write_maybe_gz(&dir.join("train-labels-idx1-ubyte"), &idx_labels(&tr), gz);
    write_maybe_gz(&dir.join("t10k-images-idx3-ubyte"), &idx_images(&te), gz);
    write_maybe_gz(&dir.join("t10k-labels-idx1-ubyte"), &idx_labels(&te), gz);
}
