//! The MPI transport (rsmpi over the system's MPI library, Open MPI on Debian): started once
//! per process with serialised threading, finished when dropped. Only `Ranks` calls it.

use mpi::collective::SystemOperation;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use super::DistError;

pub(super) struct Mpi {
    /// Finalises MPI when dropped.
    _universe: Universe,
}

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

impl Mpi {
    pub(super) fn start() -> Result<Self, DistError> {
        let (universe, _threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError::Init("it was already started in this process".into()))?;
        Ok(Self { _universe: universe })
    }

    #[allow(clippy::cast_sign_loss)]
    pub(super) fn rank(&self) -> usize {
        world().rank() as usize
    }

    #[allow(clippy::cast_sign_loss)]
    pub(super) fn world(&self) -> usize {
        world().size() as usize
    }

    pub(super) fn all_reduce_sum(&self, data: &mut [f32]) {
        let send = data.to_vec();
        world().all_reduce_into(&send[..], data, SystemOperation::sum());
    }

    pub(super) fn all_gather(&self, data: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; data.len() * self.world()];
        world().all_gather_into(data, &mut out[..]);
        out
    }

    pub(super) fn all_gather_bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; data.len() * self.world()];
        world().all_gather_into(data, &mut out[..]);
        out
    }

    pub(super) fn broadcast(&self, bytes: &mut Vec<u8>) {
        let comm = world();
        let root = comm.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        #[allow(clippy::cast_possible_truncation)]
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }

    pub(super) fn abort(&self, code: i32) {
        world().abort(code);
    }
}
