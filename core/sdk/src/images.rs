//! Plain, device-free image batches in NCHW order.
//!
//! `Images<u8>` is what datasets hold and what crosses the plugin boundary; `Images<f32>` is
//! what augmentations produce for a task. This type knows nothing of candle or devices, so it
//! can be built on loader threads and passed through the C ABI as a pointer and four sizes.

use thiserror::Error;

/// A batch of `n` images with `c` channels of `h`×`w` pixels, stored image after image,
/// channel after channel, row after row.
#[derive(Clone, Debug, PartialEq)]
pub struct Images<T> {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<T>,
}

/// Anything images can be gathered from in batches: a store or an in-memory batch.
pub trait ImageSource {
    fn count(&self) -> usize;
    /// The images at `indices`, in that order (panics on an index out of range).
    fn gather(&self, indices: &[usize]) -> ByteImages;
}

impl ImageSource for ByteImages {
    fn count(&self) -> usize {
        self.n
    }

    fn gather(&self, indices: &[usize]) -> ByteImages {
        ByteImages::gather(self, indices)
    }
}

/// Pixels as stored by datasets: 0..=255.
pub type ByteImages = Images<u8>;
/// Pixels as fed to a network: usually normalised floats.
pub type FloatImages = Images<f32>;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("an image batch of {n}×{c}×{h}×{w} needs {expected} values, got {got}")]
pub struct ShapeError {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub expected: usize,
    pub got: usize,
}

impl<T: Copy + Default> Images<T> {
    /// Wraps `data`, checking that its length matches the shape.
    pub fn new(n: usize, c: usize, h: usize, w: usize, data: Vec<T>) -> Result<Self, ShapeError> {
        let expected = n * c * h * w;
        if data.len() != expected {
            return Err(ShapeError { n, c, h, w, expected, got: data.len() });
        }
        Ok(Self { n, c, h, w, data })
    }

    /// An empty batch of images of one shape, to be filled with [`Images::push`].
    pub fn empty(c: usize, h: usize, w: usize) -> Self {
        Self { n: 0, c, h, w, data: Vec::new() }
    }

    pub fn zeros(n: usize, c: usize, h: usize, w: usize) -> Self {
        Self { n, c, h, w, data: vec![T::default(); n * c * h * w] }
    }

    /// Number of values in one image.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The values of image `i` (panics if `i >= n`, like slice indexing).
    pub fn image(&self, i: usize) -> &[T] {
        let len = self.image_len();
        &self.data[i * len..(i + 1) * len]
    }

    pub fn image_mut(&mut self, i: usize) -> &mut [T] {
        let len = self.image_len();
        &mut self.data[i * len..(i + 1) * len]
    }

    /// Appends one image; its length must be `c*h*w`.
    pub fn push(&mut self, image: &[T]) -> Result<(), ShapeError> {
        if image.len() != self.image_len() {
            return Err(ShapeError {
                n: 1,
                c: self.c,
                h: self.h,
                w: self.w,
                expected: self.image_len(),
                got: image.len(),
            });
        }
        self.data.extend_from_slice(image);
        self.n += 1;
        Ok(())
    }

    /// The images at `indices`, in that order (panics on an index out of range).
    pub fn gather(&self, indices: &[usize]) -> Self {
        gather_with((self.c, self.h, self.w), indices, |i| self.image(i))
    }

    /// Image `i` as a batch of one (panics if `i >= n`).
    pub fn one(&self, i: usize) -> Self {
        Self { n: 1, c: self.c, h: self.h, w: self.w, data: self.image(i).to_vec() }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.n);
        Self { n, c: self.c, h: self.h, w: self.w, data: self.data[..n * self.image_len()].to_vec() }
    }

    /// Applies `f` to every value.
    pub fn map<U: Copy + Default>(&self, f: impl Fn(T) -> U) -> Images<U> {
        Images { n: self.n, c: self.c, h: self.h, w: self.w, data: self.data.iter().map(|&v| f(v)).collect() }
    }
}

/// The batch of `image(i)` for each of `indices`, in that order, each `c`×`h`×`w` values:
/// the one gather behind in-memory batches and memory-mapped stores.
pub fn gather_with<'a, T: Copy + 'a>(
    (c, h, w): (usize, usize, usize),
    indices: &[usize],
    image: impl Fn(usize) -> &'a [T],
) -> Images<T> {
    let mut data = Vec::with_capacity(indices.len() * c * h * w);
    for &i in indices {
        data.extend_from_slice(image(i));
    }
    Images { n: indices.len(), c, h, w, data }
}

impl ByteImages {
    /// Pixels scaled to `0.0..=1.0`.
    pub fn to_unit_float(&self) -> FloatImages {
        self.map(|v| f32::from(v) / 255.0)
    }
}

impl FloatImages {
    /// Values in `0.0..=1.0` back to bytes, rounding and clamping.
    pub fn to_bytes(&self) -> ByteImages {
        // The clamp keeps the cast in range, so truncation cannot happen.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_checked() {
        assert!(ByteImages::new(2, 1, 2, 2, vec![0; 8]).is_ok());
        let err = ByteImages::new(2, 1, 2, 2, vec![0; 7]).unwrap_err();
        assert_eq!(err.expected, 8);
    }

    #[test]
    fn gather_and_push() {
        let imgs = ByteImages::new(3, 1, 1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let g = imgs.gather(&[2, 0]);
        assert_eq!(g.data, vec![5, 6, 1, 2]);
        let mut e = ByteImages::empty(1, 1, 2);
        e.push(&[9, 9]).unwrap();
        assert!(e.push(&[1]).is_err());
        assert_eq!(e.n, 1);
    }

    #[test]
    fn float_round_trip() {
        let imgs = ByteImages::new(1, 1, 1, 3, vec![0, 128, 255]).unwrap();
        assert_eq!(imgs.to_unit_float().to_bytes(), imgs);
    }
}
