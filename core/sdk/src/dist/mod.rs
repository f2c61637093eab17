//! Collectives across the ranks of a data-parallel run, as a plugin sees them.
//!
//! The host owns the communication (MPI between processes); a plugin reaches it through
//! [`Collective`], a trait over plain `f32` buffers that the ABI glue implements with the
//! host's callbacks, so no MPI library is linked into a plugin and no tensor crosses the
//! boundary. Inside a training step the session makes its communicator *current* on the
//! calling thread ([`scope`]); losses gather the global batch with [`gather`] and batch norm
//! synchronises its statistics through [`all_reduce_sum`], both differentiable, and both
//! the identity when there is one rank. This module must not decide anything about the
//! training itself (what is averaged when is the session's business, in `task/ddp.rs`).

mod local;
mod ops;

use std::cell::RefCell;
use std::sync::Arc;

pub use local::LocalGroup;
pub use ops::{all_reduce_sum, gather, mean_over_ranks};

/// The collectives of one rank. Every rank must make the same calls in the same order with
/// buffers of the same length, or the run hangs or fails; the session and the SDK's ops
/// keep to that, and tasks that call [`gather`] must do so on every rank.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world(&self) -> usize;
    /// Sums `data` element-wise over all ranks, in place; every rank gets the same sums.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), String>;
    /// Every rank's `data` (all of one length), concatenated in rank order.
    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, String>;
}

/// A shared handle to a rank's collectives.
pub type Comm = Arc<dyn Collective>;

#[derive(Clone)]
struct Current {
    comm: Comm,
    sync_batch_norm: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Makes `comm` current on this thread until the guard drops (the previous one, if any, is
/// restored). A communicator of one rank is not made current: one process trains as if
/// there were no communicator at all.
#[must_use = "the communicator is current only while the guard lives"]
pub fn scope(comm: Option<&Comm>, sync_batch_norm: bool) -> Scope {
    let next = comm.filter(|c| c.world() > 1).map(|c| Current { comm: Arc::clone(c), sync_batch_norm });
    Scope { previous: CURRENT.with(|cell| cell.replace(next)) }
}

/// Restores the previous communicator when dropped.
pub struct Scope {
    previous: Option<Current>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// The communicator of the step running on this thread, if it has more than one rank.
pub fn current() -> Option<Comm> {
    CURRENT.with(|cell| cell.borrow().as_ref().map(|c| Arc::clone(&c.comm)))
}

/// The communicator batch norm synchronises over, if the run asked for synchronised batch
/// norm and has more than one rank.
pub fn sync_batch_norm() -> Option<Comm> {
    CURRENT.with(|cell| cell.borrow().as_ref().filter(|c| c.sync_batch_norm).map(|c| Arc::clone(&c.comm)))
}

/// A failed collective as a candle error, naming what was being exchanged.
pub(crate) fn error(what: &str, message: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("the ranks could not exchange {what}: {message}"))
}
