//! Zero-shot classifiers: building one from class names × templates with any text encoder,
//! and scoring image embeddings against it.

use crate::error::{Error, Result, check_finite};
use crate::prompts::Templates;
use crate::topk::{check_matrix, top_k};

/// CLIP's learned logit scale after training (`exp(4.6052) = 100`).
pub const DEFAULT_LOGIT_SCALE: f32 = 100.0;

/// A zero-shot classifier: one unit-norm text embedding per class, row-major `classes × dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    dim: usize,
    classes: Vec<String>,
    weights: Vec<f32>,
}

impl Classifier {
    /// A classifier from its parts; `weights` must hold `classes.len() × dim` finite values.
    pub fn new(dim: usize, classes: Vec<String>, weights: Vec<f32>) -> Result<Self> {
        let expected = classes.len().checked_mul(dim);
        if dim == 0 || classes.is_empty() || expected != Some(weights.len()) {
            return Err(Error::Shape {
                what: "classifier weights",
                expected: format!("{} classes x {dim} (both non-zero)", classes.len()),
                found: format!("{} values", weights.len()),
            });
        }
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            return Err(Error::Shape {
                what: "classifier weights",
                expected: "finite values".into(),
                found: format!("{} at class {}", weights[i], i / dim),
            });
        }
        Ok(Classifier {
            dim,
            classes,
            weights,
        })
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// The class names (index = class index).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The weights, row-major `n_classes × dim`.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// The unit-norm text embedding of class `c`.
    pub fn row(&self, c: usize) -> Option<&[f32]> {
        self.weights.get(c * self.dim..(c + 1) * self.dim)
    }

    /// Cosine similarities of image embeddings (row-major `n × dim`, normalised here) to every
    /// class: row-major `n × n_classes`. A zero embedding scores 0 everywhere; an embedding
    /// holding NaN or an infinity is [`Error::NonFinite`] naming its row.
    pub fn cosine_scores(&self, embeddings: &[f32]) -> Result<Vec<f32>> {
        check_matrix(embeddings, self.dim).map_err(|_| Error::Shape {
            what: "image embeddings",
            expected: format!("rows of {} values", self.dim),
            found: format!("{} values", embeddings.len()),
        })?;
        let dim = self.dim;
        check_finite(embeddings, |i| format!("image embedding #{}", i / dim))?;
        let n = embeddings.len() / self.dim;
        let mut out = Vec::with_capacity(n * self.n_classes());
        let mut unit = vec![0f32; self.dim];
        for row in embeddings.chunks_exact(self.dim) {
            unit.copy_from_slice(row);
            l2_normalize(&mut unit);
            for w in self.weights.chunks_exact(self.dim) {
                out.push(dot(&unit, w));
            }
        }
        Ok(out)
    }

    /// The `k` best classes of each image with their cosine scores, best first (ties: lower
    /// class index; see [`top_k`]).
    pub fn top_k_cosine(
        &self,
        embeddings: &[f32],
        k: usize,
    ) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let scores = self.cosine_scores(embeddings)?;
        crate::topk::top_k_batch_with_scores(&scores, self.n_classes(), k)
    }

    /// Class probabilities under `score`: a softmax over the labels or a sigmoid per pair, row-major
    /// `n × n_classes`. A non-finite scale or bias is [`Error::NonFinite`].
    pub fn probabilities_with(
        &self,
        embeddings: &[f32],
        score: &crate::ScoreFunction,
    ) -> Result<Vec<f32>> {
        let (scale, bias) = match *score {
            crate::ScoreFunction::Softmax { scale } => (scale, 0.0),
            crate::ScoreFunction::Sigmoid { scale, bias } => (scale, bias),
        };
        check_finite(&[scale], |_| "logit scale".into())?;
        check_finite(&[bias], |_| "logit bias".into())?;
        let mut s = self.cosine_scores(embeddings)?;
        for row in s.chunks_exact_mut(self.n_classes()) {
            score.probabilities_in_place(row);
        }
        let n = self.n_classes();
        check_finite(&s, |i| format!("probabilities of image #{}", i / n))?;
        Ok(s)
    }

    /// Class probabilities: softmax over `logit_scale × cosine` per image, row-major
    /// `n × n_classes`. A non-finite scale is [`Error::NonFinite`].
    pub fn probabilities(&self, embeddings: &[f32], logit_scale: f32) -> Result<Vec<f32>> {
        self.probabilities_with(
            embeddings,
            &crate::ScoreFunction::Softmax { scale: logit_scale },
        )
    }
}

