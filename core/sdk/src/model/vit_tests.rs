#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::model::tests::max_diff;

fn tiny(image: usize, patch: usize) -> VitShape {
    VitShape { dim: 24, depth: 4, heads: 3, patch, image }
}

fn build(channels: usize, shape: VitShape) -> (VarMap, Vit) {
    let map = VarMap::new();
    let vit = Vit::new(channels, shape, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
    (map, vit)
}

fn images(n: usize, c: usize, side: usize) -> Tensor {
    let len = n * c * side * side;
    let data: Vec<f32> = (0..len).map(|i| ((i * 7919) % 251) as f32 / 125.0 - 1.0).collect();
    Tensor::from_vec(data, (n, c, side, side), &Device::Cpu).unwrap()
}

#[test]
fn parameters_are_named_and_shaped_as_timms_vision_transformer() {
    // timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=4, in_chans=1,
    // num_classes=0).state_dict(), with depth 1 to keep the list short.
    let (map, _) = build(1, VitShape { dim: 192, depth: 1, heads: 3, patch: 4, image: 28 });
    let got: BTreeMap<String, Vec<usize>> =
        map.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
    let want: BTreeMap<String, Vec<usize>> = [
        ("cls_token", vec![1, 1, 192]),
        ("pos_embed", vec![1, 50, 192]),
        ("patch_embed.proj.weight", vec![192, 1, 4, 4]),
        ("patch_embed.proj.bias", vec![192]),
        ("blocks.0.norm1.weight", vec![192]),
        ("blocks.0.norm1.bias", vec![192]),
        ("blocks.0.attn.qkv.weight", vec![576, 192]),
        ("blocks.0.attn.qkv.bias", vec![576]),
        ("blocks.0.attn.proj.weight", vec![192, 192]),
        ("blocks.0.attn.proj.bias", vec![192]),
        ("blocks.0.norm2.weight", vec![192]),
        ("blocks.0.norm2.bias", vec![192]),
        ("blocks.0.mlp.fc1.weight", vec![768, 192]),
        ("blocks.0.mlp.fc1.bias", vec![768]),
        ("blocks.0.mlp.fc2.weight", vec![192, 768]),
        ("blocks.0.mlp.fc2.bias", vec![192]),
        ("norm.weight", vec![192]),
        ("norm.bias", vec![192]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn features_have_the_width_for_several_image_and_patch_sizes() {
    for (c, image, patch, side) in [(1, 28, 4, 28), (3, 32, 4, 32), (3, 32, 8, 32), (1, 28, 7, 28), (1, 28, 4, 32)] {
        let (_, vit) = build(c, tiny(image, patch));
        let x = images(2, c, side);
        assert_eq!(vit.forward(&x).unwrap().dims(), [2, 24], "{c}×{side}², patch {patch}");
        let stages = vit.stage_features(&x).unwrap();
        assert_eq!(stages.len(), 4);
        assert!(stages.iter().all(|s| s.dims() == [2, 24]));
        assert!(max_diff(&stages[3], &vit.forward(&x).unwrap()) < 1e-6, "the last stage is the features");
        let tokens = (side / patch) * (side / patch);
        assert_eq!(vit.embed_patches(&x).unwrap().dims(), [2, tokens, 24]);
        assert_eq!(vit.last_attention(&x).unwrap().dims(), [2, 3, tokens]);
    }
    // 30 px is padded to 32: 8×8 patches.
    let (_, vit) = build(1, tiny(28, 4));
    assert_eq!(vit.embed_patches(&images(1, 1, 30)).unwrap().dims(), [1, 64, 24]);
    assert_eq!(vit.forward(&images(1, 1, 14)).unwrap().dims(), [1, 24]);
    assert!(Vit::new(1, VitShape { dim: 25, ..tiny(28, 4) }, VarBuilder::zeros(DType::F32, &Device::Cpu)).is_err());
}

#[test]
fn encoding_all_patch_tokens_is_the_forward_pass_and_a_subset_encodes_too() {
    let (_, vit) = build(1, tiny(16, 4));
    let x = images(2, 1, 16);
    let tokens = vit.embed_patches(&x).unwrap();
    let all = vit.encode_tokens(&tokens).unwrap();
    assert!(max_diff(&all.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(), &vit.forward(&x).unwrap()) < 1e-6);
    let kept = tokens.index_select(&Tensor::new(&[5u32, 0, 11, 3], &Device::Cpu).unwrap(), 1).unwrap();
    assert_eq!(vit.encode_tokens(&kept).unwrap().dims(), [2, 5, 24]);
}

#[test]
fn attention_rows_sum_to_one() {
    let (_, vit) = build(1, tiny(16, 4));
    let x = images(3, 1, 16);
    let (_, full) = vit.run_blocks(&vit.embed_patches(&x).unwrap(), true).unwrap();
    let full = full.unwrap();
    assert_eq!(full.dims(), [3, 3, 17, 17]);
    let sums: Vec<f32> = full.sum(3).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    // The CLS row without its own weight.
    let cls = full.narrow(2, 0, 1).unwrap().squeeze(2).unwrap().narrow(2, 1, 16).unwrap();
    assert!(max_diff(&cls, &vit.last_attention(&x).unwrap()) < 1e-7);
}

#[test]
fn bicubic_resampling_matches_pytorch() {
    // F.interpolate(torch.arange(9.).view(1, 1, 3, 3), size=(2, 4), mode="bicubic",
    // align_corners=False): down along rows, up along columns.
    let want = [0.502_441_4, 1.104_003_9, 2.044_433_6, 2.645_996, 5.354_004, 5.955_566_4, 6.895_996, 7.497_559];
    let (wy, wx) = (bicubic_matrix(3, 2), bicubic_matrix(3, 4));
    for r in 0..2 {
        for c in 0..4 {
            let mut v = 0f32;
            for i in 0..3 {
                for j in 0..3 {
                    #[allow(clippy::cast_precision_loss)]
                    let x = (i * 3 + j) as f32;
                    v += wy[r * 3 + i] * wx[c * 3 + j] * x;
                }
            }
            assert!((v - want[r * 4 + c]).abs() < 1e-5, "({r}, {c}): {v} vs {}", want[r * 4 + c]);
        }
    }
    let same = bicubic_matrix(5, 5);
    for o in 0..5 {
        for i in 0..5 {
            assert!(
                (same[o * 5 + i] - f32::from(u8::from(o == i))).abs() < 1e-6,
                "resampling to the same size is the identity"
            );
        }
    }
}

#[test]
fn position_embeddings_are_resampled_for_other_sizes_and_learn_through_it() {
    let (map, vit) = build(1, tiny(16, 4));
    let pos = map.data().lock().unwrap()["pos_embed"].clone();
    let y = vit.forward(&images(2, 1, 24)).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(pos.as_tensor()).expect("the stored embeddings get a gradient");
    let patch_grad: f32 = g.narrow(1, 1, 16).unwrap().abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(patch_grad > 0.0);
}

#[test]
fn matches_timms_vision_transformer_on_fixed_weights() {
    // scripts/vit_reference.py: timm's VisionTransformer (img 8, patch 4, 1 channel, width
    // 24, depth 2, 3 heads), parameter k of the sorted names holding 0.1·sin(0.37·i + k).
    let (map, vit) = build(1, VitShape { dim: 24, depth: 2, heads: 3, patch: 4, image: 8 });
    {
        let data = map.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for (k, name) in names.into_iter().enumerate() {
            let var = &data[name];
            #[allow(clippy::cast_precision_loss)]
            let values: Vec<f32> =
                (0..var.elem_count()).map(|i| (0.1 * (0.37 * i as f64 + k as f64).sin()) as f32).collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap()).unwrap();
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let x: Vec<f32> = (0..128).map(|i| (0.11 * f64::from(i)).cos() as f32).collect();
    let x = Tensor::from_vec(x, (2, 1, 8, 8), &Device::Cpu).unwrap();
    let features: Vec<Vec<f32>> = vit.forward(&x).unwrap().to_vec2().unwrap();
    let attention: Vec<Vec<Vec<f32>>> = vit.last_attention(&x).unwrap().to_vec3().unwrap();
    let close = |got: &[f32], want: &[f32], what: &str| {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 2e-5, "{what}: {got:?} vs timm's {want:?}");
        }
    };
    close(&features[0][..6], &[-0.098_447, 0.007_383, 0.094_454, 0.027_141, 0.176_977, 0.148_217], "features");
    close(&features[1][21..], &[0.148_105, 0.170_458, 0.083_667], "features");
    close(&attention[1][2], &[0.199_644, 0.199_82, 0.200_493, 0.200_331], "CLS attention");
}
