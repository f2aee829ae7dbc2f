//! Full-size parity against open_clip: `cargo xtask parity --model vit-b-32`.
//!
//! `tools/reference/model_parity.py full` builds a random open_clip model of the named preset
//! (every parameter random, biases and norms included), saves it as `open_clip_model.safetensors`
//! with no config file, and embeds 4 random pre-normalised images and 5 token rows of different
//! lengths. This command loads the file through `clip_model` (architecture inferred from the
//! tensors, checked against the preset), embeds the same inputs and prints max |diff| and min
//! cosine per tower. Needs the reference venv; files are cached under `target/parity/<model>/`.
//!
//! It then checks the whole pipeline end to end: the demo photos in `examples/photos` and a few
//! texts go through open_clip's own preprocessing and tokenizer on the Python side and through
//! `clip_preprocess`, `clip_model::tokenizer` and the model here (the `embed` command's code).

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
    /// Preset: vit-b-32, vit-b-16, vit-l-14; ModifiedResNet: rn50, rn101, rn50x4, rn50x16, rn50x64
    /// (image tower only, see `parity_resnet`); other families: vit-h-14, siglip2-b-16,
    /// cn-vit-b-16 (see `parity_family`).
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
    if crate::parity_family::handles(&args.model) {
        return crate::parity_family::run(&args.model, args.regenerate, args.python);
    }
    if crate::parity_resnet::handles(&args.model) {
        let opts =
            crate::parity_resnet::Options::for_model(&args.model, args.regenerate, args.python);
        return crate::parity_resnet::run(&opts);
    }
    let preset = match args.model.as_str() {
        "vit-b-32" => "ViT-B/32",
        "vit-b-16" => "ViT-B/16",
        "vit-l-14" => "ViT-L/14",
        other => bail!(
            "unknown model `{other}` (vit-b-32, vit-b-16, vit-l-14, rn50, rn101, rn50x4, rn50x16, rn50x64, \
             vit-h-14, siglip2-b-16, cn-vit-b-16)"
        ),
    };
    let root = dev_support::workspace_root();
    let root = root.canonicalize().unwrap_or(root);
    let dir = root.join("target/parity").join(&args.model);
    let weights = dir.join("open_clip_model.safetensors");
    let photos = demo_photos(&root)?;
    if args.regenerate || !dir.join("end_to_end.json").exists() {
        let python = crate::reference::python(args.python)?;
        println!(
            "building a random {preset} with open_clip into {}",
            dir.display()
        );
        let status = Command::new(&python)
            .arg(root.join("tools/reference/model_parity.py"))
            .args(["full", "--model", &args.model, "--out"])
            .arg(&dir)
            .args(
                photos
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--image"), p.as_os_str()]),
            )
            .args(TEXTS.iter().flat_map(|t| ["--text", t]))
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
    let pixels = dev_support::read_tensor(dir.join("pixels.npy"))?;
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
    ok &= end_to_end(&weights, preset, &dir.join("end_to_end.json"))?;
    if !ok {
        bail!("embeddings differ beyond cosine >= {MIN_COSINE}, max |diff| <= {MAX_ABS}");
    }
    Ok(())
}

/// Texts of the end-to-end check: punctuation, case, digits, an apostrophe, accents.
const TEXTS: [&str; 5] = [
    "a photo of a cat.",
    "A Rocket launching into the SKY!!",
    "coffee  cup,   2 spoons",
    "the horse's mane",
    "café crème brûlée",
];

/// Cosine bar of the end-to-end check: images go through two independent decoders and resizers,
/// so the inputs may differ by rounding; the embedding directions must still agree closely.
const MIN_COSINE_END_TO_END: f64 = 0.9999;

fn demo_photos(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("examples/photos"))
        .context("reading examples/photos")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("png") || x.eq_ignore_ascii_case("jpg"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Files → embeddings through the facade (the reference preprocessing, EXIF ignored).
fn end_to_end(weights: &Path, preset: &str, reference: &Path) -> anyhow::Result<bool> {
    #[derive(serde::Deserialize)]
    struct Ref {
        images: Vec<PathBuf>,
        texts: Vec<String>,
        image_embeds: Vec<Vec<f32>>,
        text_embeds: Vec<Vec<f32>>,
    }
    let r: Ref = serde_json::from_str(
        &std::fs::read_to_string(reference)
            .with_context(|| format!("reading {}", reference.display()))?,
    )?;
    let spec = weights.to_str().context("the weights path is not UTF-8")?;
    let clip = clip::Clip::builder().apply_exif(false).load(spec)?;
    let ours = crate::embed::embed(&clip, &r.images, &r.texts)?;
    let mut ok = true;
    for (what, a, b) in [
        ("image", &ours.image_embeds, &r.image_embeds),
        ("text", &ours.text_embeds, &r.text_embeds),
    ] {
        let dim = b.first().map_or(1, Vec::len);
        // Both sides are unit vectors, so the cosine is their dot product; NaN fails.
        let agree = dev_support::agreement(&a.concat(), &b.concat(), dim)?;
        let (min_cos, max_abs) = (agree.min_cosine, agree.max_abs_diff);
        let pass = a.len() == b.len() && min_cos >= MIN_COSINE_END_TO_END;
        ok &= pass;
        println!(
            "{preset} end to end {what}: {} inputs, min cosine {min_cos:.9}, max |diff| {max_abs:.3e} ({})",
            a.len(),
            if pass { "pass" } else { "FAIL" }
        );
    }
    Ok(ok)
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
    // NaN anywhere makes both numbers NaN, which fails the bars.
    let a = dev_support::agreement(&got, &want, d)?;
    Ok((a.min_cosine, a.max_abs_diff))
}
