//! Synsets, class indices and the validation ground truth.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mat::{Array, Data, MatFile};

/// One WordNet synset of the devkit's `synsets` struct array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synset {
    /// The devkit id (`ILSVRC2012_ID`, 1-based; 1..=1000 are the leaves in the devkit).
    pub ilsvrc2012_id: u32,
    /// The WordNet id, e.g. `n01440764`.
    pub wnid: String,
    /// Comma-separated synonyms, e.g. `tench, Tinca tinca`.
    pub words: String,
    /// The WordNet definition.
    pub gloss: String,
    /// Number of children in the hierarchy (0 for the classes).
    pub num_children: u32,
    /// Devkit ids of the children.
    pub children: Vec<u32>,
    /// Height in the WordNet hierarchy (0 for leaves).
    pub wordnet_height: u32,
    /// Number of training images.
    pub num_train_images: u32,
}

impl Synset {
    /// Whether this synset is one of the classes (a leaf: `num_children == 0`).
    pub fn is_leaf(&self) -> bool {
        self.num_children == 0
    }

    /// The first comma-separated word of [`words`](Self::words), trimmed (`tench` for
    /// `tench, Tinca tinca`): the class name a devkit-words classifier uses.
    pub fn first_word(&self) -> &str {
        self.words.split(',').next().unwrap_or_default().trim()
    }
}

/// One entry of the `labels.json` file written by `cargo xtask meta-to-json`.
///
/// The file is a JSON array with one object per synset in `meta.mat` order:
/// `{"id": 1, "wnid": "n02119789", "words": "kit fox, Vulpes macrotis", "gloss": "…",
/// "num_children": 0, "class_index": 278}`, where `class_index` is the 0-based class index
/// (sorted-wnid order of the leaves) and `null` for non-leaf synsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRecord {
    /// The devkit id.
    pub id: u32,
    /// The WordNet id.
    pub wnid: String,
    /// Comma-separated synonyms.
    pub words: String,
    /// The definition.
    pub gloss: String,
    /// Number of children.
    pub num_children: u32,
    /// Class index for leaves, `None` (JSON `null`) otherwise.
    pub class_index: Option<usize>,
}

/// The devkit metadata: all synsets plus the class numbering.
///
/// Class index `i` is the `i`-th leaf synset (`num_children == 0`) in sorted-wnid order, the
/// numbering used by OpenAI's class names, torchvision and the CLIP papers (index 0 =
/// `n01440764` tench).
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    synsets: Vec<Synset>,
    /// Synset position of each class, in class order.
    classes: Vec<usize>,
    /// Class index of each synset (None for non-leaves).
    class_of_synset: Vec<Option<usize>>,
    by_id: HashMap<u32, usize>,
    by_wnid: HashMap<String, usize>,
}

impl Meta {
    /// Reads the devkit's `meta.mat`.
    pub fn from_mat(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_mat_file(&MatFile::open(path)?)
    }

