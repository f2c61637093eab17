//! What opening a dataset found besides the images: files skipped and why, files that are
//! not images, the training size chosen and the pixel cache used. The CLI prints it, the GUI
//! shows it before training and `run.json` records it.
//!
//! Plain data only (it compiles for the browser viewer, which reads it from `run.json`);
//! this file must not look at files.

use serde::{Deserialize, Serialize};

/// How many skipped files are named, with their reasons; the rest are only counted.
pub const SKIPPED_LISTED: usize = 20;

/// An image file that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// How the training size was chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeSource {
    /// Every image already had the one square size used.
    #[default]
    Native,
    /// `--image-size` asked for it.
    Requested,
    /// The images have several sizes or are not square: the default training size.
    Default,
}

/// The pixel cache an open used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheUse {
    /// The cache file the pixels are mapped from.
    pub path: String,
    /// True when an existing cache was reused (nothing decoded).
    pub reused: bool,
}

/// What opening a dataset found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// The first [`SKIPPED_LISTED`] image files that could not be used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedFile>,
    /// How many image files could not be used, in all.
    #[serde(default)]
    pub skipped_count: usize,
    /// Hidden files and files that are not images by their extension, left alone.
    #[serde(default)]
    pub ignored_count: usize,
    /// How the training size was chosen.
    #[serde(default)]
    pub size_source: SizeSource,
    /// True when the images were resized (shorter side to the size, then centre-cropped).
    #[serde(default)]
    pub resized: bool,
    /// Image files this open read and decoded, skipped ones included (0 when every pixel
    /// came from the cache).
    #[serde(default)]
    pub decoded: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
}

impl DataReport {
    /// Records one more skipped file, naming it if few are named yet.
    pub fn skip(&mut self, path: String, reason: String) {
        if self.skipped.len() < SKIPPED_LISTED {
            self.skipped.push(SkippedFile { path, reason });
        }
        self.skipped_count += 1;
    }

    /// The notes a person should read, one short sentence each: skipped and ignored files.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.skipped_count > 0 {
            let first: Vec<String> =
                self.skipped.iter().take(3).map(|s| format!("{} ({})", s.path, s.reason)).collect();
            notes.push(format!(
                "{} image file{} could not be used and {} skipped: {}{}",
                self.skipped_count,
                plural(self.skipped_count),
                if self.skipped_count == 1 { "was" } else { "were" },
                first.join("; "),
                if self.skipped_count > first.len() { "; …" } else { "" }
            ));
        }
        if self.ignored_count > 0 {
            notes.push(format!(
                "{} file{} that {} (hidden or of another type) {} ignored",
                self.ignored_count,
                plural(self.ignored_count),
                if self.ignored_count == 1 { "is not an image" } else { "are not images" },
                if self.ignored_count == 1 { "was" } else { "were" },
            ));
        }
        notes
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_the_first_skipped_files() {
        let mut r = DataReport::default();
        assert!(r.notes().is_empty());
        for i in 0..25 {
            r.skip(format!("f{i}.jpg"), "truncated".into());
        }
        r.ignored_count = 1;
        assert_eq!((r.skipped.len(), r.skipped_count), (SKIPPED_LISTED, 25));
        let notes = r.notes();
        assert_eq!(
            notes[0],
            "25 image files could not be used and were skipped: f0.jpg (truncated); f1.jpg (truncated); f2.jpg (truncated); …"
        );
        assert_eq!(notes[1], "1 file that is not an image (hidden or of another type) was ignored");
    }
}
