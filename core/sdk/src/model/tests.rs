#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;

/// The largest absolute difference between two tensors of one shape; the model's op tests
/// compare against candle's own ops with it.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

fn build(spec: &BackboneSpec) -> (VarMap, Backbone) {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let backbone = Backbone::new(spec, vb).unwrap();
    (map, backbone)
}

fn shapes(map: &VarMap) -> BTreeMap<String, Vec<usize>> {
    map.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect()
}

/// torchvision `resnet18().state_dict()`, minus `fc.*` and `num_batches_tracked`, with the
/// CIFAR stem conv1 of [64, 3, 3, 3] instead of [64, 3, 7, 7].
fn torchvision_resnet18() -> BTreeMap<String, Vec<usize>> {
    let mut want = BTreeMap::new();
    let mut bn = |prefix: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            want.insert(format!("{prefix}.{p}"), vec![c]);
        }
    };
    bn("bn1", 64);
    for (l, c) in [(1, 64), (2, 128), (3, 256), (4, 512)] {
        for b in 0..2 {
            bn(&format!("layer{l}.{b}.bn1"), c);
            bn(&format!("layer{l}.{b}.bn2"), c);
        }
        if l > 1 {
            bn(&format!("layer{l}.0.downsample.1"), c);
        }
    }
    let convs: [(&str, [usize; 4]); 20] = [
        ("conv1.weight", [64, 3, 3, 3]),
        ("layer1.0.conv1.weight", [64, 64, 3, 3]),
        ("layer1.0.conv2.weight", [64, 64, 3, 3]),
        ("layer1.1.conv1.weight", [64, 64, 3, 3]),
        ("layer1.1.conv2.weight", [64, 64, 3, 3]),
        ("layer2.0.conv1.weight", [128, 64, 3, 3]),
        ("layer2.0.conv2.weight", [128, 128, 3, 3]),
        ("layer2.0.downsample.0.weight", [128, 64, 1, 1]),
        ("layer2.1.conv1.weight", [128, 128, 3, 3]),
        ("layer2.1.conv2.weight", [128, 128, 3, 3]),
        ("layer3.0.conv1.weight", [256, 128, 3, 3]),
        ("layer3.0.conv2.weight", [256, 256, 3, 3]),
        ("layer3.0.downsample.0.weight", [256, 128, 1, 1]),
        ("layer3.1.conv1.weight", [256, 256, 3, 3]),
        ("layer3.1.conv2.weight", [256, 256, 3, 3]),
        ("layer4.0.conv1.weight", [512, 256, 3, 3]),
        ("layer4.0.conv2.weight", [512, 512, 3, 3]),
        ("layer4.0.downsample.0.weight", [512, 256, 1, 1]),
        ("layer4.1.conv1.weight", [512, 512, 3, 3]),
        ("layer4.1.conv2.weight", [512, 512, 3, 3]),
    ];
    for (name, shape) in convs {
        want.insert(name.to_string(), shape.to_vec());
    }
    want
}

#[test]
fn resnet18_names_and_shapes_match_torchvision() {
    let (map, backbone) = build(&BackboneSpec::new(BackboneKind::Resnet18, 3));
    let want = torchvision_resnet18();
    assert_eq!(want.len(), 100);
    assert_eq!(shapes(&map), want);
    assert!(want.contains_key(FIRST_CONV));
    assert_eq!(backbone.feature_dim(), 512);
    let params: usize =
        want.iter().filter(|(k, _)| !k.contains("running")).map(|(_, s)| s.iter().product::<usize>()).sum();
    // torchvision's 11,689,512 minus fc (513,000) and the 7×7 stem's extra 64·3·40 weights.
    assert_eq!(params, 11_689_512 - 513_000 - 64 * 3 * 40);
}

#[test]
fn convnet_names() {
    let (map, backbone) = build(&BackboneSpec::new(BackboneKind::Convnet, 1));
    let got = shapes(&map);
    assert_eq!(got[FIRST_CONV], vec![16, 1, 3, 3]);
    assert_eq!(got["bn1.running_var"], vec![16]);
    assert_eq!(got["layer2.conv.weight"], vec![32, 16, 3, 3]);
    assert_eq!(got["layer4.bn.weight"], vec![128]);
    assert_eq!(got.len(), 4 * 5);
    assert_eq!(backbone.feature_dim(), 128);
}

