//! Full-size parity against open_clip: `cargo xtask parity --model vit-b-32`.
//!
//! `tools/reference/model_parity.py full` builds a random open_clip model of the named preset
//! (every parameter random, biases and norms included), saves it as `open_clip_model.safetensors`
//! with no config file, and embeds 4 random pre-normalised images and 5 token rows of different
//! lengths. This command loads the file through `clip_model` (architecture inferred from the
//! tensors, checked against the preset), embeds the same inputs and prints max |diff| and min
//! cosine per tower. Needs the reference venv; files are cached under `target/parity/<model>/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clip_model::candle_core::{Device, Tensor};
use clip_model::{ClipModel, LoadOptions};
use dev_support::Npy;

/// Arguments of `cargo xtask parity`.
#[derive(clap::Args)]
pub struct Args {
    /// Preset: vit-b-32, vit-b-16, vit-l-14.
    #[arg(long, default_value = "vit-b-32")]
    pub model: String,
    /// Rebuild the random model and references even when cached.
    #[arg(long)]
    pub regenerate: bool,
    /// Python of the reference venv (default: $CLIP_REF_VENV/bin/python or
    /// ~/.cache/clip-rs/reference-venv/bin/python).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// The bars of the tiny CI test.
const MIN_COSINE: f64 = 0.99999;
const MAX_ABS: f64 = 1e-4;

pub fn run(args: Args) -> anyhow::Result<()> {
    let preset = match args.model.as_str() {
        "vit-b-32" => "ViT-B/32",
        "vit-b-16" => "ViT-B/16",
        "vit-l-14" => "ViT-L/14",
        other => bail!("unknown model `{other}` (vit-b-32, vit-b-16, vit-l-14)"),
    };
    let root = dev_support::workspace_root();
    let root = root.canonicalize().unwrap_or(root);
    let dir = root.join("target/parity").join(&args.model);
    let weights = dir.join("open_clip_model.safetensors");
    if args.regenerate || !dir.join("text_embeds.npy").exists() {
        let python = reference_python(args.python)?;
        println!(
            "building a random {preset} with open_clip into {}",
            dir.display()
        );
        let status = Command::new(&python)
            .arg(root.join("tools/reference/model_parity.py"))
            .args(["full", "--model", &args.model, "--out"])
            .arg(&dir)
            .status()
            .with_context(|| format!("running {}", python.display()))?;
        if !status.success() {
            bail!("model_parity.py failed ({status})");
        }
    }
    let opts = LoadOptions {
        expect_preset: Some(preset.to_string()),
        ..LoadOptions::default()
    };
    let t0 = Instant::now();
    let model = ClipModel::load_with(&weights, &opts)?;
    println!(
        "loaded {} as {} in {:.2} s",
        weights.display(),
        model.name(),
        t0.elapsed().as_secs_f64()
    );
    let pixels = f32_tensor(&dir.join("pixels.npy"))?;
    let ids = Npy::read(dir.join("token_ids.npy"))?;
    let ids = Tensor::from_vec(ids.clone().into_i64()?, ids.shape, &Device::Cpu)?;

    let t0 = Instant::now();
    let image = model.encode_image(&pixels)?;
    let t_image = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let text = model.encode_text(&ids)?;
    let t_text = t0.elapsed().as_secs_f64();

    let mut ok = true;
    for (what, ours, reference, secs) in [
        ("image", &image, "image_embeds.npy", t_image),
        ("text", &text, "text_embeds.npy", t_text),
    ] {
        let (cos, abs) = compare(ours, &dir.join(reference))?;
        let pass = cos >= MIN_COSINE && abs <= MAX_ABS;
        ok &= pass;
        println!(
            "{preset} {what}: {} rows, min cosine {cos:.9} (1 - cos = {:.1e}), max |diff| {abs:.3e} ({}; ours {secs:.2} s)",
            ours.dim(0)?,
            1.0 - cos,
            if pass { "pass" } else { "FAIL" }
        );
    }
    if !ok {
        bail!("embeddings differ beyond cosine >= {MIN_COSINE}, max |diff| <= {MAX_ABS}");
    }
    Ok(())
}

fn reference_python(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let p = match given {
        Some(p) => p,
        None => match std::env::var_os("CLIP_REF_VENV") {
            Some(v) => PathBuf::from(v).join("bin/python"),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/clip-rs/reference-venv/bin/python"),
        },
    };
    if !p.exists() {
        bail!(
            "reference Python not found at {}: run tools/reference/setup-venv.sh or pass --python",
            p.display()
        );
    }
    Ok(p)
}

fn f32_tensor(path: &Path) -> anyhow::Result<Tensor> {
    let a = Npy::read(path)?;
    let shape = a.shape.clone();
    Ok(Tensor::from_vec(a.into_f32()?, shape, &Device::Cpu)?)
}

/// (min cosine over rows, max |diff| over elements), in f64.
fn compare(ours: &Tensor, reference: &Path) -> anyhow::Result<(f64, f64)> {
    let want = Npy::read(reference)?;
    if want.shape != ours.dims() {
        bail!("shape {:?} vs reference {:?}", ours.dims(), want.shape);
    }
    let d = want.shape[1];
    let want = want.into_f32()?;
    let got = ours.flatten_all()?.to_vec1::<f32>()?;
    let (mut min_cos, mut max_abs) = (f64::INFINITY, 0f64);
    for (g, w) in got.chunks(d).zip(want.chunks(d)) {
        let dot: f64 = g
            .iter()
            .zip(w)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let ng = g.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        let nw = w.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        min_cos = min_cos.min(dot / (ng * nw));
        for (a, b) in g.iter().zip(w) {
            max_abs = max_abs.max(f64::from((a - b).abs()));
        }
    }
    Ok((min_cos, max_abs))
}
