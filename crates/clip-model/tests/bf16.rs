//! Opt-in bf16 products (`LoadOptions::bf16_products`) on every tower against the same model in
//! f32: the committed tiny random models of each family (ViT and text of OpenAI CLIP, SigLIP 2's
//! towers, Chinese-CLIP's ViT and ModifiedResNet image towers and BERT text tower).
//!
//! Guard (issue #17): per-embedding cosine to the f32 result ≥ 0.999. bf16 keeps 8 significant
//! bits, so each product term is off by up to 2⁻⁸ relative; over the sums of a network these
//! errors average out to a cosine far above the bar (measured values are printed). The test also
//! requires the bf16 run to differ from f32 (so it cannot pass by silently running f32) and the
//! model's notes to say which products ran. Needs AVX-512-BF16: elsewhere a counted `SKIP(cpu)`.

use std::path::{Path, PathBuf};

use clip_model::candle_core::{Device, Tensor};
use clip_model::{ClipModel, LoadOptions};
use dev_support::Npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tensor(path: &Path) -> Tensor {
    let a = Npy::read(path).unwrap();
    let shape = a.shape.clone();
    match a.clone().into_f32() {
        Ok(v) => Tensor::from_vec(v, shape, &Device::Cpu).unwrap(),
        Err(_) => Tensor::from_vec(a.into_i64().unwrap(), shape, &Device::Cpu).unwrap(),
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn bf16_products_stay_within_cosine_0_999_of_f32_on_every_tower() {
    if !dev_support::cpu_features_or_skip(
        "bf16_products_stay_within_cosine_0_999_of_f32_on_every_tower",
        &["avx512f", "avx512bf16"],
    ) {
        return;
    }
    let f = fixtures();
    let cases = [
        (
            "CLIP ViT",
            f.join("vit_tiny/open_clip/open_clip_model.safetensors"),
            f.join("vit_tiny/pixels.npy"),
            f.join("vit_tiny/token_ids.npy"),
        ),
        (
            "SigLIP 2",
            f.join("siglip_tiny/v2/hf/model.safetensors"),
            f.join("siglip_tiny/pixels.npy"),
            f.join("siglip_tiny/token_ids.npy"),
        ),
        (
            "Chinese-CLIP ViT + BERT",
            f.join("cn_clip_tiny/vit/cn_clip/model.safetensors"),
            f.join("cn_clip_tiny/vit/pixels.npy"),
            f.join("cn_clip_tiny/token_ids.npy"),
        ),
        (
            "Chinese-CLIP ModifiedResNet + BERT",
            f.join("cn_clip_tiny/rn/cn_clip/model.safetensors"),
            f.join("cn_clip_tiny/rn/pixels.npy"),
            f.join("cn_clip_tiny/token_ids.npy"),
        ),
    ];
    for (name, weights, pixels, ids) in cases {
        let f32_model = ClipModel::load(&weights).unwrap();
        let bf16_model = ClipModel::load_with(
            &weights,
            &LoadOptions {
                bf16_products: true,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert!(
            bf16_model
                .notes()
                .iter()
                .any(|n| n.contains("AVX-512-BF16")),
            "{name}: {:?}",
            bf16_model.notes()
        );
        let (pixels, ids) = (tensor(&pixels), tensor(&ids));
        for (tower, a, b) in [
            (
                "image",
                f32_model.encode_image(&pixels).unwrap(),
                bf16_model.encode_image(&pixels).unwrap(),
            ),
            (
                "text",
                f32_model.encode_text(&ids).unwrap(),
                bf16_model.encode_text(&ids).unwrap(),
            ),
        ] {
            let (a, b) = (rows(&a), rows(&b));
            let min = a
                .iter()
                .zip(&b)
                .map(|(x, y)| cosine(x, y))
                .fold(f64::INFINITY, f64::min);
            let differs = a.iter().zip(&b).any(|(x, y)| x != y);
            println!(
                "{name} {tower}: min cosine to f32 {min:.6} over {} rows",
                a.len()
            );
            assert!(
                differs,
                "{name} {tower}: bf16 gave the f32 result bit for bit"
            );
            assert!(min >= 0.999, "{name} {tower}: cosine {min} < 0.999");
        }
    }
}
