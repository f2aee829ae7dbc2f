//! On-demand full-size parity: compares this crate with the reference outputs a script wrote into
//! a directory (`tools/reference/siglip_parity.py full --model siglip2-b-16 --out DIR` or
//! `tools/reference/model_parity.py full --model vit-h-14 --out DIR`): the weights
//! (`model.safetensors` or `open_clip_model.safetensors`), `pixels.npy`, `token_ids.npy`,
//! `image_embeds.npy`, `text_embeds.npy` and, for SigLIP, `probs.npy`.
//!
//!     cargo run --release -p clip-model --example parity_dir -- DIR

use std::path::{Path, PathBuf};
use std::time::Instant;

use clip_model::ClipModel;
use clip_model::candle_core::{Device, Tensor};
use dev_support::Npy;

fn main() {
    if let Err(e) = run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn npy(dir: &Path, name: &str) -> Result<Npy, String> {
    Npy::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

fn run() -> Result<(), String> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: parity_dir DIR")?);
    let weights = ["model.safetensors", "open_clip_model.safetensors"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or("no model.safetensors or open_clip_model.safetensors in DIR")?;
    let t = Instant::now();
    let model = ClipModel::load(&weights).map_err(|e| e.to_string())?;
    println!(
        "loaded {} ({}, {}) in {:.1} s; notes: {:?}",
        weights.display(),
        model.family(),
        model.score_function(),
        t.elapsed().as_secs_f64(),
        model.notes()
    );
    let p = npy(&dir, "pixels.npy")?;
    let shape = p.shape.clone();
    let pixels = Tensor::from_vec(
        p.into_f32().map_err(|e| e.to_string())?,
        shape,
        &Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let ids = npy(&dir, "token_ids.npy")?;
    let shape = ids.shape.clone();
    let ids = Tensor::from_vec(
        ids.into_i64().map_err(|e| e.to_string())?,
        shape,
        &Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let image = model.encode_image(&pixels).map_err(|e| e.to_string())?;
    let ti = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let text = model.encode_text(&ids).map_err(|e| e.to_string())?;
    let tt = t.elapsed().as_secs_f64();
    for (what, ours, file, secs) in [
        ("image", &image, "image_embeds.npy", ti),
        ("text", &text, "text_embeds.npy", tt),
    ] {
        let want = npy(&dir, file)?;
        let dim = want.shape[1];
        let want = want.into_f32().map_err(|e| e.to_string())?;
        let got = ours
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let a = dev_support::agreement(&got, &want, dim).map_err(|e| e.to_string())?;
        println!(
            "{what}: {} rows, min cosine {:.9}, max |diff| {:.3e} ({secs:.2} s)",
            a.rows, a.min_cosine, a.max_abs_diff
        );
    }
    if dir.join("probs.npy").is_file() {
        let want = npy(&dir, "probs.npy")?
            .into_f32()
            .map_err(|e| e.to_string())?;
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let img = image.to_vec2::<f32>().map_err(|e| e.to_string())?;
        let txt: Vec<Vec<f32>> = text
            .to_vec2::<f32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(unit)
            .collect();
        let score = model.score_function();
        let mut got = Vec::new();
        for i in img {
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
    }
    Ok(())
}
