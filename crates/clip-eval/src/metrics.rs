//! Classification metrics accumulated while predictions stream in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::topk::{check_matrix, top_k_into};

/// A (true class, predicted class) pair and how often the top-1 prediction made that mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusedPair {
    /// The true class.
    pub target: usize,
    /// The class predicted instead (top-1).
    pub predicted: usize,
    /// Number of images.
    pub count: u64,
}

/// Streams predictions and reports top-k accuracy, per-class accuracy, mean per-class recall
/// and the most confused pairs.
///
/// Feed it either ranked class lists ([`add_ranked`](Self::add_ranked), best first) or raw
/// score rows ([`add_scores`](Self::add_scores), ranked with [`top_k`](crate::top_k)). The
/// accuracy for `k` counts an image as correct when its target is among its first `k` ranked
/// classes; `k` must be at most [`max_k`](Self::max_k).
///
/// ```
/// use clip_eval::Accumulator;
/// let mut acc = Accumulator::new(3, 2);
/// acc.add_ranked(0, &[0, 1])?;
/// acc.add_ranked(1, &[2, 1])?;
/// assert_eq!(acc.top_k_accuracy(1), Some(0.5));
/// assert_eq!(acc.top_k_accuracy(2), Some(1.0));
/// # Ok::<(), clip_eval::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    n_classes: usize,
    max_k: usize,
    n: u64,
    /// `correct_at[j]`: images whose target has rank `j` (0 = top-1).
    correct_at: Vec<u64>,
    /// Per class: number of images.
    per_class_n: Vec<u64>,
    /// Per class: `per_class_at[c * max_k + j]` images of class `c` with target rank `j`.
    per_class_at: Vec<u64>,
    confusions: BTreeMap<(usize, usize), u64>,
    buf: Vec<usize>,
}

