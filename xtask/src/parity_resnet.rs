//! Full-size ModifiedResNet parity against open_clip (`cargo xtask parity --model rn50x64`).
//!
//! `tools/reference/resnet_parity.py full` builds a random open_clip ModifiedResNet of the named preset (with
//! non-trivial batch-norm statistics), saves it as safetensors with open_clip's names, embeds a few random
//! pre-normalised images and times PyTorch at batch 1. This module loads the same file memory-mapped through
//! `clip_model::resnet`, embeds the same images, and reports max abs difference, min cosine, time per image
//! for both, and this process's peak resident memory. Needs the reference venv
//! (`tools/reference/setup-venv.sh`); the generated files are cached under `target/parity/<model>/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clip_model::candle_core::{DType, Device};
use clip_model::resnet::{ModifiedResNet, ResNetConfig};

/// Options of the ResNet parity run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Preset name: rn50, rn101, rn50x4, rn50x16, rn50x64.
    pub model: String,
    /// Random images to embed.
    pub images: usize,
    /// Timed passes over the images (both sides).
    pub runs: usize,
    /// Rebuild the random model and reference even when cached.
    pub regenerate: bool,
    /// Python of the reference venv.
    pub python: Option<PathBuf>,
    /// Also run our tower in f64 on the first image, to tell f32 rounding (both sides) from real
    /// differences: prints each side's distance to the f64 result.
    pub f64_check: bool,
}

impl Options {
    /// Defaults for `cargo xtask parity --model <rn…>`: 2 images, 2 timed runs, f64 check on.
    pub fn for_model(model: &str, regenerate: bool, python: Option<PathBuf>) -> Self {
        Self {
            model: model.to_string(),
            images: 2,
            runs: 2,
            regenerate,
            python,
            f64_check: true,
        }
    }
}

/// Whether `model` names a ModifiedResNet preset this module handles.
pub fn handles(model: &str) -> bool {
    ResNetConfig::preset(model).is_some()
}

/// Cosine >= this passes, as in the tiny CI test.
const MIN_COSINE: f64 = 0.99999;
/// Max abs difference allowed per embedding element, relative to the largest |value| of the reference
/// embeddings (at least 1): the tiny CI test's 1e-4 on embeddings of magnitude ~1. Deep random towers
/// reach larger values, and f32 rounding grows with them (the f64 check shows PyTorch's share).
const MAX_REL: f32 = 1e-4;

