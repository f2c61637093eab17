//! Evaluation from the command line: the kNN monitor in metrics.jsonl, `pretext eval
//! knn|linear|finetune --json` (one JSON object each, per-stage scores), the raw-pixel
//! floor, the validation split carved from the training set, `pretext embed` (the files the viewers read) and `pretext export` (torchvision
//! names), on a small SimCLR run trained by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pretext_core::run::{EmbeddingFile, RunLayout};
use pretext_tests::{RunCheck, has_fashion_mnist, pretext, temp_dir, train_monitored_simclr};

fn json_line(args: &[&str]) -> serde_json::Value {
    let out = pretext(args);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints one line: {}", out.stdout);
    serde_json::from_str(lines[0]).expect("the line is one JSON object")
}

fn fraction(v: &serde_json::Value, key: &str) -> f64 {
    let x = v[key].as_f64().unwrap_or_else(|| panic!("`{key}` missing in {v}"));
    assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    x
}

#[test]
fn monitor_eval_embed_and_export() {
    let tmp = temp_dir();
    let run = tmp.path().join("simclr");
    train_monitored_simclr(&run);
    let r = run.to_str().unwrap();

    let epochs: Vec<_> = RunCheck::new(&run).metrics().into_iter().filter(|m| m.epoch_end).collect();
    assert_eq!(epochs.len(), 2);
    assert!(epochs.iter().all(|m| m.knn_top1.is_some_and(|k| (0.0..=1.0).contains(&k))), "{epochs:?}");

    let knn = json_line(&["eval", "knn", "--run", r, "--limit", "1000", "--json"]);
    fraction(&knn, "knn_top1");
    assert_eq!(knn["train_images"], 1000);
    assert_eq!(knn["epoch"], 2);
    for stage in ["stage1", "stage2", "stage3", "stage4"] {
        fraction(&knn["stages"], stage);
    }
    // The last stage is what `knn_top1` reports.
    assert_eq!(knn["knn_top1"], knn["stages"]["stage4"]);

    assert_eq!((knn["split"].as_str(), knn["test_images"].as_u64()), (Some("test"), Some(2000)));

    // --validation N: the last N training images are the queries, the rest the bank; no test image.
    let val = json_line(&["eval", "knn", "--run", r, "--limit", "1000", "--validation", "250", "--json"]);
    assert_eq!((val["split"].as_str(), val["train_images"].as_u64()), (Some("validation"), Some(750)));
    assert_eq!(val["test_images"], 250);
    fraction(&val, "knn_top1");
    let shown = pretext(&["eval", "knn", "--pixels", "--data", "shapes", "--limit", "1000", "--validation", "250"]);
    shown.assert_success();
    assert!(shown.stdout.contains("750 train, 250 validation images"), "{}", shown.stdout);
    pretext(&["eval", "knn", "--run", r, "--limit", "1000", "--validation", "1000"])
        .assert_one_line_error(&["--validation 1000", "1 to 999"]);

    let linear = json_line(&["eval", "linear", "--run", r, "--limit", "1000", "--json"]);
    fraction(&linear, "linear_top1");
    let random = json_line(&["eval", "knn", "--run", r, "--random-init", "--limit", "1000", "--json"]);
    assert_eq!((random["checkpoint"].as_str(), random["epoch"].as_u64()), (Some("random-init"), Some(0)));
    let finetune = json_line(&["eval", "finetune", "--run", r, "--limit", "256", "--epochs", "1", "--json"]);
    fraction(&finetune, "finetune_top1");

    let pixels = json_line(&["eval", "knn", "--pixels", "--data", "shapes", "--limit", "1000", "--json"]);
    fraction(&pixels, "knn_top1");
    fraction(&pixels["stages"], "pixels_centred");

    pretext(&["embed", "--run", r, "--limit", "120"]).assert_success();
    let layout = RunLayout::new(&run);
    let file: EmbeddingFile = serde_json::from_slice(&std::fs::read(layout.embedding(2)).unwrap()).unwrap();
    assert_eq!((file.labels.len(), file.pca.len()), (120, 120));
    assert_eq!(file.tsne.as_ref().map(Vec::len), Some(120));
    assert!(file.neighbours.iter().enumerate().all(|(i, n)| n.len() == 8 && !n.contains(&u32::try_from(i).unwrap())));
    assert_eq!(file.classes.len(), 8);
    let atlas = image::open(layout.embeddings().join(&file.atlas.file)).unwrap();
    let rows = 120usize.div_ceil(file.atlas.columns);
    assert_eq!(
        (atlas.width() as usize, atlas.height() as usize),
        (file.atlas.columns * file.atlas.size, rows * file.atlas.size)
    );

    let exported = tmp.path().join("backbone.safetensors");
    pretext(&["export", "--run", r, "--out", exported.to_str().unwrap()]).assert_success();
    let bytes = std::fs::read(&exported).unwrap();
    let names = safetensor_names(&bytes);
    assert!(names.iter().any(|n| n == "conv1.weight") && names.iter().any(|n| n == "bn1.num_batches_tracked"));
    assert!(names.iter().all(|n| !n.starts_with("backbone.") && !n.starts_with("head.") && !n.starts_with("optim.")));
}

