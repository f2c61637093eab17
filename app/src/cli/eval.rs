//! `pretext eval knn|linear|finetune`: how good a run's features are, measured as the field
//! does — kNN (k=200, T=0.1, train split as the bank, test split queried) and a linear probe
//! on frozen features of every backbone stage, or fine-tuning of the whole network.
//! `--validation N` queries the last N training images instead of the test split, with the
//! rest as the bank, so that settings are chosen without looking at the test split.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pretext_core::data::{self, DataSplits, Dataset, OpenOptions};
use pretext_core::eval::{
    Evaluation, FinetuneConfig, HOLD_OUT, KnnConfig, ProbeConfig, bank_and_queries, data_spec, knn_top1, probe_top1,
};
use pretext_core::task::wire::Matrix;
use serde::Serialize;

use super::weights::WeightsArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Knn,
    Linear,
    Finetune,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(value_enum)]
    protocol: Protocol,
    #[command(flatten)]
    weights: WeightsArgs,
    /// Labelled dataset with a test split (default: the one the run trained on).
    #[arg(long, value_name = "SPEC")]
    data: Option<String>,
    /// Use only the first N training images (the kNN bank, the probe's or fine-tuning's training set).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Score on a validation split instead of the test split: the last N training images
    /// (after --limit) are the queries and the images before them the bank or training set.
    /// Use it to choose settings; report the test split.
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Evaluate raw pixels (and mean-centred pixels) instead of a run's features: the floor
    /// any learned representation should beat. Needs --data, no --run.
    #[arg(long, conflicts_with_all = ["run", "checkpoint", "random_init"])]
    pixels: bool,
    /// Evaluate on N×N images instead of the size the run trained on: a ViT resamples its
    /// position embeddings to the new patch grid, a CNN pools over the larger or smaller maps.
    #[arg(long, value_name = "N")]
    image_size: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Fine-tuning epochs.
    #[arg(long, value_name = "N", default_value_t = 5)]
    epochs: u64,
    /// Fine-tuning peak learning rate.
    #[arg(long, value_name = "F", default_value_t = 1e-3)]
    lr: f64,
    /// Fine-tuning batch size.
    #[arg(long, value_name = "N", default_value_t = 128)]
    batch_size: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    run: String,
    checkpoint: String,
    epoch: u64,
    data: String,
    /// The split queried: `test`; `held-out` (a seeded, class-balanced fifth of a training
    /// split that has no test split); or `validation` (the end of the training split).
    split: &'static str,
    /// The side of the images evaluated on, in pixels.
    image_size: usize,
    train_images: usize,
    /// Images of the queried split (the test split, or the validation images).
    test_images: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    knn_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    linear_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finetune_top1: Option<f64>,
    /// The metric at every backbone stage (kNN and linear only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    stages: BTreeMap<String, f64>,
    seconds: f64,
}

impl Report {
    fn new(
        run: String,
        checkpoint: String,
        epoch: u64,
        data: &str,
        split: &'static str,
        (train, test): (&Dataset, &Dataset),
    ) -> Self {
        Self {
            run,
            checkpoint,
            epoch,
            data: data.to_string(),
            split,
            image_size: train.height(),
            train_images: train.len(),
            test_images: test.len(),
            knn_top1: None,
            linear_top1: None,
            finetune_top1: None,
            stages: BTreeMap::new(),
            seconds: 0.0,
        }
    }
}

/// Raw pixels in 0..1 and the same minus the training set's mean image, as feature matrices.
fn pixel_features(train: &Dataset, test: &Dataset) -> (Vec<Matrix>, Vec<Matrix>) {
    let cols = train.images.image_len();
    let raw = |d: &Dataset, name: &str| Matrix {
        name: name.into(),
        rows: d.len(),
        cols,
        data: d.images.data().iter().map(|&v| f32::from(v) / 255.0).collect(),
    };
    let (train_raw, test_raw) = (raw(train, "pixels"), raw(test, "pixels"));
    let mut mean = vec![0f32; cols];
    for row in train_raw.data.chunks_exact(cols) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    #[allow(clippy::cast_precision_loss)]
    mean.iter_mut().for_each(|m| *m /= train.len().max(1) as f32);
    let centred = |m: &Matrix| Matrix {
        name: "pixels_centred".into(),
        data: m.data.chunks_exact(cols).flat_map(|row| row.iter().zip(&mean).map(|(v, c)| v - c)).collect(),
        ..m.clone()
    };
    (vec![centred(&train_raw), train_raw.clone()], vec![centred(&test_raw), test_raw])
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    if args.limit == Some(0) || args.batch_size == 0 || args.epochs == 0 {
        anyhow::bail!("--limit, --batch-size and --epochs must be at least 1");
    }
    let started = Instant::now();
    if args.pixels {
        return run_pixels(args, started);
    }
    let run = args.weights.run_dir()?;
    let eval = Evaluation::open(run, &args.weights.weights())
        .with_context(|| format!("cannot evaluate {}", run.display()))?
        .at_image_size(args.image_size);
    let (train, test) = eval.dataset(args.data.as_deref(), true)?;
    let (train, test, split) = query_split(train, test, args)?;
    let train = std::sync::Arc::new(train);
    let checkpoint = eval.checkpoint.as_ref().map_or_else(|| "random-init".into(), |c| c.file.clone());
    let data = data_spec(&eval.info, args.data.as_deref());
    let mut report = Report::new(run.display().to_string(), checkpoint, eval.epoch(), data, split, (&train, &test));
    match args.protocol {
        Protocol::Knn | Protocol::Linear => {
            let (train_f, test_f) = eval.features(&train, &test)?;
            score_stages(args.protocol, &mut report, &train_f, &test_f, &train, &test)?;
            let last = report.stages.remove("features");
            set_top1(&mut report, args.protocol, last);
        }
        Protocol::Finetune => {
            let config = FinetuneConfig {
                epochs: args.epochs,
                lr: args.lr,
                batch_size: args.batch_size,
                seed: eval.info.seed,
                ..FinetuneConfig::default()
            };
            let quiet = args.json;
            let result = eval.finetune(&train, &test, config, &mut |epoch, loss| {
                if !quiet {
                    eprintln!("fine-tune epoch {epoch:>3}  loss {loss:.4}");
                }
            })?;
            report.finetune_top1 = Some(result.test_top1);
        }
    }
    print_report(report, started, args.json)
}

