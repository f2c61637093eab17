//! One random stream per source image, so that what a task draws for an image depends on
//! that image's seed alone and not on which other images share its batch.
//!
//! This is what lets a data-parallel run split a global batch over any number of ranks and
//! still augment every image exactly as a one-process run would, and a run resumed with a
//! different number of ranks continue the same. The host derives each image's seed from
//! (run seed, epoch, position in the epoch's order); tasks must draw an image's randomness
//! from [`ImageRngs::image`] and never share one stream across images.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// SplitMix64's finaliser: a bijective mix of 64 bits, so nearby inputs give unrelated seeds.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-image seeds derived from one.
pub(crate) fn derived_seeds(seed: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| mix(mix(seed) ^ i)).collect()
}

/// A seeded random stream for each image of a batch.
#[derive(Debug)]
pub struct ImageRngs {
    rngs: Vec<StdRng>,
}

impl ImageRngs {
    /// One stream per seed, image `i` from `seeds[i]`.
    pub fn from_seeds(seeds: &[u64]) -> Self {
        Self { rngs: seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect() }
    }

    /// `n` streams derived from one seed (tests, samples, benchmarks).
    pub fn from_seed(seed: u64, n: usize) -> Self {
        Self::from_seeds(&derived_seeds(seed, n))
    }

    pub fn len(&self) -> usize {
        self.rngs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rngs.is_empty()
    }

    /// The stream of image `i`. An index past the batch wraps around rather than panic: the
    /// session checks that there is one stream per image before a task sees them.
    pub fn image(&mut self, i: usize) -> &mut StdRng {
        let n = self.rngs.len();
        if n == 0 {
            self.rngs.push(StdRng::seed_from_u64(0));
            return &mut self.rngs[0];
        }
        &mut self.rngs[i % n]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn an_images_draws_do_not_depend_on_its_neighbours() {
        let mut a = ImageRngs::from_seeds(&[7, 8, 9]);
        let mut b = ImageRngs::from_seeds(&[9]);
        // Image 0 and 1 of `a` draw first; image 2 still gives what it gives alone.
        let _: u64 = a.image(0).random();
        let _: u64 = a.image(1).random();
        assert_eq!(a.image(2).random::<u64>(), b.image(0).random::<u64>());
    }

    #[test]
    fn derived_seeds_are_distinct_and_repeatable() {
        let draw = |seed| {
            let mut r = ImageRngs::from_seed(seed, 4);
            (0..4).map(|i| r.image(i).random::<u64>()).collect::<Vec<_>>()
        };
        let first = draw(3);
        assert_eq!(first, draw(3));
        assert_ne!(first, draw(4));
        let mut unique = first.clone();
        unique.dedup();
        assert_eq!(unique.len(), 4);
    }
}