/// Tensor names from a safetensors header (8-byte length, then JSON).
fn safetensor_names(bytes: &[u8]) -> Vec<String> {
    let len = usize::try_from(u64::from_le_bytes(bytes[..8].try_into().unwrap())).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect()
}

#[test]
fn bad_evaluation_input_is_one_sentence() {
    pretext(&["eval", "knn", "--run", "/nonexistent/run", "--json"]).assert_one_line_error(&["/nonexistent/run"]);
    pretext(&["eval", "knn", "--pixels"]).assert_one_line_error(&["--data"]);
    pretext(&["eval", "finetune", "--pixels", "--data", "shapes"]).assert_one_line_error(&["fine-tune"]);
    pretext(&["embed", "--limit", "5"]).assert_one_line_error(&["--run"]);
}

/// A ViT trained on 28 px Fashion-MNIST evaluated at 32 px (its 7×7 position embeddings
/// resampled to 8×8) keeps its kNN accuracy; its embedding carries the last block's
/// attention maps.
#[test]
fn a_vit_trained_at_28_px_evaluates_at_32_px_and_embeds_its_attention() {
    if !has_fashion_mnist() {
        return;
    }
    let tmp = temp_dir();
    let run = tmp.path().join("vit");
    let r = run.to_str().unwrap();
    let train = ["train", "--task", "simclr", "--data", "fashion-mnist", "--limit", "2048", "--epochs", "2"];
    let vit = ["--batch-size", "128", "--backbone", "vit-tiny", "--width", "48", "--patch-size", "4", "--out", r];
    pretext(&[&train[..], &vit].concat()).assert_success();

    let knn = |size: &str| {
        let report = json_line(&["eval", "knn", "--run", r, "--limit", "5000", "--image-size", size, "--json"]);
        assert_eq!(report["image_size"].to_string(), size);
        fraction(&report, "knn_top1")
    };
    let (at_28, at_32) = (knn("28"), knn("32"));
    assert!(at_28 > 0.3, "the ViT learned something: kNN {at_28} at 28 px");
    assert!((at_32 - at_28).abs() < 0.04, "kNN {at_28} at 28 px but {at_32} at 32 px");
    pretext(&["eval", "knn", "--run", r, "--image-size", "4"]).assert_one_line_error(&["--image-size", "8"]);

    let out = pretext(&["embed", "--run", r, "--limit", "30", "--no-tsne"]);
    out.assert_success();
    assert!(out.stdout.contains("attention maps (3 heads)"), "{}", out.stdout);
    let layout = RunLayout::new(&run);
    let file: EmbeddingFile = serde_json::from_slice(&std::fs::read(layout.embedding(2)).unwrap()).unwrap();
    let a = file.attention.expect("a ViT's embedding has attention maps");
    assert_eq!((a.heads, a.rows, a.cols, a.patch), (3, 7, 7, 4));
    let png = image::open(layout.embeddings().join(&a.file)).unwrap().to_luma8();
    for i in 0..30 {
        for tile in 0..=a.heads {
            let (x0, y0) = a.tile_origin(i, tile);
            let levels: Vec<u8> =
                (0..49).map(|k| png.get_pixel((x0 + k % 7) as u32, (y0 + k / 7) as u32).0[0]).collect();
            let (lo, hi) = (levels.iter().min().unwrap(), levels.iter().max().unwrap());
            assert_eq!((*lo, *hi), (0, 255), "image {i} tile {tile} spans its range: {levels:?}");
        }
    }
}
