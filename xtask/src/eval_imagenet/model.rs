//! Glue between the evaluation and the model crates: weights, class names, templates, the zero-shot
//! classifier (with its on-disk cache) and the batch scorer.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clip_eval::{CacheKey, ClassNames, Classifier, ClassifierCache, Templates};
use clip_model::ClipModel;
use clip_model::candle_core::{Device, Tensor};
use clip_model::tokenizer::{Tokenizer, Truncation};

use super::pipeline::BatchScorer;

/// Prompts per text-encoder call while building a classifier.
const TEXT_BATCH: usize = 256;

/// Makes the model and the global worker pool use `threads` threads.
pub fn set_threads(threads: usize) {
    // candle sizes its matrix products from RAYON_NUM_THREADS on every call.
    // SAFETY: called on the main thread at the start of the command, before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

/// The number of threads the model uses when `--threads` is not given.
pub fn default_threads() -> usize {
    clip_model::candle_core::utils::get_num_threads().max(1)
}

/// Resolves `--weights` to a local file: a path, or a hub id with the `hub` feature.
pub fn resolve_weights(spec: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(spec);
    if p.is_file() {
        return Ok(p);
    }
    if p.exists() {
        bail!("--weights {spec}: not a file");
    }
    match clip_model::HubId::parse(spec) {
        Some(id) => hub_weights(&id),
        None => bail!("--weights {spec}: no such file"),
    }
}

/// A hub id → the weights file in the hub cache (downloaded when missing).
#[cfg(feature = "hub")]
fn hub_weights(id: &clip_model::HubId) -> anyhow::Result<PathBuf> {
    let files = id
        .fetch()
        .with_context(|| format!("fetching {id} from the Hugging Face hub"))?;
    Ok(files.weights)
}

#[cfg(not(feature = "hub"))]
fn hub_weights(id: &clip_model::HubId) -> anyhow::Result<PathBuf> {
    let id = &id.repo;
    bail!(
        "--weights {id}: no such file; to fetch a hub id, build with `cargo xtask --features hub` \
         (cargo run -p xtask --features hub -- eval-imagenet …) or download the safetensors file and pass its path"
    )
}

/// A loaded CLIP model plus the tokenizer.
pub struct Model {
    clip: ClipModel,
}

/// Loads a model from a safetensors file (f32, CPU).
pub fn load(path: &Path) -> anyhow::Result<Model> {
    let clip = ClipModel::load(path).with_context(|| format!("loading {}", path.display()))?;
    Ok(Model { clip })
}

impl Model {
    /// Architecture name: the preset, or `custom`.
    pub fn name(&self) -> String {
        self.clip.name().to_string()
    }
    /// The matching preset, if any.
    pub fn preset(&self) -> Option<String> {
        self.clip.config().preset_name().map(str::to_owned)
    }
    /// Input image size.
    pub fn image_size(&self) -> usize {
        self.clip.config().vision.image_size()
    }
    /// Embedding dimension.
    pub fn embed_dim(&self) -> usize {
        self.clip.config().embed_dim
    }
    /// Device description.
    pub fn device(&self) -> String {
        format!("{:?}", self.clip.device().location())
    }
    /// CLIP's logit scale (100 for OpenAI's models).
    pub fn logit_scale(&self) -> f32 {
        self.clip.logit_scale()
    }

    /// The zero-shot classifier for `names` × `templates` (`clip_eval::build_classifier`: per class, the mean
    /// of the L2-normalised text embeddings of every filled-in template, L2-normalised again), read from the
    /// cache in `cache_dir` when one for the same weights (`weights_sha256`), names and templates is there, and
    /// stored there otherwise. An unreadable cache file is reported and rebuilt. Returns the classifier and
    /// whether it came from the cache.
    pub fn classifier(
        &self,
        weights_sha256: &str,
        names: &ClassNames,
        templates: &Templates,
        cache_dir: &Path,
    ) -> anyhow::Result<(Classifier, bool)> {
        let cache = ClassifierCache::new(cache_dir);
        let key = CacheKey::new(
            &format!("{}@{weights_sha256}", self.name()),
            &names.names,
            templates,
        );
        match cache.load(&key) {
            Ok(Some(c)) => return Ok((c, true)),
            Ok(None) => {}
            Err(e) => eprintln!("warning: ignoring the cached classifier ({e}); rebuilding it"),
        }
        let tokenizer = Tokenizer::openai().context("loading the tokenizer")?;
        let ctx = self.clip.config().text.context_length;
        let progress = super::progress_bar((names.len() * templates.len()) as u64, "prompts");
        let c = clip_eval::build_classifier(
            &names.names,
            templates,
            TEXT_BATCH,
            |prompts| -> anyhow::Result<Vec<Vec<f32>>> {
                let batch = tokenizer
                    .encode_batch(prompts, ctx, Truncation::Error)
                    .context("tokenizing prompts")?;
                let e = self
                    .clip
                    .encode_tokens(batch.ids(), prompts.len())
                    .context("encoding prompts")?
                    .to_vec2::<f32>()?;
                progress.inc(prompts.len() as u64);
                Ok(e)
            },
        )?;
        progress.finish_and_clear();
        cache
            .store(&key, &c)
            .with_context(|| format!("caching the classifier in {}", cache_dir.display()))?;
        Ok((c, false))
    }

    /// The preprocessing of this model's input size (OpenAI's transform, EXIF orientation ignored as in the
    /// reference), as a function from a path to CHW pixels or an error message.
    pub fn preprocessor(
        &self,
    ) -> anyhow::Result<impl Fn(&Path) -> Result<Vec<f32>, String> + Sync + use<>> {
        let size = u32::try_from(self.image_size())?;
        let pre =
            clip_preprocess::Preprocessor::new(clip_preprocess::PreprocessConfig::openai(size))?;
        Ok(move |p: &Path| {
            pre.preprocess_path(p)
                .map(|t| t.data)
                .map_err(|e| e.to_string())
        })
    }
}

/// Image encoder × classifier: cosine similarity of each image to each class.
pub struct Scorer<'a> {
    model: &'a Model,
    /// `[dim, classes]`.
    classifier_t: Tensor,
    classes: usize,
}

