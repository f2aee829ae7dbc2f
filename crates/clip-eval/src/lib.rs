//! Zero-shot classification and its evaluation, on plain `f32` slices (no model dependency).
//!
//! Main types and functions:
//! - [`build_classifier`] → [`Classifier`]: OpenAI's zero-shot recipe — per class, embed every
//!   template filled with the class name, L2-normalise, average, normalise again — generic over
//!   the text encoder (any `FnMut(&[String]) -> Result<Vec<Vec<f32>>, E>`), with an on-disk
//!   [`ClassifierCache`] keyed by model id + class names + templates.
//! - [`ClassNames`] / [`Templates`]: OpenAI's curated 1000 ImageNet names and 80 templates
//!   (shipped in `data/`, MIT licence), `a photo of a {}.`, or a user file. For the devkit's
//!   names use `ClassNames::new("devkit", meta.devkit_class_names())` from `imagenet-meta`:
//!   this crate takes plain name lists, so it stays independent of the devkit reader.
//! - [`ZeroShot`]: classify one image embedding against any list of labels (demos), with the
//!   model's [`ScoreFunction`]: softmax over labels (CLIP) or a sigmoid per pair (SigLIP).
//! - [`top_k`] (deterministic ties and NaN handling) and [`Accumulator`]: top-k accuracy,
//!   per-class accuracy, mean per-class recall and the most confused pairs, while streaming.
//! - [`Prediction`] (`predictions.jsonl`), [`Summary`] (`summary.json`) and
//!   [`recompute_counts`], to check that a summary agrees with its predictions.
//!
//! ```
//! use clip_eval::{Accumulator, Templates, ZeroShot};
//! let labels: Vec<String> = ["a cat", "a dog"].map(String::from).to_vec();
//! // Any text encoder: here a toy one giving 2-d embeddings.
//! let zs = ZeroShot::new(&labels, &Templates::single(), |prompts| {
//!     Ok::<_, clip_eval::Error>(prompts.iter().map(|p| if p.contains("cat") { vec![1.0, 0.1] } else { vec![0.1, 1.0] }).collect())
//! })?;
//! let image = [0.2, 0.9]; // an image embedding
//! assert_eq!(zs.classify(&image)?[0].0, "a dog");
//!
//! let scores = zs.classifier().cosine_scores(&image)?;
//! let mut acc = Accumulator::new(2, 1);
//! acc.add_scores(1, &scores)?;
//! assert_eq!(acc.top_k_accuracy(1), Some(1.0));
//! # Ok::<(), clip_eval::Error>(())
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod classifier;
pub mod error;
pub mod metrics;
pub mod prompts;
pub mod report;
pub mod scoring;
pub mod topk;

pub use cache::{CacheKey, CacheStatus, ClassifierCache};
pub use classifier::{Classifier, DEFAULT_LOGIT_SCALE, ZeroShot, build_classifier};
pub use error::{Error, Result};
pub use metrics::{Accumulator, ConfusedPair};
pub use prompts::{ClassNames, MAX_TEMPLATES_FILE_BYTES, Templates};
pub use report::{Counts, Prediction, Skipped, Summary, Timing, recompute_counts};
pub use scoring::{ScoreFunction, Scoring};
pub use topk::{top_k, top_k_batch, top_k_batch_with_scores, top_k_into};
