//! The SigLIP preset (`PreprocessConfig::siglip`: bicubic squash to a square, mean = std = 0.5)
//! against Pillow + torchvision (`Resize((s, s), BICUBIC)`, the transform of open_clip's SigLIP
//! configs; fixtures made by tools/reference/siglip_preprocess.py). Pixels must be identical;
//! the normalised tensors agree to float32 rounding (1e-6 on values in [-1, 1]).

use std::path::{Path, PathBuf};

use clip_preprocess::{PreprocessConfig, Preprocessor, ResizeMode};
use dev_support::Npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn siglip_squash_matches_pillow_torchvision() {
    let text = std::fs::read_to_string(fixtures().join("siglip/manifest.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    let mut tensors = 0;
    for case in cases.as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let size = case["size"].as_u64().unwrap() as u32;
        let cfg = PreprocessConfig::siglip(size);
        assert_eq!(
            (cfg.resize_mode, cfg.mean, cfg.std),
            (ResizeMode::Squash, [0.5; 3], [0.5; 3])
        );
        let pre = Preprocessor::new(cfg).unwrap();
        let path = fixtures().join(input);
        let got = pre.rgb_path(&path).unwrap();
        assert_eq!((got.width, got.height), (size as usize, size as usize));
        let want = std::fs::read(fixtures().join(case["pixels"].as_str().unwrap())).unwrap();
        let differ = got.data.iter().zip(&want).filter(|(a, b)| a != b).count();
        println!("{input:32} {size:3}px squash: {differ} bytes differ");
        if differ != 0 || got.data.len() != want.len() {
            failures.push(format!("{input}: {differ} bytes differ"));
        }
        if let Some(t) = case.get("tensor").and_then(|t| t.as_str()) {
            let want = Npy::read(fixtures().join(t)).unwrap().into_f32().unwrap();
            let got = pre.preprocess_path(&path).unwrap();
            let max = dev_support::max_abs_diff(&got.data, &want).unwrap();
            println!("{input:32} tensor max |diff| {max:e}");
            if max.is_nan() || max > 1e-6 {
                failures.push(format!("{input}: tensor max |diff| {max}"));
            }
            tensors += 1;
        }
    }
    assert!(tensors >= 5);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
