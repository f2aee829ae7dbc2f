//! Evaluation records: `predictions.jsonl` lines, `summary.json`, and recomputing the summary's
//! metrics from the predictions.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};
use crate::metrics::Accumulator;

/// One line of `predictions.jsonl`:
/// `{"image": "ILSVRC2012_val_00000001.JPEG", "target": 65, "top5": [65, 58, …], "scores": [0.31, …]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The image, relative to the images folder.
    pub image: String,
    /// The true class index.
    pub target: usize,
    /// The most likely class indices, best first (five, or fewer with fewer classes).
    pub top5: Vec<usize>,
    /// Their scores (as the evaluator defines them, e.g. cosine similarity), same order.
    pub scores: Vec<f32>,
}

impl Prediction {
    /// Whether the top-1 prediction is the target.
    pub fn correct_top1(&self) -> bool {
        self.top5.first() == Some(&self.target)
    }

    /// Whether the target is among the first five predictions.
    pub fn correct_top5(&self) -> bool {
        self.top5.iter().take(5).any(|&c| c == self.target)
    }
}

/// Writes one prediction as a JSON line.
pub fn write_prediction(w: &mut impl Write, p: &Prediction) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, p)?;
    w.write_all(b"\n")
}

/// Reads a `predictions.jsonl` file (blank lines are ignored); errors name the line.
pub fn read_predictions(path: impl AsRef<Path>) -> Result<Vec<Prediction>> {
    let path = path.as_ref();
    let (f, _) = safe_file::open(path, u64::MAX)?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let p: Prediction = serde_json::from_str(&line).map_err(|e| Error::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if p.top5.len() != p.scores.len() {
            return Err(Error::JsonLine {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("{} class ids but {} scores", p.top5.len(), p.scores.len()),
            });
        }
        out.push(p);
    }
    Ok(out)
}

/// `numerator / denominator`, 0 for an empty set: the one formula every accuracy here uses.
pub fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Counts and accuracies: the part of a summary that can be recomputed from predictions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Images evaluated.
    pub n: u64,
    /// Images whose top-1 prediction is right.
    pub correct_top1: u64,
    /// Images whose target is among the top five.
    pub correct_top5: u64,
    /// `correct_top1 / n`.
    pub top1_accuracy: f64,
    /// `correct_top5 / n`.
    pub top5_accuracy: f64,
}

impl Counts {
    /// From raw counts.
    pub fn new(n: u64, correct_top1: u64, correct_top5: u64) -> Self {
        Counts {
            n,
            correct_top1,
            correct_top5,
            top1_accuracy: ratio(correct_top1, n),
            top5_accuracy: ratio(correct_top5, n),
        }
    }

    /// From predictions.
    pub fn from_predictions(predictions: &[Prediction]) -> Self {
        let c1 = predictions.iter().filter(|p| p.correct_top1()).count() as u64;
        let c5 = predictions.iter().filter(|p| p.correct_top5()).count() as u64;
        Counts::new(predictions.len() as u64, c1, c5)
    }

    /// From an accumulator tracking at least top-5 (top-5 counts as top-`max_k` otherwise).
    pub fn from_accumulator(acc: &Accumulator) -> Self {
        let k5 = acc.max_k().min(5);
        Counts::new(
            acc.len(),
            acc.correct_top_k(1).unwrap_or(0),
            acc.correct_top_k(k5).unwrap_or(0),
        )
    }
}

/// Reads `predictions.jsonl` and recomputes the counts (compare with [`Summary::counts`]).
pub fn recompute_counts(path: impl AsRef<Path>) -> Result<Counts> {
    Ok(Counts::from_predictions(&read_predictions(path)?))
}

/// Rebuilds a metrics accumulator (per-class accuracy, confusions) from predictions.
pub fn accumulator_from_predictions(
    predictions: &[Prediction],
    n_classes: usize,
) -> Result<Accumulator> {
    let mut acc = Accumulator::new(n_classes, 5);
    for p in predictions {
        acc.add_ranked(p.target, &p.top5)?;
    }
    Ok(acc)
}

/// An image that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The image, relative to the images folder.
    pub image: String,
    /// Why.
    pub error: String,
}

/// Timings of a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timing {
    /// Wall-clock seconds of the whole run.
    pub total_s: f64,
    /// Seconds to load the model.
    pub load_s: f64,
    /// Seconds to build or read the zero-shot classifier.
    pub classifier_s: f64,
    /// Average milliseconds per image, end to end (decode + preprocess + model + ranking).
    pub avg_ms_per_image_end_to_end: f64,
    /// Average milliseconds per image in the model alone.
    pub avg_ms_per_image_model: f64,
    /// Images per second, end to end.
    pub images_per_s: f64,
}

/// The machine a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`), or `unknown`.
    pub cpu: String,
    /// Logical cores available to the process.
    pub logical_cores: usize,
    /// Operating system and architecture.
    pub os: String,
    /// Where the model ran (`cpu`, `cuda:0`, …).
    pub device: String,
}

impl Machine {
    /// Describes this machine; `device` is where the model runs.
    pub fn detect(device: impl Into<String>) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            device: device.into(),
        }
    }
}

/// `summary.json` of an evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model name (e.g. `ViT-B/32`).
    pub model: String,
    /// SHA-256 of the weights file, lower-case hex.
    pub weights_sha256: String,
    /// The split evaluated (e.g. `val`).
    pub split: String,
    /// Counts and accuracies (flattened into the summary's top level).
    #[serde(flatten)]
    pub counts: Counts,
    /// Mean per-class top-1 recall, when computed.
    pub mean_per_class_recall: Option<f64>,
    /// The class-name set (`openai`, `devkit`, …).
    pub class_names: String,
    /// The template set (`openai80`, `single`, or a file).
    pub templates: String,
    /// Number of templates.
    pub n_templates: usize,
    /// Timings.
    pub timing: Timing,
    /// The machine.
    pub machine: Machine,
    /// Images that could not be evaluated.
    pub skipped: Vec<Skipped>,
}

impl Summary {
    /// Writes pretty-printed JSON.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(io_err(path))
    }

    /// Reads a summary.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = safe_file::read_to_string(path, 64 << 20)?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}
