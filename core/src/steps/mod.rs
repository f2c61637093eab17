//! What every host-side optimisation loop shares — training, the linear probe, fine-tuning:
//! the learning rate of each step and the seed of each batch.
//!
//! It sits beside `train` and `eval` rather than inside either, so evaluation does not reach
//! into the trainer. It holds no state and touches no device.

mod lr;
mod seeds;

pub use lr::{LrDecay, LrSchedule};
pub use seeds::{batch_seed, image_seed};
