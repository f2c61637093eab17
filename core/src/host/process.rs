//! Process-wide settings for training, applied once by a binary's `main` before it starts
//! any thread: how freed memory is kept, and how candle's worker threads wait for work.
//!
//! Both settings reach the plugins too: they allocate through the same glibc, and each
//! plugin's copy of candle reads its settings from the process environment when it first
//! runs an op. They only tune; they must never change what is computed.

/// candle's variable for how long a barrier-pool worker spins after a job before it parks.
const SPIN_LIMIT_VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// The spins we set (candle's default is 25 000; see [`park_idle_candle_workers`]).
const SPIN_LIMIT: &str = "2000";

/// Applies [`keep_freed_memory`] and [`park_idle_candle_workers`]. Call it first in `main`.
pub fn tune_for_training() {
    keep_freed_memory();
    park_idle_candle_workers();
}

/// Keeps freed buffers up to 32 MiB for reuse instead of returning them to the kernel.
///
/// Every candle op allocates an activation-sized buffer. glibc serves large requests with
/// fresh `mmap`s and returns them with `munmap`, so each step paid page faults, page
/// zeroing and cross-core TLB shootdowns: more system time than compute (measured in
/// issue 7). Raising the mmap threshold and the trim threshold keeps freed buffers in the
/// heap for reuse.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only sets glibc malloc parameters, is thread-safe, and takes plain
        // integers; both values are within the ranges glibc documents.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}

/// Makes candle's elementwise worker threads park soon after a job is done (unless the
/// user set `CANDLE_BARRIER_POOL_SPIN_LIMIT` already).
///
/// By default each worker spins 25 000 times after every large elementwise op, waiting for
/// the next one. Our convolutions, matrix products and norms run on rayon's threads, so on a
/// machine with as many cores as threads the spinner takes a core from them: 12% of a
/// Jigsaw step's samples were that spin, and cutting it took a Jigsaw training run from
/// 3 800–5 300 to about 6 400 images/s (docs/benchmarks.md). Parking at once (0) has the
/// opposite cost: the next op's caller waits for the worker to wake, 8% of a ViT-Tiny
/// step's samples. A short spin keeps the worker for back-to-back ops: against 0, Barlow
/// Twins +9%, SimCLR +6%, BYOL and MAE +4–5%; Jigsaw, DINO, rotation and ViT-Tiny's step
/// unchanged.
///
/// Changing the environment is only sound while no other thread can read it, so this does
/// nothing once the process has a second thread.
fn park_idle_candle_workers() {
    if std::env::var_os(SPIN_LIMIT_VAR).is_some() || !single_threaded() {
        return;
    }
    // SAFETY: `set_var` is unsound only when another thread reads or writes the
    // environment at the same time; the process has just one thread (checked above), and
    // this one does nothing else until the call returns.
    unsafe { std::env::set_var(SPIN_LIMIT_VAR, SPIN_LIMIT) };
}

/// Whether this process runs exactly one thread (Linux: one entry in `/proc/self/task`);
/// `false` where that cannot be known.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_thread_forbids_changing_the_environment() {
        // Whatever else the test harness runs, this test holds a second thread alive.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let waiting = std::thread::spawn(move || rx.recv().ok());
        assert!(!single_threaded());
        drop(tx);
        waiting.join().unwrap();
    }
}
