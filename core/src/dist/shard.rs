//! Which images each rank trains on: PyTorch's `DistributedSampler` semantics. The epoch's
//! order is shuffled from (seed, epoch) as in a one-process run, cut to whole global
//! batches, and global batch `b` is split by striding: rank `r` takes positions
//! `b·B + r, b·B + r + W, …`. So the ranks' shares are disjoint, of equal length (no rank
//! waits at the end of an epoch for a batch another never makes), and together they are
//! exactly the images of the one-process run's batch `b`.

/// One rank's share of one epoch: per step, the positions (in the epoch's order) of its
/// images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub batches: Vec<Vec<usize>>,
}

/// Rank `rank` of `world`'s positions for each of `steps` global batches of `batch` images.
/// `batch` must be a multiple of `world` (the trainer checks it first).
pub fn shard_positions(steps: usize, batch: usize, rank: usize, world: usize) -> Shard {
    let world = world.max(1);
    let local = batch / world;
    Shard { batches: (0..steps).map(|b| (0..local).map(|j| b * batch + j * world + rank).collect()).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_equal_and_cover_each_global_batch() {
        let (steps, batch, world) = (5, 12, 3);
        let shards: Vec<Shard> = (0..world).map(|r| shard_positions(steps, batch, r, world)).collect();
        for b in 0..steps {
            let mut all: Vec<usize> = shards.iter().flat_map(|s| s.batches[b].iter().copied()).collect();
            assert!(shards.iter().all(|s| s.batches[b].len() == batch / world));
            all.sort_unstable();
            assert_eq!(all, (b * batch..(b + 1) * batch).collect::<Vec<_>>());
        }
        assert_eq!(shards[1].batches[0], [1, 4, 7, 10]);
        // One rank is the one-process run.
        assert_eq!(shard_positions(2, 4, 0, 1).batches, [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    }
}
