//! [`Clip`]: `clip-model` + `clip-preprocess` + the tokenizer behind the [`Embedder`] trait, and
//! [`sync_folder`], which indexes a folder into a gallery library with any [`Embedder`].

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clip_model::{ClipModel, Tokenizer, Truncation};
use clip_preprocess::{PreprocessConfig, Preprocessor, Tensor3};
use feature_store::{EmbedInput, ImageEmbedder, SyncOptions, SyncReport};
use rayon::prelude::*;

use crate::gallery::library::Library;
use crate::{EmbedError, Embedder, weights};

/// Largest picture accepted, in pixels (checked from the header before decoding): 64 MP, well
/// above any camera and far below what would exhaust memory.
pub const MAX_PIXELS: u64 = 64_000_000;

/// Token embeddings OpenAI's BPE tokenizer needs (its largest id is 49407).
const OPENAI_VOCAB: usize = 49408;

/// A loaded CLIP model with its preprocessing and tokenizer.
pub struct Clip {
    model: ClipModel,
    tokenizer: Tokenizer,
    pre: Preprocessor,
    id: String,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Clip {
    /// Finds the weights (see [`weights::resolve`]) and loads the model.
    pub fn load(weights_arg: Option<&str>) -> anyhow::Result<Self> {
        let path = weights::resolve(weights_arg)?;
        Self::from_file(&path)
    }

    /// Loads a safetensors file (open_clip or transformers naming), f32 on the CPU, with the
    /// application preprocessing (OpenAI's, EXIF orientation applied) at the model's image size.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let model = ClipModel::load(path)
            .with_context(|| format!("cannot load CLIP weights from {}", path.display()))?;
        let vocab = model.config().text.vocab_size;
        anyhow::ensure!(
            vocab >= OPENAI_VOCAB,
            "{}: the text tower has {vocab} token embeddings, but OpenAI's tokenizer needs {OPENAI_VOCAB}",
            path.display()
        );
        let size = u32::try_from(model.config().vision.image_size())?;
        let cfg = PreprocessConfig {
            max_pixels: Some(MAX_PIXELS),
            ..PreprocessConfig::application(size)
        };
        let pre = Preprocessor::new(cfg)?;
        let tokenizer = Tokenizer::openai()?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let id = format!("{} ({file}, {bytes} bytes)", model.name());
        Ok(Self {
            model,
            tokenizer,
            pre,
            id,
        })
    }

    /// The underlying model.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }
}

impl Embedder for Clip {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.model.config().embed_dim
    }

    fn logit_scale(&self) -> f32 {
        self.model.logit_scale()
    }

    fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_each(images).into_iter().collect()
    }

    /// Decodes and preprocesses the pictures in parallel, then runs the model once on the
    /// ones that decoded.
    fn embed_each(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let pixels: Vec<_> = images
            .par_iter()
            .map(|bytes| {
                self.pre
                    .preprocess_bytes(bytes)
                    .map_err(|e| EmbedError::BadImage(e.to_string()))
            })
            .collect();
        let good: Vec<_> = pixels.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut embedded = match self.encode_pixels(&good) {
            Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e); good.len()],
        }
        .into_iter();
        pixels
            .into_iter()
            .map(|p| match p {
                Ok(_) => embedded
                    .next()
                    .unwrap_or_else(|| Err(model_err("the model returned too few embeddings"))),
                Err(e) => Err(e),
            })
            .collect()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.model.config().text.context_length;
        let batch = self
            .tokenizer
            .encode_batch(texts, ctx, Truncation::Error)
            .map_err(|e| EmbedError::BadText(e.to_string()))?;
        let out = self
            .model
            .encode_tokens(batch.ids(), texts.len())
            .map_err(model_err)?;
        unit_rows(&out)
    }
}

impl Clip {
    /// Unit image embeddings of preprocessed pictures (all of the model's image size).
    fn encode_pixels(&self, images: &[&Tensor3]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let Some(first) = images.first() else {
            return Ok(Vec::new());
        };
        let (h, w) = (first.height, first.width);
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for t in images {
            data.extend_from_slice(&t.data);
        }
        let pixels =
            Tensor::from_vec(data, (images.len(), 3, h, w), &Device::Cpu).map_err(model_err)?;
        let out = self
            .model
            .encode_image_normalized(&pixels)
            .map_err(model_err)?;
        out.to_vec2::<f32>().map_err(model_err)
    }
}

fn model_err(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(e.to_string())
}

/// `[batch, dim]` text embeddings → one unit vector per row (the token path has no
/// normalised variant taking ids).
fn unit_rows(t: &Tensor) -> Result<Vec<Vec<f32>>, EmbedError> {
    let norms = t
        .sqr()
        .and_then(|s| s.sum_keepdim(1))
        .and_then(|s| s.sqrt());
    let unit = norms.and_then(|n| t.broadcast_div(&n)).map_err(model_err)?;
    unit.to_vec2::<f32>().map_err(model_err)
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
        let all: Vec<&[u8]> = batch.iter().map(|i| i.bytes).collect();
        self.0.embed_each(&all)
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
