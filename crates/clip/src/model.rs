//! [`Clip`]: a model with its own preprocessing and tokenizer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clip_eval::{Templates, ZeroShot};
use clip_model::candle_core::{self, Tensor};
use clip_model::{
    ClipModel, LoadOptions, ModelFamily, PreprocessHints, ResampleFilter, ResizeKind,
    SentencePieceTokenizer, Tokenizer, Truncation,
};
use clip_preprocess::{Interpolation, PreprocessConfig, Preprocessor, ResizeMode, Tensor3};
use ndarray::Array2;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::input::ImageInput;
use crate::source::{self, Source};

/// Largest picture accepted, in pixels, checked from the file header before decoding: 64 MP,
/// above any camera and far below what would exhaust memory.
pub const MAX_PIXELS: u64 = 64_000_000;

/// Largest picture file read from a path, in bytes: 64 MiB, the cap of the feature library's
/// indexing and of the gallery server. Only regular files are read: a FIFO or device given as a
/// picture is refused at once.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Zero-shot classifiers kept per model for repeated label sets.
const CLASSIFIER_CACHE: usize = 16;

/// Numeric precision of the weights and the computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Precision {
    /// 32-bit floats: exact against the reference (the default).
    #[default]
    F32,
    /// 16-bit floats (GPUs).
    F16,
    /// bfloat16. On the CPU: weights in bf16 and bf16 × bf16 products with f32 accumulation in
    /// the packed kernels where the CPU has AVX-512-BF16 (Zen 4/5, Xeons since Cooper Lake),
    /// everything else f32; on other CPUs the f32 path (see `clip_model::LoadOptions::bf16_products`).
    /// Embeddings stay within cosine 0.999 of f32 on the tested random models; accuracy on real
    /// weights is expected, not measured, to be unchanged. On a GPU: the model in bfloat16.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// `f32`, `f16`, `bf16`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::Bf16),
            _ => Err(Error::InvalidOption {
                option: "precision",
                reason: format!("`{s}`: expected f32, f16 or bf16"),
            }),
        }
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Device {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (build with the `cuda` feature).
    Cuda(usize),
    /// An Apple GPU by ordinal (build with the `metal` feature).
    Metal(usize),
}

impl std::str::FromStr for Device {
    type Err = Error;

    /// `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidOption {
            option: "device",
            reason: format!("`{s}`: expected cpu, cuda, cuda:N, metal or metal:N"),
        };
        let (kind, n) = match s.split_once(':') {
            Some((k, n)) => (k, n.parse::<usize>().map_err(|_| bad())?),
            None => (s, 0),
        };
        match kind {
            "cpu" if !s.contains(':') => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(n)),
            "metal" => Ok(Self::Metal(n)),
            _ => Err(bad()),
        }
    }
}

/// One label and its probability, from [`Clip::classify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The label, as given.
    pub label: String,
    /// Its probability: `softmax(logit_scale · cosine)` over the labels, as CLIP defines it.
    pub probability: f32,
}

/// How to load a model: precision, device, threads, and where hub files come from.
#[derive(Debug, Clone)]
pub struct Builder {
    precision: Precision,
    device: Device,
    threads: Option<usize>,
    batch_size: usize,
    apply_exif: bool,
    truncate: bool,
    hub: Hub,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            precision: Precision::F32,
            device: Device::Cpu,
            threads: None,
            batch_size: 32,
            apply_exif: true,
            truncate: false,
            hub: Hub::from_env(),
        }
    }
}

impl Builder {
    /// Weights and computation precision (default f32).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Where the model runs (default the CPU).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Threads for the model and for decoding (default: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Images per forward pass when embedding many (default 32).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Whether to turn photos upright by their EXIF orientation before anything else (default
    /// on). The reference preprocessing of the published evaluations ignores the tag: turn it
    /// off to reproduce them exactly.
    pub fn apply_exif(mut self, yes: bool) -> Self {
        self.apply_exif = yes;
        self
    }

