//! [`Clip`]: `clip-model` + `clip-preprocess` + the tokenizer behind the [`Embedder`] trait, and
//! [`sync_folder`], which indexes a folder into a gallery library with any [`Embedder`].

use std::path::Path;

use feature_store::{EmbedInput, ImageEmbedder, SyncOptions, SyncReport};

use crate::gallery::library::Library;
use crate::{EmbedError, Embedder, weights};

/// A loaded CLIP model with its preprocessing and tokenizer.
pub struct Clip {
    _private: (),
}

impl Clip {
    /// Finds the weights (see [`weights::resolve`]) and loads the model.
    pub fn load(weights_arg: Option<&str>) -> anyhow::Result<Self> {
        let path = weights::resolve(weights_arg)?;
        anyhow::bail!(
            "cannot load {}: model loading is not wired in yet",
            path.display()
        )
    }
}

impl Embedder for Clip {
    fn model_id(&self) -> &str {
        ""
    }
    fn dim(&self) -> usize {
        0
    }
    fn logit_scale(&self) -> f32 {
        100.0
    }
    fn embed_images(&self, _images: &[&[u8]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::Model("not wired in".into()))
    }
    fn embed_texts(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::Model("not wired in".into()))
    }
}

/// Adapts an [`Embedder`] to the feature store's [`ImageEmbedder`] (one image at a time, so a
/// bad file fails alone).
struct StoreEmbedder<'a, E: Embedder + ?Sized>(&'a E);

impl<E: Embedder + ?Sized> ImageEmbedder for StoreEmbedder<'_, E> {
    type Error = EmbedError;

    fn model_id(&self) -> &str {
        self.0.model_id()
    }

    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let all: Vec<&[u8]> = batch.iter().map(|i| i.bytes).collect();
        match self.0.embed_images(&all) {
            Ok(v) if v.len() == batch.len() => v.into_iter().map(Ok).collect(),
            // One bad picture fails the batch call: retry one by one so only it fails.
            _ => batch.iter().map(|i| self.0.embed_image(i.bytes)).collect(),
        }
    }
}

/// Indexes the pictures under `dir` (recursively) into `lib`: new and changed files are
/// embedded, in committed batches, with a progress bar on a terminal.
pub fn sync_folder<E: Embedder + ?Sized>(
    embedder: &E,
    lib: &mut Library,
    dir: &Path,
) -> anyhow::Result<SyncReport> {
    let mut adapter = StoreEmbedder(embedder);
    let options = SyncOptions::new().batch_size(16);
    let mut progress = feature_store::TerminalProgress::new();
    let report = lib
        .store_mut()
        .sync_with_progress(dir, &mut adapter, &options, &mut progress)?;
    for f in &report.failed {
        eprintln!("skipped {}: {}", f.path.display(), f.reason);
    }
    Ok(report)
}
