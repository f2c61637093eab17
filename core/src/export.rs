//! Exporting a trained backbone for PyTorch users: the `backbone.*` tensors of a checkpoint
//! with the prefix removed, which are torchvision `resnet18` state-dict names (timm
//! `VisionTransformer` names for a ViT, which has no batch norms), plus the
//! `num_batches_tracked` counters PyTorch's BatchNorm keeps. Loadable with
//! `torchvision.models.resnet18().load_state_dict(..., strict=False)` (the CIFAR stem's
//! 3×3 `conv1` aside, which a user swaps in first).

use std::collections::BTreeMap;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

const PREFIX: &str = "backbone.";

/// The backbone of a checkpoint (safetensors bytes) as a torchvision-named state dict.
/// `steps` fills `num_batches_tracked`.
pub fn torchvision_state_dict(checkpoint: &[u8], steps: u64) -> Result<Vec<u8>, String> {
    let st = SafeTensors::deserialize(checkpoint).map_err(|e| format!("not a checkpoint: {e}"))?;
    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, view) in st.tensors() {
        if let Some(short) = name.strip_prefix(PREFIX) {
            if let Some(bn) = short.strip_suffix(".running_mean") {
                let count = i64::try_from(steps).unwrap_or(i64::MAX).to_le_bytes().to_vec();
                tensors.insert(format!("{bn}.num_batches_tracked"), (Dtype::I64, Vec::new(), count));
            }
            tensors.insert(short.to_string(), (view.dtype(), view.shape().to_vec(), view.data().to_vec()));
        }
    }
    if tensors.is_empty() {
        return Err("the checkpoint holds no `backbone.*` tensors".into());
    }
    let views = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| TensorView::new(*dtype, shape.clone(), data).map(|v| (name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarMap;

    use super::*;
    use crate::model::{Backbone, BackboneKind, BackboneSpec, seeded_var_builder};

    /// torchvision's `resnet18().state_dict()` without `fc.*`, with the CIFAR stem.
    fn torchvision_resnet18() -> Vec<(String, Vec<usize>)> {
        let mut out = vec![("conv1.weight".to_string(), vec![64, 3, 3, 3])];
        let bn = |out: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize| {
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{name}.{p}"), vec![c]));
            }
            out.push((format!("{name}.num_batches_tracked"), vec![]));
        };
        bn(&mut out, "bn1", 64);
        let mut c_in = 64;
        for (l, c) in [(1, 64), (2, 128), (3, 256), (4, 512)] {
            for b in 0..2 {
                let p = format!("layer{l}.{b}");
                let first_in = if b == 0 { c_in } else { c };
                out.push((format!("{p}.conv1.weight"), vec![c, first_in, 3, 3]));
                bn(&mut out, &format!("{p}.bn1"), c);
                out.push((format!("{p}.conv2.weight"), vec![c, c, 3, 3]));
                bn(&mut out, &format!("{p}.bn2"), c);
                if b == 0 && l > 1 {
                    out.push((format!("{p}.downsample.0.weight"), vec![c, c_in, 1, 1]));
                    bn(&mut out, &format!("{p}.downsample.1"), c);
                }
            }
            c_in = c;
        }
        out.sort();
        out
    }

    #[test]
    fn exported_names_and_shapes_are_torchvision_resnet18() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
        let spec = BackboneSpec { width: 64, ..BackboneSpec::new(BackboneKind::Resnet18, 3) };
        Backbone::new(&spec, vb.pp("backbone")).unwrap();
        let mut all: Vec<(String, Tensor)> =
            map.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        // A checkpoint also holds the head and optimizer state, which must not be exported.
        all.push(("head.0.weight".into(), Tensor::zeros((4, 512), DType::F32, &Device::Cpu).unwrap()));
        all.push((
            "optim.m.backbone.conv1.weight".into(),
            Tensor::zeros((64, 3, 3, 3), DType::F32, &Device::Cpu).unwrap(),
        ));
        let checkpoint = safetensors::serialize(all, None).unwrap();

        let exported = torchvision_state_dict(&checkpoint, 123).unwrap();
        let st = SafeTensors::deserialize(&exported).unwrap();
        let mut got: Vec<(String, Vec<usize>)> =
            st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect();
        got.sort();
        assert_eq!(got, torchvision_resnet18());
        let counter = st.tensor("layer3.0.downsample.1.num_batches_tracked").unwrap();
        assert_eq!((counter.dtype(), counter.data()), (Dtype::I64, 123i64.to_le_bytes().as_slice()));
    }
}
