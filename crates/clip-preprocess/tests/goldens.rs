//! Pixel- and tensor-exactness against Pillow + torchvision (`clip.load`'s transform).
//!
//! Goldens are made by `tools/reference/preprocess.py`. The expected 8-bit RGB crops must be
//! identical (tolerance 0 levels): every step is integer arithmetic in Pillow and here. The
//! normalised tensors must agree within 1e-5 (they are computed with the same float32 operations,
//! so in practice they are equal). Measured maxima are printed (`cargo test -- --nocapture`).
//! For the BMP, TIFF, GIF and WebP inputs the whole decoded image is compared too: Pillow's mode,
//! size and the sha256 of its pixels (`Image.tobytes()`, bilevel as one byte per pixel) must
//! match [`decode_bytes`] exactly.

use std::path::{Path, PathBuf};

use clip_preprocess::{Mode, PreprocessConfig, Preprocessor, RgbImage, center_crop, decode_bytes};
use dev_support::Npy;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// (number of differing bytes, max level difference)
fn diff(a: &[u8], b: &[u8]) -> (usize, u8) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .fold((0, 0), |(n, m), d| (n + (d > 0) as usize, m.max(d)))
}

#[test]
fn pixels_and_tensors_match_pillow_torchvision() {
    let m = manifest();
    let shared = m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["shared"] == true)
        .then(|| dev_support::shared_data_or_skip("pixels_and_tensors_match_pillow_torchvision"))
        .flatten();
    let mut failures = Vec::new();
    let (mut checked, mut tensors, mut worst_tensor, mut decoded) = (0, 0, 0f32, 0);
    let mut squashed = 0;
    for case in m["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        let path = if case["shared"] == true {
            match &shared {
                Some(dir) => dir.join(input),
                None => continue,
            }
        } else {
            fixtures().join(input)
        };
        let size = case["size"].as_u64().unwrap() as u32;
        // Chinese-CLIP's squash resize (`Resize((s, s))`, no crop) where the case says so.
        let squash = case["resize"] == "squash";
        let mut cfg = if squash {
            PreprocessConfig::chinese_clip(size)
        } else {
            PreprocessConfig::openai(size)
        };
        cfg.apply_exif = case["exif"].as_bool().unwrap();
        let pre = Preprocessor::new(cfg).unwrap();
        let want = std::fs::read(fixtures().join(case["pixels"].as_str().unwrap())).unwrap();
        let got = pre.rgb_path(&path).unwrap();
        let (n, max) = diff(&got.data, &want);
        let mut line = format!(
            "{name:28} {:5} {size:3}px exif={:5} pixels: {n} differ, max |diff| {max} levels",
            case["mode"].as_str().unwrap(),
            cfg_exif(case)
        );
        if n != 0 {
            failures.push(format!("{name}: {n} bytes differ, max {max}"));
        }
        if let Some(want) = case.get("decoded") {
            // The whole decoded image: Pillow's mode, size and sha256 of its pixels.
            let d = decode_bytes(&std::fs::read(&path).unwrap(), None).unwrap();
            let got = (
                pillow_mode(d.mode),
                d.width as u64,
                d.height as u64,
                sha256(&d.bytes),
            );
            let want = (
                want["mode"].as_str().unwrap(),
                want["width"].as_u64().unwrap(),
                want["height"].as_u64().unwrap(),
                want["sha256"].as_str().unwrap().to_string(),
            );
            line += &format!("; decoded {} {}x{} ", got.0, got.1, got.2);
            line += if got == want { "identical" } else { "DIFFERS" };
            if got != want {
                failures.push(format!("{name}: decoded {got:?}, Pillow {want:?}"));
            }
            decoded += 1;
        }
        if let Some(t) = case["tensor"].as_str() {
            let want = Npy::read(fixtures().join(t)).unwrap();
            assert_eq!(want.shape, vec![1, 3, size as usize, size as usize]);
            let want = want.into_f32().unwrap();
            let got = pre.preprocess_path(&path).unwrap();
            assert_eq!(
                (got.channels, got.height, got.width),
                (3, size as usize, size as usize)
            );
            // NaN-propagating, and a length mismatch is an error rather than a shorter zip.
            let max_t = dev_support::max_abs_diff(&got.data, &want).unwrap();
            line += &format!("; tensor max |diff| {max_t:e}");
            worst_tensor = worst_tensor.max(max_t);
            tensors += 1;
            if squash {
                squashed += 1;
            }
            // The squash goldens are held to exact equality (same float32 operations).
            if max_t.is_nan() || max_t > 1e-5 || (squash && max_t != 0.0) {
                failures.push(format!("{name}: tensor max abs diff {max_t}"));
            }
        }
        println!("{line}");
        checked += 1;
    }
    println!(
        "checked {checked} goldens ({tensors} normalised tensors, max |diff| {worst_tensor:e}; \
         {decoded} whole decoded images; {squashed} squash-resized tensors, exact)"
    );
    assert!(squashed >= 20, "only {squashed} squash goldens checked");
    assert!(checked >= 40, "only {checked} goldens checked");
    assert!(decoded >= 13, "only {decoded} decoded images checked");
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

fn pillow_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Bilevel => "1",
        Mode::L => "L",
        Mode::La => "LA",
        Mode::Rgb => "RGB",
        Mode::Rgba => "RGBA",
        Mode::P => "P",
        Mode::Cmyk => "CMYK",
        Mode::I16 => "I;16",
        _ => "?",
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cfg_exif(case: &serde_json::Value) -> bool {
    case["exif"].as_bool().unwrap()
}

#[test]
fn center_crop_pads_like_torchvision() {
    // 40x30 image, CenterCrop(48) without a resize: zero padding (4 left, 9 top).
    let d = clip_preprocess::decode_bytes(
        &std::fs::read(fixtures().join("inputs/upscale_40x30.png")).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!((d.width, d.height), (40, 30));
    let img = RgbImage {
        data: d.bytes,
        width: d.width,
        height: d.height,
    };
    let got = center_crop(&img, 48);
    let want = std::fs::read(fixtures().join("goldens/center_crop_pad_40x30_to_48.u8")).unwrap();
    assert_eq!(diff(&got.data, &want), (0, 0));
}