/// The bank (or training set) and the queries, after `--limit`: the test split (or, for
/// data without one, a seeded class-balanced fifth of the training split), or with
/// `--validation N` the last N training images, the rest staying the bank. Also names the
/// queried split.
fn query_split(
    mut train: Dataset,
    test: Option<Dataset>,
    args: &EvalArgs,
) -> anyhow::Result<(Dataset, Dataset, &'static str)> {
    if let Some(n) = args.limit {
        train.truncate(n);
    }
    let Some(n) = args.validation else {
        return Ok(bank_and_queries(train, test));
    };
    if n == 0 || n >= train.len() {
        anyhow::bail!(
            "--validation {n} must leave training images for the bank: use 1 to {} with {} training images",
            train.len().saturating_sub(1),
            train.len()
        );
    }
    let queries = train.split_last(n);
    Ok((train, queries, "validation"))
}

/// Scores every feature matrix with the protocol into `report.stages`.
fn score_stages(
    protocol: Protocol,
    report: &mut Report,
    train_f: &[Matrix],
    test_f: &[Matrix],
    train: &Dataset,
    test: &Dataset,
) -> anyhow::Result<()> {
    let classes = train.num_classes().max(test.num_classes());
    for (tr, te) in train_f.iter().zip(test_f) {
        let top1 = if protocol == Protocol::Knn {
            knn_top1(tr, &train.labels, te, &test.labels, classes, KnnConfig::default())?
        } else {
            probe_top1(tr, &train.labels, te, &test.labels, classes, ProbeConfig::default())?.test_top1
        };
        report.stages.insert(tr.name.clone(), top1);
    }
    Ok(())
}

fn set_top1(report: &mut Report, protocol: Protocol, value: Option<f64>) {
    match protocol {
        Protocol::Knn => report.knn_top1 = value,
        Protocol::Linear => report.linear_top1 = value,
        Protocol::Finetune => report.finetune_top1 = value,
    }
}

fn run_pixels(args: &EvalArgs, started: Instant) -> anyhow::Result<()> {
    let Some(spec) = args.data.as_deref() else {
        anyhow::bail!("--pixels needs --data SPEC naming a labelled dataset")
    };
    if args.protocol == Protocol::Finetune {
        anyhow::bail!("--pixels measures kNN or a linear probe; there is no network to fine-tune");
    }
    let opts = OpenOptions { image_size: args.image_size, ..OpenOptions::default() };
    opts.validate().map_err(anyhow::Error::msg)?;
    let DataSplits { train, test, .. } = data::open(spec, &opts)?;
    if !train.is_labelled() {
        anyhow::bail!("`{spec}` is unlabeled; --pixels needs a labelled dataset");
    }
    let (train, test, split) =
        query_split(train, test, args).with_context(|| format!("cannot evaluate raw pixels of `{spec}`"))?;
    let (train_f, test_f) = pixel_features(&train, &test);
    let mut report = Report::new("-".into(), "raw pixels".into(), 0, spec, split, (&train, &test));
    score_stages(args.protocol, &mut report, &train_f, &test_f, &train, &test)?;
    let raw = report.stages.get("pixels").copied();
    set_top1(&mut report, args.protocol, raw);
    print_report(report, started, args.json)
}

fn print_report(mut report: Report, started: Instant, json: bool) -> anyhow::Result<()> {
    report.seconds = started.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("run        {} ({}, epoch {})", report.run, report.checkpoint, report.epoch);
    let how = if report.split == "held-out" {
        format!(" ({:.0}% of each class, seeded: the data has no test split)", HOLD_OUT * 100.0)
    } else {
        String::new()
    };
    println!(
        "data       {}: {} train, {} {} images of {}×{} px{how}",
        report.data, report.train_images, report.test_images, report.split, report.image_size, report.image_size
    );
    for (stage, top1) in &report.stages {
        println!("{stage:<10} {:.2}%", top1 * 100.0);
    }
    for (name, value) in [
        ("kNN top-1", report.knn_top1),
        ("linear top-1", report.linear_top1),
        ("fine-tune top-1", report.finetune_top1),
    ] {
        if let Some(v) = value {
            println!("{name:<10} {:.2}%  (last stage)", v * 100.0);
        }
    }
    println!("time       {:.1}s", report.seconds);
    Ok(())
}