impl Accumulator {
    /// An empty accumulator for `n_classes` classes that can report top-k for `k <= max_k`.
    pub fn new(n_classes: usize, max_k: usize) -> Self {
        let max_k = max_k.max(1);
        Accumulator {
            n_classes,
            max_k,
            n: 0,
            correct_at: vec![0; max_k],
            per_class_n: vec![0; n_classes],
            per_class_at: vec![0; n_classes.saturating_mul(max_k)],
            confusions: BTreeMap::new(),
            buf: Vec::new(),
        }
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The largest `k` this accumulator tracks.
    pub fn max_k(&self) -> usize {
        self.max_k
    }

    /// Number of images added.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether no image was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Adds one image: its true class and its ranked predictions, best first (only the first
    /// `max_k` are looked at; an empty list counts as wrong everywhere).
    pub fn add_ranked(&mut self, target: usize, ranked: &[usize]) -> Result<()> {
        if target >= self.n_classes {
            return Err(Error::ClassIndex {
                what: "target",
                index: target,
                n_classes: self.n_classes,
            });
        }
        let ranked = &ranked[..ranked.len().min(self.max_k)];
        if let Some(&bad) = ranked.iter().find(|&&p| p >= self.n_classes) {
            return Err(Error::ClassIndex {
                what: "prediction",
                index: bad,
                n_classes: self.n_classes,
            });
        }
        self.n += 1;
        self.per_class_n[target] += 1;
        if let Some(rank) = ranked.iter().position(|&p| p == target) {
            self.correct_at[rank] += 1;
            self.per_class_at[target * self.max_k + rank] += 1;
        }
        if let Some(&top1) = ranked.first()
            && top1 != target
        {
            *self.confusions.entry((target, top1)).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Adds one image from its score row (`n_classes` scores, higher = more likely).
    pub fn add_scores(&mut self, target: usize, scores: &[f32]) -> Result<()> {
        if scores.len() != self.n_classes {
            return Err(Error::Shape {
                what: "score row",
                expected: format!("{} scores", self.n_classes),
                found: format!("{}", scores.len()),
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        top_k_into(scores, self.max_k, &mut buf);
        let r = self.add_ranked(target, &buf);
        self.buf = buf;
        r
    }

    /// Adds a batch: a row-major `targets.len() × n_classes` score matrix.
    pub fn add_score_batch(&mut self, targets: &[usize], scores: &[f32]) -> Result<()> {
        check_matrix(scores, self.n_classes)?;
        if scores.len() != targets.len().saturating_mul(self.n_classes) {
            return Err(Error::Shape {
                what: "score matrix",
                expected: format!("{} x {} values", targets.len(), self.n_classes),
                found: format!("{} values", scores.len()),
            });
        }
        for (&t, row) in targets
            .iter()
            .zip(scores.chunks_exact(self.n_classes.max(1)))
        {
            self.add_scores(t, row)?;
        }
        Ok(())
    }

    /// Images whose target is among the first `k` predictions (`None` if `k > max_k`).
    pub fn correct_top_k(&self, k: usize) -> Option<u64> {
        (k <= self.max_k).then(|| self.correct_at[..k].iter().sum())
    }

    /// Top-k accuracy in `[0, 1]` (`None` if `k > max_k` or nothing was added).
    pub fn top_k_accuracy(&self, k: usize) -> Option<f64> {
        let c = self.correct_top_k(k)?;
        (self.n > 0).then(|| c as f64 / self.n as f64)
    }

    /// Number of images per class.
    pub fn class_counts(&self) -> &[u64] {
        &self.per_class_n
    }

    /// Per-class top-k accuracy (the class's recall at k); `None` for classes without images,
    /// and an empty list if `k > max_k`.
    pub fn per_class_accuracy(&self, k: usize) -> Vec<Option<f64>> {
        if k > self.max_k {
            return Vec::new();
        }
        (0..self.n_classes)
            .map(|c| {
                let n = self.per_class_n[c];
                let row = &self.per_class_at[c * self.max_k..c * self.max_k + k];
                (n > 0).then(|| row.iter().sum::<u64>() as f64 / n as f64)
            })
            .collect()
    }

    /// Mean over the classes that have images of their top-1 recall (balanced accuracy).
    pub fn mean_per_class_recall(&self) -> Option<f64> {
        let per = self.per_class_accuracy(1);
        let present: Vec<f64> = per.into_iter().flatten().collect();
        (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
    }

    /// The `n` most frequent top-1 mistakes, most frequent first; ties by (target, predicted).
    pub fn most_confused(&self, n: usize) -> Vec<ConfusedPair> {
        let mut pairs: Vec<ConfusedPair> = self
            .confusions
            .iter()
            .map(|(&(target, predicted), &count)| ConfusedPair {
                target,
                predicted,
                count,
            })
            .collect();
        pairs.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.target.cmp(&b.target))
                .then(a.predicted.cmp(&b.predicted))
        });
        pairs.truncate(n);
        pairs
    }

    /// Merges another accumulator of the same shape (e.g. from another worker).
    pub fn merge(&mut self, other: &Accumulator) -> Result<()> {
        if other.n_classes != self.n_classes || other.max_k != self.max_k {
            return Err(Error::Shape {
                what: "accumulator",
                expected: format!("{} classes, max k {}", self.n_classes, self.max_k),
                found: format!("{} classes, max k {}", other.n_classes, other.max_k),
            });
        }
        self.n += other.n;
        for (a, b) in self.correct_at.iter_mut().zip(&other.correct_at) {
            *a += b;
        }
        for (a, b) in self.per_class_n.iter_mut().zip(&other.per_class_n) {
            *a += b;
        }
        for (a, b) in self.per_class_at.iter_mut().zip(&other.per_class_at) {
            *a += b;
        }
        for (&k, &v) in &other.confusions {
            *self.confusions.entry(k).or_insert(0) += v;
        }
        Ok(())
    }
}
