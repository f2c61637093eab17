//! Seeds derived from the run seed, so that every batch's augmentation is reproducible and a
//! resumed run draws exactly what an uninterrupted one would have.

use pretext_sdk::task::mix;

/// The seed of batch `batch` of epoch `epoch`.
pub fn batch_seed(seed: u64, epoch: u64, batch: u64) -> u64 {
    mix(mix(mix(seed) ^ epoch) ^ batch)
}

/// The augmentation seed of the image at `position` in epoch `epoch`'s order. It does not
/// depend on the batch size or on how a batch is split over ranks, so a data-parallel run
/// draws for every image what a one-process run draws.
pub fn image_seed(seed: u64, epoch: u64, position: u64) -> u64 {
    mix(mix(mix(seed ^ 0x696d_6167_6500_0000) ^ epoch) ^ position)
}
