//! Augmentation throughput behind `bench/speed/tasks.sh`: SimCLR's two views per image
//! (`SimclrAugment` with the plugin's settings at 28 px) over Fashion-MNIST training images,
//! batch by batch as the plugin's `make_views` builds them (views pushed into one
//! `FloatImages` per batch), the batches spread over rayon's threads like the loader's
//! prefetch workers. Prints one JSON line; the PyTorch side is `torch_tasks.py augment`.
//!
//! `cargo run --release -p pretext-core --example augment_speed -- [images] [batch]`

use std::time::Instant;

use pretext_core::augment::{Image, SimclrAugment};
use pretext_core::data::{ByteImages, FloatImages, OpenOptions, open};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;

/// Both views of every image of `batch`, first views then second views, as `make_views`.
fn views(aug: &SimclrAugment, batch: &ByteImages, seed: u64) -> FloatImages {
    let mut rng = StdRng::seed_from_u64(seed);
    let s = aug.size;
    let mut out = FloatImages::empty(batch.c, s, s);
    out.data.reserve(2 * batch.n * out.image_len());
    for k in 0..2 * batch.n {
        let v = aug.apply(&Image::from_bytes(batch, k % batch.n), &mut rng);
        if let Err(e) = v.push_to(&mut out) {
            panic!("view of the wrong shape: {e}");
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `pretext` binary does at start-up (malloc keeps freed buffers; candle's idle
    // workers park).
    pretext_core::host::tune_for_training();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let images: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256).max(1);
    let data = open("fashion-mnist", &OpenOptions { limit: Some(images), ..OpenOptions::default() })?.train;
    let aug = SimclrAugment::with_size(data.height());
    let jobs: Vec<Vec<usize>> = (0..data.len()).collect::<Vec<_>>().chunks(batch).map(<[usize]>::to_vec).collect();
    let run = |jobs: &[Vec<usize>]| -> usize {
        jobs.par_iter().enumerate().map(|(i, idx)| views(&aug, &data.images.gather(idx), i as u64).n).sum::<usize>()
    };
    // Warm-up: rayon's threads and the allocator.
    run(&jobs[..jobs.len().min(2)]);
    let t0 = Instant::now();
    let n_views = run(&jobs);
    let secs = t0.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let ips = data.len() as f64 / secs;
    println!(
        "{{\"kind\": \"augment\", \"impl\": \"pretext\", \"images\": {}, \"views\": {n_views}, \"threads\": {}, \"seconds\": {secs:.4}, \"images_per_s\": {ips:.1}}}",
        data.len(),
        rayon::current_num_threads()
    );
    Ok(())
}