    /// Whether texts longer than the model's context are cut (keeping the end-of-text token)
    /// instead of being an error (default: an error).
    pub fn truncate_texts(mut self, yes: bool) -> Self {
        self.truncate = yes;
        self
    }

    /// The hub cache folder (default `HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hub = self.hub.with_cache_dir(dir);
        self
    }

    /// Never use the network; hub models must be in the cache (also `HF_HUB_OFFLINE=1`).
    pub fn offline(mut self, offline: bool) -> Self {
        self.hub = self.hub.offline(offline);
        self
    }

    /// All hub settings at once (endpoint, cache, timeout, progress).
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = hub;
        self
    }

    /// Loads a model: a safetensors file or a folder holding one, a hub id
    /// (`owner/name[@revision]`, fetched into the hub cache on first use), or a short name from
    /// [`source::MODELS`] (`ViT-B-32`, `RN50x64`, ...).
    pub fn load(self, spec: &str) -> Result<Clip> {
        let files = match source::resolve(spec)? {
            Source::File(weights) => ModelFiles {
                weights,
                config: None,
            },
            Source::Hub(id) => {
                let mut found = None;
                for f in source::WEIGHT_FILES {
                    if let Some(p) = self.hub.get(&id, f)? {
                        found = Some((f, p));
                        break;
                    }
                }
                let Some((name, weights)) = found else {
                    return Err(Error::NotOnHub {
                        url: self.hub.url(&id, source::WEIGHT_FILES[0]),
                        status: 404,
                        hint: " (nor model.safetensors)",
                    });
                };
                let config_name = if name == source::WEIGHT_FILES[0] {
                    "open_clip_config.json"
                } else {
                    "config.json"
                };
                let config = self.hub.get(&id, config_name)?;
                // The files that pair the model with its tokenizer and preprocessing (SigLIP's
                // vocabulary; transformers' image processor settings), when the repo has them.
                for extra in source::SIDECAR_FILES {
                    self.hub.get(&id, extra)?;
                }
                ModelFiles { weights, config }
            }
        };
        self.load_files(spec, &files)
    }

    /// Loads the model named by `CLIP_MODEL` (or the file in `CLIP_WEIGHTS`), else
    /// [`source::DEFAULT_MODEL`] (OpenAI ViT-B/32), fetched on first use.
    pub fn load_default(self) -> Result<Clip> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        match var(source::MODEL_ENV).or_else(|| var("CLIP_WEIGHTS")) {
            Some(spec) => self.load(&spec),
            None => self.load(source::DEFAULT_MODEL),
        }
    }

    /// [`Builder::load`] when a spec is given (a `--model` argument), else
    /// [`Builder::load_default`].
    pub fn load_or_default(self, spec: Option<&str>) -> Result<Clip> {
        match spec {
            Some(spec) => self.load(spec),
            None => self.load_default(),
        }
    }

    fn load_files(self, spec: &str, files: &ModelFiles) -> Result<Clip> {
        if self.batch_size == 0 {
            return Err(Error::InvalidOption {
                option: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        let pool = match self.threads {
            Some(0) => {
                return Err(Error::InvalidOption {
                    option: "threads",
                    reason: "must be at least 1".into(),
                });
            }
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::InvalidOption {
                        option: "threads",
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let options = LoadOptions {
            // bf16 on the CPU: f32 model, bf16 weights and products in the packed kernels.
            bf16_products: self.precision == Precision::Bf16 && self.device == Device::Cpu,
            dtype: match self.precision {
                Precision::F32 => candle_core::DType::F32,
                Precision::Bf16 if self.device == Device::Cpu => candle_core::DType::F32,
                Precision::F16 => candle_core::DType::F16,
                Precision::Bf16 => candle_core::DType::BF16,
            },
            device: candle_device(self.device)?,
            config_file: files.config.clone(),
            ..LoadOptions::default()
        };
        let load = || ClipModel::load_with(&files.weights, &options);
        let model = match &pool {
            Some(p) => p.install(load),
            None => load(),
        }?;
        let tokenizer = tokenizer_for(&model, &files.weights)?;
        let vocab = model.config().text.vocab_size;
        let needed = tokenizer.vocab_size();
        // The embedded vocabularies must fit the tower. A `tokenizer.json` may list added tokens
        // its model never produces, so there an id outside the table is caught when it occurs
        // (a typed error naming the id) rather than refusing the model up front.
        if vocab < needed && model.family() != ModelFamily::Siglip {
            return Err(Error::Model(clip_model::Error::InvalidInput(format!(
                "{}: the text tower has {vocab} token embeddings, but the {} tokenizer needs {needed}",
                files.weights.display(),
                tokenizer.family()
            ))));
        }
        let pre = Preprocessor::new(PreprocessConfig {
            max_pixels: Some(MAX_PIXELS),
            max_file_bytes: MAX_FILE_BYTES,
            apply_exif: self.apply_exif,
            ..preprocess_config(model.preprocess_hints())?
        })
        .map_err(|cause| Error::Image {
            source_name: "preprocessing config".into(),
            cause,
        })?;
        let digest = weights_digest(&files.weights)?;
        Ok(Clip {
            inner: Arc::new(Inner {
                id: format!("{} blake3:{}", model.name(), &digest[..16]),
                spec: spec.to_owned(),
                weights: files.weights.clone(),
                model,
                tokenizer,
                pre,
                pool,
                batch_size: self.batch_size,
                truncation: if self.truncate {
                    Truncation::Truncate
                } else {
                    Truncation::Error
                },
                classifiers: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// The tokenizer a model was trained with: embedded for CLIP and Chinese-CLIP, the repository's
/// `tokenizer.json` beside the weights for SigLIP.
fn tokenizer_for(model: &ClipModel, weights: &Path) -> Result<Tokenizer> {
    match model.family() {
        ModelFamily::Siglip => {
            let path = weights
                .parent()
                .unwrap_or(Path::new("."))
                .join("tokenizer.json");
            if !path.is_file() {
                return Err(Error::MissingFile {
                    path,
                    what: "SigLIP's tokenizer (its vocabulary is not embedded; it comes with \
                           the weights)",
                });
            }
            Ok(Tokenizer::sentencepiece(
                SentencePieceTokenizer::siglip_from_file(&path)?,
            ))
        }
        family => Ok(Tokenizer::for_family(family)?),
    }
}

/// The image preprocessing a model's files ask for, as `clip-preprocess` settings.
fn preprocess_config(h: &PreprocessHints) -> Result<PreprocessConfig> {
    let unsupported = |what: String| Error::InvalidOption {
        option: "preprocessing",
        reason: format!("{what} (from {}) is not supported", h.source),
    };
    let size = u32::try_from(h.image_size).map_err(|_| Error::InvalidOption {
        option: "image size",
        reason: format!("{} does not fit 32 bits", h.image_size),
    })?;
    let interpolation = match h.interpolation {
        ResampleFilter::Bicubic => Interpolation::Bicubic,
        ResampleFilter::Bilinear => Interpolation::Bilinear,
        other => return Err(unsupported(format!("resampling {other:?}"))),
    };
    let resize_mode = match h.resize {
        ResizeKind::ShorterSideCrop => ResizeMode::ShorterSide,
        ResizeKind::Squash => ResizeMode::Squash,
        other => return Err(unsupported(format!("resize {other:?}"))),
    };
    Ok(PreprocessConfig {
        mean: h.mean,
        std: h.std,
        interpolation,
        resize_mode,
        ..PreprocessConfig::openai(size)
    })
}

struct ModelFiles {
    weights: PathBuf,
    config: Option<PathBuf>,
}

fn candle_device(d: Device) -> Result<candle_core::Device> {
    let name = match d {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Metal(i) => format!("metal:{i}"),
    };
    Ok(clip_model::device_from_name(&name)?)
}

/// BLAKE3 of the weights file (memory-mapped, hashed on all cores): the model's identity in
/// feature libraries, so different weights never share a library, whatever the file is called.
fn weights_digest(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path).map_err(|cause| Error::Io {
        path: path.to_owned(),
        cause,
    })?;
    Ok(h.finalize().to_hex().to_string())
}

/// A CLIP model paired with its preprocessing and tokenizer. Cheap to clone (shared).
///
/// Embeddings are L2-normalised `f32` rows; a text and an image match when their dot product
/// (cosine) is high.
#[derive(Clone)]
pub struct Clip {
    inner: Arc<Inner>,
}

/// A classifier kept for its labels and templates.
type CachedClassifier = (Vec<String>, Templates, Arc<ZeroShot>);

struct Inner {
    model: ClipModel,
    tokenizer: Tokenizer,
    pre: Preprocessor,
    id: String,
    spec: String,
    weights: PathBuf,
    pool: Option<rayon::ThreadPool>,
    batch_size: usize,
    truncation: Truncation,
    classifiers: Mutex<Vec<CachedClassifier>>,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip")
            .field("id", &self.inner.id)
            .field("weights", &self.inner.weights)
            .finish_non_exhaustive()
    }
}

impl Clip {
    /// Loads a model with default options (see [`Builder::load`]).
    pub fn load(spec: &str) -> Result<Self> {
        Builder::default().load(spec)
    }

    /// Loads the default model (see [`Builder::load_default`]).
    pub fn load_default() -> Result<Self> {
        Builder::default().load_default()
    }

    /// Options for loading.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The model's identity: architecture and a hash of the weights' bytes
    /// (e.g. `ViT-B/32 blake3:1f2e…`). Feature libraries record it and refuse other models.
    pub fn model_id(&self) -> &str {
        &self.inner.id
    }

    /// The architecture's name (`ViT-B/32`, `RN50x64`, ... or `custom`).
    pub fn name(&self) -> &str {
        self.inner.model.name()
    }

    /// The spec this model was loaded from.
    pub fn spec(&self) -> &str {
        &self.inner.spec
    }

    /// The weights file.
    pub fn weights_path(&self) -> &Path {
        &self.inner.weights
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.inner.model.config().embed_dim
    }

    /// The side of the square input image, in pixels.
    pub fn image_size(&self) -> usize {
        self.inner.model.config().vision.image_size()
    }

    /// The text context length in tokens: the model's (77 for OpenAI's CLIP, 64 for SigLIP, 52
    /// for Chinese-CLIP).
    pub fn context_length(&self) -> usize {
        self.inner.model.config().text.context_length
    }

    /// The model family (CLIP, SigLIP, Chinese-CLIP): it chose the tokenizer, the
    /// preprocessing and the score function.
    pub fn family(&self) -> ModelFamily {
        self.inner.model.family()
    }

    /// The learned temperature `exp(logit_scale)` that scales cosines into logits (100 for
    /// OpenAI's models).
    pub fn logit_scale(&self) -> f32 {
        self.inner.model.logit_scale()
    }

    /// How [`Clip::classify`] turns cosines into probabilities: a softmax over the labels of
    /// `scale · cos` (CLIP, Chinese-CLIP), or a sigmoid per label of `scale · cos + bias`
    /// (SigLIP: the probabilities of one image need not sum to 1).
    pub fn score_function(&self) -> clip_eval::ScoreFunction {
        match self.inner.model.score_function() {
            clip_model::ScoreFunction::Sigmoid { scale, bias } => {
                clip_eval::ScoreFunction::Sigmoid { scale, bias }
            }
            clip_model::ScoreFunction::Softmax { scale } => {
                clip_eval::ScoreFunction::Softmax { scale }
            }
            _ => clip_eval::ScoreFunction::Softmax {
                scale: self.logit_scale(),
            },
        }
    }

    /// The preprocessing this model uses.
    pub fn preprocessing(&self) -> &PreprocessConfig {
        self.inner.pre.config()
    }

    /// The underlying model (for tensors in and out; see `clip-model`).
    pub fn model(&self) -> &ClipModel {
        &self.inner.model
    }

    /// The tokenizer this model uses.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.inner.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Preprocesses one image into the model's input (`3 × size × size`, CHW, normalised).
    pub fn preprocess<'a>(&self, image: impl Into<ImageInput<'a>>) -> Result<Tensor3> {
        self.preprocess_input(image.into(), 0)
    }

    pub(crate) fn preprocess_input(&self, image: ImageInput<'_>, index: usize) -> Result<Tensor3> {
        let pre = &self.inner.pre;
        let r = match image {
            ImageInput::Path(p) => pre.preprocess_path(p),
            ImageInput::Bytes(b) => {
                pre.preprocess_bytes_named(b, Path::new(&image.describe(index)))
            }
            ImageInput::Named { bytes, name } => pre.preprocess_bytes_named(bytes, name),
            ImageInput::Rgb {
                data,
                width,
                height,
            } => pre.preprocess_rgb8(data, width as usize, height as usize),
        };
        r.map_err(|cause| Error::Image {
            source_name: image.describe(index),
            cause,
        })
    }

    /// The unit embedding of one image.
    pub fn embed_image<'a>(&self, image: impl Into<ImageInput<'a>>) -> Result<Vec<f32>> {
        let image = image.into();
        let pixels = self.preprocess_input(image, 0)?;
        let mut rows = self.run(|| self.encode_pixels(&[&pixels]))?;
        let row = rows.pop().ok_or_else(|| no_output(&image.describe(0)))?;
        check_finite(&row, || image.describe(0))?;
        Ok(row)
    }

    /// Unit embeddings of many images, one result per input in input order: a file that cannot
    /// be read or decoded fails alone, its error naming it. Decoding runs in parallel, the model
    /// in batches.
    pub fn embed_images<'a, T: Into<ImageInput<'a>>>(
        &self,
        images: impl IntoIterator<Item = T>,
    ) -> Vec<Result<Vec<f32>>> {
        let inputs: Vec<ImageInput<'a>> = images.into_iter().map(Into::into).collect();
        let mut out = Vec::with_capacity(inputs.len());
        for (c, chunk) in inputs.chunks(self.inner.batch_size).enumerate() {
            let base = c * self.inner.batch_size;
            out.extend(self.embed_chunk(chunk, base));
        }
        out
    }

    fn embed_chunk(&self, chunk: &[ImageInput<'_>], base: usize) -> Vec<Result<Vec<f32>>> {
        let pixels: Vec<Result<Tensor3>> = self.run(|| {
            chunk
                .par_iter()
                .enumerate()
                .map(|(i, img)| self.preprocess_input(*img, base + i))
                .collect()
        });
        let good: Vec<&Tensor3> = pixels.iter().filter_map(|p| p.as_ref().ok()).collect();
        let embedded = self.run(|| self.encode_pixels(&good));
        let mut rows = match embedded {
            Ok(rows) => rows.into_iter().map(Some).collect::<Vec<_>>(),
            Err(e) => {
                // The batch failed as a whole: report it on every image of the batch.
                let msg = e.to_string();
                return pixels
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        p.and_then(|_| {
                            Err(Error::Model(clip_model::Error::InvalidInput(format!(
                                "{}: {msg}",
                                chunk[i].describe(base + i)
                            ))))
                        })
                    })
                    .collect();
            }
        }
        .into_iter();
        pixels
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let _ = p?;
                let name = || chunk[i].describe(base + i);
                let row = rows.next().flatten().ok_or_else(|| no_output(&name()))?;
                check_finite(&row, name)?;
                Ok(row)
            })
            .collect()
    }

    /// Unit embeddings of many images as an `n × dim` array; the first failure fails the call.
    pub fn embed_images_array<'a, T: Into<ImageInput<'a>>>(
        &self,
        images: impl IntoIterator<Item = T>,
    ) -> Result<Array2<f32>> {
        let rows = self
            .embed_images(images)
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        to_array(rows, self.dim())
    }

    /// Unit embeddings of `n` images already preprocessed by [`Clip::preprocess`] and laid one
    /// after the other in `pixels` (`n × 3 × size × size` values), as an `n × dim` array.
    pub fn embed_preprocessed(&self, pixels: &[f32], n: usize) -> Result<Array2<f32>> {
        let s = self.image_size();
        if n.checked_mul(3 * s * s) != Some(pixels.len()) {
            return Err(Error::InvalidOption {
                option: "pixels",
                reason: format!(
                    "{} values are not {n} images of 3 x {s} x {s}",
                    pixels.len()
                ),
            });
        }
        let rows = self.run(|| self.encode_flat(pixels.to_vec(), n, s, s))?;
        for (i, r) in rows.iter().enumerate() {
            check_finite(r, || format!("preprocessed image #{i}"))?;
        }
        to_array(rows, self.dim())
    }

    fn encode_pixels(&self, images: &[&Tensor3]) -> Result<Vec<Vec<f32>>> {
        let Some(first) = images.first() else {
            return Ok(Vec::new());
        };
        let (h, w) = (first.height, first.width);
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for t in images {
            data.extend_from_slice(&t.data);
        }
        self.encode_flat(data, images.len(), h, w)
    }

    fn encode_flat(&self, data: Vec<f32>, n: usize, h: usize, w: usize) -> Result<Vec<Vec<f32>>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let model = &self.inner.model;
        let pixels = Tensor::from_vec(data, (n, 3, h, w), model.device())
            .and_then(|t| t.to_dtype(model.dtype()))
            .map_err(clip_model::Error::from)?;
        let out = model.encode_image_normalized(&pixels)?;
        to_rows(&out)
    }

    /// The unit embedding of one text.
    pub fn embed_text(&self, text: &str) -> Result<Vec<f32>> {
        let rows = self.embed_text_rows(&[text])?;
        rows.into_iter().next().ok_or_else(|| no_output("text #0"))
    }

    /// Unit embeddings of texts as an `n × dim` array, in input order. An empty text, or one
    /// longer than the model's context, is an error naming it.
    pub fn embed_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Array2<f32>> {
        let refs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let rows = self.embed_text_rows(&refs)?;
        to_array(rows, self.dim())
    }

    fn embed_text_rows(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.context_length();
        let tok = &self.inner.tokenizer;
        for (index, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(text_error(index, t, "the text is empty".into()));
            }
        }
        let truncation = self.inner.truncation;
        let batch = match tok.encode_batch(texts, ctx, truncation) {
            Ok(b) => b,
            Err(e) => {
                // Name the offending text.
                let index = texts
                    .iter()
                    .position(|t| tok.encode_batch(&[*t], ctx, truncation).is_err())
                    .unwrap_or(0);
                return Err(text_error(index, texts[index], e.to_string()));
            }
        };
        let out = self.run(|| self.inner.model.encode_tokens(batch.ids(), texts.len()))?;
        let mut rows = to_rows(&out)?;
        for (i, r) in rows.iter_mut().enumerate() {
            clip_eval::classifier::l2_normalize(r);
            check_finite(r, || format!("text #{i} ({:?})", preview(texts[i])))?;
        }
        Ok(rows)
    }

    /// The one-template prompt of the model's language: `{}的照片。` for
    /// Chinese-CLIP ([`Templates::zh_single`]), `a photo of a {}.` otherwise.
    pub fn single_template(&self) -> Templates {
        match self.family() {
            ModelFamily::ChineseClip => Templates::zh_single(),
            _ => Templates::single(),
        }
    }

    /// Zero-shot classification of one image among `labels` with the single template of
    /// [`Clip::single_template`]: every label with its probability ([`Clip::score_function`]), most
    /// probable first.
    pub fn classify<'a, S: AsRef<str>>(
        &self,
        image: impl Into<ImageInput<'a>>,
        labels: &[S],
    ) -> Result<Vec<Prediction>> {
        self.classifier(labels, &self.single_template())?
            .classify(image)
    }

    /// A zero-shot classifier for `labels` × `templates` (each label's prompts embedded and
    /// averaged, as OpenAI's notebook does). Classifiers for the last few label sets are kept, so
    /// asking again costs nothing.
    pub fn classifier<S: AsRef<str>>(
        &self,
        labels: &[S],
        templates: &Templates,
    ) -> Result<Classifier> {
        let labels: Vec<String> = labels.iter().map(|l| l.as_ref().to_owned()).collect();
        if labels.is_empty() {
            return Err(Error::Labels("the list is empty".into()));
        }
        if let Some(i) = labels.iter().position(|l| l.trim().is_empty()) {
            return Err(Error::Labels(format!("label #{i} is empty")));
        }
        let cached = self.inner.classifiers.lock().ok().and_then(|c| {
            c.iter()
                .find(|(l, t, _)| *l == labels && t == templates)
                .map(|e| e.2.clone())
        });
        let zero_shot = match cached {
            Some(z) => z,
            None => {
                let z = ZeroShot::new(&labels, templates, |prompts: &[String]| {
                    self.embed_text_rows(&prompts.iter().map(String::as_str).collect::<Vec<_>>())
                })?
                .with_score_function(self.score_function());
                let z = Arc::new(z);
                if let Ok(mut c) = self.inner.classifiers.lock() {
                    if c.len() >= CLASSIFIER_CACHE {
                        c.remove(0);
                    }
                    c.push((labels, templates.clone(), z.clone()));
                }
                z
            }
        };
        Ok(Classifier {
            clip: self.clone(),
            zero_shot,
        })
    }
}

