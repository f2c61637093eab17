//! Data throughput behind `bench/data/run.sh`: a folder of image files opened through the
//! pixel cache — the first pass (read headers, decode, resize to N×N, write the cache) and
//! then epochs read from the memory-mapped cache the way the trainer reads them (shuffled
//! batches gathered on `workers` prefetch threads and turned into floats in 0..1, as
//! torchvision's `ToTensor` does). Prints one JSON line; the PyTorch side is
//! `bench/data/torch_loader.py`.
//!
//! `cargo run --release -p pretext-core --example data_speed -- DIR [size] [workers] [epochs] [batch]`
//! The cache goes to `$PRETEXT_CACHE` (set it to a scratch folder); an existing entry is
//! reused, so remove it to time the first pass again.

use std::sync::Arc;
use std::time::Instant;

use pretext_core::data::{OpenOptions, Prefetch, batches, epoch_order, open_with};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pretext_core::host::tune_for_training();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().ok_or("usage: data_speed DIR [size] [workers] [epochs] [batch]")?;
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let workers: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let epochs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let batch: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(256);

    let opts = OpenOptions { image_size: Some(size), ..OpenOptions::default() };
    let started = Instant::now();
    let splits = open_with(dir, &opts, &mut |_| {})?;
    let first_pass = started.elapsed().as_secs_f64();
    let report = &splits.report;
    let train = Arc::new(splits.train);
    let n = train.len();

    let mut epoch_secs = Vec::new();
    let mut checksum = 0f64;
    for epoch in 1..=epochs {
        let t = Instant::now();
        let jobs = Arc::new(batches(&epoch_order(n, 0, epoch), batch));
        let (data, jobs2) = (Arc::clone(&train), Arc::clone(&jobs));
        let prefetch =
            Prefetch::new(jobs.len(), workers, 2 * workers, move |i| data.images.gather(&jobs2[i]).to_unit_float());
        for b in prefetch {
            checksum += f64::from(b.data[0]);
        }
        epoch_secs.push(t.elapsed().as_secs_f64());
    }
    #[allow(clippy::cast_precision_loss)]
    let per_sec = |s: f64| n as f64 / s;
    println!(
        "{{\"impl\": \"pretext\", \"images\": {n}, \"size\": {size}, \"workers\": {workers}, \"decoded\": {}, \
         \"first_pass_s\": {first_pass:.3}, \"first_pass_images_per_s\": {:.1}, \"epoch_s\": {epoch_secs:?}, \
         \"epoch_images_per_s\": {:?}, \"cache\": {:?}, \"checksum\": {checksum:.1}}}",
        report.decoded,
        per_sec(first_pass),
        epoch_secs.iter().map(|&s| (per_sec(s) * 10.0).round() / 10.0).collect::<Vec<_>>(),
        report.cache.as_ref().map(|c| c.path.clone()).unwrap_or_default(),
    );
    Ok(())
}
