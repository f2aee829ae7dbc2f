//! SigLIP and SigLIP 2 (fixed resolution) against their references on tiny random models made by
//! `tools/reference/siglip_parity.py tiny`: the transformers naming against
//! `transformers.SiglipModel`, the open_clip naming (timm image tower) against open_clip.
//!
//! Bars (issue 14): cosine ≥ 0.99999 and max |diff| ≤ 1e-4 per embedding, sigmoid probabilities
//! within 1e-5. f32 on both sides in a different order of operations through 2 blocks of width
//! ≤ 64 moves results by ~1e-6; the probabilities are computed here from our embeddings with the
//! model's own `ScoreFunction`, so they check scale, bias and the sigmoid as well.

use std::path::PathBuf;

use clip_model::candle_core::{DType, Device, Tensor};
use clip_model::{
    Activation, ClipModel, Error, LoadOptions, ModelFamily, Naming, ResizeKind, ScoreFunction,
    VisionConfig, Weights,
};
use dev_support::Npy;

const MIN_COSINE: f64 = 0.99999;
const MAX_ABS: f64 = 1e-4;
const MAX_PROB: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip_tiny")
}

fn npy(path: PathBuf) -> (Vec<usize>, Vec<f32>) {
    let a = Npy::read(path).unwrap();
    let shape = a.shape.clone();
    (shape, a.into_f32().unwrap())
}

fn inputs() -> (Tensor, Tensor) {
    let (shape, data) = npy(fixtures().join("pixels.npy"));
    let pixels = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
    let a = Npy::read(fixtures().join("token_ids.npy")).unwrap();
    let shape = a.shape.clone();
    let ids = Tensor::from_vec(a.into_i64().unwrap(), shape, &Device::Cpu).unwrap();
    (pixels, ids)
}

