//! `pretext eval knn|linear|finetune`: how good a run's features are, measured as the field
//! does — kNN (k=200, T=0.1, train split as the bank, test split queried) and a linear probe
//! on frozen features of every backbone stage, or fine-tuning of the whole network.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use pretext_core::eval::{Evaluation, FinetuneConfig, KnnConfig, ProbeConfig, data_spec, knn_top1, probe_top1};
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
    train_images: usize,
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

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    if args.limit == Some(0) || args.batch_size == 0 || args.epochs == 0 {
        anyhow::bail!("--limit, --batch-size and --epochs must be at least 1");
    }
    let started = Instant::now();
    let eval = Evaluation::open(&args.weights.run, &args.weights.weights())
        .with_context(|| format!("cannot evaluate {}", args.weights.run.display()))?;
    let (mut train, test) = eval.dataset(args.data.as_deref())?;
    if let Some(n) = args.limit {
        train = std::sync::Arc::new(train.take(n));
    }
    let classes = train.num_classes().max(test.num_classes());
    let mut report = Report {
        run: args.weights.run.display().to_string(),
        checkpoint: eval.checkpoint.as_ref().map_or_else(|| "random-init".into(), |c| c.file.clone()),
        epoch: eval.epoch(),
        data: data_spec(&eval.info, args.data.as_deref()).to_string(),
        train_images: train.len(),
        test_images: test.len(),
        knn_top1: None,
        linear_top1: None,
        finetune_top1: None,
        stages: BTreeMap::new(),
        seconds: 0.0,
    };
    match args.protocol {
        Protocol::Knn | Protocol::Linear => {
            let (train_f, test_f) = eval.features(&train, &test)?;
            for (tr, te) in train_f.iter().zip(&test_f) {
                let top1 = if args.protocol == Protocol::Knn {
                    knn_top1(tr, &train.labels, te, &test.labels, classes, KnnConfig::default())?
                } else {
                    probe_top1(tr, &train.labels, te, &test.labels, classes, ProbeConfig::default())?.test_top1
                };
                report.stages.insert(tr.name.clone(), top1);
            }
            let last = report.stages.get("features").copied();
            report.stages.remove("features");
            if args.protocol == Protocol::Knn {
                report.knn_top1 = last;
            } else {
                report.linear_top1 = last;
            }
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
    report.seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("run        {} ({}, epoch {})", report.run, report.checkpoint, report.epoch);
    println!("data       {}: {} train, {} test images", report.data, report.train_images, report.test_images);
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
