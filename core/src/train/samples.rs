//! Writes the task's pretext inputs as PNG files under `samples/`, with an index the
//! viewers read (`samples/index.json`).

use std::path::Path;

use crate::data::{ByteImages, encode_png};
use crate::run::store::{write_atomic, write_json};
use crate::run::{FORMAT_VERSION, SampleEntry, SampleIndex};
use crate::task::wire::SampleImage;

use super::TrainError;

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
