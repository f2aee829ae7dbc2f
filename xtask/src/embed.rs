//! `cargo xtask embed --weights FILE [--image PATH]... [--text TEXT]... [--out FILE.json]`:
//! L2-normalised CLIP embeddings of images and texts, in input order, as JSON
//! `{"model": NAME, "image_embeds": [[...]], "text_embeds": [[...]]}`.

use std::path::PathBuf;

use anyhow::Context;
use clip::Clip;

/// Arguments of `cargo xtask embed`.
#[derive(clap::Args)]
pub struct Args {
    /// Safetensors weights (open_clip or transformers naming); a config file beside them is used.
    #[arg(long)]
    pub weights: PathBuf,
    /// Images to embed (any number, in order).
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// Texts to embed (any number, in order).
    #[arg(long = "text")]
    pub texts: Vec<String>,
    /// Cut over-long texts instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// `f32` (default), or `bf16`: on the CPU bf16 weights and products with f32 accumulation
    /// where it has AVX-512-BF16 (embeddings within cosine 0.999 of f32), else f32.
    #[arg(long, default_value = "f32")]
    pub precision: clip::Precision,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The embeddings as written to JSON.
#[derive(Debug, serde::Serialize)]
pub struct Embeddings {
    /// The preset name of the model, or `custom`.
    pub model: String,
    /// One L2-normalised row per image.
    pub image_embeds: Vec<Vec<f32>>,
    /// One L2-normalised row per text.
    pub text_embeds: Vec<Vec<f32>>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let clip = load(&args.weights, args.truncate, args.precision)?;
    let e = embed(&clip, &args.images, &args.texts)?;
    let json = serde_json::to_string(&e)?;
    match &args.out {
        Some(p) => std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}

/// The model with the reference preprocessing (EXIF ignored, as OpenAI's transform does).
fn load(
    weights: &std::path::Path,
    truncate: bool,
    precision: clip::Precision,
) -> anyhow::Result<Clip> {
    let spec = weights.to_str().context("the weights path is not UTF-8")?;
    Ok(Clip::builder()
        .apply_exif(false)
        .truncate_texts(truncate)
        .precision(precision)
        .load(spec)?)
}

/// Embeds `images` (one at a time: memory stays flat for any number) and `texts` (in batches of
/// 256) with the model's own preprocessing and tokenizer.
pub fn embed(clip: &Clip, images: &[PathBuf], texts: &[String]) -> anyhow::Result<Embeddings> {
    let image_embeds = images
        .iter()
        .map(|p| clip.embed_image(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut text_embeds = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let rows = clip.embed_texts(chunk)?;
        text_embeds.extend(rows.outer_iter().map(|r| r.to_vec()));
    }
    Ok(Embeddings {
        model: clip.name().to_string(),
        image_embeds,
        text_embeds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny random ViT CLIP with OpenAI's full vocabulary (made by tools/reference/eval_parity.py).
    fn tiny_weights() -> PathBuf {
        dev_support::workspace_root()
            .join("xtask/tests/fixtures/eval_parity/model/open_clip_model.safetensors")
    }

    fn photo(name: &str) -> PathBuf {
        dev_support::workspace_root()
            .join("examples/photos")
            .join(name)
    }

    #[test]
    fn writes_normalised_embeddings_in_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("e.json");
        let images = vec![photo("chelsea.png"), photo("horse.png")];
        let texts = vec![
            "a photo of a cat".to_string(),
            "a horse".to_string(),
            "x".to_string(),
        ];
        run(Args {
            weights: tiny_weights(),
            images: images.clone(),
            texts: texts.clone(),
            truncate: false,
            precision: clip::Precision::F32,
            out: Some(out.clone()),
        })
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(v["model"], "custom");
        let rows = |key: &str| -> Vec<Vec<f64>> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect()
        };
        let (img, txt) = (rows("image_embeds"), rows("text_embeds"));
        assert_eq!((img.len(), txt.len()), (2, 3));
        for r in img.iter().chain(&txt) {
            assert_eq!(r.len(), 16);
            let n: f64 = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "{n}");
        }
        // Input order: reversed inputs give reversed rows.
        let model = load(&tiny_weights(), false, clip::Precision::F32).unwrap();
        let rev_images: Vec<PathBuf> = images.iter().rev().cloned().collect();
        let rev_texts: Vec<String> = texts.iter().rev().cloned().collect();
        let e = embed(&model, &rev_images, &rev_texts).unwrap();
        for (a, b) in e.image_embeds.iter().rev().zip(&img) {
            for (x, y) in a.iter().zip(b) {
                assert!((f64::from(*x) - y).abs() < 1e-6);
            }
        }
        for (a, b) in e.text_embeds.iter().rev().zip(&txt) {
            for (x, y) in a.iter().zip(b) {
                assert!((f64::from(*x) - y).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn over_long_text_is_an_error_unless_truncated() {
        let long = vec!["word ".repeat(100)];
        let strict = load(&tiny_weights(), false, clip::Precision::F32).unwrap();
        assert!(embed(&strict, &[], &long).is_err());
        let lenient = load(&tiny_weights(), true, clip::Precision::F32).unwrap();
        assert_eq!(embed(&lenient, &[], &long).unwrap().text_embeds.len(), 1);
    }

    /// `--precision bf16` reaches the kernels: on a CPU with AVX-512-BF16 the embeddings move
    /// (bf16 products) but stay within cosine 0.999 of f32 (the tolerance stated for bf16); on
    /// other CPUs the f32 path runs and they are identical.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn bf16_precision_stays_within_its_tolerance() {
        let images = vec![photo("chelsea.png"), photo("horse.png")];
        let texts = vec!["a photo of a cat".to_string(), "a horse".to_string()];
        let run = |precision| {
            let model = load(&tiny_weights(), false, precision).unwrap();
            let e = embed(&model, &images, &texts).unwrap();
            e.image_embeds
                .into_iter()
                .chain(e.text_embeds)
                .collect::<Vec<_>>()
        };
        let (f32_rows, bf16_rows) = (run(clip::Precision::F32), run(clip::Precision::Bf16));
        let bf16_cpu = std::arch::is_x86_feature_detected!("avx512bf16");
        for (a, b) in f32_rows.iter().zip(&bf16_rows) {
            let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cos >= 0.999, "cosine {cos}");
            assert_eq!(a != b, bf16_cpu, "bf16 products in use: {bf16_cpu}");
        }
    }
}
