//! One image file to training pixels: decode (JPEG, PNG, WebP, BMP, TIFF, GIF's first
//! frame; grey, RGBA, palette, 16-bit and CMYK alike), apply the EXIF orientation, bring it
//! to N×N and lay it out planar (`c`×N×N bytes, channel after channel).
//!
//! The size policy is torchvision's `Resize(N)` + `CenterCrop(N)`: the centred square of the
//! shorter side is resized to N×N with Pillow's antialiased bilinear filter. Cropping before
//! resizing gives the same picture as resizing first and resizes fewer pixels. A file that does not decode, or declares
//! dimensions past [`MAX_SIDE`] or an allocation past [`MAX_ALLOC`] (an image bomb), is an
//! `Err` with one short reason; the caller decides whether that skips the file or stops.
//! This file must not list folders or know about caches.

use std::path::Path;

use fast_image_resize as fir;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};

/// Longest side a file may declare.
pub const MAX_SIDE: u32 = 1 << 15;
/// Most memory one decode may allocate: a 170-megapixel RGB photo.
pub const MAX_ALLOC: u64 = 512 << 20;

/// File extensions read as images (compared without case).
pub const EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "jfif"];

/// Whether `path` names an image by its extension.
pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// What a file's header says, read without decoding the pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    /// Stored without colour (grey, with or without alpha).
    pub grey: bool,
}

fn decoder<R: std::io::BufRead + std::io::Seek + 'static>(reader: ImageReader<R>) -> Result<impl ImageDecoder, String> {
    let mut reader = reader.with_guessed_format().map_err(|e| one_line(&e.to_string()))?;
    if reader.format().is_none() {
        return Err("not an image in a format this program reads".into());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    reader.into_decoder().map_err(|e| reason(&e))
}

/// The error as a short reason on one line: the image crate's limit errors name the cause
/// plainly, decoders' messages can span lines.
fn reason(e: &image::ImageError) -> String {
    match e {
        image::ImageError::Limits(_) => {
            format!("its declared size is too large (over {MAX_SIDE} pixels a side or {} MiB)", MAX_ALLOC >> 20)
        }
        e => one_line(&e.to_string()),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the header of `path`.
pub fn probe(path: &Path) -> Result<Probe, String> {
    let d = decoder(ImageReader::open(path).map_err(|e| one_line(&e.to_string()))?)?;
    let (width, height) = d.dimensions();
    if width == 0 || height == 0 {
        return Err("it has no pixels".into());
    }
    let grey = matches!(d.color_type(), ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16);
    Ok(Probe { width, height, grey })
}

/// Whether JPEG `bytes` hold their image's end marker. The JPEG decoder fills a truncated
/// file's missing rows with grey instead of failing (a half-grey photo would then train),
/// so a file cut short is found here: after the first start-of-scan (found by walking the
/// header segments, so an EXIF thumbnail's own markers are skipped) an `FF D9` can only be
/// the end of the image, since entropy-coded data stuffs every `FF` byte. Anything that is
/// not a JPEG, or is malformed before its scan, is left to the decoder to judge.
pub fn jpeg_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return true;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return true;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF || marker == 0x01 || (0xD0..=0xD8).contains(&marker) {
            i += if marker == 0xFF { 1 } else { 2 };
            continue;
        }
        if marker == 0xD9 {
            return true;
        }
        let segment = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            let scan = (i + 2 + segment).min(bytes.len());
            return bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + segment;
    }
    false
}

/// Decodes `path` upright (EXIF orientation applied).
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let bytes = std::fs::read(path).map_err(|e| one_line(&e.to_string()))?;
    if !jpeg_complete(&bytes) {
        return Err("it is truncated: the JPEG ends before its last row".into());
    }
    let mut d = decoder(ImageReader::new(std::io::Cursor::new(bytes)))?;
    let orientation = d.orientation().map_err(|e| reason(&e))?;
    let mut img = DynamicImage::from_decoder(d).map_err(|e| reason(&e))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err("it has no pixels".into());
    }
    Ok(img)
}

/// The file at `path` as `channels` (1 or 3) planes of `size`×`size`.
pub fn load(path: &Path, size: u32, channels: usize) -> Result<Vec<u8>, String> {
    Ok(to_planar(&square(decode(path)?, size, channels)?, channels))
}

/// The centred square of the shorter side, resized to `size`×`size` in `channels` (1 grey,
/// else RGB), with Pillow's antialiased bilinear filter (what torchvision's `Resize` uses
/// on PIL images), by `fast_image_resize`.
pub fn square(img: DynamicImage, size: u32, channels: usize) -> Result<DynamicImage, String> {
    let img = match (channels, img) {
        (1, img @ DynamicImage::ImageLuma8(_)) | (3, img @ DynamicImage::ImageRgb8(_)) => img,
        (1, img) => DynamicImage::ImageLuma8(img.to_luma8()),
        (_, img) => DynamicImage::ImageRgb8(img.to_rgb8()),
    };
    let (w, h) = (img.width(), img.height());
    if (w, h) == (size, size) {
        return Ok(img);
    }
    let side = w.min(h);
    let (x, y) = (centre_offset(w - side), centre_offset(h - side));
    let pixel = if channels == 1 { fir::PixelType::U8 } else { fir::PixelType::U8x3 };
    let mut out = fir::images::Image::new(size, size, pixel);
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)).crop(
        f64::from(x),
        f64::from(y),
        f64::from(side),
        f64::from(side),
    );
    fir::Resizer::new().resize(&img, &mut out, &options).map_err(|e| e.to_string())?;
    let bytes = out.into_vec();
    let made = if channels == 1 {
        image::GrayImage::from_raw(size, size, bytes).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(size, size, bytes).map(DynamicImage::ImageRgb8)
    };
    made.ok_or_else(|| "the resized image has the wrong size".to_string())
}