    /// Parses the bytes of a `meta.mat`.
    pub fn from_mat_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_mat_file(&MatFile::from_bytes(bytes)?)
    }

    /// Extracts the `synsets` struct array of a parsed MAT-file.
    pub fn from_mat_file(mat: &MatFile) -> Result<Self> {
        let var = mat
            .variable("synsets")
            .ok_or_else(|| Error::MissingVariable {
                name: "synsets".into(),
                found: mat
                    .variables
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let Data::Struct(s) = &var.data else {
            return Err(Error::Malformed {
                context: "synsets".into(),
                what: "variable",
                expected: "a struct array".into(),
                found: var.describe(),
            });
        };
        let mut synsets = Vec::with_capacity(s.len());
        for e in 0..s.len() {
            let field = |name: &str| {
                s.get(e, name).ok_or_else(|| Error::Field {
                    index: e + 1,
                    field: name.into(),
                    expected: "a field of this name".into(),
                    found: format!("fields {}", s.field_names.join(", ")),
                })
            };
            synsets.push(Synset {
                ilsvrc2012_id: scalar_u32(field("ILSVRC2012_ID")?, e, "ILSVRC2012_ID")?,
                wnid: string(field("WNID")?, e, "WNID")?,
                words: string(field("words")?, e, "words")?,
                gloss: string(field("gloss")?, e, "gloss")?,
                num_children: scalar_u32(field("num_children")?, e, "num_children")?,
                children: vec_u32(field("children")?, e, "children")?,
                wordnet_height: scalar_u32(field("wordnet_height")?, e, "wordnet_height")?,
                num_train_images: scalar_u32(field("num_train_images")?, e, "num_train_images")?,
            });
        }
        Self::from_synsets(synsets)
    }

    /// Builds the class numbering from synsets, checking that ids and wnids are unique,
    /// `num_children` matches `children`, and every child id exists.
    pub fn from_synsets(synsets: Vec<Synset>) -> Result<Self> {
        let mut by_id = HashMap::with_capacity(synsets.len());
        let mut by_wnid = HashMap::with_capacity(synsets.len());
        for (i, s) in synsets.iter().enumerate() {
            if by_id.insert(s.ilsvrc2012_id, i).is_some() {
                return Err(Error::Inconsistent(format!(
                    "duplicate ILSVRC2012_ID {}",
                    s.ilsvrc2012_id
                )));
            }
            if by_wnid.insert(s.wnid.clone(), i).is_some() {
                return Err(Error::Inconsistent(format!("duplicate WNID {}", s.wnid)));
            }
            if s.children.len() != s.num_children as usize {
                return Err(Error::Inconsistent(format!(
                    "synset {} ({}) has num_children {} but {} children",
                    s.ilsvrc2012_id,
                    s.wnid,
                    s.num_children,
                    s.children.len()
                )));
            }
        }
        for s in &synsets {
            if let Some(c) = s.children.iter().find(|c| !by_id.contains_key(c)) {
                return Err(Error::Inconsistent(format!(
                    "synset {} ({}) lists unknown child id {c}",
                    s.ilsvrc2012_id, s.wnid
                )));
            }
        }
        let mut classes: Vec<usize> = (0..synsets.len())
            .filter(|&i| synsets[i].is_leaf())
            .collect();
        classes.sort_by(|&a, &b| synsets[a].wnid.cmp(&synsets[b].wnid));
        let mut class_of_synset = vec![None; synsets.len()];
        for (c, &i) in classes.iter().enumerate() {
            class_of_synset[i] = Some(c);
        }
        Ok(Meta {
            synsets,
            classes,
            class_of_synset,
            by_id,
            by_wnid,
        })
    }

    /// All synsets in file order.
    pub fn synsets(&self) -> &[Synset] {
        &self.synsets
    }

    /// Number of classes (leaf synsets): 1000 for ILSVRC2012.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The synset of class `index`.
    pub fn class(&self, index: usize) -> Option<&Synset> {
        self.classes.get(index).and_then(|&i| self.synsets.get(i))
    }

    /// The class synsets in class-index order.
    pub fn classes(&self) -> impl Iterator<Item = &Synset> + '_ {
        self.classes.iter().filter_map(|&i| self.synsets.get(i))
    }

    /// The synset with devkit id `id`.
    pub fn synset_by_id(&self, id: u32) -> Option<&Synset> {
        self.by_id.get(&id).and_then(|&i| self.synsets.get(i))
    }

    /// The class index of devkit id `id` (`None` for unknown ids and non-leaves).
    pub fn class_index_of_id(&self, id: u32) -> Option<usize> {
        self.by_id
            .get(&id)
            .and_then(|&i| self.class_of_synset.get(i).copied().flatten())
    }

    /// The class index of a wnid (`None` for unknown wnids and non-leaves).
    pub fn class_index_of_wnid(&self, wnid: &str) -> Option<usize> {
        self.by_wnid
            .get(wnid)
            .and_then(|&i| self.class_of_synset.get(i).copied().flatten())
    }

    /// The class wnids in class-index order.
    pub fn wnids(&self) -> Vec<&str> {
        self.classes().map(|s| s.wnid.as_str()).collect()
    }

    /// Class names from the devkit: the first comma-separated word of each class's `words`
    /// (the seed's choice), in class-index order. Feed them to `clip_eval::ClassNames::new`.
    pub fn devkit_class_names(&self) -> Vec<String> {
        self.classes().map(|s| s.first_word().to_string()).collect()
    }

    /// The `labels.json` records, one per synset in file order (see [`LabelRecord`]).
    pub fn label_records(&self) -> Vec<LabelRecord> {
        self.synsets
            .iter()
            .zip(&self.class_of_synset)
            .map(|(s, c)| LabelRecord {
                id: s.ilsvrc2012_id,
                wnid: s.wnid.clone(),
                words: s.words.clone(),
                gloss: s.gloss.clone(),
                num_children: s.num_children,
                class_index: *c,
            })
            .collect()
    }
}