fn assert_parity(what: &str, ours: &Tensor, reference: PathBuf) {
    let (shape, want) = npy(reference);
    assert_eq!(ours.dims(), shape.as_slice(), "{what}: shape");
    let got = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let a = dev_support::agreement(&got, &want, shape[1]).unwrap();
    println!(
        "{what}: min cosine {:.9}, max |diff| {:.3e}",
        a.min_cosine, a.max_abs_diff
    );
    assert!(
        a.min_cosine >= MIN_COSINE,
        "{what}: cosine {}",
        a.min_cosine
    );
    assert!(
        a.max_abs_diff <= MAX_ABS,
        "{what}: max |diff| {}",
        a.max_abs_diff
    );
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Probabilities of every (image, text) pair from our embeddings and the model's score function.
fn probabilities(model: &ClipModel, images: &Tensor, texts: &Tensor) -> Vec<Vec<f32>> {
    let score = model.score_function();
    let texts: Vec<Vec<f32>> = rows(texts).iter().map(|t| unit(t)).collect();
    rows(images)
        .iter()
        .map(|i| {
            let i = unit(i);
            let cos: Vec<f32> = texts
                .iter()
                .map(|t| i.iter().zip(t).map(|(a, b)| a * b).sum())
                .collect();
            score.probabilities(&cos)
        })
        .collect()
}

fn check(label: &str, model: &ClipModel, dir: PathBuf) {
    let (pixels, ids) = inputs();
    let images = model.encode_image(&pixels).unwrap();
    let texts = model.encode_text(&ids).unwrap();
    assert_parity(
        &format!("{label} image"),
        &images,
        dir.join("image_embeds.npy"),
    );
    assert_parity(
        &format!("{label} text"),
        &texts,
        dir.join("text_embeds.npy"),
    );
    let (shape, want) = npy(dir.join("probs.npy"));
    let got: Vec<f32> = probabilities(model, &images, &texts).concat();
    assert_eq!(got.len(), shape[0] * shape[1]);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    let (lo, hi) = want
        .iter()
        .fold((1f32, 0f32), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    println!(
        "{label} sigmoid probabilities: max |diff| {worst:.3e} (reference range {lo:.3}..{hi:.3})"
    );
    assert!(
        worst <= MAX_PROB,
        "{label}: probabilities differ by {worst}"
    );
}

fn logits(variant: &str) -> (f32, f32) {
    let text = std::fs::read_to_string(fixtures().join(variant).join("logits.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        v["logit_scale_exp"].as_f64().unwrap() as f32,
        v["logit_bias"].as_f64().unwrap() as f32,
    )
}

#[test]
fn transformers_naming_matches_transformers() {
    for (variant, vocab) in [("v1", 1000), ("v2", 1200)] {
        let dir = fixtures().join(variant).join("hf");
        let path = dir.join("model.safetensors");
        assert_eq!(Weights::open(&path).unwrap().naming(), Naming::HuggingFace);
        let model = ClipModel::load(&path).unwrap();
        assert_eq!(model.family(), ModelFamily::Siglip);
        let cfg = model.config();
        let VisionConfig::Siglip(v) = cfg.vision else {
            panic!("not a SigLIP tower")
        };
        // The sizes written in tools/reference/siglip_parity.py (TINY_VISION, TINY_TEXT).
        assert_eq!(
            (
                v.image_size,
                v.patch_size,
                v.width,
                v.layers,
                v.heads,
                v.mlp_width
            ),
            (32, 8, 64, 2, 4, 112)
        );
        assert_eq!(v.activation, Activation::GeluTanh);
        let t = cfg.text;
        assert_eq!(
            (
                t.context_length,
                t.vocab_size,
                t.width,
                t.layers,
                t.heads,
                t.mlp_width
            ),
            (64, vocab, 32, 2, 2, 80)
        );
        assert_eq!((cfg.embed_dim, cfg.activation), (64, Activation::GeluTanh));
        let (scale, bias) = logits(variant);
        let ScoreFunction::Sigmoid { scale: s, bias: b } = model.score_function() else {
            panic!("SigLIP scores by a sigmoid")
        };
        assert!(
            (s - scale).abs() <= 1e-6 * scale && (b - bias).abs() <= 1e-6,
            "{s} {b}"
        );
        assert_eq!(model.preprocess_hints().resize, ResizeKind::Squash);
        assert_eq!(model.preprocess_hints().mean, [0.5; 3]);
        check(&format!("{variant} transformers naming"), &model, dir);
    }
}

#[test]
fn open_clip_naming_matches_open_clip() {
    for variant in ["v1", "v2"] {
        let dir = fixtures().join(variant).join("open_clip");
        let path = dir.join("open_clip_model.safetensors");
        assert_eq!(Weights::open(&path).unwrap().naming(), Naming::OpenClipTimm);
        let model = ClipModel::load(&path).unwrap();
        let hf = ClipModel::load(fixtures().join(variant).join("hf/model.safetensors")).unwrap();
        let VisionConfig::Siglip(v) = model.config().vision else {
            panic!("not a SigLIP tower")
        };
        // timm's image tower uses the exact GELU; the text tower follows act_kwargs.
        assert_eq!(v.activation, Activation::Gelu);
        let text_act = if variant == "v2" {
            Activation::GeluTanh
        } else {
            Activation::Gelu
        };
        assert_eq!(model.config().activation, text_act);
        let VisionConfig::Siglip(hv) = hf.config().vision else {
            panic!()
        };
        assert_eq!(
            (v.width, v.layers, v.heads, v.mlp_width),
            (hv.width, hv.layers, hv.heads, hv.mlp_width)
        );
        assert_eq!(model.config().text, hf.config().text);
        assert_eq!(model.preprocess_hints().resize, ResizeKind::Squash);
        check(&format!("{variant} open_clip naming"), &model, dir);
    }
}

#[test]
fn activation_matters() {
    // The transformers reference (tanh GELU) is measurably away from open_clip's (exact GELU in
    // the image tower): the activations are not interchangeable at these tolerances.
    let model =
        ClipModel::load(fixtures().join("v2/open_clip/open_clip_model.safetensors")).unwrap();
    let (pixels, _) = inputs();
    let ours = model.encode_image(&pixels).unwrap();
    let (_, want) = npy(fixtures().join("v2/hf/image_embeds.npy"));
    let got = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let a = dev_support::agreement(&got, &want, 64).unwrap();
    println!(
        "exact-GELU image tower vs tanh-GELU reference: max |diff| {:.3e}",
        a.max_abs_diff
    );
    assert!(a.max_abs_diff > 1e-4);
}

#[test]
fn rows_must_be_padded_to_the_full_context() {
    let model = ClipModel::load(fixtures().join("v1/hf/model.safetensors")).unwrap();
    let (_, ids) = inputs();
    let short = ids.narrow(1, 0, 20).unwrap();
    let err = model.encode_text(&short).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let big = Tensor::new(&[[5000u32; 64]], &Device::Cpu).unwrap();
    assert!(matches!(
        model.encode_text(&big).unwrap_err(),
        Error::InvalidInput(_)
    ));
}

#[test]
fn missing_or_wrong_tensors_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("v2/open_clip/open_clip_model.safetensors");
    let all = clip_model::candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    // Without the pooling head's key-value projection.
    let mut cut = all.clone();
    cut.remove("visual.trunk.attn_pool.kv.weight");
    let path = dir.path().join("open_clip_model.safetensors");
    let cfg = dir.path().join("open_clip_config.json");
    std::fs::copy(fixtures().join("v2/open_clip/open_clip_config.json"), &cfg).unwrap();
    clip_model::candle_core::safetensors::save(&cut, &path).unwrap();
    match ClipModel::load(&path).unwrap_err() {
        Error::MissingTensor { name, .. } => assert_eq!(name, "visual.trunk.attn_pool.kv.weight"),
        other => panic!("{other}"),
    }
    // A text head of the wrong width.
    let mut bad = all.clone();
    bad.insert(
        "text.text_projection.weight".into(),
        Tensor::zeros((48, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    clip_model::candle_core::safetensors::save(&bad, &path).unwrap();
    match ClipModel::load(&path).unwrap_err() {
        Error::ShapeMismatch { name, .. } => assert_eq!(name, "text.text_projection.weight"),
        other => panic!("{other}"),
    }
    // A config file that disagrees with the weights.
    clip_model::candle_core::safetensors::save(&all, &path).unwrap();
    std::fs::write(
        &cfg,
        r#"{"model_cfg": {"embed_dim": 64, "vision_cfg": {"image_size": 224, "timm_pool": "map"},
            "text_cfg": {"width": 32, "heads": 2, "layers": 2, "context_length": 64}}}"#,
    )
    .unwrap();
    match ClipModel::load(&path).unwrap_err() {
        Error::ConfigMismatch { field, .. } => assert_eq!(field, "vision.image_size"),
        other => panic!("{other}"),
    }
    // A CLIP preset asked of a SigLIP file.
    let opts = LoadOptions {
        expect_preset: Some("ViT-B/16".into()),
        sidecar_config: false,
        ..LoadOptions::default()
    };
    assert!(matches!(
        ClipModel::load_with(&path, &opts).unwrap_err(),
        Error::Architecture(_)
    ));
}

#[test]
fn tensor_shapes_build_a_model_in_memory() {
    // The internal names listed by `tensor_shapes` are what `from_tensors` needs.
    let model = ClipModel::load(fixtures().join("v1/hf/model.safetensors")).unwrap();
    let cfg = *model.config();
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in cfg.tensor_shapes() {
        tensors.insert(name, Tensor::randn(0f32, 0.1, shape, &Device::Cpu).unwrap());
    }
    let m = ClipModel::from_tensors(tensors, &cfg, DType::F32, &Device::Cpu).unwrap();
    let (pixels, ids) = inputs();
    assert_eq!(m.encode_image(&pixels).unwrap().dims(), &[4, 64]);
    assert_eq!(m.encode_text(&ids).unwrap().dims(), &[5, 64]);
}

/// The plain candle path (CUDA / Metal, `CLIP_MODEL_UNFUSED=1`) and the fused path on candle's
/// matmul (`CLIP_MODEL_UNPACKED=1`) must match the references too.
#[test]
fn unfused_and_unpacked_paths_match() {
    if std::env::var_os("CLIP_MODEL_UNFUSED").is_some()
        || std::env::var_os("CLIP_MODEL_UNPACKED").is_some()
    {
        return;
    }
    let tests = [
        "transformers_naming_matches_transformers",
        "open_clip_naming_matches_open_clip",
    ];
    for switch in ["CLIP_MODEL_UNFUSED", "CLIP_MODEL_UNPACKED"] {
        let out = dev_support::rerun_tests_with_env(&tests, switch, "1");
        println!("{switch}=1 run:\n{out}");
    }
}