/// torchvision's `CenterCrop` offset for `spare` pixels: `int(round(spare / 2))`, with
/// Python's rounding of halves to even.
fn centre_offset(spare: u32) -> u32 {
    let half = spare / 2;
    if spare % 2 == 1 && half % 2 == 1 { half + 1 } else { half }
}

/// Planar bytes of `img` in 1 (grey) or 3 (RGB) channels; alpha is dropped, as PIL's
/// `convert("RGB")` does.
pub fn to_planar(img: &DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        return img.to_luma8().into_raw();
    }
    let rgb = img.to_rgb8();
    let plane = rgb.width() as usize * rgb.height() as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = px.0[ch];
        }
    }
    out
}

/// Planar bytes of `c` channels of `w`×`h` back to an image (1 channel: grey).
pub fn from_planar(data: &[u8], c: usize, h: usize, w: usize) -> Option<DynamicImage> {
    let (wu, hu) = (u32::try_from(w).ok()?, u32::try_from(h).ok()?);
    if c == 1 {
        return image::GrayImage::from_raw(wu, hu, data.to_vec()).map(DynamicImage::ImageLuma8);
    }
    let plane = w * h;
    let mut interleaved = Vec::with_capacity(3 * plane);
    for i in 0..plane {
        for ch in 0..3 {
            interleaved.push(data[ch * plane + i]);
        }
    }
    image::RgbImage::from_raw(wu, hu, interleaved).map(DynamicImage::ImageRgb8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn square_crops_the_centre_of_the_shorter_side() {
        // 6×2: columns 0..6 hold their index; the centred 2×2 is columns 2 and 3.
        let img = image::GrayImage::from_fn(6, 2, |x, _| image::Luma([x as u8 * 10]));
        let s = square(DynamicImage::ImageLuma8(img), 2, 1).unwrap();
        assert_eq!(s.to_luma8().into_raw(), vec![20, 30, 20, 30]);
        // 2×5: torchvision's offset is round(1.5) = 2 (Python rounds halves to even).
        let img = image::GrayImage::from_fn(2, 5, |_, y| image::Luma([y as u8]));
        let s = square(DynamicImage::ImageLuma8(img), 2, 1).unwrap();
        assert_eq!(s.to_luma8().into_raw(), vec![2, 2, 3, 3]);
        // Pillow's bilinear downscale by 2 spans two input pixels each side of an output's
        // centre: output 0 (centre 1.0) weighs inputs at 0.5, 1.5, 2.5 by 0.75, 0.75, 0.25,
        // so halves of 0 and 200 give 0.25·200/1.75 = 28.6 and 1.5·200/1.75 = 171.4.
        let halves = image::GrayImage::from_fn(4, 4, |x, _| image::Luma([if x < 2 { 0 } else { 200 }]));
        let s = square(DynamicImage::ImageLuma8(halves.clone()), 2, 1).unwrap();
        assert_eq!(s.to_luma8().into_raw(), vec![29, 171, 29, 171]);
        let s = square(DynamicImage::ImageLuma8(halves), 1, 3).unwrap();
        assert_eq!(s.to_rgb8().into_raw(), vec![100, 100, 100]);
        assert_eq!((centre_offset(1), centre_offset(3), centre_offset(5), centre_offset(4)), (0, 2, 2, 2));
    }

    #[test]
    fn a_jpeg_cut_short_is_found() {
        let img =
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 7])));
        let mut jpeg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        assert!(jpeg_complete(&jpeg));
        assert!(!jpeg_complete(&jpeg[..jpeg.len() * 9 / 10]), "cut inside the scan");
        assert!(!jpeg_complete(&jpeg[..40]), "cut inside the header");
        let mut trailer = jpeg.clone();
        trailer.extend_from_slice(&[0u8; 5000]);
        assert!(jpeg_complete(&trailer), "data after the end marker (motion photos) is fine");
        assert!(jpeg_complete(b"\x89PNG\r\n"), "other formats are the decoder's to judge");
    }

    #[test]
    fn planar_round_trip() {
        let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let planar = to_planar(&DynamicImage::ImageRgb8(img.clone()), 3);
        assert_eq!(planar, vec![0, 1, 2, 0, 1, 2, 0, 0, 0, 1, 1, 1, 9, 9, 9, 9, 9, 9]);
        assert_eq!(from_planar(&planar, 3, 2, 3).unwrap().to_rgb8(), img);
        assert_eq!(to_planar(&DynamicImage::ImageRgb8(img), 1).len(), 6);
    }
}
