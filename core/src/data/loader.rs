//! Epoch order, batching and background preparation of batches.
//!
//! The shuffle is a pure function of `(seed, epoch)` built on a fixed generator (SplitMix64,
//! not `rand`'s `StdRng`, whose stream may change between releases), so a resumed run sees
//! exactly the batches it would have seen. [`Prefetch`] runs a job closure (load, augment)
//! on worker threads a bounded number of jobs ahead of the training step and hands results
//! back strictly in job order. This file must not know what a job does, nor touch tensors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::splitmix::SplitMix64;

/// A permutation of `0..len` that depends only on `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64(seed ^ SplitMix64(epoch ^ 0x6570_6f63_6800_0000).next_u64());
    let mut order: Vec<usize> = (0..len).collect();
    rng.shuffle(&mut order);
    order
}

/// Splits `order` into batches of `batch_size`, dropping a last incomplete batch so every
/// step sees the same batch size; a set smaller than one batch makes one batch of all of
/// it. A `batch_size` of 0 is taken as 1.
pub fn batches(order: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    if order.is_empty() {
        return Vec::new();
    }
    if order.len() < batch_size {
        return vec![order.to_vec()];
    }
    order.chunks_exact(batch_size).map(<[usize]>::to_vec).collect()
}

/// One worker's share of the jobs: worker `k` of `W` runs jobs `k, k + W, k + 2W, …`.
enum Slot<R> {
    Thread {
        results: Receiver<R>,
        handle: Option<JoinHandle<()>>,
    },
    /// The thread could not be started (or none was asked for): the consumer runs the job.
    Inline,
}

type Job<R> = dyn Fn(usize) -> R + Send + Sync + 'static;

/// An iterator over `job(0), job(1), …, job(count - 1)`, computed ahead on worker threads.
///
/// Each worker queues at most `ceil(depth / workers)` finished results (and holds one more
/// while it waits to queue it), so memory stays bounded however slow the consumer is.
/// Results come out in job order whatever order the workers finish in. Dropping the
/// iterator early stops the workers: they finish the job in hand and exit, and the drop
/// waits for that. A panic in a job is re-raised on the consuming thread.
pub struct Prefetch<R> {
    job: Arc<Job<R>>,
    slots: Vec<Slot<R>>,
    next: usize,
    count: usize,
    stop: Arc<AtomicBool>,
}

impl<R: Send + 'static> Prefetch<R> {
    /// Starts `workers` threads (at most `count`; 0 runs every job on the consumer thread)
    /// that run `job` over `0..count`, keeping about `depth` results ready.
    pub fn new<F>(count: usize, workers: usize, depth: usize, job: F) -> Self
    where
        F: Fn(usize) -> R + Send + Sync + 'static,
    {
        let job: Arc<Job<R>> = Arc::new(job);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = workers.min(count);
        let per_worker = depth.max(1).div_ceil(workers.max(1));
        let slots = (0..workers)
            .map(|k| {
                let (tx, rx) = sync_channel(per_worker);
                let (job, stop) = (Arc::clone(&job), Arc::clone(&stop));
                let spawned = std::thread::Builder::new()
                    .name(format!("pretext-loader-{k}"))
                    .spawn(move || work(k, workers, count, &*job, &tx, &stop));
                match spawned {
                    Ok(handle) => Slot::Thread { results: rx, handle: Some(handle) },
                    Err(e) => {
                        log::warn!("could not start loader thread {k} ({e}); its jobs run inline");
                        Slot::Inline
                    }
                }
            })
            .collect();
        Self { job, slots, next: 0, count, stop }
    }
}

/// A worker's loop: run its jobs in order and queue each result, until the jobs run out,
/// the consumer is gone or `stop` is set.
fn work<R>(k: usize, workers: usize, count: usize, job: &Job<R>, tx: &SyncSender<R>, stop: &AtomicBool) {
    for i in (k..count).step_by(workers) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Blocks while the queue is full; dropping the consumer's receiver ends the wait.
        if tx.send(job(i)).is_err() {
            return;
        }
    }
}

