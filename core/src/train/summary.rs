//! What the training data turned out to be (name, counts, size, colour, labels, what
//! opening it found), in the words of the first lines `pretext train` prints and the Train
//! view's preview shows. Plain data from an opened dataset; nothing here reads files.

use crate::data::{self, DataReport, DataSplits, Dataset};

/// What the training data turned out to be, for the first lines a person reads.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSummary {
    pub name: String,
    pub images: usize,
    pub test_images: usize,
    pub channels: usize,
    pub size: usize,
    /// Empty when the data is unlabeled.
    pub classes: Vec<String>,
    pub report: DataReport,
}

impl DataSummary {
    pub fn new(splits: &DataSplits) -> Self {
        let t = &splits.train;
        Self {
            name: t.name.clone(),
            images: t.len(),
            test_images: splits.test.as_ref().map_or(0, Dataset::len),
            channels: t.channels(),
            size: t.height(),
            classes: if t.is_labelled() { t.classes.clone() } else { Vec::new() },
            report: splits.report.clone(),
        }
    }

    /// `64×64 RGB, resized (shorter side, centre crop), 10 classes`: one phrase.
    pub fn describe(&self) -> String {
        let colour = if self.channels == 1 { "grey" } else { "RGB" };
        let how = match (self.report.size_source, self.report.resized) {
            (data::SizeSource::Native, _) | (_, false) => String::new(),
            (data::SizeSource::Requested, true) => ", resized (shorter side, centre crop)".into(),
            (data::SizeSource::Default, true) => {
                ", resized (shorter side, centre crop; the images have several sizes, --image-size changes it)".into()
            }
        };
        let labels = match self.classes.len() {
            0 => "unlabeled".to_string(),
            n => format!("{n} classes"),
        };
        format!("{}×{} {colour}{how}, {labels}", self.size, self.size)
    }
}
