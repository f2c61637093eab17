//! What the CPU custom ops of this module share: reading a tensor's storage as one
//! contiguous f32 slice, and how many rows one rayon task takes. Off wasm32 only, like the
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