/// A zero-shot classifier bound to its model, from [`Clip::classifier`].
#[derive(Debug, Clone)]
pub struct Classifier {
    clip: Clip,
    zero_shot: Arc<ZeroShot>,
}

impl Classifier {
    /// The labels, in the order given.
    pub fn labels(&self) -> &[String] {
        self.zero_shot.classifier().classes()
    }

    /// Classifies one image: every label with its probability, most probable first. NaN or
    /// infinite probabilities are [`Error::NonFinite`] naming the image.
    pub fn classify<'a>(&self, image: impl Into<ImageInput<'a>>) -> Result<Vec<Prediction>> {
        let image = image.into();
        let e = self.clip.embed_image(image)?;
        self.classify_embedding(&e).map_err(|e| match e {
            Error::Eval(clip_eval::Error::NonFinite { what, .. }) => Error::NonFinite {
                input: format!("{} ({what})", image.describe(0)),
            },
            e => e,
        })
    }

    /// Classifies an image embedding from [`Clip::embed_image`].
    pub fn classify_embedding(&self, embedding: &[f32]) -> Result<Vec<Prediction>> {
        Ok(self
            .zero_shot
            .classify(embedding)?
            .into_iter()
            .map(|(label, probability)| Prediction { label, probability })
            .collect())
    }

    /// The underlying `clip-eval` classifier (class vectors, logit scale).
    pub fn zero_shot(&self) -> &ZeroShot {
        &self.zero_shot
    }
}

fn to_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.to_vec2::<f32>())
        .map_err(clip_model::Error::from)?;
    Ok(t)
}

fn to_array(rows: Vec<Vec<f32>>, dim: usize) -> Result<Array2<f32>> {
    let n = rows.len();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((n, dim), flat).map_err(|e| {
        Error::Model(clip_model::Error::InvalidInput(format!(
            "embeddings of {n} inputs do not form {n} x {dim}: {e}"
        )))
    })
}

fn check_finite(row: &[f32], name: impl FnOnce() -> String) -> Result<()> {
    if row.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite { input: name() })
    }
}

fn no_output(name: &str) -> Error {
    Error::Model(clip_model::Error::InvalidInput(format!(
        "{name}: the model returned no embedding"
    )))
}

fn preview(t: &str) -> String {
    let mut p: String = t.chars().take(40).collect();
    if p.len() < t.len() {
        p.push('…');
    }
    p
}

fn text_error(index: usize, text: &str, reason: String) -> Error {
    Error::Text {
        index,
        preview: preview(text),
        reason,
    }
}
