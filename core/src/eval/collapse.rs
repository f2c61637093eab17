//! Is the representation collapsing? Two statistics of a set of feature vectors that any
//! task can be watched with, labels or not:
//!
//! - the mean per-dimension standard deviation of the L2-normalised features, times √d
//!   (SimSiam, Chen & He 2021: ≈ 1/√d per dimension when the features spread over the
//!   sphere, → 0 when every image maps to one point), so 1 is healthy and 0 collapsed;
//! - the effective rank of the feature matrix (RankMe, Garrido et al. 2023): exp of the
//!   entropy of its normalised singular values, from 1 (one direction) to d.
//!
//! The singular values come from the eigenvalues of the d×d Gram matrix by cyclic Jacobi
//! rotations (d is a backbone's feature size, at most a few hundred). This file must not
//! know where the features come from.

use crate::task::wire::Matrix;

/// Below this, the normalised spread (`std_ratio`) says the features are collapsing.
pub const COLLAPSED_STD_RATIO: f64 = 0.1;
/// Below this effective rank the features span fewer than two directions.
pub const COLLAPSED_RANK: f64 = 1.5;

/// The statistics of one feature matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CollapseStats {
    /// Mean over dimensions of the standard deviation (over images) of the L2-normalised
    /// features, times √d.
    pub std_ratio: f64,
    /// RankMe's effective rank.
    pub effective_rank: f64,
    pub dims: usize,
}

impl CollapseStats {
    pub fn of(features: &Matrix) -> Self {
        let (n, d) = (features.rows, features.cols);
        let rows: Vec<Vec<f64>> = features
            .data
            .chunks_exact(d.max(1))
            .take(n)
            .map(|r| {
                let norm = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt().max(1e-12);
                r.iter().map(|&v| f64::from(v) / norm).collect()
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let (nf, df) = (n.max(1) as f64, d.max(1) as f64);
        let mut std_sum = 0.0;
        for j in 0..d {
            let mean = rows.iter().map(|r| r[j]).sum::<f64>() / nf;
            let var = rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / nf;
            std_sum += var.sqrt();
        }
        let std_ratio = std_sum / df * df.sqrt();
        Self { std_ratio, effective_rank: effective_rank(features), dims: d }
    }

    /// One sentence when the statistics say the representation is collapsing.
    pub fn warning(&self) -> Option<String> {
        (self.std_ratio < COLLAPSED_STD_RATIO || self.effective_rank < COLLAPSED_RANK).then(|| {
            format!(
                "the representation is collapsing: the features' spread is {:.3} of a healthy one's and their \
                 effective rank {:.2} of {}; lower the learning rate, or check the task's loss",
                self.std_ratio, self.effective_rank, self.dims
            )
        })
    }
}

/// RankMe: exp(−Σ p log p) over the feature matrix's singular values σ, p = σ / Σσ.
pub fn effective_rank(features: &Matrix) -> f64 {
    let d = features.cols;
    let mut gram = vec![0.0f64; d * d];
    for row in features.data.chunks_exact(d.max(1)).take(features.rows) {
        for a in 0..d {
            let va = f64::from(row[a]);
            for b in a..d {
                gram[a * d + b] += va * f64::from(row[b]);
            }
        }
    }
    for a in 0..d {
        for b in 0..a {
            gram[a * d + b] = gram[b * d + a];
        }
    }
    let sigma: Vec<f64> = symmetric_eigenvalues(&mut gram, d).into_iter().map(|l| l.max(0.0).sqrt()).collect();
    let total: f64 = sigma.iter().sum();
    if total <= 0.0 {
        return 1.0;
    }
    let entropy: f64 = sigma.iter().map(|s| s / total).filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum();
    entropy.exp()
}

/// Eigenvalues of the symmetric `d`×`d` matrix `a` (overwritten), by cyclic Jacobi sweeps.
fn symmetric_eigenvalues(a: &mut [f64], d: usize) -> Vec<f64> {
    let scale: f64 = a.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..60 {
        let off: f64 = (0..d).flat_map(|p| (p + 1..d).map(move |q| (p, q))).map(|(p, q)| a[p * d + q].powi(2)).sum();
        if off.sqrt() <= 1e-12 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                // signum(0.0) is 1: equal diagonal entries rotate by 45°.
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..d).map(|i| a[i * d + i]).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        Matrix { name: "features".into(), rows, cols, data }
    }

    #[test]
    fn eigenvalues_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let mut a = vec![2.0, 1.0, 1.0, 2.0];
        let mut e = symmetric_eigenvalues(&mut a, 2);
        e.sort_by(f64::total_cmp);
        assert!((e[0] - 1.0).abs() < 1e-9 && (e[1] - 3.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn one_point_is_collapsed_and_a_spread_is_not() {
        // Every image at one point: no spread, one direction.
        let collapsed = matrix(4, 3, [0.5f32, 1.0, 2.0].repeat(4));
        let s = CollapseStats::of(&collapsed);
        assert!(s.std_ratio < 1e-6 && (s.effective_rank - 1.0).abs() < 1e-6, "{s:?}");
        assert!(s.warning().is_some_and(|w| w.contains("collapsing")));
        // The 4 axis directions ±: the effective rank of 4 equal singular values is 4, and the
        // spread of ±e_j is std 0.5·√2/… per dimension: hand-computed below.
        let mut data = Vec::new();
        for j in 0..4 {
            for sign in [1.0f32, -1.0] {
                let mut row = vec![0.0f32; 4];
                row[j] = sign;
                data.extend(row);
            }
        }
        let spread = CollapseStats::of(&matrix(8, 4, data));
        assert!((spread.effective_rank - 4.0).abs() < 1e-9, "{spread:?}");
        // Each dimension holds +1, −1 and six zeros: mean 0, variance 2/8, std 0.5; ×√4 = 1.
        assert!((spread.std_ratio - 1.0).abs() < 1e-9, "{spread:?}");
        assert!(spread.warning().is_none());
    }
}