impl<R> Iterator for Prefetch<R> {
    type Item = R;

    fn next(&mut self) -> Option<R> {
        if self.next >= self.count {
            return None;
        }
        let i = self.next;
        self.next += 1;
        if self.slots.is_empty() {
            return Some((self.job)(i));
        }
        let k = i % self.slots.len();
        match &mut self.slots[k] {
            Slot::Inline => Some((self.job)(i)),
            Slot::Thread { results, handle } => match results.recv() {
                Ok(r) => Some(r),
                // The worker stopped before job `i`: only a panic in a job does that.
                Err(_) => {
                    if let Some(Err(panic)) = handle.take().map(JoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                    self.next = self.count;
                    None
                }
            },
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl<R> Drop for Prefetch<R> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let slots = std::mem::take(&mut self.slots);
        let mut handles = Vec::new();
        for slot in slots {
            if let Slot::Thread { results, handle } = slot {
                // Dropping the receiver first frees a worker blocked on a full queue.
                drop(results);
                handles.extend(handle);
            }
        }
        for h in handles {
            // A job's panic was already reported by the thread; dropping must not panic.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn epoch_order_is_a_deterministic_permutation() {
        let a = epoch_order(1000, 42, 3);
        assert_eq!(a, epoch_order(1000, 42, 3));
        assert_ne!(a, epoch_order(1000, 42, 4));
        assert_ne!(a, epoch_order(1000, 43, 3));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(a, sorted, "it shuffles");
        assert!(epoch_order(0, 1, 1).is_empty());
        // The stream is fixed: a change here would reorder resumed runs.
        assert_eq!(epoch_order(8, 0, 0), vec![1, 2, 5, 4, 7, 3, 0, 6]);
        assert_eq!(epoch_order(8, 1, 2), vec![5, 1, 7, 6, 0, 2, 4, 3]);
    }

    #[test]
    fn batch_sizes() {
        let order: Vec<usize> = (0..10).collect();
        let b = batches(&order, 4);
        assert_eq!(b, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        assert_eq!(batches(&order, 5).len(), 2);
        assert_eq!(batches(&order, 32), vec![order.clone()]);
        assert!(batches(&[], 4).is_empty());
        assert_eq!(batches(&order, 0).len(), 10);
    }

    #[test]
    fn prefetch_yields_in_order() {
        for workers in [0, 1, 3, 8] {
            let out: Vec<usize> = Prefetch::new(50, workers, 4, |i| {
                // Uneven job times make the workers finish out of order.
                std::thread::sleep(Duration::from_micros(((i * 7919) % 13) as u64 * 100));
                i * i
            })
            .collect();
            assert_eq!(out, (0..50).map(|i| i * i).collect::<Vec<_>>(), "workers={workers}");
        }
    }

    #[test]
    fn prefetch_stays_bounded_and_stops_when_dropped() {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&started);
        let mut p = Prefetch::new(100_000, 4, 8, move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            i
        });
        assert_eq!(p.by_ref().take(3).collect::<Vec<_>>(), vec![0, 1, 2]);
        std::thread::sleep(Duration::from_millis(100));
        // Queued (2 per worker) plus one held by each worker, past the 3 consumed.
        let ahead = started.load(Ordering::SeqCst);
        assert!(ahead <= 3 + 4 * 2 + 4 + 4, "ran {ahead} jobs for 3 consumed");
        let t = Instant::now();
        drop(p);
        assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
        let after = started.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(started.load(Ordering::SeqCst), after, "workers stopped");
    }

    #[test]
    fn prefetch_reraises_a_job_panic() {
        let r = std::panic::catch_unwind(|| {
            Prefetch::new(10, 2, 2, |i| {
                assert!(i != 5, "job five fails");
                i
            })
            .count()
        });
        assert!(r.is_err());
    }
}
