//! ImageNet (ILSVRC2012) devkit metadata: a MATLAB v5 reader for `meta.mat`, the synsets, the
//! class numbering and the validation ground truth.
//!
//! Main types:
//! - [`Meta`]: the 1860 [`Synset`]s of the devkit and the class numbering — class index `i`
//!   is the `i`-th leaf synset (`num_children == 0`) in sorted-wnid order (0 = `n01440764`
//!   tench, 999 = `n15075141` toilet tissue), with devkit id → class index and wnid → class
//!   index look-ups.
//! - [`GroundTruth`]: `ILSVRC2012_validation_ground_truth.txt` (line `N` = devkit id of
//!   `ILSVRC2012_val_%08d.JPEG` number `N`), with errors naming the bad line.
//! - [`mat::MatFile`]: the MAT-file reader underneath.
//!
//! ```
//! use imagenet_meta::{mat::MatFile, Error};
//! // A tiny hand-built little-endian MAT-file holding `x = uint8(7)`.
//! let mut f = vec![b' '; 116];
//! f.extend_from_slice(&[0; 8]); // subsystem offset
//! f.extend_from_slice(&[0x00, 0x01, b'I', b'M']); // version 0x0100, little-endian
//! f.extend_from_slice(&[14, 0, 0, 0, 40, 0, 0, 0]); // miMATRIX, 40 bytes
//! f.extend_from_slice(&[6, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]); // flags: uint8
//! f.extend_from_slice(&[5, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]); // dims 1x1
//! f.extend_from_slice(&[1, 0, 1, 0, b'x', 0, 0, 0]); // name "x" (small element)
//! f.extend_from_slice(&[2, 0, 1, 0, 7, 0, 0, 0]); // data: miUINT8 7 (small element)
//! # let n = f.len() - 136; f[132] = n as u8;
//! let mat = MatFile::from_bytes(&f)?;
//! let x = mat.variable("x").unwrap();
//! assert_eq!(x.numeric().unwrap().get_f64(0), Some(7.0));
//! # Ok::<(), Error>(())
//! ```
//!
//! # Why our own MAT reader
//!
//! Of the crates on crates.io, only `matrw` read a `meta.mat`-shaped file, and it panics on
//! struct arrays through its serde interface and on out-of-range indices, and it refuses files
//! whose header text lacks the comma after "MAT-file" (scipy writes none). Measured here:
//! `matrw` 0.1.4's `load_matfile_from_u8` panicked on 400 of 400 truncations of the real
//! `meta.mat` (compressed and inflated alike). This workspace's bar is a typed error, never a
//! panic, for any truncated or malformed input, so [`mat`] is a
//! small reader of our own that checks every length and offset, uses checked arithmetic for
//! dimension products, caps every allocation by the bytes actually present and bounds the
//! nesting depth. It is fuzzed
//! (`fuzz/` with `cargo fuzz`) and mutation-tested (`tests/mutations.rs`).
//!
//! # `labels.json`
//!
//! `cargo xtask meta-to-json --meta meta.mat --out labels.json` writes [`Meta::label_records`]:
//! a JSON array with one object per synset in file order,
//! `{"id", "wnid", "words", "gloss", "num_children", "class_index"}`, where `class_index` is
//! the 0-based class index for leaves and `null` otherwise (see [`LabelRecord`]).
//!
//! # Class names
//!
//! [`Meta::devkit_class_names`] gives the first comma-separated word of each class's `words`;
//! the zero-shot crate `clip-eval` takes plain name lists, so it does not depend on this crate.
#![deny(missing_docs)]

pub mod error;
pub mod mat;
mod meta;

pub use error::{Error, Result};
pub use meta::{GroundTruth, LabelRecord, Meta, Synset};
