//! Class labels for zero-shot classification: parsing and the prompt template.

use std::path::Path;

/// Labels used when none are given; they cover the demo photos and a few distractors.
pub const DEFAULT_LABELS: &[&str] = &[
    "cat",
    "dog",
    "horse",
    "rocket",
    "astronaut",
    "cup of coffee",
    "camera",
    "bird",
    "car",
    "airplane",
    "flower",
    "pizza",
];

/// The prompt each label is put into before it is embedded (the single CLIP template).
pub const TEMPLATE: &str = "a photo of a {}.";

/// Most labels accepted at once (each is one text through the model).
pub const MAX_LABELS: usize = 100;

/// Why labels were rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum LabelsError {
    /// No label left after trimming.
    #[error("no labels given (expected e.g. \"dog,cat,car\")")]
    Empty,
    /// Too many labels.
    #[error("too many labels: {found} (at most {MAX_LABELS})")]
    TooMany {
        /// How many were given.
        found: usize,
    },
    /// A label is absurdly long.
    #[error("label too long ({found} characters, at most 200): {start}…")]
    TooLong {
        /// Its length.
        found: usize,
        /// Its beginning.
        start: String,
    },
}

/// Splits a comma-separated list; trims, drops empty entries and exact duplicates.
pub fn parse_list(s: &str) -> Result<Vec<String>, LabelsError> {
    clean(s.split(','))
}

/// Largest labels file read (a hundred labels of 200 characters take 20 KB).
pub const MAX_LABELS_FILE_BYTES: u64 = 1 << 20;

/// Reads labels from a file: one per line, `#` starts a comment line. Only a regular file of at
/// most [`MAX_LABELS_FILE_BYTES`] is read: a FIFO or `/dev/zero` is refused at once.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = safe_file::read_to_string(path, MAX_LABELS_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("cannot read labels file {e}"))?;
    let labels = clean(text.lines().filter(|l| !l.trim_start().starts_with('#')))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(labels)
}

/// The default labels as owned strings.
pub fn defaults() -> Vec<String> {
    DEFAULT_LABELS.iter().map(|s| s.to_string()).collect()
}

/// The prompt for one label.
pub fn prompt(label: &str) -> String {
    TEMPLATE.replace("{}", label)
}

fn clean<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<String>, LabelsError> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let l = item.trim();
        if l.is_empty() || out.iter().any(|o| o == l) {
            continue;
        }
        let n = l.chars().count();
        if n > 200 {
            return Err(LabelsError::TooLong {
                found: n,
                start: l.chars().take(20).collect(),
            });
        }
        out.push(l.to_owned());
    }
    match out.len() {
        0 => Err(LabelsError::Empty),
        n if n > MAX_LABELS => Err(LabelsError::TooMany { found: n }),
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_cleans() {
        assert_eq!(
            parse_list(" dog, cat ,,dog,hot dog ").unwrap(),
            vec!["dog", "cat", "hot dog"]
        );
        assert_eq!(parse_list(" , ,"), Err(LabelsError::Empty));
        assert_eq!(parse_list("x,x, x").unwrap(), vec!["x"]);
        let too_many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}")).collect();
        assert!(matches!(
            parse_list(&too_many.join(",")),
            Err(LabelsError::TooMany { .. })
        ));
    }

    #[test]
    fn file_with_comments() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "# animals\ndog\n\ncat\n  # more\nred car\n").unwrap();
        assert_eq!(read_file(f.path()).unwrap(), vec!["dog", "cat", "red car"]);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("labels.txt");
        dev_support::mkfifo(&fifo);
        for p in [fifo, std::path::PathBuf::from("/dev/zero")] {
            let q = p.clone();
            let e = dev_support::within_10s(&format!("reading {}", p.display()), move || {
                read_file(&q).map_err(|e| e.to_string())
            })
            .unwrap_err();
            assert!(
                e.contains(&p.display().to_string()) && e.contains("not a regular file"),
                "{e}"
            );
        }
    }

    #[test]
    fn prompt_fills_template() {
        assert_eq!(prompt("cat"), "a photo of a cat.");
    }
}
