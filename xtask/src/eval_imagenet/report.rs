//! What `eval-imagenet` writes: `summary.json`, `predictions.jsonl`, `eval.log`, plus the weights hash and
//! the machine description that go into the summary.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// `summary.json`: the fields of [`clip_eval::Summary`] (so `clip_eval::Summary::read` and
/// `clip_eval::recompute_counts` work on it) plus what this command knows besides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Model name, weights hash, split, counts and accuracies, class names, templates, timing, machine,
    /// skipped images.
    #[serde(flatten)]
    pub base: clip_eval::Summary,
    /// The named preset the architecture matched, if any.
    pub model_preset: Option<String>,
    /// The model family, its score function (top-k ranks by cosine, which every score function
    /// orders the same way) and its image preprocessing.
    pub scoring: clip_eval::Scoring,
    /// The weights as given (`--weights`).
    pub weights: String,
    /// Input image size.
    pub image_size: usize,
    /// Embedding dimension.
    pub embed_dim: usize,
    /// The folder layout read (`official` or `wnid`).
    pub layout: String,
    /// The images folder.
    pub images: String,
    /// Images found by the scan (after `--limit`): `n` + skipped.
    pub found: usize,
    /// Number of images skipped (listed in `skipped`).
    pub n_skipped: usize,
    /// Images per model call.
    pub batch_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timings beyond [`clip_eval::Timing`].
    pub timing_detail: TimingDetail,
    /// The most frequent top-1 confusions (true class, predicted class, count).
    pub most_confused: Vec<clip_eval::ConfusedPair>,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
}

/// Timings beyond [`clip_eval::Timing`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimingDetail {
    /// Whether the classifier came from the cache.
    pub classifier_cached: bool,
    /// Wall-clock seconds of the image pipeline (decode + preprocess + model + ranking), all images.
    pub pipeline_s: f64,
    /// Decode + preprocess time per image (summed over the worker threads), in milliseconds.
    pub avg_ms_per_image_preprocess: f64,
    /// Images per second of model time alone.
    pub images_per_s_model: f64,
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

/// Describes this machine: CPU model from `/proc/cpuinfo`, logical cores, OS (pretty name when known), kernel
/// and architecture; `device` is where the model runs.
pub fn machine(device: String) -> clip_eval::report::Machine {
    let mut m = clip_eval::report::Machine::detect(device);
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
    m.os = os;
    m
}

/// Writes `value` as pretty JSON to `path` through a temporary file, so a reader never sees half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    // On failure the temporary file is removed.
    safe_file::write_atomic(path, &bytes)?;
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
    pub fn prediction(&mut self, p: &clip_eval::Prediction) -> anyhow::Result<()> {
        clip_eval::report::write_prediction(&mut self.predictions, p)?;
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
}