#[test]
fn output_shapes() {
    let dev = Device::Cpu;
    for kind in BackboneKind::ALL {
        for c in [1, 3] {
            // Small widths keep the ResNet quick; names and strides do not depend on width. A
            // ViT's width must divide among its heads; it is built for 28 px and takes 32 too.
            let width = if kind.is_vit() { 6 } else { 4 };
            let spec = BackboneSpec { width, ..BackboneSpec::new(kind, c).for_images(28) };
            let (_, backbone) = build(&spec);
            let stage_dims = if kind.is_vit() { vec![6; 4] } else { vec![4, 8, 16, 32] };
            assert_eq!((backbone.feature_dim(), spec.feature_dim()), (stage_dims[3], stage_dims[3]));
            for size in [28, 32] {
                let x = Tensor::rand(0f32, 1., (2, c, size, size), &dev).unwrap();
                for train in [true, false] {
                    let y = backbone.forward_t(&x, train).unwrap();
                    assert_eq!(y.dims(), &[2, stage_dims[3]], "{kind} c={c} size={size}");
                    let stages = backbone.stage_features_t(&x, train).unwrap();
                    let dims: Vec<_> = stages.iter().map(|s| s.dims()[1]).collect();
                    assert_eq!(dims, stage_dims);
                    assert_eq!(backbone.stage_dims(), spec.stage_dims());
                }
                let wrong = Tensor::zeros((2, 4 - c, size, size), DType::F32, &dev).unwrap();
                assert!(backbone.forward_t(&wrong, false).is_err());
            }
            // Eval output is the last stage's pooled features.
            let x = Tensor::rand(0f32, 1., (2, c, 32, 32), &dev).unwrap();
            let y = backbone.forward_t(&x, false).unwrap();
            let last = backbone.stage_features_t(&x, false).unwrap().pop().unwrap();
            let diff = (y - last).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6);
        }
    }
    let full = build(&BackboneSpec::new(BackboneKind::Resnet18, 3)).1;
    let x = Tensor::rand(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
    assert_eq!(full.forward_t(&x, true).unwrap().dims(), &[2, 512]);
}

#[test]
fn training_forward_updates_running_stats_and_eval_does_not() {
    let dev = Device::Cpu;
    let (map, backbone) = build(&BackboneSpec { width: 4, ..BackboneSpec::new(BackboneKind::Resnet18, 3) });
    let read = |name: &str| map.data().lock().unwrap()[name].as_tensor().to_vec1::<f32>().unwrap();
    let x = (Tensor::rand(0f32, 1., (4, 3, 16, 16), &dev).unwrap() + 0.5).unwrap();
    let before = read("layer3.1.bn2.running_mean");
    backbone.forward_t(&x, false).unwrap();
    assert_eq!(read("layer3.1.bn2.running_mean"), before);
    backbone.forward_t(&x, true).unwrap();
    assert_ne!(read("bn1.running_mean"), vec![0.0; 4]);
    assert_ne!(read("layer3.1.bn2.running_var"), vec![1.0; 16]);
    assert_ne!(read("layer4.0.downsample.1.running_mean"), vec![0.0; 32]);
}

#[test]
fn gradients_reach_every_parameter() {
    let dev = Device::Cpu;
    for kind in BackboneKind::ALL {
        let width = if kind.is_vit() { 6 } else { 4 };
        let (map, backbone) = build(&BackboneSpec { width, ..BackboneSpec::new(kind, 3).for_images(16) });
        let x = Tensor::rand(0f32, 1., (2, 3, 16, 16), &dev).unwrap();
        let loss = backbone.forward_t(&x, true).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in map.data().lock().unwrap().iter() {
            let has = grads.get(var.as_tensor()).is_some();
            assert_eq!(has, !name.contains("running"), "{kind} {name}");
        }
    }
}

#[test]
fn cpu_rng_cannot_be_seeded_but_seeded_builder_is_deterministic() {
    assert!(Device::Cpu.set_seed(0).is_err());
    let spec = BackboneSpec { width: 4, ..BackboneSpec::new(BackboneKind::Convnet, 3) };
    let weights = |seed: u64| {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, seed, DType::F32, &Device::Cpu);
        Backbone::new(&spec, vb.pp("backbone")).unwrap();
        let data = map.data().lock().unwrap();
        let w = data["backbone.layer3.conv.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bn = data["backbone.bn1.running_var"].as_tensor().to_vec1::<f32>().unwrap();
        assert!(data["backbone.conv1.weight"].as_tensor().is_variable());
        (w, bn)
    };
    let (a, bn) = weights(7);
    assert_eq!(a, weights(7).0);
    assert_ne!(a, weights(8).0);
    assert_eq!(bn, vec![1.0; 4]);
    let std = (a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32).sqrt();
    let want = (2.0f32 / (16.0 * 9.0)).sqrt();
    assert!((std / want - 1.0).abs() < 0.1, "std {std} want {want}");
}

#[test]
fn spec_parsing_and_serde() {
    assert_eq!("resnet18".parse::<BackboneKind>().unwrap(), BackboneKind::Resnet18);
    assert_eq!(" ConvNet ".parse::<BackboneKind>().unwrap(), BackboneKind::Convnet);
    assert!("vgg".parse::<BackboneKind>().is_err());
    assert_eq!(BackboneKind::Convnet.to_string(), "convnet");
    let spec = BackboneSpec::new(BackboneKind::Resnet18, 3);
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(json, r#"{"kind":"resnet18","width":64,"in_channels":3}"#);
    assert_eq!(serde_json::from_str::<BackboneSpec>(&json).unwrap(), spec);
    assert_eq!(BackboneSpec::default_width(BackboneKind::Convnet), 16);
    let bad = BackboneSpec { width: 0, ..BackboneSpec::new(BackboneKind::Convnet, 3) };
    let map = VarMap::new();
    assert!(Backbone::new(&bad, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).is_err());
}
