//! Ranks as threads of one process: a [`Collective`] over shared memory, so that a plugin
//! author (and our own tests) can check a loss or a layer under data parallelism without
//! launching processes. It must behave as the host's MPI collectives do: same results on
//! every rank, sums in rank order.

use std::sync::{Arc, Barrier, Mutex};

use super::{Collective, Comm};

struct Shared {
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

/// One rank of a group made by [`LocalGroup::ranks`].
pub struct LocalGroup {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// `world` communicators, one per rank; give each to its own thread.
    pub fn ranks(world: usize) -> Vec<Comm> {
        let world = world.max(1);
        let shared = Arc::new(Shared { slots: Mutex::new(vec![Vec::new(); world]), barrier: Barrier::new(world) });
        (0..world).map(|rank| Arc::new(LocalGroup { rank, world, shared: Arc::clone(&shared) }) as Comm).collect()
    }

    /// Runs `f(rank)` on one thread per rank, each with its communicator current (as inside
    /// a training step, with batch norm synchronised if `sync_batch_norm`), and returns the
    /// results in rank order. A panic on any rank is re-raised here.
    pub fn run<R: Send>(world: usize, sync_batch_norm: bool, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
        let comms = Self::ranks(world);
        std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .iter()
                .enumerate()
                .map(|(rank, comm)| {
                    let f = &f;
                    s.spawn(move || {
                        let _current = super::scope(Some(comm), sync_batch_norm);
                        f(rank)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    }
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), String> {
        let all = self.all_gather(data)?;
        data.fill(0.0);
        for chunk in all.chunks_exact(data.len().max(1)) {
            for (d, v) in data.iter_mut().zip(chunk) {
                *d += v;
            }
        }
        Ok(())
    }

    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, String> {
        let poisoned = |_| "a rank panicked".to_string();
        self.shared.slots.lock().map_err(poisoned)?[self.rank] = data.to_vec();
        self.shared.barrier.wait();
        let gathered = {
            let slots = self.shared.slots.lock().map_err(poisoned)?;
            if slots.iter().any(|s| s.len() != data.len()) {
                return Err("the ranks passed buffers of different lengths".into());
            }
            slots.concat()
        };
        // Nobody writes the next call's slot before everyone has read this one.
        self.shared.barrier.wait();
        Ok(gathered)
    }
}