/// Dot product (eight independent partial sums so the compiler can vectorise it).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Scales `v` to unit L2 norm (a zero vector stays zero); returns the original norm.
pub fn l2_normalize(v: &mut [f32]) -> f32 {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    norm as f32
}

/// Numerically stable softmax in place (subtracts the maximum first).
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let mut sum = 0f64;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    for v in row.iter_mut() {
        *v = (f64::from(*v) / sum) as f32;
    }
}

/// Builds a zero-shot classifier (OpenAI's recipe): for each class, embed every template filled
/// with its name, L2-normalise each embedding, average them, normalise the mean.
///
/// `encode` turns a batch of prompts into one embedding each; it is called with at most
/// `batch_size` prompts at a time (prompts of several classes may share a call). Its error type
/// `E` must accept this crate's errors (`anyhow::Error` and [`Error`] itself do), which report a
/// wrong number of embeddings, inconsistent dimensions, non-finite values or a zero embedding.
///
/// ```
/// use clip_eval::{build_classifier, Templates};
/// let names = vec!["cat".to_string(), "dog".to_string()];
/// let t = Templates::new("mine", vec!["a {}".into(), "the {}".into()])?;
/// // A toy encoder: 2-d embedding from the prompt's first letters.
/// let clf = build_classifier(&names, &t, 16, |prompts| {
///     Ok::<_, clip_eval::Error>(prompts.iter().map(|p| if p.ends_with("cat") { vec![1.0, 0.0] } else { vec![0.0, 2.0] }).collect())
/// })?;
/// assert_eq!(clf.row(1), Some(&[0.0, 1.0][..]));
/// # Ok::<(), clip_eval::Error>(())
/// ```
pub fn build_classifier<E, F>(
    names: &[String],
    templates: &Templates,
    batch_size: usize,
    mut encode: F,
) -> Result<Classifier, E>
where
    F: FnMut(&[String]) -> Result<Vec<Vec<f32>>, E>,
    E: From<Error>,
{
    if names.is_empty() {
        return Err(Error::ClassNames("the list is empty".into()).into());
    }
    let n_t = templates.len();
    if n_t == 0 {
        return Err(Error::Templates("the list is empty".into()).into());
    }
    let batch_size = batch_size.max(1);
    let total = names.len().saturating_mul(n_t);
    let mut dim: Option<usize> = None;
    let mut sums: Vec<f64> = Vec::new();
    let mut weights: Vec<f32> = Vec::new();
    let mut start = 0usize;
    while start < total {
        let end = (start + batch_size).min(total);
        let prompts: Vec<String> = (start..end)
            .map(|p| templates.templates[p % n_t].replace("{}", &names[p / n_t]))
            .collect();
        let embs = encode(&prompts)?;
        if embs.len() != prompts.len() {
            return Err(Error::Encoder(format!(
                "{} embeddings for {} prompts",
                embs.len(),
                prompts.len()
            ))
            .into());
        }
        for (offset, e) in embs.iter().enumerate() {
            let p = start + offset;
            let d = *dim.get_or_insert(e.len());
            if e.len() != d || d == 0 {
                return Err(Error::Encoder(format!(
                    "embedding of {:?} has {} values, expected {d} (non-zero)",
                    prompts[offset],
                    e.len()
                ))
                .into());
            }
            if sums.is_empty() {
                sums = vec![0.0; d];
                weights.reserve(names.len().saturating_mul(d));
            }
            let norm = e
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(Error::Encoder(format!(
                    "embedding of {:?} has norm {norm}",
                    prompts[offset]
                ))
                .into());
            }
            for (s, &x) in sums.iter_mut().zip(e) {
                *s += f64::from(x) / norm;
            }
            if p % n_t == n_t - 1 {
                // Last template of this class: mean, normalise, emit.
                let mean_norm = sums.iter().map(|s| s * s).sum::<f64>().sqrt();
                if mean_norm == 0.0 {
                    return Err(Error::Encoder(format!(
                        "the template embeddings of class {:?} cancel out",
                        names[p / n_t]
                    ))
                    .into());
                }
                weights.extend(sums.iter().map(|s| (s / mean_norm) as f32));
                sums.iter_mut().for_each(|s| *s = 0.0);
            }
        }
        start = end;
    }
    Ok(Classifier::new(dim.unwrap_or(0), names.to_vec(), weights)?)
}

