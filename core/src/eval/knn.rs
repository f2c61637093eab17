//! Weighted k-nearest-neighbour classification on L2-normalised features, the monitor and
//! evaluation protocol of InstDisc/MoCo/lightly: cosine similarity to a bank of labelled
//! features, the `k` most similar vote for their class with weight `exp(sim / T)`.
//!
//! Similarities are one matrix product per chunk of queries (candle's CPU gemm); the top-k
//! selection is a partial sort per row. The same search gives each point's neighbours for
//! the embedding viewer.

use candle_core::{Device, Tensor};

/// Queries per similarity block: bounds memory at `CHUNK × bank` floats. Small enough that a
/// block over a 60 000-image bank (31 MB) stays under the mmap threshold the binary sets
/// (`host::tune_for_training`), so blocks reuse memory instead of faulting in fresh pages.
const CHUNK: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnConfig {
    pub k: usize,
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 200, temperature: 0.1 }
    }
}

/// Rows of `data` (each `cols` long) scaled to unit length; zero rows stay zero.
pub fn l2_normalized(data: &[f32], cols: usize) -> Vec<f32> {
    let mut out = data.to_vec();
    for row in out.chunks_exact_mut(cols.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

/// Applies `f` to every row of a row-major block, with a scratch buffer per thread; in
/// parallel where threads exist.
fn map_rows<T: Send>(
    block: &[f32],
    cols: usize,
    f: impl Fn(usize, &[f32], &mut Vec<f32>) -> T + Sync + Send,
) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        block.par_chunks_exact(cols).enumerate().map_init(Vec::new, |scratch, (r, row)| f(r, row, scratch)).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut scratch = Vec::new();
        block.chunks_exact(cols).enumerate().map(|(r, row)| f(r, row, &mut scratch)).collect()
    }
}

/// For each query row, the `k` most similar bank rows as (index, cosine similarity), most
/// similar first. With `exclude_self`, query `i` never returns bank row `i` (for a set
/// searched against itself). Inputs need not be normalised.
///
/// Similarities come one block of queries at a time from a matrix product into one buffer,
/// and each row's selection reuses a per-thread buffer: allocating a bank-sized buffer per
/// query made this page-fault bound (measured in docs/benchmarks.md).
pub fn top_k(
    bank: &[f32],
    queries: &[f32],
    cols: usize,
    k: usize,
    exclude_self: bool,
) -> candle_core::Result<Vec<Vec<(usize, f32)>>> {
    if cols == 0 || !bank.len().is_multiple_of(cols) || !queries.len().is_multiple_of(cols) {
        candle_core::bail!("feature matrices must have {cols} columns");
    }
    let n_bank = bank.len() / cols;
    let n_query = queries.len() / cols;
    if n_bank == 0 {
        return Ok(vec![Vec::new(); n_query]);
    }
    let bank_t = Tensor::from_vec(l2_normalized(bank, cols), (n_bank, cols), &Device::Cpu)?.t()?;
    let queries = l2_normalized(queries, cols);
    let mut out = Vec::with_capacity(n_query);
    for start in (0..n_query).step_by(CHUNK) {
        let rows = (n_query - start).min(CHUNK);
        let q = Tensor::from_slice(&queries[start * cols..(start + rows) * cols], (rows, cols), &Device::Cpu)?;
        let sims = q.matmul(&bank_t)?.flatten_all()?.to_vec1::<f32>()?;
        out.extend(map_rows(&sims, n_bank, |r, row, values| best_k(row, k, exclude_self.then_some(start + r), values)));
    }
    Ok(out)
}

/// The `k` largest entries of `row` but `skip`, as (index, value), largest first and ties by
/// index: the first `k` of `row` sorted by (value descending, index ascending).
///
/// The `k`-th largest value comes from a selection over a copy of the values (`scratch`),
/// which compares floats directly instead of through indices; every entry above it is in,
/// and equal ones fill up in index order.
fn best_k(row: &[f32], k: usize, skip: Option<usize>, scratch: &mut Vec<f32>) -> Vec<(usize, f32)> {
    let candidates = || row.iter().copied().enumerate().filter(move |&(j, _)| Some(j) != skip);
    scratch.clear();
    scratch.extend(candidates().map(|(_, v)| v));
    let keep = k.min(scratch.len());
    if keep == 0 {
        return Vec::new();
    }
    let (_, &mut threshold, _) = scratch.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a));
    let mut best = Vec::with_capacity(keep);
    let mut ties = Vec::new();
    for (j, v) in candidates() {
        match v.total_cmp(&threshold) {
            std::cmp::Ordering::Greater => best.push((j, v)),
            std::cmp::Ordering::Equal => ties.push((j, v)),
            std::cmp::Ordering::Less => {}
        }
    }
    let missing = keep - best.len();
    best.extend(ties.into_iter().take(missing));
    best.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    best
}

