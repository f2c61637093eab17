//! The fixed set of tile permutations the jigsaw task classifies.
//!
//! As in Noroozi & Favaro (2016), permutations are chosen greedily to be far apart in
//! Hamming distance, so that neighbouring classes differ in many tile positions: start from
//! a random permutation, then keep adding the permutation whose distance to the closest one
//! already chosen is largest. The RNG picks the start and breaks ties, so a seed fixes the set.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Position `j` holds tile `perm[j]`.
pub type Permutation = Vec<u8>;

/// All `tiles!` permutations of `0..tiles` in lexicographic order (`tiles` ≤ 9 or so: 9! is
/// 362 880).
fn all_permutations(tiles: u8) -> Vec<Permutation> {
    let mut out = Vec::new();
    let mut p: Permutation = (0..tiles).collect();
    let n = p.len();
    loop {
        out.push(p.clone());
        // Next lexicographic permutation (Narayana Pandita).
        let Some(i) = (0..n.saturating_sub(1)).rev().find(|&i| p[i] < p[i + 1]) else { return out };
        let Some(j) = (i + 1..n).rev().find(|&j| p[j] > p[i]) else { return out };
        p.swap(i, j);
        p[i + 1..].reverse();
    }
}

pub fn hamming(a: &Permutation, b: &Permutation) -> u8 {
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    u8::try_from(differing).unwrap_or(u8::MAX)
}

/// `count` distinct permutations of `0..tiles` with a large minimum pairwise Hamming
/// distance (all of them, if `count` is `tiles!` or more).
pub fn maximal_hamming_set(count: usize, tiles: u8, seed: u64) -> Vec<Permutation> {
    let all = all_permutations(tiles);
    let count = count.min(all.len());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen = Vec::with_capacity(count);
    let mut min_dist = vec![u8::MAX; all.len()];
    let mut next = rng.random_range(0..all.len());
    while chosen.len() < count {
        let pick = all[next].clone();
        for (d, p) in min_dist.iter_mut().zip(&all) {
            *d = (*d).min(hamming(p, &pick));
        }
        chosen.push(pick);
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
    fn there_are_n_factorial_distinct_permutations() {
        for (tiles, count) in [(4, 24), (9, 362_880)] {
            let all = all_permutations(tiles);
            assert_eq!(all.len(), count);
            assert!(all.windows(2).all(|w| w[0] < w[1]), "lexicographic and hence distinct");
        }
        // A set asked for more than there are holds each permutation once.
        let mut four = maximal_hamming_set(100, 4, 1);
        four.sort();
        assert_eq!(four, all_permutations(4));
    }

    #[test]
    fn the_set_is_distinct_far_apart_and_seeded() {
        let set = maximal_hamming_set(100, 9, 7);
        assert_eq!(set.len(), 100);
        let mut min = u8::MAX;
        for (i, a) in set.iter().enumerate() {
            let mut sorted = a.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7, 8], "{a:?} is a permutation");
            for b in &set[i + 1..] {
                min = min.min(hamming(a, b));
            }
        }
        // Random pairs of permutations of 9 differ in about 8 positions; a max-min set of
        // 100 keeps every pair at least 6 apart.
        assert!(min >= 6, "minimum Hamming distance {min}");
        assert_eq!(set, maximal_hamming_set(100, 9, 7));
        assert_ne!(set, maximal_hamming_set(100, 9, 8));
    }
}
