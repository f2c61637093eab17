//! What the CPU custom ops of this module share: reading a tensor's storage as one
//! contiguous f32 slice, how many rows one rayon task takes, and fast f32 sums. Off wasm32 only, like the
//! ops themselves; no op logic lives here.

use candle_core::{CpuStorage, Layout, Result};

/// The values of a contiguous f32 tensor, or an error naming `op`.
pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets().and_then(|(a, b)| data.get(a..b)) {
        Some(v) => Ok(v),
        None => candle_core::bail!("{op}: the input must be a contiguous f32 tensor"),
    }
}

/// Values per rayon task, in whole rows of `row` values: about 16k, so that small tensors
/// are not split and large ones are split evenly.
pub(crate) fn chunk_len(row: usize) -> usize {
    let row = row.max(1);
    (16_384 / row).max(1) * row
}

/// Eight independent partial sums: float addition is not associative, so the compiler keeps
/// a single running sum in order unless the lanes are spelled out, and that serial chain
/// is what made these reductions slow.
pub(crate) const LANES: usize = 8;

pub(crate) fn lanes_total(acc: [f32; LANES]) -> f32 {
    acc.iter().sum()
}

pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for ch in chunks {
        for (a, v) in acc.iter_mut().zip(ch) {
            *a += *v;
        }
    }
    lanes_total(acc) + tail
}

/// Σ (x − m)².
pub(crate) fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - m) * (v - m)).sum();
    for ch in chunks {
        for (a, v) in acc.iter_mut().zip(ch) {
            *a += (v - m) * (v - m);
        }
    }
    lanes_total(acc) + tail
}
