//! The two folder layouts `eval-imagenet` reads, turned into a sorted list of labelled samples.
//!
//! - **Official**: the flat validation folder, `ILSVRC2012_val_00000001.JPEG` …, labelled by the devkit's
//!   ground-truth file (line N = devkit `ILSVRC2012_ID` of image N) and `meta.mat` (devkit id → class index).
//! - **Wnid**: files named `<wnid>_<anything>.<ext>` (like `n01440764_tench.JPEG`) or folders named by wnid
//!   (`DIR/n01440764/*.JPEG`, the training-set layout); the class index is the wnid's position in the sorted
//!   list of the 1000 leaf wnids.
//!
//! Scanning only reads names; images are opened later by the pipeline, where a bad file is skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Which layout a folder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Decide from the file names.
    Auto,
    /// Flat `ILSVRC2012_val_XXXXXXXX.JPEG` files labelled by `--ground-truth` + `--meta`.
    Official,
    /// Files or sub-folders named by wnid.
    Wnid,
}

/// One image to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Full path of the image.
    pub path: PathBuf,
    /// Name shown in the log and in `predictions.jsonl`: the path relative to the images folder.
    pub name: String,
    /// Class index 0..999 (sorted-wnid order).
    pub target: usize,
}

/// What the scan found.
#[derive(Debug)]
pub struct Scan {
    /// The layout used (never `Auto`).
    pub layout: Layout,
    /// Samples sorted by name.
    pub samples: Vec<Sample>,
    /// Files present but not part of the layout (wrong name or not an image extension).
    pub ignored: Vec<String>,
}

/// The label tables the scan needs.
pub struct Labels<'a> {
    /// The 1000 leaf wnids in sorted order (index = class index).
    pub wnids: &'a [String],
    /// Devkit `ILSVRC2012_ID` → class index.
    pub devkit_to_class: &'a HashMap<u32, usize>,
}

/// Image file extensions the scan accepts (case-insensitive).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpeg", "jpg", "png", "bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm",
];

fn has_image_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The validation image number N of `ILSVRC2012_val_XXXXXXXX.<ext>`, if the name has that form.
pub fn official_number(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("ILSVRC2012_val_")?;
    let (digits, ext) = rest.split_once('.')?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) || ext.is_empty() {
        return None;
    }
    digits.parse().ok().filter(|&n: &usize| n >= 1)
}

/// The wnid a name starts with (`n` + 8 digits, then the end, `_`, `.` or `-`), if any.
pub fn leading_wnid(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    if b.len() < 9 || b[0] != b'n' || !b[1..9].iter().all(u8::is_ascii_digit) {
        return None;
    }
    match b.get(9) {
        None | Some(b'_' | b'.' | b'-') => Some(&name[..9]),
        _ => None,
    }
}

fn list_dir(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("listing images folder {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks so a folder of links works like a folder of files.
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort();
    Ok(out)
}

/// Scans `dir` in `layout` (detected when `Auto`).
///
/// `ground_truth` is needed for the official layout only. Unknown wnids and image numbers beyond the ground
/// truth are errors (the folder does not match the labels), not skipped images.
pub fn scan(
    dir: &Path,
    layout: Layout,
    labels: &Labels<'_>,
    ground_truth: Option<&[u32]>,
) -> anyhow::Result<Scan> {
    let entries = list_dir(dir)?;
    let layout = resolve(dir, &entries, layout)?;
    let mut samples = Vec::new();
    let mut ignored = Vec::new();
    match layout {
        Layout::Official => {
            let Some(gt) = ground_truth else {
                bail!(
                    "the official layout needs --ground-truth (ILSVRC2012_validation_ground_truth.txt)"
                );
            };
            for (name, path, is_dir) in entries {
                let n = official_number(&name).filter(|_| !is_dir && has_image_extension(&name));
                let Some(n) = n else {
                    ignored.push(name);
                    continue;
                };
                let Some(&id) = gt.get(n - 1) else {
                    bail!(
                        "{name}: image number {n} is beyond the ground-truth file's {} lines",
                        gt.len()
                    );
                };
                let Some(&target) = labels.devkit_to_class.get(&id) else {
                    bail!(
                        "{name}: ground-truth id {id} is not one of the 1000 leaf classes of meta.mat"
                    );
                };
                samples.push(Sample { path, name, target });
            }
        }
        Layout::Wnid => {
            let index: HashMap<&str, usize> = labels
                .wnids
                .iter()
                .enumerate()
                .map(|(i, w)| (w.as_str(), i))
                .collect();
            let lookup = |wnid: &str, shown: &str| -> anyhow::Result<usize> {
                index.get(wnid).copied().with_context(|| {
                    format!("{shown}: wnid {wnid} is not one of the 1000 ImageNet leaf classes")
                })
            };
            for (name, path, is_dir) in entries {
                match (leading_wnid(&name), is_dir) {
                    (Some(wnid), true) if wnid.len() == name.len() => {
                        let target = lookup(wnid, &name)?;
                        for (inner, inner_path, inner_dir) in list_dir(&path)? {
                            let shown = format!("{name}/{inner}");
                            if inner_dir || !has_image_extension(&inner) {
                                ignored.push(shown);
                            } else {
                                samples.push(Sample {
                                    path: inner_path,
                                    name: shown,
                                    target,
                                });
                            }
                        }
                    }
                    (Some(wnid), false) if has_image_extension(&name) => {
                        let target = lookup(wnid, &name)?;
                        samples.push(Sample { path, name, target });
                    }
                    _ => ignored.push(name),
                }
            }
        }
        Layout::Auto => unreachable!("resolved above"),
    }
    samples.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Scan {
        layout,
        samples,
        ignored,
    })
}

