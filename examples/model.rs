//! The facade's [`clip::Clip`] behind the gallery's [`Embedder`] seam, and [`sync_folder`],
//! which indexes a folder into a gallery library with any [`Embedder`].

use std::path::Path;

use feature_store::{EmbedInput, ImageEmbedder, SyncOptions, SyncReport};

use crate::gallery::library::Library;
use crate::{EmbedError, Embedder};

impl From<clip::Error> for EmbedError {
    fn from(e: clip::Error) -> Self {
        match e {
            clip::Error::Image { .. } => Self::BadImage(e.to_string()),
            clip::Error::Text { .. } => Self::BadText(e.to_string()),
            other => Self::Model(other.to_string()),
        }
    }
}

impl Embedder for clip::Clip {
    fn model_id(&self) -> &str {
        clip::Clip::model_id(self)
    }

    fn dim(&self) -> usize {
        clip::Clip::dim(self)
    }

    fn logit_scale(&self) -> f32 {
        clip::Clip::logit_scale(self)
    }

    fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_each(images).into_iter().collect()
    }

    /// Decodes in parallel and runs the model once on the pictures that decoded.
    fn embed_each(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        clip::Clip::embed_images(self, images.iter().copied())
            .into_iter()
            .map(|r| r.map_err(EmbedError::from))
            .collect()
    }

    /// Errors name the file (`photos/x.png: not a supported image`), not its place in the batch.
    fn embed_each_named(&self, images: &[(&Path, &[u8])]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let inputs = images
            .iter()
            .map(|&(name, bytes)| clip::ImageInput::Named { bytes, name });
        clip::Clip::embed_images(self, inputs)
            .into_iter()
            .map(|r| r.map_err(EmbedError::from))
            .collect()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = clip::Clip::embed_texts(self, texts)?;
        Ok(rows.outer_iter().map(|r| r.to_vec()).collect())
    }

    /// The model's one-template prompt (`{}的照片。` for Chinese-CLIP).
    fn prompt(&self, label: &str) -> String {
        self.single_template()
            .fill(label)
            .pop()
            .unwrap_or_else(|| label.to_owned())
    }

    /// Softmax for CLIP and Chinese-CLIP, sigmoid with bias for SigLIP.
    fn score_function(&self) -> clip_eval::ScoreFunction {
        clip::Clip::score_function(self)
    }
}

/// Adapts an [`Embedder`] to the feature store's [`ImageEmbedder`] (a bad file fails alone).
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
        let all: Vec<(&Path, &[u8])> = batch.iter().map(|i| (i.path, i.bytes)).collect();
        self.0.embed_each_named(&all)
    }
}

/// Indexes the pictures under `dir` (recursively) into `lib`: new and changed files are
/// embedded, in committed batches, with a progress bar on a terminal.
pub fn sync_folder<E: Embedder + ?Sized>(
    embedder: &E,
    lib: &mut Library,
    dir: &Path,
) -> Result<SyncReport, feature_store::Error> {
    let mut adapter = StoreEmbedder(embedder);
    let options = SyncOptions::new().batch_size(16);
    let mut progress = feature_store::TerminalProgress::new();
    lib.store_mut()
        .sync_with_progress(dir, &mut adapter, &options, &mut progress)
}
