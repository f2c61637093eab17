//! Data parallelism inside a session's step: what every rank averages, and in which order.
//!
//! After the loss, the step's metrics (the loss first) are averaged, so every rank sees the
//! same loss and a non-finite one stops them all at the same step. After backward, the
//! gradients are averaged in the order of the sorted parameter names (never hash order), in
//! buckets of [`BUCKET_FLOATS`]; a parameter that has a gradient on some rank but not on
//! another takes zeros where it has none, so every rank passes buffers of one length.
//! After the optimizer, batch-norm running statistics (student's and teacher's) are
//! averaged, so that evaluation and checkpoints see the same model on every rank. This
//! module must not change anything on one rank that it does not change on all of them.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::dist::{Comm, error};
use crate::model::is_buffer;

/// Floats per gradient all-reduce (16 MiB), PyTorch DDP's bucket size in spirit (25 MB).
pub const BUCKET_FLOATS: usize = 1 << 22;

/// `values` averaged over the ranks, in place (f64 carried as f32, as metrics are).
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub(crate) fn average_values(comm: &Comm, values: &mut [f64]) -> candle_core::Result<()> {
    let mut data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    comm.all_reduce_sum(&mut data).map_err(|e| error("the step's metrics", &e))?;
    let world = comm.world() as f64;
    for (v, s) in values.iter_mut().zip(data) {
        *v = f64::from(s) / world;
    }
    Ok(())
}

fn host_values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.detach().to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Sums `chunk` over the ranks, divides by the world size and hands each variable its slice.
#[allow(clippy::cast_precision_loss)]
fn flush(
    comm: &Comm,
    what: &str,
    chunk: &mut Vec<f32>,
    members: &mut Vec<&Var>,
    mut put: impl FnMut(&Var, Tensor),
) -> candle_core::Result<()> {
    if members.is_empty() {
        return Ok(());
    }
    comm.all_reduce_sum(chunk).map_err(|e| error(what, &e))?;
    let scale = 1.0 / comm.world() as f32;
    let mut at = 0;
    for var in members.drain(..) {
        let n = var.elem_count();
        let values: Vec<f32> = chunk[at..at + n].iter().map(|v| v * scale).collect();
        at += n;
        let t = Tensor::from_vec(values, var.shape(), &Device::Cpu)?.to_dtype(var.dtype())?.to_device(var.device())?;
        put(var, t);
    }
    chunk.clear();
    Ok(())
}

/// Averages the gradients of `vars` over the ranks; returns the bytes this rank sent.
pub(crate) fn average_gradients(
    comm: &Comm,
    grads: &mut GradStore,
    vars: &[(String, Var)],
) -> candle_core::Result<u64> {
    let mut present: Vec<f32> =
        vars.iter().map(|(_, v)| f32::from(u8::from(grads.get(v.as_tensor()).is_some()))).collect();
    comm.all_reduce_sum(&mut present).map_err(|e| error("which parameters have gradients", &e))?;
    let mut chunk = Vec::new();
    let mut members = Vec::new();
    let mut sent = 0u64;
    for ((_, var), count) in vars.iter().zip(present) {
        if count == 0.0 {
            continue;
        }
        match grads.get(var.as_tensor()) {
            Some(g) => chunk.extend(host_values(g)?),
            None => chunk.resize(chunk.len() + var.elem_count(), 0.0),
        }
        members.push(var);
        if chunk.len() >= BUCKET_FLOATS {
            sent += 4 * chunk.len() as u64;
            flush(comm, "gradients", &mut chunk, &mut members, |v, g| {
                grads.insert(v.as_tensor(), g);
            })?;
        }
    }
    sent += 4 * chunk.len() as u64;
    flush(comm, "gradients", &mut chunk, &mut members, |v, g| {
        grads.insert(v.as_tensor(), g);
    })?;
    Ok(sent)
}

/// Averages the batch-norm running statistics among `vars` over the ranks, in place.
pub(crate) fn average_buffers<'v>(
    comm: &Comm,
    vars: impl Iterator<Item = &'v (String, Var)>,
) -> candle_core::Result<()> {
    let buffers: Vec<&Var> = vars.filter(|(name, _)| is_buffer(name)).map(|(_, v)| v).collect();
    let mut chunk = Vec::new();
    for var in &buffers {
        chunk.extend(host_values(var.as_tensor())?);
    }
    let mut members = buffers;
    let mut result = Ok(());
    flush(comm, "batch-norm statistics", &mut chunk, &mut members, |v, t| {
        if result.is_ok() {
            result = v.set(&t);
        }
    })?;
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dist::LocalGroup;

    #[test]
    fn gradients_are_averaged_and_a_missing_one_counts_as_zero() {
        let comms = LocalGroup::ranks(2);
        let out: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .iter()
                .enumerate()
                .map(|(rank, comm)| {
                    s.spawn(move || {
                        let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
                        let b = Var::new(&[3.0f32], &Device::Cpu).unwrap();
                        // Rank 0: loss = (r+1)·Σa + b; rank 1 leaves `b` out of its loss.
                        let scale = rank as f64 + 1.0;
                        let mut loss = (a.as_tensor().sum_all().unwrap() * scale).unwrap();
                        if rank == 0 {
                            loss = (loss + b.as_tensor().sum_all().unwrap()).unwrap();
                        }
                        let mut grads = loss.backward().unwrap();
                        let vars = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
                        let sent = average_gradients(comm, &mut grads, &vars).unwrap();
                        let g = |v: &Var| grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
                        (g(&a), g(&b), sent)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (ga, gb, sent) in out {
            // a: (1 + 2)/2 per element; b: (1 + 0)/2.
            assert_eq!(ga, [1.5, 1.5]);
            assert_eq!(gb, [0.5]);
            assert_eq!(sent, 12);
        }
    }
}
