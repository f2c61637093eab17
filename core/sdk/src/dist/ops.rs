//! Collectives as differentiable tensor operations.
//!
//! `gather` is the gather layer of distributed contrastive learning: forward, every rank's
//! rows concatenated in rank order; backward, the gradient summed over ranks and this rank's
//! rows taken. The sum is what makes the averaged gradients of the ranks equal the gradient of
//! the one-process loss over the global batch (without it they come out a factor of the world
//! size off, the bug of lightly #1528). `all_reduce_sum`'s backward is an all-reduce too.
//! On devices other than the CPU the values pass through host memory.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::{Comm, current, error};

/// Sums a tensor over all ranks of `comm`; its gradient is summed over the ranks too.
struct AllReduceSum(Comm);

/// Every rank's rows along dimension 0, in rank order.
struct AllGather(Comm);

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("collectives take contiguous tensors"),
    }
}

impl CustomOp1 for AllReduceSum {
    fn name(&self) -> &'static str {
        "all-reduce-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut data = contiguous_f32(storage, layout)?.to_vec();
        self.0.all_reduce_sum(&mut data).map_err(|e| error("a sum", &e))?;
        Ok((CpuStorage::F32(data), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(on_cpu(grad_res, |g| g.apply_op1_no_bwd(&AllReduceSum(self.0.clone())))?))
    }
}

impl CustomOp1 for AllGather {
    fn name(&self) -> &'static str {
        "all-gather"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = contiguous_f32(storage, layout)?;
        let gathered = self.0.all_gather(data).map_err(|e| error("rows", &e))?;
        let mut dims = layout.shape().dims().to_vec();
        if let Some(rows) = dims.first_mut() {
            *rows *= self.0.world();
        }
        Ok((CpuStorage::F32(gathered), Shape::from(dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let rows = arg.dim(0)?;
        let summed = on_cpu(grad_res, |g| g.apply_op1_no_bwd(&AllReduceSum(self.0.clone())))?;
        Ok(Some(summed.narrow(0, self.0.rank() * rows, rows)?))
    }
}

/// Runs `f` on a contiguous f32 copy of `x` in host memory and returns the result where `x`
/// was, in its dtype.
fn on_cpu(x: &Tensor, f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>) -> candle_core::Result<Tensor> {
    let host = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?;
    f(&host)?.to_dtype(x.dtype())?.to_device(x.device())
}

/// Every rank's rows of `x` (dimension 0), concatenated in rank order, with the gather
/// layer's gradient. With one rank (or outside a training step) it is `x` itself.
pub fn gather(x: &Tensor) -> candle_core::Result<Tensor> {
    match current() {
        Some(comm) => on_cpu(x, |h| h.apply_op1(AllGather(comm))),
        None => Ok(x.clone()),
    }
}

/// `x` summed over the ranks, differentiable (the gradient is summed over the ranks too).
/// With one rank it is `x` itself.
pub fn all_reduce_sum(x: &Tensor) -> candle_core::Result<Tensor> {
    match current() {
        Some(comm) => on_cpu(x, |h| h.apply_op1(AllReduceSum(comm))),
        None => Ok(x.clone()),
    }
}

/// The mean of `x` over the ranks, without a gradient (DINO's centre, statistics).
#[allow(clippy::cast_precision_loss)]
pub fn mean_over_ranks(x: &Tensor) -> candle_core::Result<Tensor> {
    match current() {
        Some(comm) => {
            let world = comm.world() as f64;
            on_cpu(&x.detach(), |h| h.apply_op1_no_bwd(&AllReduceSum(comm)))? / world
        }
        None => Ok(x.clone()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Var;

    use super::super::{LocalGroup, scope};
    use super::*;

    fn on_ranks<R: Send>(world: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
        LocalGroup::run(world, false, f)
    }

    #[test]
    fn gather_concatenates_in_rank_order_and_sums_gradients_back() {
        // Rank r holds rows x_r = [r+1, 2(r+1)]; loss_r = Σ_i w_i · gathered_i with weights
        // that differ per rank: (1, 2, 3, 4) on rank 0 and (10, 20, 30, 40) on rank 1.
        // d(loss_0 + loss_1)/d x_0 = (1 + 10, 2 + 20), d/d x_1 = (3 + 30, 4 + 40).
        let out = on_ranks(2, |rank| {
            let x = Var::new(&[[rank as f32 + 1.0], [2.0 * (rank as f32 + 1.0)]], &Device::Cpu).unwrap();
            let all = gather(x.as_tensor()).unwrap();
            let scale = if rank == 0 { 1.0f32 } else { 10.0 };
            let w = Tensor::new(&[[scale], [2.0 * scale], [3.0 * scale], [4.0 * scale]], &Device::Cpu).unwrap();
            let loss = (all.clone() * w).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (all.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g)
        });
        assert_eq!(out[0].0, [1.0, 2.0, 2.0, 4.0]);
        assert_eq!(out[1].0, out[0].0);
        assert_eq!(out[0].1, [11.0, 22.0]);
        assert_eq!(out[1].1, [33.0, 44.0]);
    }

    #[test]
    fn all_reduce_sum_is_summed_forward_and_backward() {
        let out = on_ranks(3, |rank| {
            let x = Var::new(&[rank as f32, 1.0], &Device::Cpu).unwrap();
            let y = all_reduce_sum(x.as_tensor()).unwrap();
            // loss_r = (r + 1) · Σ y: every rank's x feeds every rank's loss.
            let loss = (y.sum_all().unwrap() * (rank as f64 + 1.0)).unwrap();
            let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
            let mean = mean_over_ranks(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
            (y.to_vec1::<f32>().unwrap(), g, mean)
        });
        for (y, g, mean) in out {
            assert_eq!(y, [3.0, 3.0]);
            // Σ_r (r + 1) = 6 for both elements.
            assert_eq!(g, [6.0, 6.0]);
            assert_eq!(mean, [1.0, 1.0]);
        }
    }

    #[test]
    fn one_rank_is_the_identity() {
        let x = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let comm = LocalGroup::ranks(1).remove(0);
        let _current = scope(Some(&comm), true);
        assert!(current().is_none());
        assert_eq!(gather(&x).unwrap().to_vec1::<f32>().unwrap(), [1.0, 2.0]);
    }
}