/// Runs the comparison; fails when the embeddings disagree beyond the tolerances.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let key = opts.model.to_ascii_lowercase();
    let preset = ResNetConfig::preset(&key).with_context(|| {
        format!(
            "unknown ResNet preset `{}` (rn50, rn101, rn50x4, rn50x16, rn50x64)",
            opts.model
        )
    })?;
    let root = dev_support::workspace_root();
    let dir = root.join("target").join("parity").join(&key);
    let weights = dir.join("model.safetensors");
    let ready = [
        "model.safetensors",
        "input.npy",
        "expected.npy",
        "torch.json",
    ]
    .iter()
    .all(|f| dir.join(f).exists());
    if opts.regenerate || !ready {
        let python = crate::reference::python(opts.python.clone())?;
        eprintln!(
            "building the random {key} reference with {}",
            python.display()
        );
        let status = Command::new(&python)
            .arg(root.join("tools/reference/resnet_parity.py"))
            .args(["full", "--model", &key, "--out"])
            .arg(&dir)
            .args(["--images", &opts.images.to_string()])
            .args(["--runs", &opts.runs.to_string()])
            .status()
            .with_context(|| format!("running {}", python.display()))?;
        if !status.success() {
            bail!("reference script failed ({status})");
        }
    }

    let device = Device::Cpu;
    let input = dev_support::read_tensor(dir.join("input.npy"))?.to_device(&device)?;
    let expected = dev_support::read_tensor(dir.join("expected.npy"))?.to_device(&device)?;
    let torch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("torch.json"))?)?;

    let rss_before = peak_rss_kib();
    let t = Instant::now();
    // Loaded through the crate's memory-mapped safetensors reader; the mapping is released when
    // loading returns and only the batch-norm-fused weights remain.
    let model = ModifiedResNet::from_file(&weights, DType::F32, &device)?;
    model.config().check_against(&key, &preset)?;
    let load_s = t.elapsed().as_secs_f64();
    let rss_loaded = peak_rss_kib();

    let n = input.dim(0)?;
    let mut ours = Vec::new();
    let mut times = Vec::new();
    // Warm-up, as on the PyTorch side.
    model.encode(&input.narrow(0, 0, 1)?)?;
    for run in 0..opts.runs.max(1) {
        for i in 0..n {
            let x = input.narrow(0, i, 1)?;
            let t = Instant::now();
            let y = model.encode(&x)?;
            let y = y.to_vec2::<f32>()?; // forces the computation
            times.push(t.elapsed().as_secs_f64());
            if run == 0 {
                ours.push(y.into_iter().next().context("empty output")?);
            }
        }
    }
    let want = expected.to_vec2::<f32>()?;
    let (max_abs, min_cos) = compare(&ours, &want);
    let rss_f32 = peak_rss_kib();
    drop(model);
    // PyTorch again, right after ours, on the saved model: this machine's speed drifts, so the
    // comparison is made from runs next to each other.
    let python = crate::reference::python(opts.python.clone())?;
    let again = Command::new(&python)
        .arg(root.join("tools/reference/resnet_parity.py"))
        .args(["time", "--model", &key, "--out"])
        .arg(&dir)
        .args(["--runs", &opts.runs.max(1).to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let torch_after: Vec<f64> = if again.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&again.stdout)?;
        seconds(&v)
    } else {
        bail!(
            "timing PyTorch failed: {}",
            String::from_utf8_lossy(&again.stderr)
        );
    };
    if opts.f64_check {
        let model64 = ModifiedResNet::from_file(&weights, DType::F64, &device)?;
        let y = model64
            .encode(&input.narrow(0, 0, 1)?)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        let (a, c) = compare(&ours[..1], &y);
        println!("  image 0, ours f32 vs ours f64: max abs {a:.3e}, cosine {c:.9}");
        let (a, c) = compare(&want[..1], &y);
        println!("  image 0, PyTorch f32 vs ours f64: max abs {a:.3e}, cosine {c:.9}");
    }
    let torch_before = seconds(&torch);
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{key}: {} px, layers {:?}, width {}, out {}, heads {}",
        preset.image_size, preset.layers, preset.width, preset.output_dim, preset.heads
    );
    println!("  images {n}, runs {}", opts.runs.max(1));
    println!("  max abs diff {max_abs:.3e}   min cosine {min_cos:.9}");
    println!("  max |embedding| {:.3}", max_abs_value(&want));
    println!(
        "  ours (candle, {threads} threads): median {:.3} s/img, min {:.3}  all {:?}",
        median(&times),
        minimum(&times),
        rounded(&times)
    );
    println!(
        "  PyTorch {} ({} threads), before ours: median {:.3} s/img, min {:.3}  all {:?}",
        torch["torch"].as_str().unwrap_or("?"),
        torch["threads"],
        median(&torch_before),
        minimum(&torch_before),
        rounded(&torch_before)
    );
    println!(
        "  PyTorch, after ours: median {:.3} s/img, min {:.3}  all {:?}",
        median(&torch_after),
        minimum(&torch_after),
        rounded(&torch_after)
    );
    println!(
        "  load {load_s:.2} s; peak RSS (VmHWM): {} MiB before load, {} MiB after load, {} MiB after \
         the f32 runs (the f64 check, if any, comes later)",
        rss_before / 1024,
        rss_loaded / 1024,
        rss_f32 / 1024
    );
    let max_abs_allowed = MAX_REL * max_abs_value(&want).max(1.0);
    if min_cos < MIN_COSINE || max_abs > max_abs_allowed {
        bail!("parity failed: need cosine >= {MIN_COSINE} and max abs <= {max_abs_allowed:.3e}");
    }
    println!("  ok: cosine >= {MIN_COSINE}, max abs <= {max_abs_allowed:.3e}");
    Ok(())
}

fn seconds(v: &serde_json::Value) -> Vec<f64> {
    v["seconds_per_image"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

fn compare(got: &[Vec<f32>], want: &[Vec<f32>]) -> (f32, f64) {
    let dim = want.first().map_or(1, Vec::len);
    // NaN anywhere, or a different number of rows, gives NaN, which fails every bar.
    match dev_support::agreement(&got.concat(), &want.concat(), dim) {
        Ok(a) if got.len() == want.len() => (a.max_abs_diff as f32, a.min_cosine),
        _ => (f32::NAN, f64::NAN),
    }
}

fn max_abs_value(v: &[Vec<f32>]) -> f32 {
    v.iter().flatten().fold(0f32, |m, x| m.max(x.abs()))
}

/// The fastest run: on a shared machine the least disturbed one.
fn minimum(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect()
}

/// Peak resident set size of this process in KiB (`VmHWM`), 0 where `/proc` is unavailable.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