impl<'a> Scorer<'a> {
    /// A scorer for `model` and `classifier`.
    pub fn new(model: &'a Model, classifier: &Classifier) -> anyhow::Result<Self> {
        let t = Tensor::from_slice(
            classifier.weights(),
            (classifier.n_classes(), classifier.dim()),
            model.clip.device(),
        )?
        .t()?
        .contiguous()?;
        Ok(Self {
            model,
            classifier_t: t,
            classes: classifier.n_classes(),
        })
    }
}

impl BatchScorer for Scorer<'_> {
    fn score(&mut self, pixels: &[f32], n: usize) -> anyhow::Result<Vec<f32>> {
        let s = self.model.image_size();
        let x = Tensor::from_slice(pixels, (n, 3, s, s), &Device::Cpu)?;
        let e = self.model.clip.encode_image_normalized(&x)?;
        Ok(e.matmul(&self.classifier_t)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_that_are_not_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve_weights(dir.path().to_str().unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("not a file"), "{e:#}");
        let e = resolve_weights("/no/such/model.safetensors").unwrap_err();
        assert!(format!("{e:#}").contains("no such file"), "{e:#}");
        let f = dir.path().join("w.safetensors");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(resolve_weights(f.to_str().unwrap()).unwrap(), f);
        #[cfg(not(feature = "hub"))]
        {
            let e = resolve_weights("timm/vit_base_patch32_clip_224.openai").unwrap_err();
            assert!(format!("{e:#}").contains("--features hub"), "{e:#}");
        }
    }
}
