//! Full-size parity of the other families: `cargo xtask parity --model siglip2-b-16` (transformers'
//! `SiglipModel`), `--model vit-h-14` (open_clip, head width 80; about 4 GB per side in f32),
//! `--model cn-vit-b-16` (cn_clip's `CLIP`). The reference script writes a random model of that
//! size with its outputs on random pixels and token ids into `target/parity/<model>/`
//! (`siglip_parity.py full`, `model_parity.py full`, `cn_clip_parity.py full`), with its forward
//! times in `timing.json`; this loads the weights through `clip_model`, embeds the same inputs and
//! prints min cosine, max |diff| and seconds per image / prompt next to PyTorch's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clip_model::ClipModel;
use clip_model::candle_core::{Device, Tensor};
use dev_support::Npy;

/// The models this module handles and the script that makes each.
const MODELS: [(&str, &str); 3] = [
    ("siglip2-b-16", "siglip_parity.py"),
    ("vit-h-14", "model_parity.py"),
    ("cn-vit-b-16", "cn_clip_parity.py"),
];

/// The project's parity bars (as the tiny CI tests).
const MIN_COSINE: f64 = 0.99999;
/// Max |diff| relative to the largest |value| of the reference (at least 1).
const MAX_REL: f64 = 1e-4;

/// Whether `model` is one of [`MODELS`].
pub fn handles(model: &str) -> bool {
    MODELS.iter().any(|(m, _)| *m == model)
}

fn npy(dir: &Path, name: &str) -> anyhow::Result<Npy> {
    Npy::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
}

/// Writes the reference (unless cached) and compares.
pub fn run(model: &str, regenerate: bool, python: Option<PathBuf>) -> anyhow::Result<()> {
    let Some((_, script)) = MODELS.iter().find(|(m, _)| *m == model) else {
        bail!("unknown model `{model}`");
    };
    let root = dev_support::workspace_root();
    let root = root.canonicalize().unwrap_or(root);
    let dir = root.join("target/parity").join(model);
    if regenerate || !dir.join("text_embeds.npy").is_file() {
        let python = crate::reference::python(python)?;
        let status = Command::new(&python)
            .arg(root.join("tools/reference").join(script))
            .args(["full", "--model", model, "--out"])
            .arg(&dir)
            .status()
            .with_context(|| format!("running {script}"))?;
        if !status.success() {
            bail!("{script} full --model {model} failed ({status})");
        }
    }
    let weights = ["model.safetensors", "open_clip_model.safetensors"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .with_context(|| format!("no weights in {}", dir.display()))?;
    let t = Instant::now();
    let m = ClipModel::load(&weights)?;
    println!(
        "loaded {} ({}, {}, {}) in {:.1} s; notes: {:?}",
        weights.display(),
        m.name(),
        m.family(),
        m.score_function(),
        t.elapsed().as_secs_f64(),
        m.notes()
    );
    let p = npy(&dir, "pixels.npy")?;
    let shape = p.shape.clone();
    let pixels = Tensor::from_vec(p.into_f32()?, shape, &Device::Cpu)?;
    let ids = npy(&dir, "token_ids.npy")?;
    let shape = ids.shape.clone();
    let ids = Tensor::from_vec(ids.into_i64()?, shape, &Device::Cpu)?;
    // One untimed pass each (packing caches, page faults), then the timed one.
    m.encode_image(&pixels)?;
    let t = Instant::now();
    let image = m.encode_image(&pixels)?;
    let ti = t.elapsed().as_secs_f64();
    m.encode_text(&ids)?;
    let t = Instant::now();
    let text = m.encode_text(&ids)?;
    let tt = t.elapsed().as_secs_f64();
    let timing: serde_json::Value = std::fs::read_to_string(dir.join("timing.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let mut ok = true;
    for (what, ours, file, secs, key) in [
        ("image", &image, "image_embeds.npy", ti, "image_s"),
        ("text", &text, "text_embeds.npy", tt, "text_s"),
    ] {
        let want = npy(&dir, file)?;
        let (rows, dim) = (want.shape[0], want.shape[1]);
        let want = want.into_f32()?;
        let got = ours.flatten_all()?.to_vec1::<f32>()?;
        let a = dev_support::agreement(&got, &want, dim)?;
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs())) as f64;
        let torch = timing[key].as_f64();
        println!(
            "{what}: {rows} rows, min cosine {:.9}, max |diff| {:.3e} (reference max |value| {scale:.1}); \
             ours {:.3} s/{what}, PyTorch {}",
            a.min_cosine,
            a.max_abs_diff,
            secs / rows as f64,
            torch.map_or("-".into(), |s| format!(
                "{:.3} s/{what} (ours {:.2}x its speed)",
                s / rows as f64,
                s / secs
            )),
        );
        ok &= a.min_cosine >= MIN_COSINE && a.max_abs_diff <= MAX_REL * scale;
    }
    if dir.join("probs.npy").is_file() {
        let want = npy(&dir, "probs.npy")?.into_f32()?;
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let txt: Vec<Vec<f32>> = text.to_vec2::<f32>()?.into_iter().map(unit).collect();
        let score = m.score_function();
        let mut got = Vec::new();
        for i in image.to_vec2::<f32>()? {
            let i = unit(i);
            let cos: Vec<f32> = txt
                .iter()
                .map(|t| i.iter().zip(t).map(|(a, b)| a * b).sum())
                .collect();
            got.extend(score.probabilities(&cos));
        }
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("probabilities ({}): max |diff| {worst:.3e}", score.name());
        ok &= worst <= 1e-5;
    }
    if !ok {
        bail!(
            "{model}: outside the bars (cosine >= {MIN_COSINE}, max |diff| <= {MAX_REL} x scale, probabilities <= 1e-5)"
        );
    }
    println!("{model}: within the bars");
    Ok(())
}
