//! Writes the task's pretext inputs as PNG files under `samples/`, with an index the
//! viewers read (`samples/index.json`).

use std::path::Path;

use crate::data::ByteImages;
use crate::run::store::{write_atomic, write_json};
use crate::run::{FORMAT_VERSION, SampleEntry, SampleIndex};
use crate::task::wire::SampleImage;

use super::TrainError;

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

pub fn write_samples(dir: &Path, sources: &ByteImages, samples: &[SampleImage]) -> Result<(), TrainError> {
    let fail = |reason: String| TrainError::Samples { path: dir.to_path_buf(), reason };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let mut index = SampleIndex { format_version: FORMAT_VERSION, sources: Vec::new(), samples: Vec::new() };
    for i in 0..sources.n {
        let file = format!("source-{i:03}.png");
        write_atomic(&dir.join(&file), &encode_png(&sources.one(i)).map_err(fail)?)?;
        index.sources.push(file);
    }
    for (i, s) in samples.iter().enumerate() {
        let file = format!("sample-{i:04}.png");
        write_atomic(&dir.join(&file), &encode_png(&s.image).map_err(fail)?)?;
        index.samples.push(SampleEntry { file, group: s.group, caption: s.caption.clone() });
    }
    write_json(&dir.join("index.json"), &index)?;
    Ok(())
}