/// Zero-shot classification of single images against any list of labels (for demos).
///
/// ```
/// use clip_eval::{Templates, ZeroShot};
/// let labels = vec!["red".to_string(), "blue".to_string()];
/// let zs = ZeroShot::new(&labels, &Templates::single(), |prompts| {
///     Ok::<_, clip_eval::Error>(prompts.iter().map(|p| if p.contains("red") { vec![1.0, 0.0] } else { vec![0.0, 1.0] }).collect())
/// })?;
/// let ranked = zs.classify(&[0.9, 0.1])?;
/// assert_eq!(ranked[0].0, "red");
/// assert!(ranked[0].1 > 0.99);
/// # Ok::<(), clip_eval::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShot {
    classifier: Classifier,
    score: crate::ScoreFunction,
}

impl ZeroShot {
    /// Builds the classifier for `labels` with `templates` (see [`build_classifier`]), with
    /// CLIP's logit scale of 100.
    pub fn new<E, F>(labels: &[String], templates: &Templates, encode: F) -> Result<Self, E>
    where
        F: FnMut(&[String]) -> Result<Vec<Vec<f32>>, E>,
        E: From<Error>,
    {
        let classifier = build_classifier(labels, templates, 256, encode)?;
        Ok(ZeroShot {
            classifier,
            score: crate::ScoreFunction::Softmax {
                scale: DEFAULT_LOGIT_SCALE,
            },
        })
    }

    /// Wraps an existing classifier.
    pub fn from_classifier(classifier: Classifier) -> Self {
        ZeroShot {
            classifier,
            score: crate::ScoreFunction::Softmax {
                scale: DEFAULT_LOGIT_SCALE,
            },
        }
    }

    /// Uses another logit scale (a model's `logit_scale.exp()`), with a softmax over labels.
    pub fn with_logit_scale(mut self, logit_scale: f32) -> Self {
        self.score = crate::ScoreFunction::Softmax { scale: logit_scale };
        self
    }

    /// Uses a model's score function: softmax over labels (CLIP) or sigmoid per pair (SigLIP).
    pub fn with_score_function(mut self, score: crate::ScoreFunction) -> Self {
        self.score = score;
        self
    }

    /// The score function [`ZeroShot::classify`] uses.
    pub fn score_function(&self) -> crate::ScoreFunction {
        self.score
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// All labels with their probabilities under the score function, most likely first (ties:
    /// label order).
    pub fn classify(&self, image_embedding: &[f32]) -> Result<Vec<(String, f32)>> {
        if image_embedding.len() != self.classifier.dim() {
            return Err(Error::Shape {
                what: "image embedding",
                expected: format!("{} values", self.classifier.dim()),
                found: format!("{}", image_embedding.len()),
            });
        }
        let p = self
            .classifier
            .probabilities_with(image_embedding, &self.score)?;
        Ok(top_k(&p, p.len())
            .into_iter()
            .map(|i| (self.classifier.classes()[i].clone(), p[i]))
            .collect())
    }
}