/// Predicted class of each query by the weighted vote of its `k` nearest bank rows.
pub fn knn_predict(
    bank: &[f32],
    bank_labels: &[u32],
    queries: &[f32],
    cols: usize,
    num_classes: usize,
    config: KnnConfig,
) -> candle_core::Result<Vec<u32>> {
    if bank_labels.len() * cols != bank.len() {
        candle_core::bail!("the bank has {} rows but {} labels", bank.len() / cols.max(1), bank_labels.len());
    }
    let neighbours = top_k(bank, queries, cols, config.k, false)?;
    Ok(neighbours
        .iter()
        .map(|row| {
            let mut votes = vec![0f64; num_classes.max(1)];
            for &(j, sim) in row {
                if let Some(v) = votes.get_mut(bank_labels[j] as usize) {
                    *v += f64::from(sim / config.temperature).exp();
                }
            }
            let best = votes.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(c, _)| c);
            u32::try_from(best).unwrap_or(0)
        })
        .collect())
}

/// Fraction of `predicted` equal to `labels`.
pub fn accuracy(predicted: &[u32], labels: &[u32]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    #[allow(clippy::cast_precision_loss)]
    let acc = right as f64 / labels.len() as f64;
    acc
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The protocol written the obvious way, in f64: every similarity, a full sort, the vote.
    fn brute_force(
        bank: &[f32],
        labels: &[u32],
        queries: &[f32],
        cols: usize,
        classes: usize,
        cfg: KnnConfig,
    ) -> Vec<u32> {
        let unit = |v: &[f32]| {
            let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            v.iter().map(|x| f64::from(*x) / n).collect::<Vec<f64>>()
        };
        queries
            .chunks(cols)
            .map(|q| {
                let q = unit(q);
                let mut sims: Vec<(f64, u32)> = bank
                    .chunks(cols)
                    .zip(labels)
                    .map(|(b, &l)| (unit(b).iter().zip(&q).map(|(a, b)| a * b).sum(), l))
                    .collect();
                sims.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut votes = vec![0f64; classes];
                for (s, l) in sims.iter().take(cfg.k) {
                    votes[*l as usize] += (s / f64::from(cfg.temperature)).exp();
                }
                votes.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32
            })
            .collect()
    }

    #[test]
    fn agrees_with_a_brute_force_reference() {
        let mut rng = StdRng::seed_from_u64(3);
        let (cols, classes) = (16, 5);
        // Class-dependent means so the vote is not a coin toss.
        let mut sample = |n: usize| {
            let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..classes as u32)).collect();
            let data: Vec<f32> = labels
                .iter()
                .flat_map(|&l| (0..cols).map(move |c| if c == l as usize { 1.0 } else { 0.0 }).collect::<Vec<f32>>())
                .map(|v| v + rng.random_range(-0.8f32..0.8))
                .collect();
            (data, labels)
        };
        let (bank, bank_labels) = sample(700);
        let (queries, query_labels) = sample(1100);
        for cfg in [KnnConfig::default(), KnnConfig { k: 7, temperature: 0.5 }, KnnConfig { k: 1000, temperature: 0.1 }]
        {
            let got = knn_predict(&bank, &bank_labels, &queries, cols, classes, cfg).unwrap();
            let want = brute_force(&bank, &bank_labels, &queries, cols, classes, cfg);
            let agree = got.iter().zip(&want).filter(|(a, b)| a == b).count();
            // f32 against f64 may flip a vote that is a near tie; nothing more.
            assert!(agree >= want.len() - 2, "{agree} of {} agree for {cfg:?}", want.len());
            assert!(accuracy(&got, &query_labels) > 0.5);
        }
    }

    #[test]
    fn best_k_is_the_head_of_the_full_sort_ties_included() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut scratch = Vec::new();
        for case in 0..200 {
            let n = rng.random_range(0..60);
            // Few distinct values (zeros of both signs among them), so ties are everywhere.
            let row: Vec<f32> = (0..n).map(|_| [0.5f32, -0.25, 0.0, -0.0, 1.0][rng.random_range(0..5)]).collect();
            let skip = if n > 0 && case % 2 == 0 { Some(rng.random_range(0..n)) } else { None };
            let k = rng.random_range(0..n + 3);
            let mut want: Vec<(usize, f32)> =
                row.iter().copied().enumerate().filter(|&(j, _)| Some(j) != skip).collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            want.truncate(k);
            let got = best_k(&row, k, skip, &mut scratch);
            let bits = |v: &[(usize, f32)]| v.iter().map(|&(j, x)| (j, x.to_bits())).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "row {row:?}, k {k}, skip {skip:?}");
        }
    }

    #[test]
    fn neighbours_exclude_self_and_are_sorted() {
        let data = [1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0];
        let nn = top_k(&data, &data, 2, 2, true).unwrap();
        assert_eq!(nn[0].iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(nn.iter().enumerate().all(|(i, row)| row.iter().all(|p| p.0 != i)));
        assert!(nn.iter().all(|row| row.windows(2).all(|w| w[0].1 >= w[1].1)));
    }
}
