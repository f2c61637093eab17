//! kNN evaluation time behind `bench/speed/tasks.sh`: `pretext_core::eval::knn_predict`
//! (k = 200, T = 0.1) with a bank of 60 000 × 128 features and 10 000 queries, synthetic but
//! class-structured (ten class means plus Gaussian noise, seeded) so the vote is not a coin
//! toss. Writes the inputs and its predictions as raw little-endian files into DIR for the
//! NumPy reference (`bench/speed/knn_numpy.py`), which times itself and counts agreements,
//! and prints one JSON line.
//!
//! `cargo run --release -p pretext-core --example knn_speed -- DIR [bank] [queries] [dim]`

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use pretext_core::eval::{KnnConfig, accuracy, knn_predict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

fn write_raw(path: &Path, bytes: impl Iterator<Item = [u8; 4]>) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for b in bytes {
        f.write_all(&b)?;
    }
    f.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `pretext` binary does at start-up (malloc keeps freed buffers; candle's idle
    // workers park).
    pretext_core::host::tune_for_training();
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

    std::fs::create_dir_all(dir)?;
    write_raw(&dir.join("bank.f32"), bank.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("bank_labels.u32"), bank_labels.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("queries.f32"), queries.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("query_labels.u32"), query_labels.iter().map(|v| v.to_le_bytes()))?;
    write_raw(&dir.join("pretext_pred.u32"), predicted.iter().map(|v| v.to_le_bytes()))?;
    println!(
        "{{\"kind\": \"knn\", \"impl\": \"pretext\", \"bank\": {n_bank}, \"queries\": {n_query}, \"dim\": {dim}, \"k\": {}, \"temperature\": {}, \"threads\": {}, \"seconds\": {secs:.4}, \"accuracy\": {:.4}}}",
        config.k,
        config.temperature,
        rayon::current_num_threads(),
        accuracy(&predicted, &query_labels)
    );
    Ok(())
}
