//! The ranks of a data-parallel run, host side: who this process is, how it talks to the
//! others, and which images each rank trains on.
//!
//! A run launched by `mpirun`/`srun` is one rank per process; one launched plainly is a world
//! of one and behaves exactly as before. [`Ranks`] wraps the transport (MPI through rsmpi,
//! behind the `mpi` feature) with what the trainer and the plugins' collectives need: sums
//! and gathers of `f32` buffers, a broadcast of bytes from rank 0, agreement on a flag, and
//! counters of the time and bytes spent communicating. It must not know about tasks,
//! tensors or run directories.

mod launch;
#[cfg(feature = "mpi")]
mod mpi;
mod shard;

use std::sync::Mutex;
use std::time::Instant;

pub use launch::{Launch, launch_from_env};
pub use shard::{Shard, shard_positions};

/// What went wrong between ranks.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(
        "this process was started by an MPI launcher as one of {world} ranks, but this pretext was built without MPI; rebuild it with `--features mpi` (see docs/distributed.md)"
    )]
    NoMpi { world: usize },
    #[error("MPI could not be started: {0}")]
    Init(String),
    #[error("the ranks disagree: {0}")]
    Mismatch(String),
}

/// How much this rank has communicated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Wall-clock seconds spent inside collectives (waiting for slower ranks included).
    pub seconds: f64,
    /// Bytes this rank passed to all-reduces (gradients, statistics, metrics).
    pub reduced_bytes: u64,
    pub calls: u64,
}

enum Transport {
    Alone,
    #[cfg(feature = "mpi")]
    Mpi(mpi::Mpi),
}

/// This process's place in the run and its collectives. Calls are serialised: one runs at a
/// time, from whichever thread makes it.
pub struct Ranks {
    rank: usize,
    world: usize,
    local_rank: usize,
    transport: Transport,
    stats: Mutex<CommStats>,
}

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranks").field("rank", &self.rank).field("world", &self.world).finish_non_exhaustive()
    }
}

impl Ranks {
    /// A run of one process.
    pub fn alone() -> Self {
        Self { rank: 0, world: 1, local_rank: 0, transport: Transport::Alone, stats: Mutex::default() }
    }

    /// The ranks this process was launched as: MPI when a launcher's variables say so
    /// (`mpirun`, `srun`), otherwise [`Ranks::alone`].
    pub fn from_env() -> Result<Self, DistError> {
        match launch_from_env() {
            None => Ok(Self::alone()),
            Some(launch) => Self::join(launch),
        }
    }

    #[cfg(feature = "mpi")]
    fn join(launch: Launch) -> Result<Self, DistError> {
        let mpi = mpi::Mpi::start()?;
        let (rank, world) = (mpi.rank(), mpi.world());
        if world != launch.world {
            return Err(DistError::Mismatch(format!(
                "the launcher announced {} ranks but MPI has {world}",
                launch.world
            )));
        }
        Ok(Self { rank, world, local_rank: launch.local_rank, transport: Transport::Mpi(mpi), stats: Mutex::default() })
    }

    #[cfg(not(feature = "mpi"))]
    fn join(launch: Launch) -> Result<Self, DistError> {
        Self::without_mpi(launch)
    }

    /// What a build without MPI makes of a launch: one rank trains alone, more are refused.
    #[cfg_attr(feature = "mpi", allow(dead_code))]
    fn without_mpi(launch: Launch) -> Result<Self, DistError> {
        if launch.world == 1 {
            return Ok(Self::alone());
        }
        Err(DistError::NoMpi { world: launch.world })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// The rank among those on this machine (picks the GPU of `--device cuda`).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Rank 0 writes the run directory and reports progress.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Whether this run talks to other processes (MPI), even as a world of one.
    pub fn is_distributed(&self) -> bool {
        !matches!(self.transport, Transport::Alone)
    }

    pub fn stats(&self) -> CommStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Runs one collective under the lock, timing it and counting `bytes`.
    fn timed<R>(&self, bytes: usize, f: impl FnOnce(&Transport) -> R) -> R {
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let out = f(&self.transport);
        stats.seconds += started.elapsed().as_secs_f64();
        stats.reduced_bytes += bytes as u64;
        stats.calls += 1;
        out
    }

    /// Sums `data` over all ranks, in place.
    pub fn all_reduce_sum(&self, data: &mut [f32]) {
        self.timed(4 * data.len(), |t| match t {
            Transport::Alone => {}
            #[cfg(feature = "mpi")]
            Transport::Mpi(m) => m.all_reduce_sum(data),
        });
    }

    /// Every rank's `data`, concatenated in rank order.
    pub fn all_gather(&self, data: &[f32]) -> Vec<f32> {
        self.timed(0, |t| match t {
            Transport::Alone => data.to_vec(),
            #[cfg(feature = "mpi")]
            Transport::Mpi(m) => m.all_gather(data),
        })
    }

    /// Every rank's bytes (all of one length), concatenated in rank order.
    pub fn all_gather_bytes(&self, data: &[u8]) -> Vec<u8> {
        self.timed(0, |t| match t {
            Transport::Alone => data.to_vec(),
            #[cfg(feature = "mpi")]
            Transport::Mpi(m) => m.all_gather_bytes(data),
        })
    }

    /// Rank 0's `bytes` on every rank (the other ranks' are replaced).
    pub fn broadcast(&self, bytes: &mut Vec<u8>) {
        self.timed(0, |t| match t {
            Transport::Alone => {
                let _ = &bytes;
            }
            #[cfg(feature = "mpi")]
            Transport::Mpi(m) => m.broadcast(bytes),
        });
    }

    /// Whether `flag` is set on any rank (a world of one needs no exchange).
    pub fn any(&self, flag: bool) -> bool {
        if self.world == 1 {
            return flag;
        }
        let mut v = [f32::from(u8::from(flag))];
        self.all_reduce_sum(&mut v);
        v[0] > 0.0
    }

    /// Waits until every rank has reached this call.
    pub fn barrier(&self) {
        self.any(false);
    }

    /// Ends every rank of the run now (after this rank has reported its error), so that no
    /// rank waits forever for one that has stopped. A run of one process just returns.
    pub fn abort(&self, code: i32) {
        match &self.transport {
            Transport::Alone => {}
            #[cfg(feature = "mpi")]
            Transport::Mpi(m) => m.abort(code),
        }
        let _ = code;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_mpi_refuses_a_launch_of_several_ranks_in_one_sentence() {
        let refused = Ranks::without_mpi(Launch { world: 2, rank: 1, local_rank: 1 }).unwrap_err().to_string();
        assert!(refused.contains("one of 2 ranks") && refused.contains("--features mpi"), "{refused}");
        assert_eq!(refused.lines().count(), 1);
        let alone = Ranks::without_mpi(Launch { world: 1, rank: 0, local_rank: 0 });
        assert!(alone.is_ok_and(|r| r.world() == 1 && !r.is_distributed()));
    }
}