/// The layout of `dir`: `layout` itself unless it is `Auto`, else detected from the names.
pub fn resolve_layout(dir: &Path, layout: Layout) -> anyhow::Result<Layout> {
    if layout != Layout::Auto {
        return Ok(layout);
    }
    resolve(dir, &list_dir(dir)?, layout)
}

fn resolve(
    dir: &Path,
    entries: &[(String, PathBuf, bool)],
    layout: Layout,
) -> anyhow::Result<Layout> {
    match layout {
        Layout::Auto => detect(entries).with_context(|| {
            format!(
                "{}: found neither ILSVRC2012_val_XXXXXXXX.JPEG files nor files or folders named by wnid \
                 (n01440764…); pass --layout to say which",
                dir.display()
            )
        }),
        l => Ok(l),
    }
}

fn detect(entries: &[(String, PathBuf, bool)]) -> Option<Layout> {
    let official = entries
        .iter()
        .filter(|(n, _, d)| !d && official_number(n).is_some())
        .count();
    let wnid = entries
        .iter()
        .filter(|(n, _, _)| leading_wnid(n).is_some())
        .count();
    match (official, wnid) {
        (0, 0) => None,
        (o, w) if o >= w => Some(Layout::Official),
        _ => Some(Layout::Wnid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> (Vec<String>, HashMap<u32, usize>) {
        let wnids = vec!["n01440764".to_string(), "n01443537".to_string()];
        let map = HashMap::from([(449, 0), (7, 1)]);
        (wnids, map)
    }

    #[test]
    fn names() {
        assert_eq!(official_number("ILSVRC2012_val_00000001.JPEG"), Some(1));
        assert_eq!(official_number("ILSVRC2012_val_00050000.jpg"), Some(50000));
        assert_eq!(official_number("ILSVRC2012_val_00000000.JPEG"), None);
        assert_eq!(official_number("ILSVRC2012_val_0000001.JPEG"), None);
        assert_eq!(official_number("ILSVRC2012_val_00000001"), None);
        assert_eq!(official_number("ILSVRC2012_test_00000001.JPEG"), None);
        assert_eq!(leading_wnid("n01440764_tench.JPEG"), Some("n01440764"));
        assert_eq!(leading_wnid("n01440764"), Some("n01440764"));
        assert_eq!(leading_wnid("n014407641.JPEG"), None);
        assert_eq!(leading_wnid("x01440764_a.JPEG"), None);
        assert_eq!(leading_wnid("n0144"), None);
    }

    #[test]
    fn official_layout() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "ILSVRC2012_val_00000002.JPEG",
            "ILSVRC2012_val_00000001.JPEG",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let (w, m) = labels();
        let l = Labels {
            wnids: &w,
            devkit_to_class: &m,
        };
        let s = scan(dir.path(), Layout::Auto, &l, Some(&[7, 449])).unwrap();
        assert_eq!(s.layout, Layout::Official);
        let got: Vec<_> = s
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.target))
            .collect();
        assert_eq!(
            got,
            [
                ("ILSVRC2012_val_00000001.JPEG", 1),
                ("ILSVRC2012_val_00000002.JPEG", 0)
            ]
        );
        assert_eq!(s.ignored, ["notes.txt"]);
        // Without ground truth, or with too short a file: an error, not a guess.
        assert!(scan(dir.path(), Layout::Official, &l, None).is_err());
        assert!(scan(dir.path(), Layout::Official, &l, Some(&[7])).is_err());
        // An id that is not a leaf class.
        assert!(scan(dir.path(), Layout::Official, &l, Some(&[7, 1500])).is_err());
    }

    #[test]
    fn wnid_layouts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n01443537_goldfish.JPEG"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("n01440764")).unwrap();
        std::fs::write(dir.path().join("n01440764/a.JPEG"), b"x").unwrap();
        std::fs::write(dir.path().join("n01440764/b.txt"), b"x").unwrap();
        let (w, m) = labels();
        let l = Labels {
            wnids: &w,
            devkit_to_class: &m,
        };
        let s = scan(dir.path(), Layout::Auto, &l, None).unwrap();
        assert_eq!(s.layout, Layout::Wnid);
        let got: Vec<_> = s
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.target))
            .collect();
        assert_eq!(
            got,
            [("n01440764/a.JPEG", 0), ("n01443537_goldfish.JPEG", 1)]
        );
        assert_eq!(s.ignored, ["n01440764/b.txt"]);
        std::fs::write(dir.path().join("n09999999_unknown.JPEG"), b"x").unwrap();
        assert!(scan(dir.path(), Layout::Auto, &l, None).is_err());
    }
}
