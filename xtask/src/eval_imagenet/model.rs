//! The evaluation's model: the `clip` facade with the reference preprocessing, the zero-shot
//! classifier (with its on-disk cache) and the batch scorer.

use std::path::Path;

use anyhow::Context;
use clip::Clip;
use clip_eval::{CacheKey, ClassNames, Classifier, ClassifierCache, Templates};

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
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A loaded model.
pub struct Model {
    clip: Clip,
}

/// Loads `--weights`: a safetensors file, a hub id or a short name (fetched into the hub cache
/// on first use), with OpenAI's reference preprocessing (EXIF orientation ignored).
pub fn load(spec: &str, precision: clip::Precision) -> anyhow::Result<Model> {
    let clip = Clip::builder()
        .precision(precision)
        .apply_exif(false)
        .load(spec)
        .with_context(|| format!("loading {spec}"))?;
    Ok(Model { clip })
}

impl Model {
    /// Architecture name: the preset, or `custom`.
    pub fn name(&self) -> String {
        self.clip.name().to_string()
    }
    /// The matching preset, if any.
    pub fn preset(&self) -> Option<String> {
        let m = self.clip.model();
        match m.chinese_clip_config() {
            Some(c) => c.preset_name(),
            None => m.config().preset_name(),
        }
        .map(str::to_owned)
    }
    /// Family, score function and preprocessing, for the report.
    pub fn scoring(&self) -> clip_eval::Scoring {
        let p = self.clip.preprocessing();
        clip_eval::Scoring {
            model_family: self.clip.family().name().to_owned(),
            score_function: self.clip.score_function(),
            preprocessing: format!(
                "{} px, {:?} resize, {:?}, mean {:?}, std {:?}",
                p.size, p.resize_mode, p.interpolation, p.mean, p.std
            ),
        }
    }
    /// The weights file.
    pub fn weights_path(&self) -> &Path {
        self.clip.weights_path()
    }
    /// Input image size.
    pub fn image_size(&self) -> usize {
        self.clip.image_size()
    }
    /// Embedding dimension.
    pub fn embed_dim(&self) -> usize {
        self.clip.dim()
    }
    /// Device description.
    pub fn device(&self) -> String {
        format!("{:?}", self.clip.model().device().location())
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
        let progress = super::progress_bar((names.len() * templates.len()) as u64, "prompts");
        let c = clip_eval::build_classifier(
            &names.names,
            templates,
            TEXT_BATCH,
            |prompts| -> anyhow::Result<Vec<Vec<f32>>> {
                let rows = self.clip.embed_texts(prompts).context("encoding prompts")?;
                progress.inc(prompts.len() as u64);
                Ok(rows.outer_iter().map(|r| r.to_vec()).collect())
            },
        )?;
        progress.finish_and_clear();
        cache
            .store(&key, &c)
            .with_context(|| format!("caching the classifier in {}", cache_dir.display()))?;
        Ok((c, false))
    }

    /// The model's preprocessing (OpenAI's transform at its input size, EXIF orientation ignored
    /// as in the reference), as a function from a path to CHW pixels or an error message.
    pub fn preprocessor(&self) -> impl Fn(&Path) -> Result<Vec<f32>, String> + Sync + use<> {
        let clip = self.clip.clone();
        move |p: &Path| {
            clip.preprocess(p)
                .map(|t| t.data)
                .map_err(|e| e.to_string())
        }
    }
}

/// Image encoder × classifier: cosine similarity of each image to each class.
pub struct Scorer<'a> {
    model: &'a Model,
    classifier: &'a Classifier,
}

impl<'a> Scorer<'a> {
    /// A scorer for `model` and `classifier`.
    pub fn new(model: &'a Model, classifier: &'a Classifier) -> Self {
        Self { model, classifier }
    }
}

impl BatchScorer for Scorer<'_> {
    fn score(&mut self, pixels: &[f32], n: usize) -> anyhow::Result<Vec<f32>> {
        let e = self.model.clip.embed_preprocessed(pixels, n)?;
        let flat: Vec<f32> = e.iter().copied().collect();
        Ok(self.classifier.cosine_scores(&flat)?)
    }
    fn num_classes(&self) -> usize {
        self.classifier.n_classes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_that_are_not_models() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path().to_str().unwrap(), clip::Precision::F32)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("no weights file"), "{e:#}");
        let e = load("/no/such/model.safetensors", clip::Precision::F32)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("unknown model"), "{e:#}");
        let f = dir.path().join("w.safetensors");
        std::fs::write(&f, b"x").unwrap();
        let e = load(f.to_str().unwrap(), clip::Precision::F32)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("w.safetensors"), "{e:#}");
    }
}
