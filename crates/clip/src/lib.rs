//! CLIP in one crate: load a model by short name, hub id or path, embed images and texts,
//! classify pictures zero-shot among any labels, and index and search a picture library.
//!
//! - [`Clip`] is a model paired with its own preprocessing and tokenizer: image embeddings from
//!   paths, bytes or decoded pixels ([`ImageInput`]), text embeddings, [`Clip::classify`] and
//!   cached zero-shot [`Classifier`]s. Load options (precision, device, threads, hub cache,
//!   offline) are on [`Builder`].
//! - [`Library`] is a feature library (SQLite file, `feature-store`) bound to that model:
//!   incremental [`Library::sync`] of a folder, [`Library::search_text`],
//!   [`Library::search_image`], [`Library::similar`], [`Library::remove`]. Its open options
//!   (f16 storage, read-only, durability) and progress types are in [`store`].
//! - [`Error`] is the one error type; every failure names the file, URL, label or text.
//!
//! Models: `Clip::load` takes a safetensors file or folder, a hub id (`owner/name[@revision]`)
//! or a short name from [`MODELS`] (OpenAI's `ViT-B-32` … `RN50x64`, the large open_clip ViTs
//! `ViT-H-14`, `ViT-bigG-14`, `ViT-H-14-378-DFN`, SigLIP 2 `SigLIP2-B-16` …
//! `SigLIP2-So400m-14-384`, Chinese-CLIP `CN-ViT-B-16` … `CN-ViT-H-14`). Each model family gets
//! its own tokenizer (OpenAI's BPE and Chinese-CLIP's WordPiece are embedded, SigLIP's
//! `tokenizer.json` comes with the weights), preprocessing (crop or squash, mean and std from the
//! model's files) and score function ([`Clip::score_function`]: softmax for CLIP and
//! Chinese-CLIP, sigmoid for SigLIP); see [`Clip::family`]. With the default `hub` feature, a
//! hub model missing from the hub cache is downloaded on first use (progress bar, size and sha256
//! checked, resumable) and later runs make no request; see [`hub`]. [`Clip::load_default`] takes
//! `$CLIP_MODEL`, else OpenAI's ViT-B/32.
//!
//! Classify one picture (5 lines of user code):
//!
//! ```no_run
//! let clip = clip::Clip::load_default()?;
//! let best = &clip.classify("cat.jpg", &["a cat", "a dog", "a car"])?[0];
//! println!("{} ({:.1} %)", best.label, best.probability * 100.0);
//! # Ok::<(), clip::Error>(())
//! ```
//!
//! Index a folder and search it by text (6 lines):
//!
//! ```no_run
//! let clip = clip::Clip::load_default()?;
//! let mut library = clip.open_library("photos.sqlite")?;
//! library.sync("Pictures")?;
//! for hit in library.search_text("a dog on a beach", 5)? {
//!     println!("{:.3} {}", hit.score, hit.path.display());
//! }
//! # Ok::<(), clip::Error>(())
//! ```
//!
//! The same, run here on a tiny random model committed with the project (random weights: the
//! rankings mean nothing, the mechanics are real):
//!
//! ```
//! # let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! # let model = root.join("xtask/tests/fixtures/eval_parity/model");
//! # let photos = root.join("examples/photos");
//! # let tmp = tempfile::tempdir().unwrap();
//! use clip::{Clip, Templates};
//!
//! let clip = Clip::load(model.to_str().unwrap())?; // or "ViT-B-32", or a hub id
//! let labels = ["a cat", "a horse", "a rocket"];
//! let predictions = clip.classify(&photos.join("chelsea.png"), &labels)?;
//! assert_eq!(predictions.len(), 3);
//! let total: f32 = predictions.iter().map(|p| p.probability).sum();
//! assert!((total - 1.0).abs() < 1e-5);
//!
//! // OpenAI's 80 ImageNet templates, built once and reused for every picture.
//! let classifier = clip.classifier(&labels, &Templates::openai80()?)?;
//! let _ = classifier.classify(&photos.join("horse.png"))?;
//!
//! let mut library = clip.open_library(tmp.path().join("photos.sqlite"))?;
//! let report = library.sync(&photos)?;
//! assert_eq!(report.added, library.len()?);
//! let hits = library.search_text("a photo of a horse", 3)?;
//! assert_eq!(hits.len(), 3);
//! assert!(hits[0].score >= hits[1].score);
//! # Ok::<(), clip::Error>(())
//! ```
#![deny(missing_docs)]

mod error;
pub mod hub;
mod input;
mod library;
mod model;
pub mod source;

pub use clip_eval::{ScoreFunction, Templates};
pub use clip_model::{ModelFamily, Truncation};
/// The image preprocessing settings ([`Clip::preprocessing`]).
pub mod preprocess {
    pub use clip_preprocess::{Interpolation, PreprocessConfig, ResizeMode};
}
/// The picture library's options and progress types, for [`Clip::open_library_with`] and
/// [`Library::sync_with`] (`store::Precision` is the stored vectors' precision, not the model's).
pub mod store {
    pub use feature_store::{
        Durability, FailedImage, HnswParams, NoProgress, OpenOptions, Precision, ProgressSink,
        SearchMethod, SyncProgress,
    };
}
pub use error::{Error, Result};
pub use feature_store::{ImageId, SearchHit, SyncOptions, SyncReport};
pub use hub::Hub;
pub use input::ImageInput;
pub use library::Library;
pub use model::{
    Builder, Classifier, Clip, Device, MAX_FILE_BYTES, MAX_PIXELS, Precision, Prediction,
};
pub use source::{DEFAULT_MODEL, KnownModel, MODELS};
