//! Where a dataset's pixels live: in the process's memory, or in a memory-mapped cache file
//! that the operating system pages in and out as batches read it.
//!
//! A [`PixelStore`] is a read-only run of `n` images of one shape, each `c`×`h`×`w` bytes,
//! stored image after image (the layout of [`ByteImages`]). Batches are copied out with
//! [`PixelStore::gather`], so consumers never hold more than a batch of their own. This file
//! must not decode, resize or know where a cache file lives (`cache.rs` does); it only reads
//! bytes that are already in the training layout.

use std::borrow::Cow;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
use pretext_sdk::images::ShapeError;
use pretext_sdk::images::{ByteImages, ImageSource, gather_with};

/// The bytes behind a store.
#[derive(Clone, Debug)]
enum Bytes {
    Owned(ByteImages),
    /// `offset` is where image 0 starts in the mapping.
    #[cfg(not(target_arch = "wasm32"))]
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
    },
}

/// A read-only set of images of one shape, in memory or memory-mapped.
#[derive(Clone, Debug)]
pub struct PixelStore {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    bytes: Bytes,
}

impl From<ByteImages> for PixelStore {
    fn from(images: ByteImages) -> Self {
        Self { n: images.n, c: images.c, h: images.h, w: images.w, bytes: Bytes::Owned(images) }
    }
}

impl PartialEq for PixelStore {
    /// Equal when the shapes and the pixels are, wherever they are stored.
    fn eq(&self, other: &Self) -> bool {
        (self.n, self.c, self.h, self.w) == (other.n, other.c, other.h, other.w) && self.data() == other.data()
    }
}

impl PixelStore {
    /// `n` images of `c`×`h`×`w` bytes starting at `offset` in a mapped file, which must hold
    /// them all.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn mapped(
        map: Arc<memmap2::Mmap>,
        offset: usize,
        (n, c, h, w): (usize, usize, usize, usize),
    ) -> Result<Self, ShapeError> {
        let expected = n * c * h * w;
        let got = map.len().saturating_sub(offset);
        if got < expected {
            return Err(ShapeError { n, c, h, w, expected, got });
        }
        Ok(Self { n, c, h, w, bytes: Bytes::Mapped { map, offset } })
    }

    /// Whether the pixels are read from a mapped file rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        !matches!(self.bytes, Bytes::Owned(_))
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Number of bytes in one image.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// All the images' bytes, image after image.
    pub fn data(&self) -> &[u8] {
        let len = self.n * self.image_len();
        match &self.bytes {
            Bytes::Owned(images) => &images.data[..len],
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped { map, offset } => &map[*offset..*offset + len],
        }
    }

    /// The bytes of image `i` (panics if `i >= n`, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.n, "image {i} of {}", self.n);
        let len = self.image_len();
        &self.data()[i * len..(i + 1) * len]
    }

    /// The images at `indices`, copied into a batch of their own.
    pub fn gather(&self, indices: &[usize]) -> ByteImages {
        gather_with((self.c, self.h, self.w), indices, |i| self.image(i))
    }

    /// The first `n` images (all if there are fewer), copied.
    pub fn take(&self, n: usize) -> ByteImages {
        let n = n.min(self.n);
        ByteImages { n, c: self.c, h: self.h, w: self.w, data: self.data()[..n * self.image_len()].to_vec() }
    }

    /// The whole set as one batch: borrowed when it is in memory, copied when mapped. Use it
    /// for sets known to be small (a monitor's bank, embedded points).
    pub fn batch(&self) -> Cow<'_, ByteImages> {
        match &self.bytes {
            Bytes::Owned(images) if images.n == self.n => Cow::Borrowed(images),
            _ => Cow::Owned(self.take(self.n)),
        }
    }

    /// Keeps the first `n` images; a mapped store only forgets the rest.
    pub fn truncate(&mut self, n: usize) {
        self.n = n.min(self.n);
        match &mut self.bytes {
            Bytes::Owned(images) => {
                images.data.truncate(self.n * images.image_len());
                images.n = self.n;
            }
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped { .. } => {}
        }
    }

    /// The first `n` images as a store of their own: shared when mapped, copied in memory.
    pub fn prefix(&self, n: usize) -> Self {
        match &self.bytes {
            Bytes::Owned(_) => self.take(n).into(),
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped { .. } => {
                let mut out = self.clone();
                out.truncate(n);
                out
            }
        }
    }
}

/// Maps `file` read-only. The one place a mapping is made: the cache files it maps are
/// written once under a temporary name, renamed into place and never written again, which
/// is what makes the mapping sound.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the caller maps a finished cache file that no program of ours writes again (a
    // rebuild writes a new file and renames it over the path, leaving this inode intact);
    // the mapping is only read.
    unsafe { memmap2::Mmap::map(file) }
}

impl ImageSource for PixelStore {
    fn count(&self) -> usize {
        self.n
    }

    fn gather(&self, indices: &[usize]) -> ByteImages {
        Self::gather(self, indices)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn owned_and_mapped_read_the_same() {
        let images = ByteImages::new(3, 1, 1, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[9, 9, 9]).unwrap();
        file.write_all(&images.data).unwrap();
        let map = Arc::new(map_file(&file).unwrap());
        let mapped = PixelStore::mapped(Arc::clone(&map), 3, (3, 1, 1, 2)).unwrap();
        let owned = PixelStore::from(images.clone());
        assert!(mapped.is_mapped() && !owned.is_mapped());
        assert_eq!(mapped, owned);
        for s in [&mapped, &owned] {
            assert_eq!(s.image(1), &[3, 4]);
            assert_eq!(s.gather(&[2, 0]).data, vec![5, 6, 1, 2]);
            assert_eq!(s.take(2).data, vec![1, 2, 3, 4]);
            assert_eq!(*s.batch(), images);
            let p = s.prefix(1);
            assert_eq!((p.len(), p.data()), (1, &[1u8, 2][..]));
        }
        assert!(PixelStore::mapped(map, 4, (3, 1, 1, 2)).is_err(), "a short file is refused");
    }
}
