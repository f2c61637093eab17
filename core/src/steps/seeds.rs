//! Seeds derived from the run seed, so that every batch's augmentation is reproducible and a
//! resumed run draws exactly what an uninterrupted one would have.

/// SplitMix64's finaliser: a cheap, well-mixed hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of batch `batch` of epoch `epoch`.
pub fn batch_seed(seed: u64, epoch: u64, batch: u64) -> u64 {
    mix(mix(mix(seed) ^ epoch) ^ batch)
}
