//! Reading a list file: one image path per line, optionally followed by a label, the way
//! large datasets are often shipped (`train.txt`, `files.csv`).
//!
//! A line is `PATH` or `PATH<sep>LABEL`, where the separator is the line's last tab, comma
//! or space; a whole line that names an existing file is a path (so paths may hold spaces
//! and commas). Relative paths are resolved against the list file's folder. Blank lines and
//! lines starting with `#` are skipped. Either every line has a label or none has; labels
//! are class names (sorted, numerically when all are integers). Files are kept in the
//! list's order. A line naming a missing file is an error that counts them and names the
//! first. This file must not open the images.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::DataError;
use super::listing::{ListedFile, Listing};

/// Extensions a list file is recognised by.
pub const EXTENSIONS: [&str; 5] = ["txt", "csv", "tsv", "lst", "list"];

/// Whether `path` is named like a list file.
pub fn looks_like_list(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// One non-blank line: its number, path and label.
struct Line {
    number: usize,
    path: PathBuf,
    label: Option<String>,
}

fn parse_line(base: &Path, number: usize, text: &str) -> Line {
    let whole = base.join(text);
    if whole.is_file() {
        return Line { number, path: whole, label: None };
    }
    match text.rfind(['\t', ',', ' ']) {
        Some(at) if !text[at + 1..].trim().is_empty() => {
            Line { number, path: base.join(text[..at].trim_end()), label: Some(text[at + 1..].trim().to_owned()) }
        }
        _ => Line { number, path: whole, label: None },
    }
}

/// Lists the files `list` names; `labels: false` ignores a label column.
pub fn list(list: &Path, name: &str, labels: bool) -> Result<Listing, DataError> {
    let text = std::fs::read_to_string(list).map_err(|e| DataError::io(list, e))?;
    let base = list.parent().unwrap_or(Path::new("."));
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| parse_line(base, n, l))
        .collect();
    if lines.is_empty() {
        return Err(DataError::Empty { path: list.to_path_buf(), what: "image paths" });
    }
    let missing: Vec<&Line> = lines.iter().filter(|l| !l.path.is_file()).collect();
    if let Some(first) = missing.first() {
        return Err(DataError::inconsistent(
            list,
            format!(
                "{} of its {} paths name no file, the first on line {}: {}",
                missing.len(),
                lines.len(),
                first.number,
                first.path.display()
            ),
        ));
    }
    let labelled = lines.iter().filter(|l| l.label.is_some()).count();
    if labelled != 0 && labelled != lines.len() {
        let odd = lines.iter().find(|l| l.label.is_none() == (labelled * 2 > lines.len()));
        return Err(DataError::inconsistent(
            list,
            format!(
                "{labelled} of its {} lines have a label and the others do not (see line {})",
                lines.len(),
                odd.map_or(0, |l| l.number)
            ),
        ));
    }
    let classes =
        if labels && labelled > 0 { class_names(lines.iter().filter_map(|l| l.label.as_deref())) } else { Vec::new() };
    let train = lines
        .into_iter()
        .map(|l| {
            let label = l.label.and_then(|s| classes.iter().position(|c| *c == s)).unwrap_or(0);
            ListedFile { path: l.path, label: u32::try_from(label).unwrap_or(u32::MAX) }
        })
        .collect();
    let source = list.canonicalize().map_err(|e| DataError::io(list, e))?;
    Ok(Listing { name: name.to_owned(), source, root: base.to_path_buf(), classes, train, test: None, ignored: 0 })
}

/// The distinct labels, sorted as numbers when all are integers, else as text.
fn class_names<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = labels.collect();
    let mut names: Vec<String> = set.into_iter().map(str::to_owned).collect();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    }
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::data::folder::tests::save;

    #[test]
    fn paths_with_and_without_labels() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        save(&root.join("img/a.png"), 3, 3, 1);
        save(&root.join("img/b c.png"), 3, 3, 1);
        save(&root.join("img/d,e.png"), 3, 3, 1);
        let plain = root.join("all.txt");
        std::fs::write(&plain, "# my images\nimg/a.png\n\nimg/b c.png\nimg/d,e.png\n").unwrap();
        assert!(looks_like_list(&plain));
        let l = list(&plain, "all", true).unwrap();
        assert!(l.classes.is_empty());
        assert_eq!(l.train.len(), 3);
        assert_eq!(l.train[1].path, root.join("img/b c.png"));

        let labelled = root.join("labels.csv");
        std::fs::write(&labelled, "img/a.png,10\nimg/b c.png,2\nimg/d,e.png,10\n").unwrap();
        let l = list(&labelled, "labels", true).unwrap();
        assert_eq!(l.classes, ["2", "10"], "integer labels sort as numbers");
        assert_eq!(l.train.iter().map(|f| f.label).collect::<Vec<_>>(), [1, 0, 1]);
        assert!(list(&labelled, "labels", false).unwrap().classes.is_empty());
        let tabs = root.join("t.tsv");
        std::fs::write(&tabs, format!("{}\tcat\nimg/a.png\tdog\n", root.join("img/b c.png").display())).unwrap();
        assert_eq!(list(&tabs, "t", true).unwrap().classes, ["cat", "dog"]);
    }

    #[test]
    fn missing_files_and_mixed_labels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        save(&root.join("a.png"), 3, 3, 1);
        let f = root.join("l.txt");
        std::fs::write(&f, "a.png\nmissing1.png\nmissing2.png\n").unwrap();
        let e = list(&f, "l", true).unwrap_err().to_string();
        assert!(e.contains("2 of its 3 paths name no file, the first on line 2") && e.contains("missing1.png"), "{e}");
        std::fs::write(&f, "a.png cat\na.png\na.png dog\n").unwrap();
        let e = list(&f, "l", true).unwrap_err().to_string();
        assert!(e.contains("2 of its 3 lines have a label") && e.contains("line 2"), "{e}");
        std::fs::write(&f, "# nothing\n\n").unwrap();
        assert!(matches!(list(&f, "l", true), Err(DataError::Empty { .. })));
    }
}
