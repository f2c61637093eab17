//! Folders of "your own images" written with the image crate (and `png`/`jpeg-encoder` for
//! what it does not write): photos of mixed sizes and aspect ratios in every format
//! Pretext reads, the colour types people's files come in, an EXIF-rotated JPEG, and the
//! broken files real folders have (truncated, empty, text named `.jpg`, a header declaring
//! an enormous image), plus hidden files and files that are not images.
//!
//! The pictures are `shapes` images scaled to each file's size, so a pretext task can learn
//! on them and a test can check pixels after decoding.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use pretext_core::data::shapes;

/// The `i`-th `shapes` image (32×32 RGB) and its class.
pub fn shape(i: usize, seed: u64) -> (RgbImage, usize) {
    let d = shapes::generate(i + 1, seed);
    (crate::fixtures::png(&d, i), d.labels[i] as usize)
}

/// A shape scaled to `w`×`h` (aspect ratio not kept: a "photo" of that size).
pub fn photo(i: usize, w: u32, h: u32) -> RgbImage {
    image::imageops::resize(&shape(i, 1).0, w, h, image::imageops::FilterType::Triangle)
}

/// Sizes that cycle through landscape, portrait and square, small and large.
pub fn size_of(i: usize) -> (u32, u32) {
    const SIZES: [(u32, u32); 6] = [(96, 64), (48, 80), (70, 70), (120, 90), (64, 128), (33, 41)];
    SIZES[i % SIZES.len()]
}

fn ensure_parent(path: &Path) {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("cannot create the folder");
}

/// Saves `img` in the format the extension names.
pub fn save(img: &DynamicImage, path: &Path) {
    ensure_parent(path);
    img.save(path).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// `n` JPEG photos of mixed sizes, `photo-NNNN.jpg`, in `dir`.
pub fn write_jpegs(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let (w, h) = size_of(i);
            let path = dir.join(format!("photo-{i:04}.jpg"));
            save(&DynamicImage::ImageRgb8(photo(i, w, h)), &path);
            path
        })
        .collect()
}

/// A JPEG of `img` whose EXIF says "rotate 90° clockwise to display" (orientation 6).
pub fn write_exif_rotated_jpeg(img: &RgbImage, path: &Path) {
    ensure_parent(path);
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    // One IFD entry: tag 0x0112 (Orientation), type SHORT, count 1, value 6; no next IFD.
    exif.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut enc = jpeg_encoder::Encoder::new_file(path, 95).expect("cannot create the JPEG");
    enc.add_app_segment(1, exif).expect("an EXIF segment fits");
    let (w, h) = (u16::try_from(img.width()).unwrap(), u16::try_from(img.height()).unwrap());
    enc.encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb).expect("cannot encode the JPEG");
}

/// A CMYK JPEG of one colour (`cmyk` as stored, 0 = no ink).
pub fn write_cmyk_jpeg(path: &Path, w: u16, h: u16, cmyk: [u8; 4]) {
    ensure_parent(path);
    let data: Vec<u8> = (0..usize::from(w) * usize::from(h)).flat_map(|_| cmyk).collect();
    let enc = jpeg_encoder::Encoder::new_file(path, 95).expect("cannot create the JPEG");
    enc.encode(&data, w, h, jpeg_encoder::ColorType::Cmyk).expect("cannot encode the CMYK JPEG");
}

/// A palette PNG: 8 colours, the picture's red channel quantised to them.
pub fn write_palette_png(img: &RgbImage, path: &Path) {
    ensure_parent(path);
    let file = std::fs::File::create(path).expect("cannot create the PNG");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), img.width(), img.height());
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette((0..8u8).flat_map(|k| [k * 32, 255 - k * 32, 128]).collect::<Vec<_>>());
    let mut w = enc.write_header().expect("cannot write the PNG header");
    let idx: Vec<u8> = img.pixels().map(|p| p.0[0] / 32).collect();
    w.write_image_data(&idx).expect("cannot write the PNG data");
}

/// CRC-32 (IEEE) of PNG chunks, for the hand-made header below.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG header declaring `side`×`side` RGBA pixels with no data: an image bomb.
pub fn write_huge_png_header(path: &Path, side: u32) {
    ensure_parent(path);
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    std::fs::write(path, bytes).expect("cannot write the PNG header");
}

/// What [`write_mixed_folder`] wrote.
pub struct Mixed {
    /// Image files that decode.
    pub good: usize,
    /// Files that must be skipped, by file name.
    pub bad: Vec<&'static str>,
    /// Hidden files and files that are not images.
    pub ignored: usize,
}

/// A flat folder (with one nested sub-folder) of everything people's folders hold: JPEG,
/// PNG, WebP, BMP, TIFF and GIF files of mixed sizes; grey, grey+alpha, RGBA, 16-bit,
/// palette and CMYK images; an EXIF-rotated JPEG; broken files; hidden and other files.
pub fn write_mixed_folder(root: &Path, jpegs: usize) -> Mixed {
    write_jpegs(root, jpegs);
    let p = |i: usize| photo(i, size_of(i).0, size_of(i).1);
    let rgb = |i: usize| DynamicImage::ImageRgb8(p(i));
    save(&rgb(1), &root.join("formats/a.png"));
    save(&rgb(2), &root.join("formats/b.webp"));
    save(&rgb(3), &root.join("formats/c.bmp"));
    save(&rgb(4), &root.join("formats/d.tiff"));
    save(&rgb(5), &root.join("formats/e.gif"));
    save(&DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(p(6)).to_luma8()), &root.join("colour/grey.png"));
    save(
        &DynamicImage::ImageLumaA8(DynamicImage::ImageRgb8(p(7)).to_luma_alpha8()),
        &root.join("colour/grey-alpha.png"),
    );
    save(&DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(p(8)).to_rgba8()), &root.join("colour/rgba.png"));
    save(&DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(p(9)).to_rgb16()), &root.join("colour/sixteen-bit.png"));
    write_palette_png(&p(10), &root.join("colour/palette.png"));
    write_cmyk_jpeg(&root.join("colour/cmyk.jpg"), 40, 30, [0, 255, 255, 0]);
    write_exif_rotated_jpeg(&photo(11, 60, 40), &root.join("exif-rotated.jpg"));
    // Broken files.
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(p(12)).write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
    std::fs::write(root.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    // Cut late: the decoder alone would fill the missing rows with grey and succeed.
    let mut big = Vec::new();
    DynamicImage::ImageRgb8(photo(13, 400, 300))
        .write_to(&mut std::io::Cursor::new(&mut big), ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(root.join("truncated-late.jpg"), &big[..big.len() * 9 / 10]).unwrap();
    std::fs::write(root.join("empty.jpg"), b"").unwrap();
    std::fs::write(root.join("text.jpg"), b"this is not a picture\n").unwrap();
    write_huge_png_header(&root.join("bomb.png"), 200_000);
    // Not images.
    std::fs::write(root.join(".DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    let mut notes = std::fs::File::create(root.join("notes.txt")).unwrap();
    writeln!(notes, "holiday photos").unwrap();
    Mixed {
        good: jpegs + 12,
        bad: vec!["bomb.png", "empty.jpg", "text.jpg", "truncated-late.jpg", "truncated.jpg"],
        ignored: 2,
    }
}