fn field_err(e: usize, field: &str, expected: &str, a: &Array) -> Error {
    Error::Field {
        index: e + 1,
        field: field.into(),
        expected: expected.into(),
        found: a.describe(),
    }
}

fn as_u32(a: &Array, i: usize) -> Option<u32> {
    a.numeric()?.get_i128(i).and_then(|v| u32::try_from(v).ok())
}

fn scalar_u32(a: &Array, e: usize, field: &str) -> Result<u32> {
    const EXPECTED: &str = "a real numeric scalar holding an integer in 0..=4294967295";
    if a.numel() != 1 {
        return Err(field_err(e, field, EXPECTED, a));
    }
    as_u32(a, 0).ok_or_else(|| field_err(e, field, EXPECTED, a))
}

fn vec_u32(a: &Array, e: usize, field: &str) -> Result<Vec<u32>> {
    const EXPECTED: &str = "a real numeric vector of integers in 0..=4294967295";
    let n = a.numel();
    if a.numeric().is_none() || a.dims.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(field_err(e, field, EXPECTED, a));
    }
    (0..n)
        .map(|i| as_u32(a, i).ok_or_else(|| field_err(e, field, EXPECTED, a)))
        .collect()
}

fn string(a: &Array, e: usize, field: &str) -> Result<String> {
    a.as_string()
        .ok_or_else(|| field_err(e, field, "a char row vector of valid UTF-16", a))
}

/// The validation ground truth: line `N` holds the devkit id of `ILSVRC2012_val_%08d.JPEG` `N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    path: PathBuf,
    ids: Vec<u32>,
}

impl GroundTruth {
    /// Reads `ILSVRC2012_validation_ground_truth.txt` (one positive integer per line; blank
    /// lines only at the end).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // The devkit's ground truth is 250 KB; only a regular file is read.
        let text = safe_file::read_to_string(path, 64 << 20)?;
        Self::parse(&text, path)
    }

    /// Parses the text of a ground-truth file; `path` is used in error messages.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let body = text.trim_end();
        let mut ids = Vec::new();
        if !body.is_empty() {
            for (i, line) in body.lines().enumerate() {
                let t = line.trim();
                let id =
                    t.parse::<u32>()
                        .ok()
                        .filter(|&v| v > 0)
                        .ok_or_else(|| Error::GroundTruth {
                            path: path.clone(),
                            line: i + 1,
                            message: format!("expected a positive devkit id, found {t:?}"),
                        })?;
                ids.push(id);
            }
        }
        Ok(GroundTruth { path, ids })
    }

    /// The devkit ids; `ids()[n - 1]` belongs to validation image `n`.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the file listed no image.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The devkit id of validation image `n` (1-based, as in the file names).
    pub fn id_of_image(&self, n: usize) -> Option<u32> {
        n.checked_sub(1).and_then(|i| self.ids.get(i).copied())
    }

    /// The class indices of all images, in image order; an id that is not a class is an error
    /// naming its line.
    pub fn class_indices(&self, meta: &Meta) -> Result<Vec<usize>> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                meta.class_index_of_id(id)
                    .ok_or_else(|| Error::GroundTruth {
                        path: self.path.clone(),
                        line: i + 1,
                        message: format!(
                            "devkit id {id} is not one of the {} classes",
                            meta.num_classes()
                        ),
                    })
            })
            .collect()
    }

    /// The official file name of validation image `n`: `ILSVRC2012_val_%08d.JPEG`.
    pub fn image_file_name(n: usize) -> String {
        format!("ILSVRC2012_val_{n:08}.JPEG")
    }

    /// The image number in an official file name (`ILSVRC2012_val_00000001.JPEG` → 1); any
    /// extension is accepted, the stem must match exactly.
    pub fn image_number(file_name: &str) -> Option<usize> {
        let stem = file_name.split('.').next()?;
        let digits = stem.strip_prefix("ILSVRC2012_val_")?;
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|&n| n > 0)
    }
}
