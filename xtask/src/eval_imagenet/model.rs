//! Glue between the evaluation and the model crates: weights, class names, templates, the zero-shot
//! classifier (with its on-disk cache) and the batch scorer.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use candle_core::{Device, Tensor};
use clip_model::ClipModel;
use clip_model::tokenizer::{Tokenizer, Truncation};

use super::pipeline::BatchScorer;
use super::report;

/// A zero-shot classifier: `rows` L2-normalised class embeddings of `dim` values, row-major.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Number of classes.
    pub rows: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// The matrix.
    pub data: Vec<f32>,
}

/// A template set and the name it is recorded under.
#[derive(Debug, Clone)]
pub struct Templates {
    /// `openai80`, `single`, or the file given.
    pub name: String,
    /// The templates, `{}` standing for the class name.
    pub list: Vec<String>,
}

/// The single template of `--templates single`.
pub const SINGLE_TEMPLATE: &str = "a photo of a {}.";

/// Makes the model and the global worker pool use `threads` threads.
pub fn set_threads(threads: usize) {
    // candle sizes its matrix products from RAYON_NUM_THREADS on every call.
    // SAFETY: called on the main thread at the start of the command, before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

fn openai_json() -> anyhow::Result<serde_json::Value> {
    let p = dev_support::shared_data()?.join("clip/openai_imagenet_classes_templates.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn strings(v: &serde_json::Value, field: &str) -> anyhow::Result<Vec<String>> {
    v.get(field)
        .and_then(|a| a.as_array())
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
        .with_context(|| format!("`{field}` is not an array of strings"))
}

/// OpenAI's 1000 curated class names, in class-index order.
pub fn openai_class_names() -> anyhow::Result<Vec<String>> {
    strings(&openai_json()?, "classes")
}

/// Resolves `--templates`: `openai80`, `single`, or a file (a JSON array of strings, or one template per line).
pub fn templates(spec: &str) -> anyhow::Result<Templates> {
    let list = match spec {
        "openai80" => strings(&openai_json()?, "templates")?,
        "single" => vec![SINGLE_TEMPLATE.to_string()],
        path => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading templates file {path}"))?;
            if text.trim_start().starts_with('[') {
                serde_json::from_str(&text)
                    .with_context(|| format!("{path}: expected a JSON array of strings"))?
            } else {
                text.lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
        }
    };
    ensure!(!list.is_empty(), "no templates in {spec}");
    if let Some(t) = list.iter().find(|t| !t.contains("{}")) {
        bail!("template {t:?} has no `{{}}` for the class name");
    }
    Ok(Templates {
        name: spec.to_string(),
        list,
    })
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
    if !spec.contains('/')
        || spec.starts_with('.')
        || spec.starts_with('/')
        || spec.ends_with(".safetensors")
    {
        bail!("--weights {spec}: no such file");
    }
    hub_weights(spec)
}

#[cfg(feature = "hub")]
fn hub_weights(id: &str) -> anyhow::Result<PathBuf> {
    clip_model::hub::fetch_weights(id, None).with_context(|| format!("fetching {id} from the hub"))
}

#[cfg(not(feature = "hub"))]
fn hub_weights(id: &str) -> anyhow::Result<PathBuf> {
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

    /// The zero-shot classifier for `names` × `templates`: per class, the mean of the L2-normalised text
    /// embeddings of every filled-in template, L2-normalised again. Read from `cache_dir` when a classifier
    /// for the same weights (`weights_sha256`), names and templates is there; written there otherwise.
    /// Returns the classifier and whether it came from the cache.
    pub fn classifier(
        &self,
        weights_sha256: &str,
        names: &[String],
        templates: &[String],
        cache_dir: &Path,
    ) -> anyhow::Result<(Classifier, bool)> {
        let dim = self.embed_dim();
        let key = cache_key(weights_sha256, names, templates);
        let file = cache_dir.join(format!("classifier-{}.npy", &key[..16]));
        // A missing, unreadable or mis-shaped cache file is rebuilt.
        if let Ok(a) = dev_support::Npy::read(&file)
            && a.shape == [names.len(), dim]
            && let Ok(data) = a.into_f32()
        {
            let c = Classifier {
                rows: names.len(),
                dim,
                data,
            };
            return Ok((c, true));
        }
        let tokenizer = Tokenizer::openai().context("loading the tokenizer")?;
        let ctx = self.clip.config().text.context_length;
        let per_call = (256 / templates.len()).max(1);
        let mut data = Vec::with_capacity(names.len() * dim);
        for group in names.chunks(per_call) {
            let prompts: Vec<String> = group
                .iter()
                .flat_map(|n| templates.iter().map(move |t| t.replace("{}", n)))
                .collect();
            let batch = tokenizer
                .encode_batch(&prompts, ctx, Truncation::Error)
                .context("tokenizing prompts")?;
            let emb = self
                .clip
                .encode_tokens(batch.ids(), prompts.len())
                .context("encoding prompts")?
                .to_vec2::<f32>()?;
            for class in emb.chunks(templates.len()) {
                let mut mean = vec![0.0f64; dim];
                for e in class {
                    let norm = e.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
                    for (m, &v) in mean.iter_mut().zip(e) {
                        *m += f64::from(v) / norm;
                    }
                }
                let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
                data.extend(mean.iter().map(|v| (v / norm) as f32));
            }
        }
        let c = Classifier {
            rows: names.len(),
            dim,
            data,
        };
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        let tmp = file.with_extension("npy.tmp");
        dev_support::Npy::f32(vec![c.rows, c.dim], c.data.clone())
            .write(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
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

fn cache_key(weights_sha256: &str, names: &[String], templates: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"clip-zero-shot-classifier v1\0");
    h.update(weights_sha256.as_bytes());
    for part in [names, templates] {
        h.update((part.len() as u64).to_le_bytes());
        for s in part {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
    report::hex(&h.finalize())
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
            &classifier.data,
            (classifier.rows, classifier.dim),
            model.clip.device(),
        )?
        .t()?
        .contiguous()?;
        Ok(Self {
            model,
            classifier_t: t,
            classes: classifier.rows,
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
