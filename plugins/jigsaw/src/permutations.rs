//! The fixed set of tile permutations the jigsaw task classifies.
//!
//! As in Noroozi & Favaro (2016), permutations are chosen greedily to be far apart in
//! Hamming distance, so that neighbouring classes differ in many tile positions: start from
//! a random permutation, then keep adding the permutation whose distance to the closest one
//! already chosen is largest. The RNG picks the start and breaks ties, so a seed fixes the set.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The number of tiles of a 3×3 grid.
pub const TILES: usize = 9;

pub type Permutation = [u8; TILES];

/// All 9! permutations of 0..9 in lexicographic order.
fn all_permutations() -> Vec<Permutation> {
    let mut out = Vec::with_capacity(362_880);
    let mut p: Permutation = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    loop {
        out.push(p);
        // Next lexicographic permutation (Narayana Pandita).
        let Some(i) = (0..TILES - 1).rev().find(|&i| p[i] < p[i + 1]) else { return out };
        let Some(j) = (i + 1..TILES).rev().find(|&j| p[j] > p[i]) else { return out };
        p.swap(i, j);
        p[i + 1..].reverse();
    }
}

pub fn hamming(a: &Permutation, b: &Permutation) -> u8 {
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    u8::try_from(differing).unwrap_or(u8::MAX)
}

/// `count` distinct permutations with a large minimum pairwise Hamming distance.
pub fn maximal_hamming_set(count: usize, seed: u64) -> Vec<Permutation> {
    let all = all_permutations();
    let count = count.min(all.len());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(count);
    let mut min_dist = vec![u8::MAX; all.len()];
    let mut next = rng.random_range(0..all.len());
    while chosen.len() < count {
        let pick = all[next];
        chosen.push(pick);
        for (d, p) in min_dist.iter_mut().zip(&all) {
            *d = (*d).min(hamming(p, &pick));
        }
        let Some(&best) = min_dist.iter().max() else { break };
        if best == 0 {
            break;
        }
        let ties: Vec<usize> = (0..all.len()).filter(|&i| min_dist[i] == best).collect();
        next = ties[rng.random_range(0..ties.len())];
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_nine_factorial_distinct_permutations() {
        let all = all_permutations();
        assert_eq!(all.len(), 362_880);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "lexicographic and hence distinct");
    }

    #[test]
    fn the_set_is_distinct_far_apart_and_seeded() {
        let set = maximal_hamming_set(100, 7);
        assert_eq!(set.len(), 100);
        let mut min = u8::MAX;
        for (i, a) in set.iter().enumerate() {
            let mut sorted = *a;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7, 8], "{a:?} is a permutation");
            for b in &set[i + 1..] {
                min = min.min(hamming(a, b));
            }
        }
        // Random pairs of permutations of 9 differ in about 8 positions; a max-min set of
        // 100 keeps every pair at least 6 apart.
        assert!(min >= 6, "minimum Hamming distance {min}");
        assert_eq!(set, maximal_hamming_set(100, 7));
        assert_ne!(set, maximal_hamming_set(100, 8));
    }
}
