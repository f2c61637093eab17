//! How embeddings and samples cross the plugin boundary: safetensors bytes of plain f32/u8
//! data, readable without candle (so the host, the app and the browser can decode them).

use std::collections::{BTreeMap, HashMap};

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::Sample;
use crate::images::{ByteImages, FloatImages};

/// A named row-major matrix, e.g. the features of N images (N × D).
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// A decoded sample: one pretext input as bytes, with its caption.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleImage {
    pub group: usize,
    pub caption: String,
    pub image: ByteImages,
}

/// The metadata key holding every sample's caption, as one JSON map (one key keeps the
/// bytes independent of hash order).
const SAMPLES_KEY: &str = "samples";

#[derive(Serialize, Deserialize)]
struct SampleMeta {
    group: usize,
    caption: String,
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn encode_matrices(matrices: &[Matrix]) -> Result<Vec<u8>, String> {
    let bytes: Vec<Vec<u8>> = matrices.iter().map(|m| f32_bytes(&m.data)).collect();
    let views = matrices
        .iter()
        .zip(&bytes)
        .map(|(m, b)| TensorView::new(Dtype::F32, vec![m.rows, m.cols], b).map(|v| (m.name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

pub fn decode_matrices(bytes: &[u8]) -> Result<Vec<Matrix>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let [rows, cols] = view.shape() else {
            return Err(format!("tensor {name} is not a matrix"));
        };
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor {name} is not f32"));
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.push(Matrix { name, rows: *rows, cols: *cols, data });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn encode_samples(samples: &[Sample]) -> Result<Vec<u8>, String> {
    let images: Vec<ByteImages> = samples.iter().map(|s| FloatImages::to_bytes(&s.image)).collect();
    let mut meta = BTreeMap::new();
    let mut views = Vec::new();
    for (i, (s, img)) in samples.iter().zip(&images).enumerate() {
        let name = format!("sample.{i:04}");
        meta.insert(name.clone(), SampleMeta { group: s.group, caption: s.caption.clone() });
        views
            .push((name, TensorView::new(Dtype::U8, vec![img.c, img.h, img.w], &img.data).map_err(|e| e.to_string())?));
    }
    let meta = HashMap::from([(SAMPLES_KEY.to_string(), serde_json::to_string(&meta).map_err(|e| e.to_string())?)]);
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

pub fn decode_samples(bytes: &[u8]) -> Result<Vec<SampleImage>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let mut meta: BTreeMap<String, SampleMeta> = match header.metadata().as_ref().and_then(|m| m.get(SAMPLES_KEY)) {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("sample captions: {e}"))?,
        None => BTreeMap::new(),
    };
    let mut named: Vec<(String, TensorView<'_>)> = st.tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .map(|(name, view)| {
            let [c, h, w] = view.shape() else {
                return Err(format!("sample {name} is not a C×H×W image"));
            };
            let m = meta.remove(&name).unwrap_or(SampleMeta { group: 0, caption: String::new() });
            let image = ByteImages::new(1, *c, *h, *w, view.data().to_vec()).map_err(|e| e.to_string())?;
            Ok(SampleImage { group: m.group, caption: m.caption, image })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matrices_and_samples_round_trip() {
        let m = Matrix { name: "features".into(), rows: 2, cols: 3, data: vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5] };
        assert_eq!(decode_matrices(&encode_matrices(std::slice::from_ref(&m)).unwrap()).unwrap(), vec![m]);

        let image = FloatImages::new(1, 1, 1, 2, vec![0.0, 1.0]).unwrap();
        let s = Sample { group: 3, caption: "rot 90".into(), image };
        let back = decode_samples(&encode_samples(&[s]).unwrap()).unwrap();
        assert_eq!(back[0].caption, "rot 90");
        assert_eq!(back[0].group, 3);
        assert_eq!(back[0].image.data, vec![0, 255]);
    }
}
