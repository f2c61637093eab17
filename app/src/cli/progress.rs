//! Training progress for people: a bar on a terminal, one line per epoch otherwise (logs,
//! CI, pipes), so output stays readable wherever it goes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use pretext_core::train::Event;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// The bar of the data preparation stage under way, and the stage's name.
    preparing: Option<(&'static str, Option<ProgressBar>)>,
    terminal: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self { bar: None, preparing: None, terminal: std::io::stderr().is_terminal() }
    }

    /// Shows reading and decoding image files (the pixel cache being built).
    pub fn preparing(&mut self, p: &pretext_core::data::Progress) {
        if self.preparing.as_ref().map(|(stage, _)| *stage) != Some(p.stage) {
            self.end_preparing();
            let bar = if self.terminal {
                let bar = ProgressBar::new(p.total as u64);
                let style =
                    ProgressStyle::with_template("{bar:30} {pos}/{len} image files {msg} {elapsed_precise} eta {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_message(p.stage);
                Some(bar)
            } else {
                eprintln!("{} {} image files", p.stage, p.total);
                None
            };
            self.preparing = Some((p.stage, bar));
        }
        if let Some((_, Some(bar))) = &self.preparing {
            bar.set_position(p.done as u64);
        }
    }

    fn end_preparing(&mut self) {
        if let Some((_, Some(bar))) = self.preparing.take() {
            bar.finish_and_clear();
        }
    }

    pub fn handle(&mut self, event: &Event) {
        match event {
            Event::Preparing(p) => self.preparing(p),
            Event::Note(note) => {
                self.end_preparing();
                eprintln!("note: {note}");
            }
            Event::Warning(warning) => match &self.bar {
                Some(bar) => bar.println(format!("warning: {warning}")),
                None => eprintln!("warning: {warning}"),
            },
            Event::Started { run_dir, plugin, first_epoch, epochs, batches_per_epoch, data } => {
                self.end_preparing();
                eprintln!(
                    "training {plugin} on {} images of {} ({}), epochs {first_epoch}..={epochs}, {batches_per_epoch} batches each, into {}",
                    data.images,
                    data.name,
                    data.describe(),
                    run_dir.display()
                );
                for note in data.report.notes() {
                    eprintln!("note: {note}");
                }
                if let Some(cache) = &data.report.cache {
                    let how = if cache.reused {
                        "reused".to_string()
                    } else {
                        format!("built now, {} image files decoded", data.report.decoded)
                    };
                    eprintln!("pixel cache: {} ({how})", cache.path);
                }
                if self.terminal {
                    let bar = ProgressBar::new(batches_per_epoch * (epochs + 1).saturating_sub(*first_epoch));
                    let style =
                        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed_precise} eta {eta} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style);
                    self.bar = Some(bar);
                }
            }
            Event::Step { epoch, loss, lr, .. } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    bar.set_message(format!("epoch {epoch} loss {loss:.4} lr {lr:.2e}"));
                }
            }
            Event::Epoch(r) => {
                let mut extra: String = r.extra.iter().map(|(k, v)| format!(" {k} {v:.4}")).collect();
                if let Some(knn) = r.knn_top1 {
                    extra.push_str(&format!("  kNN {:.2}%", knn * 100.0));
                }
                let line = format!(
                    "epoch {:>3}  loss {:.4}{extra}  lr {:.2e}  {:.0} images/s  {:.0}s",
                    r.epoch, r.loss, r.lr, r.images_per_sec, r.elapsed_s
                );
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
            Event::Checkpoint { .. } => {}
        }
    }

    pub fn finish(&mut self) {
        self.end_preparing();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
