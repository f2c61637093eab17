//! 2-D projections of features for the embedding viewer: PCA (fast, faithful to global
//! structure) and t-SNE (the clustered picture people expect; exact O(N²), meant for the
//! few thousand points a viewer shows). Plain Rust, deterministic for a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rows of `data` minus the column means.
fn centred(data: &[f32], cols: usize) -> Vec<f64> {
    let rows = data.len() / cols.max(1);
    let mut mean = vec![0f64; cols];
    for row in data.chunks_exact(cols) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    data.chunks_exact(cols).flat_map(|row| row.iter().zip(&mean).map(|(v, m)| f64::from(*v) - m)).collect()
}

/// The first two principal components' coordinates of each row, by power iteration on the
/// covariance with deflation. Component signs are fixed so the largest loading is positive.
pub fn pca_2d(data: &[f32], cols: usize) -> Vec<[f32; 2]> {
    let rows = data.len() / cols.max(1);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let x = centred(data, cols);
    let mut cov = vec![0f64; cols * cols];
    for row in x.chunks_exact(cols) {
        for i in 0..cols {
            let ri = row[i];
            for j in 0..cols {
                cov[i * cols + j] += ri * row[j];
            }
        }
    }
    let mut components: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2.min(cols) {
        #[allow(clippy::cast_precision_loss)]
        let mut v: Vec<f64> = (0..cols).map(|i| 1.0 + (i as f64 * 0.618).sin() * 0.1).collect();
        for _ in 0..200 {
            let mut next: Vec<f64> = (0..cols).map(|i| (0..cols).map(|j| cov[i * cols + j] * v[j]).sum()).collect();
            for c in &components {
                let dot: f64 = next.iter().zip(c).map(|(a, b)| a * b).sum();
                next.iter_mut().zip(c).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = next.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            next.iter_mut().for_each(|a| *a /= norm);
            v = next;
        }
        let biggest = v.iter().copied().fold(0f64, |m, a| if a.abs() > m.abs() { a } else { m });
        if biggest < 0.0 {
            v.iter_mut().for_each(|a| *a = -*a);
        }
        components.push(v);
    }
    #[allow(clippy::cast_possible_truncation)]
    x.chunks_exact(cols)
        .map(|row| {
            let mut p = [0f32; 2];
            for (k, c) in components.iter().enumerate() {
                p[k] = row.iter().zip(c).map(|(a, b)| a * b).sum::<f64>() as f32;
            }
            p
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TsneConfig {
    pub perplexity: f64,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self { perplexity: 30.0, iterations: 750, seed: 0 }
    }
}

/// Input affinities: for each row a Gaussian over squared distances whose entropy matches
/// the perplexity (binary search on the precision), then symmetrised and normalised.
fn affinities(dist: &[f64], n: usize, perplexity: f64) -> Vec<f64> {
    let target = perplexity.min((n - 1) as f64 / 3.0).max(1.0).ln();
    let mut p = vec![0f64; n * n];
    for i in 0..n {
        let row = &dist[i * n..(i + 1) * n];
        let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
        for _ in 0..64 {
            let mut sum = 0.0;
            let mut weighted = 0.0;
            for (j, &d) in row.iter().enumerate() {
                if j != i {
                    let e = (-beta * d).exp();
                    sum += e;
                    weighted += d * e;
                }
            }
            if sum <= 0.0 {
                hi = beta;
                beta = (lo + hi) / 2.0;
                continue;
            }
            let entropy = sum.ln() + beta * weighted / sum;
            if (entropy - target).abs() < 1e-5 {
                break;
            }
            if entropy > target {
                lo = beta;
                beta = if hi.is_finite() { (beta + hi) / 2.0 } else { beta * 2.0 };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
        }
        let sum: f64 = row.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &d)| (-beta * d).exp()).sum();
        for (j, &d) in row.iter().enumerate() {
            if j != i && sum > 0.0 {
                p[i * n + j] = (-beta * d).exp() / sum;
            }
        }
    }
    let mut sym = vec![0f64; n * n];
    #[allow(clippy::cast_precision_loss)]
    let norm = 2.0 * n as f64;
    for i in 0..n {
        for j in 0..n {
            sym[i * n + j] = ((p[i * n + j] + p[j * n + i]) / norm).max(1e-12);
        }
    }
    sym
}

/// t-SNE (van der Maaten & Hinton 2008) of the rows of `data` on cosine geometry: rows are
/// L2-normalised first, as for kNN. PCA initialisation, early exaggeration 12 for the
/// first quarter, momentum 0.5 then 0.8, per-coordinate gains.
pub fn tsne_2d(data: &[f32], cols: usize, config: TsneConfig) -> Vec<[f32; 2]> {
    let n = data.len() / cols.max(1);
    if n < 4 {
        return pca_2d(data, cols);
    }
    let x = super::l2_normalized(data, cols);
    let mut dist = vec![0f64; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let d: f64 = x[i * cols..(i + 1) * cols]
                .iter()
                .zip(&x[j * cols..(j + 1) * cols])
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum();
            dist[i * n + j] = d;
            dist[j * n + i] = d;
        }
    }
    let p = affinities(&dist, n, config.perplexity);
    drop(dist);

    // PCA start, scaled to a small spread, plus a seeded jitter to break exact ties.
    let mut rng = StdRng::seed_from_u64(config.seed);
    let init = pca_2d(&x, cols);
    let spread = init.iter().map(|q| f64::from(q[0]).powi(2)).sum::<f64>().sqrt().max(1e-12);
    #[allow(clippy::cast_precision_loss)]
    let scale = 1e-4 * (n as f64).sqrt() / spread;
    let mut y: Vec<f64> = init
        .iter()
        .flat_map(|q| [f64::from(q[0]) * scale, f64::from(q[1]) * scale])
        .map(|v| v + rng.random_range(-1e-6..1e-6))
        .collect();
    let mut velocity = vec![0f64; 2 * n];
    let mut gains = vec![1f64; 2 * n];
    #[allow(clippy::cast_precision_loss)]
    let lr = (n as f64 / 12.0).max(50.0);
    let exaggerate_until = config.iterations / 4;
    let mut q = vec![0f64; n * n];
    let mut grad = vec![0f64; 2 * n];
    for it in 0..config.iterations {
        let exaggeration = if it < exaggerate_until { 12.0 } else { 1.0 };
        let momentum = if it < exaggerate_until { 0.5 } else { 0.8 };
        let mut z = 0.0;
        for i in 0..n {
            for j in (i + 1)..n {
                let (dx, dy) = (y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]);
                let t = 1.0 / (1.0 + dx * dx + dy * dy);
                q[i * n + j] = t;
                q[j * n + i] = t;
                z += 2.0 * t;
            }
        }
        grad.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let t = q[i * n + j];
                    let f = 4.0 * (exaggeration * p[i * n + j] - t / z) * t;
                    grad[2 * i] += f * (y[2 * i] - y[2 * j]);
                    grad[2 * i + 1] += f * (y[2 * i + 1] - y[2 * j + 1]);
                }
            }
        }
        for k in 0..2 * n {
            gains[k] = if (grad[k] > 0.0) == (velocity[k] > 0.0) { gains[k] * 0.8 } else { gains[k] + 0.2 };
            gains[k] = gains[k].max(0.01);
            velocity[k] = momentum * velocity[k] - lr * gains[k] * grad[k];
            y[k] += velocity[k];
        }
    }
    #[allow(clippy::cast_possible_truncation)]
    y.chunks_exact(2).map(|c| [c[0] as f32, c[1] as f32]).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_precision_loss)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_direction_of_largest_variance() {
        // Points along (1, 1, 0) with small noise in the third coordinate.
        let data: Vec<f32> = (0..50)
            .flat_map(|i| {
                let t = i as f32 - 25.0;
                [t, t, (i % 3) as f32 * 0.01]
            })
            .collect();
        let p = pca_2d(&data, 3);
        // First coordinate is the centred position along the line: t runs -25..=24 with
        // mean -0.5, so the last point sits at 24.5·√2; the second coordinate is tiny.
        let ratio = p[49][0] / (24.5 * 2f32.sqrt());
        assert!((ratio - 1.0).abs() < 1e-3, "{:?}", p[49]);
        assert!(p.iter().all(|q| q[1].abs() < 0.05));
    }

    #[test]
    fn tsne_keeps_clusters_apart() {
        // Three tight clusters on orthogonal directions: each point's 2-D neighbours must
        // be from its own cluster.
        let mut rng = StdRng::seed_from_u64(5);
        let labels: Vec<usize> = (0..90).map(|i| i % 3).collect();
        let data: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..6).map(move |c| (c, l)).collect::<Vec<_>>())
            .map(|(c, l)| f32::from(u8::from(c == l)) + rng.random_range(-0.05..0.05))
            .collect();
        let y = tsne_2d(&data, 6, TsneConfig { perplexity: 10.0, iterations: 300, seed: 1 });
        let mut right = 0;
        for i in 0..90 {
            let nearest = (0..90)
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let d = |j: usize| (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2);
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            right += usize::from(labels[nearest] == labels[i]);
        }
        assert!(right >= 88, "{right} of 90 nearest neighbours share the cluster");
        assert_eq!(y, tsne_2d(&data, 6, TsneConfig { perplexity: 10.0, iterations: 300, seed: 1 }));
    }
}
