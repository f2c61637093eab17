//! kNN evaluation time behind `bench/speed/tasks.sh`: `pretext_core::eval::knn_predict`
//! (k = 200, T = 0.1) with a bank of 60 000 × 128 features and 10 000 queries, synthetic but
//! class-structured (ten class means plus Gaussian noise, seeded) so the vote is not a coin
//! toss. Writes the inputs and its predictions as raw little-endian files into DIR for the
//! NumPy reference (`bench/speed/knn_numpy.py`), which times itself and counts agreements,
//! and prints one JSON line. It also times `knn_predict_blocked`, a sketch of a faster
//! `knn_predict` (same protocol), and counts its agreements with `knn_predict`.
//!
//! `cargo run --release -p pretext-core --example knn_speed -- DIR [bank] [queries] [dim]`

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use pretext_core::eval::{KnnConfig, accuracy, knn_predict, l2_normalized};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

const CLASSES: usize = 10;

/// `n` labelled rows: a class mean (fixed by the seed) plus noise of the same scale.
fn sample(n: usize, dim: usize, means: &[f32], rng: &mut StdRng) -> (Vec<f32>, Vec<u32>) {
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..CLASSES as u32)).collect();
    let mut data = Vec::with_capacity(n * dim);
    for &l in &labels {
        let mean = &means[l as usize * dim..(l as usize + 1) * dim];
        // Sum of three uniforms: cheap, roughly Gaussian noise.
        data.extend(mean.iter().map(|m| m + (0..3).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>()));
    }
    (data, labels)
}

/// The same protocol as `knn_predict`, written to avoid its two costs that `perf` shows:
/// one similarity buffer per block instead of a `Vec` per row and a 16-byte
/// `(index, similarity)` candidate `Vec` per row (each over glibc's mmap threshold, so every
/// row page-faults ~1.2 MB in and unmaps it again), and the top-k selection spread over
/// rayon's threads with a reused `u32` index buffer per thread. A sketch of the fix for
/// `core/src/eval/knn.rs`, timed beside it; not used by Pretext.
fn knn_predict_blocked(
    bank: &[f32],
    bank_labels: &[u32],
    queries: &[f32],
    cols: usize,
    config: KnnConfig,
) -> candle_core::Result<Vec<u32>> {
    const CHUNK: usize = 512;
    let n_bank = bank.len() / cols;
    let n_query = queries.len() / cols;
    let k = config.k.min(n_bank).max(1);
    let bank_t = Tensor::from_vec(l2_normalized(bank, cols), (n_bank, cols), &Device::Cpu)?.t()?;
    let queries = l2_normalized(queries, cols);
    let mut out = Vec::with_capacity(n_query);
    for start in (0..n_query).step_by(CHUNK) {
        let rows = (n_query - start).min(CHUNK);
        let q = Tensor::from_slice(&queries[start * cols..(start + rows) * cols], (rows, cols), &Device::Cpu)?;
        let sims = q.matmul(&bank_t)?.flatten_all()?.to_vec1::<f32>()?;
        let block: Vec<u32> = sims
            .par_chunks_exact(n_bank)
            .map_init(
                || Vec::<u32>::with_capacity(n_bank),
                |idx, row| {
                    idx.clear();
                    idx.extend(0..u32::try_from(n_bank).unwrap_or(u32::MAX));
                    if k < n_bank {
                        idx.select_nth_unstable_by(k - 1, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
                    }
                    let mut votes = [0f64; CLASSES];
                    for &j in &idx[..k] {
                        if let Some(v) = votes.get_mut(bank_labels[j as usize] as usize) {
                            *v += f64::from(row[j as usize] / config.temperature).exp();
                        }
                    }
                    let best = votes.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(c, _)| c);
                    u32::try_from(best).unwrap_or(0)
                },
            )
            .collect();
        out.extend(block);
    }
    Ok(out)
}

fn write_raw(path: &Path, bytes: impl Iterator<Item = [u8; 4]>) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for b in bytes {
        f.write_all(&b)?;
    }
    f.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        return Err("usage: knn_speed DIR [bank] [queries] [dim]".into());
    };
    let dir = Path::new(dir);
    let n_bank: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60_000);
    let n_query: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dim: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(128);
    let mut rng = StdRng::seed_from_u64(7);
    let means: Vec<f32> = (0..CLASSES * dim).map(|_| rng.random_range(-0.5f32..0.5)).collect();
    let (bank, bank_labels) = sample(n_bank, dim, &means, &mut rng);
    let (queries, query_labels) = sample(n_query, dim, &means, &mut rng);
    let config = KnnConfig::default();

    let t0 = Instant::now();
    let predicted = knn_predict(&bank, &bank_labels, &queries, dim, CLASSES, config)?;
    let secs = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let blocked = knn_predict_blocked(&bank, &bank_labels, &queries, dim, config)?;
    let blocked_secs = t0.elapsed().as_secs_f64();
    let blocked_agree = blocked.iter().zip(&predicted).filter(|(a, b)| a == b).count();

    std::fs::create_dir_all(dir)?;
    write_raw(&dir.join("bank.f32"), bank.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("bank_labels.u32"), bank_labels.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("queries.f32"), queries.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("query_labels.u32"), query_labels.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("pretext_pred.u32"), predicted.iter().map(|v| v.to_le_bytes()))?;
    println!(
        "{{\"kind\": \"knn\", \"impl\": \"pretext\", \"bank\": {n_bank}, \"queries\": {n_query}, \"dim\": {dim}, \"k\": {}, \"temperature\": {}, \"threads\": {}, \"seconds\": {secs:.4}, \"accuracy\": {:.4}, \"blocked_seconds\": {blocked_secs:.4}, \"blocked_agree\": {blocked_agree}}}",
        config.k,
        config.temperature,
        rayon::current_num_threads(),
        accuracy(&predicted, &query_labels)
    );
    Ok(())
}
