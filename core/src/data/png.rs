//! Writing an image batch's image as PNG: run samples and evaluation grids. The reading
//! side is `decode.rs`.

use super::ByteImages;

/// Encodes one image (1 or 3 channels, CHW) as PNG bytes.
pub fn encode_png(image: &ByteImages) -> Result<Vec<u8>, String> {
    let (w, h) =
        (u32::try_from(image.w).map_err(|e| e.to_string())?, u32::try_from(image.h).map_err(|e| e.to_string())?);
    let plane = image.h * image.w;
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    use image::ImageEncoder;
    match image.c {
        1 => encoder.write_image(&image.data[..plane], w, h, image::ExtendedColorType::L8),
        3 => {
            let interleaved: Vec<u8> =
                (0..plane).flat_map(|p| (0..3).map(move |c| (c, p))).map(|(c, p)| image.data[c * plane + p]).collect();
            encoder.write_image(&interleaved, w, h, image::ExtendedColorType::Rgb8)
        }
        c => return Err(format!("cannot write a {c}-channel image as PNG")),
    }
    .map_err(|e| e.to_string())?;
    Ok(bytes)
}
