//! A set of byte images, labelled or not, and its train/test pair.
//!
//! This is the one shape every loader (built-in shapes, IDX, CIFAR-10, image folders and
//! lists) produces and every consumer (trainer, evaluation, viewer) reads. The pixels are a
//! [`PixelStore`]: in memory, or memory-mapped from the pixel cache. It must stay free of
//! files, threads, tensors and devices so that it also compiles for the browser viewer.

use super::pixels::PixelStore;
use super::report::DataReport;
use super::splitmix::SplitMix64;

/// Images with, when the source has labels, one class index per image.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// A short human name, e.g. `fashion-mnist` or the folder it came from.
    pub name: String,
    pub images: PixelStore,
    /// `labels[i]` is the class of image `i`, an index into `classes`; empty when the data
    /// is unlabeled.
    pub labels: Vec<u32>,
    /// Empty when the data is unlabeled.
    pub classes: Vec<String>,
}

/// The training split and, when the source has one, the held-out test split, with what
/// opening them found (skipped files, the cache used, the image size chosen).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSplits {
    pub train: Dataset,
    pub test: Option<Dataset>,
    pub report: DataReport,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.images.n
    }

    pub fn is_empty(&self) -> bool {
        self.images.n == 0
    }

    pub fn channels(&self) -> usize {
        self.images.c
    }

    pub fn height(&self) -> usize {
        self.images.h
    }

    pub fn width(&self) -> usize {
        self.images.w
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Whether every image has a class.
    pub fn is_labelled(&self) -> bool {
        !self.classes.is_empty() && self.labels.len() == self.len()
    }

    /// The first `n` images and their labels (all of them if there are fewer); a mapped
    /// store is shared, not copied.
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.len());
        Self {
            name: self.name.clone(),
            images: self.images.prefix(n),
            labels: self.labels[..n.min(self.labels.len())].to_vec(),
            classes: self.classes.clone(),
        }
    }

    /// Like [`Dataset::take`] but in place.
    pub fn truncate(&mut self, n: usize) {
        self.images.truncate(n);
        self.labels.truncate(n);
    }

    /// Holds out the last `n` images (all of them if there are fewer): they are removed from
    /// this dataset and returned, e.g. as a validation split carved from a training set.
    pub fn split_last(&mut self, n: usize) -> Self {
        let keep = self.len() - n.min(self.len());
        let held_out = self.subset(&(keep..self.len()).collect::<Vec<_>>());
        self.truncate(keep);
        held_out
    }

    /// The images at `indices`, in that order (panics on an index out of range, like
    /// slice indexing: indices come from the program, not from a file).
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            name: self.name.clone(),
            images: self.images.gather(indices).into(),
            labels: indices.iter().filter_map(|&i| self.labels.get(i).copied()).collect(),
            classes: self.classes.clone(),
        }
    }

    /// Holds out about `fraction` of each class's images, chosen by `seed` (the held-out
    /// images keep the set's order): `(rest, held_out)`. For evaluating on labelled data
    /// that has no test split.
    pub fn hold_out(&self, fraction: f64, seed: u64) -> (Self, Self) {
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.len().max(1)];
        for (i, &l) in self.labels.iter().enumerate() {
            if let Some(c) = by_class.get_mut(l as usize) {
                c.push(i);
            }
        }
        let mut held = vec![false; self.len()];
        let mut rng = SplitMix64(seed ^ 0x686f_6c64_6f75_7400);
        for members in &mut by_class {
            rng.shuffle(members);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let n = ((members.len() as f64 * fraction).round() as usize).min(members.len().saturating_sub(1));
            for &i in &members[..n] {
                held[i] = true;
            }
        }
        let (out, kept): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| held[i]);
        (self.subset(&kept), self.subset(&out))
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Per-channel mean and standard deviation of pixel values in `0..1` units, for input
/// normalisation.
///
/// At most `max_images` images are read, spread evenly over the set rather than taken from
/// its start, because some sources (class folders) are ordered by class. A channel with no
/// spread gets a standard deviation of 1 so dividing by it is always safe; an empty set gives
/// mean 0 and std 1.
pub fn channel_stats(images: &PixelStore, max_images: usize) -> (Vec<f32>, Vec<f32>) {
    let c = images.c;
    let plane = images.h * images.w;
    let used = images.n.min(max_images);
    if used == 0 || plane == 0 {
        return (vec![0.0; c], vec![1.0; c]);
    }
    // Integer sums are exact and fast; u64 holds 255² × 2^38 values without overflow.
    let mut sum = vec![0u64; c];
    let mut sum_sq = vec![0u64; c];
    for k in 0..used {
        let i = k * images.n / used;
        for (ch, values) in images.image(i).chunks_exact(plane).enumerate() {
            let (s, q) = values.iter().fold((0u64, 0u64), |(s, q), &v| {
                let v = u64::from(v);
                (s + v, q + v * v)
            });
            sum[ch] += s;
            sum_sq[ch] += q;
        }
    }
    // Counts and sums stay far below 2^52, so the conversions to f64 are exact.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let stats = (0..c)
        .map(|ch| {
            let count = (used * plane) as f64;
            let mean = sum[ch] as f64 / count / 255.0;
            let var = (sum_sq[ch] as f64 / count / (255.0 * 255.0) - mean * mean).max(0.0);
            let std = var.sqrt();
            (mean as f32, if std > 1e-6 { std as f32 } else { 1.0 })
        })
        .unzip();
    stats
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::data::ByteImages;

    fn tiny() -> Dataset {
        Dataset {
            name: "tiny".into(),
            images: ByteImages::new(3, 1, 1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap().into(),
            labels: vec![0, 1, 0],
            classes: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn take_subset_truncate() {
        let d = tiny();
        assert_eq!(d.len(), 3);
        assert_eq!((d.channels(), d.height(), d.width()), (1, 1, 2));
        let t = d.take(2);
        assert_eq!(t.labels, vec![0, 1]);
        assert_eq!(t.images.data(), [1, 2, 3, 4]);
        assert_eq!(d.take(10).len(), 3);
        let s = d.subset(&[2, 1]);
        assert_eq!(s.labels, vec![0, 1]);
        assert_eq!(s.images.data(), [5, 6, 3, 4]);
        let mut u = d.clone();
        u.truncate(1);
        assert_eq!(u, d.take(1));
        assert_eq!(d.class_counts(), vec![2, 1]);
        let mut bank = d.clone();
        let held_out = bank.split_last(1);
        assert_eq!((bank.labels, held_out.labels), (vec![0, 1], vec![0]));
        assert_eq!((bank.images.data(), held_out.images.data()), (&[1, 2, 3, 4][..], &[5, 6][..]));
        assert_eq!(d.clone().split_last(9), d);
    }

    #[test]
    fn hold_out_is_seeded_and_class_balanced() {
        let n = 100;
        let d = Dataset {
            name: "h".into(),
            images: ByteImages::new(n, 1, 1, 1, (0..n).map(|i| i as u8).collect()).unwrap().into(),
            labels: (0..n).map(|i| u32::from(i >= 80)).collect(),
            classes: vec!["a".into(), "b".into()],
        };
        let (rest, held) = d.hold_out(0.25, 7);
        assert_eq!((rest.len(), held.len()), (75, 25));
        assert_eq!(held.class_counts(), vec![20, 5], "a quarter of each class");
        let mut all: Vec<u8> = rest.images.data().iter().chain(held.images.data()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).map(|i| i as u8).collect::<Vec<_>>(), "a partition");
        assert_eq!(d.hold_out(0.25, 7).1, held, "same seed, same split");
        assert_ne!(d.hold_out(0.25, 8).1, held);
    }

    #[test]
    fn stats_in_unit_range() {
        let imgs = ByteImages::new(2, 2, 1, 2, vec![0, 255, 7, 7, 255, 0, 7, 7]).unwrap().into();
        let (mean, std) = channel_stats(&imgs, 100);
        assert!((mean[0] - 0.5).abs() < 1e-6);
        assert!((std[0] - 0.5).abs() < 1e-6);
        assert!((mean[1] - 7.0 / 255.0).abs() < 1e-6);
        assert_eq!(std[1], 1.0, "a constant channel must not divide by zero");
        let (m, s) = channel_stats(&ByteImages::empty(3, 2, 2).into(), 10);
        assert_eq!((m, s), (vec![0.0; 3], vec![1.0; 3]));
    }
}
