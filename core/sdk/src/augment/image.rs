//! The single-image value every transform in `augment` takes and returns.
//!
//! It exists so transforms can own and reshape one image without dragging a whole batch
//! along; it must stay a plain buffer (no device, no candle) so it works on any thread and
//! in the browser.

use crate::images::{ByteImages, FloatImages, ShapeError};

/// One image: `c` channels of `h`×`w` pixels, channel after channel, row after row, values
/// nominally in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// Wraps `data`, checking that its length is `c*h*w`.
    pub fn new(c: usize, h: usize, w: usize, data: Vec<f32>) -> Result<Self, ShapeError> {
        let expected = c * h * w;
        if data.len() != expected {
            return Err(ShapeError { n: 1, c, h, w, expected, got: data.len() });
        }
        Ok(Self { c, h, w, data })
    }

    pub fn zeros(c: usize, h: usize, w: usize) -> Self {
        Self { c, h, w, data: vec![0.0; c * h * w] }
    }

    /// Image `i` of a byte batch, scaled to `0.0..=1.0` (panics if `i >= n`, like
    /// [`crate::images::Images::image`]).
    pub fn from_bytes(batch: &ByteImages, i: usize) -> Self {
        let data = batch.image(i).iter().map(|&v| f32::from(v) / 255.0).collect();
        Self { c: batch.c, h: batch.h, w: batch.w, data }
    }

    /// Image `i` of a float batch, copied as is (panics if `i >= n`).
    pub fn from_floats(batch: &FloatImages, i: usize) -> Self {
        Self { c: batch.c, h: batch.h, w: batch.w, data: batch.image(i).to_vec() }
    }

    /// Appends this image to `batch`, which must have the same `c`, `h` and `w`.
    pub fn push_to(&self, batch: &mut FloatImages) -> Result<(), ShapeError> {
        if (batch.c, batch.h, batch.w) != (self.c, self.h, self.w) {
            return Err(ShapeError {
                n: 1,
                c: batch.c,
                h: batch.h,
                w: batch.w,
                expected: batch.image_len(),
                got: self.data.len(),
            });
        }
        batch.push(&self.data)
    }

    /// A one-image float batch.
    pub fn into_batch(self) -> FloatImages {
        FloatImages { n: 1, c: self.c, h: self.h, w: self.w, data: self.data }
    }

    /// Values back to bytes, rounding and clamping.
    pub fn to_bytes(&self) -> Vec<u8> {
        // The clamp keeps the cast in range, so truncation cannot happen.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.data.iter().map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect()
    }

    /// Number of values in one channel.
    pub fn plane_len(&self) -> usize {
        self.h * self.w
    }

    /// The values of channel `ch` (panics if `ch >= c`).
    pub fn plane(&self, ch: usize) -> &[f32] {
        let len = self.plane_len();
        &self.data[ch * len..(ch + 1) * len]
    }

    pub fn plane_mut(&mut self, ch: usize) -> &mut [f32] {
        let len = self.plane_len();
        &mut self.data[ch * len..(ch + 1) * len]
    }

    /// The value at channel `ch`, row `y`, column `x` (panics out of range).
    pub fn at(&self, ch: usize, y: usize, x: usize) -> f32 {
        self.data[(ch * self.h + y) * self.w + x]
    }

    pub fn set(&mut self, ch: usize, y: usize, x: usize, v: f32) {
        self.data[(ch * self.h + y) * self.w + x] = v;
    }

    pub(crate) fn clamp_unit(&mut self) {
        for v in &mut self.data {
            *v = v.clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batch_round_trip() {
        let batch = ByteImages::new(2, 1, 1, 2, vec![0, 255, 51, 102]).unwrap();
        let img = Image::from_bytes(&batch, 1);
        assert_eq!(img.data, vec![0.2, 0.4]);
        assert_eq!(img.to_bytes(), vec![51, 102]);
        let mut out = FloatImages::empty(1, 1, 2);
        img.push_to(&mut out).unwrap();
        assert!(Image::zeros(1, 2, 1).push_to(&mut out).is_err());
        assert_eq!(Image::from_floats(&out, 0), img);
        assert!(Image::new(1, 2, 2, vec![0.0; 3]).is_err());
    }
}
