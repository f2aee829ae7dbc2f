//! What `eval-imagenet` writes: `summary.json`, `predictions.jsonl`, `eval.log`, plus the weights hash and
//! the machine description that go into the summary.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// One line of `predictions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The image, relative to the images folder.
    pub image: String,
    /// The true class index (sorted-wnid order).
    pub target: usize,
    /// The five most likely class indices, best first.
    pub top5: Vec<usize>,
    /// Their cosine similarities to the image (before the logit scale), same order.
    pub scores: Vec<f32>,
}

/// An image that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The image, relative to the images folder.
    pub image: String,
    /// Why (the decoder's or preprocessor's message).
    pub error: String,
}

/// The model part of the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Architecture name (preset when it matches one, e.g. `ViT-B/32`).
    pub name: String,
    /// The named preset the architecture matched, if any.
    pub preset: Option<String>,
    /// The weights file as given.
    pub weights: String,
    /// SHA-256 of the weights file, lower-case hex.
    pub weights_sha256: String,
    /// Input image size.
    pub image_size: usize,
    /// Embedding dimension.
    pub embed_dim: usize,
    /// Device the model ran on.
    pub device: String,
}

/// Timings of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// Seconds to load the model.
    pub load_s: f64,
    /// Seconds to build (or read from the cache) the zero-shot classifier.
    pub classifier_s: f64,
    /// Whether the classifier came from the cache.
    pub classifier_cached: bool,
    /// Wall-clock seconds of the image pipeline (decode + preprocess + model + top-k), all images.
    pub pipeline_s: f64,
    /// `pipeline_s` per evaluated image, in milliseconds.
    pub avg_ms_per_image_end_to_end: f64,
    /// Model time (image encoder + classifier product) per evaluated image, in milliseconds.
    pub avg_ms_per_image_model: f64,
    /// Decode + preprocess CPU time per image (summed over worker threads), in milliseconds.
    pub avg_ms_per_image_preprocess: f64,
    /// Evaluated images per second of pipeline wall-clock time.
    pub images_per_s: f64,
    /// Images per second of model time alone.
    pub images_per_s_model: f64,
}

/// The machine the run used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name from `/proc/cpuinfo` (or "unknown").
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Worker threads used for the model and the preprocessing.
    pub threads: usize,
    /// Operating system (pretty name when known), kernel and architecture.
    pub os: String,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The model.
    pub model: ModelInfo,
    /// Split name (`val` for the official layout).
    pub split: String,
    /// The folder layout read (`official` or `wnid`).
    pub layout: String,
    /// The images folder.
    pub images: String,
    /// Images found by the scan (after `--limit`).
    pub found: usize,
    /// Images evaluated (`found - skipped`).
    pub n: usize,
    /// Top-1 correct count.
    pub correct_top1: usize,
    /// Top-5 correct count.
    pub correct_top5: usize,
    /// `correct_top1 / n` (0 when n = 0).
    pub top1_accuracy: f64,
    /// `correct_top5 / n`.
    pub top5_accuracy: f64,
    /// Mean over classes present of per-class top-1 recall.
    pub mean_per_class_recall: f64,
    /// Class-name set (`openai` or `devkit`).
    pub classnames: String,
    /// Template set (`openai80`, `single`, or the file given).
    pub templates: String,
    /// Number of templates.
    pub templates_count: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Timings.
    pub timing: Timing,
    /// The machine.
    pub machine: Machine,
    /// Number of images skipped.
    pub skipped: usize,
    /// The skipped images and why.
    pub skipped_images: Vec<Skipped>,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
}

/// SHA-256 of a file, read in 1 MiB chunks, as lower-case hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("opening {} to hash it", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Describes this machine from `/proc` and `/etc/os-release` where they exist.
pub fn machine(threads: usize) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    let mut os = pretty.unwrap_or_else(|| std::env::consts::OS.to_string());
    if let Some(k) = kernel {
        os.push_str(&format!(", kernel {k}"));
    }
    os.push_str(&format!(", {}", std::env::consts::ARCH));
    Machine {
        cpu,
        cores,
        threads,
        os,
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file, so a reader never sees half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The two streamed outputs: `predictions.jsonl` and `eval.log`.
pub struct Writers {
    predictions: BufWriter<std::fs::File>,
    log: BufWriter<std::fs::File>,
}

impl Writers {
    /// Creates (truncates) both files in `out`.
    pub fn create(out: &Path) -> anyhow::Result<Self> {
        let open = |name: &str| -> anyhow::Result<BufWriter<std::fs::File>> {
            let p = out.join(name);
            Ok(BufWriter::new(
                std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?,
            ))
        };
        Ok(Self {
            predictions: open("predictions.jsonl")?,
            log: open("eval.log")?,
        })
    }

    /// Appends one prediction line.
    pub fn prediction(&mut self, p: &Prediction) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.predictions, p)?;
        self.predictions.write_all(b"\n")?;
        Ok(())
    }

    /// Appends one line to the human log.
    pub fn log(&mut self, line: &str) -> anyhow::Result<()> {
        self.log.write_all(line.as_bytes())?;
        self.log.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes both files.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.predictions.flush()?;
        self.log.flush()?;
        Ok(())
    }
}

/// Mean over the classes that have images of their top-1 recall.
pub fn mean_per_class_recall(predictions: &[Prediction], classes: usize) -> f64 {
    let mut seen = vec![0usize; classes];
    let mut hit = vec![0usize; classes];
    for p in predictions {
        if p.target < classes {
            seen[p.target] += 1;
            if p.top5.first() == Some(&p.target) {
                hit[p.target] += 1;
            }
        }
    }
    let (sum, count) = seen
        .iter()
        .zip(&hit)
        .filter(|(s, _)| **s > 0)
        .fold((0.0, 0usize), |(sum, c), (s, h)| {
            (sum + *h as f64 / *s as f64, c + 1)
        });
    if count == 0 { 0.0 } else { sum / count as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Larger than one read chunk: same as hashing in one go.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &big).unwrap();
        assert_eq!(sha256_file(&p).unwrap(), hex(&sha2::Sha256::digest(&big)));
        assert!(sha256_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn per_class_recall() {
        let p = |t, top| Prediction {
            image: String::new(),
            target: t,
            top5: vec![top],
            scores: vec![0.0],
        };
        // Class 0: 1 of 2 right; class 1: 1 of 1 right → (0.5 + 1) / 2.
        let preds = [p(0, 0), p(0, 1), p(1, 1)];
        assert!((mean_per_class_recall(&preds, 3) - 0.75).abs() < 1e-12);
        assert_eq!(mean_per_class_recall(&[], 3), 0.0);
    }
}
