//! Parity of Chinese-CLIP models with cn_clip 1.6.0 (`cn_clip.clip.model.CLIP`) and transformers'
//! `ChineseCLIPModel`, on the committed tiny random models made by
//! `tools/reference/cn_clip_parity.py models` (a ViT image tower with 4 heads of 16 and a ResNet one,
//! a 2-layer BERT with 2 heads of 16, so head counts come from the config file; float16 weights,
//! float32 arithmetic on both sides).
//!
//! Tolerances: the project's bars, cosine ≥ 0.99999 and max |diff| ≤ 1e-4 per embedding. Both sides
//! compute the same f32 arithmetic in a different order (packed rows instead of padded ones,
//! matmul blocking); through two layers of width ≤ 64 that is a few ulps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip_model::candle_core::{Device, Tensor};
use clip_model::tokenizer::{CN_CONTEXT_LENGTH, Tokenizer, Truncation};
use clip_model::{
    ChineseClipConfig, ClipModel, Error, LoadOptions, ModelFamily, Naming, ResampleFilter,
    ResizeKind, TextLength, VisionConfig, Weights,
};
use dev_support::Npy;

const MIN_COSINE: f32 = 0.99999;
const MAX_ABS: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cn_clip_tiny")
}

fn npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = Npy::read(path).unwrap();
    let shape = a.shape.clone();
    (shape, a.into_f32().unwrap())
}

fn pixels(tower: &str) -> Tensor {
    let (shape, data) = npy_f32(&fixtures().join(tower).join("pixels.npy"));
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn token_ids() -> Tensor {
    let a = Npy::read(fixtures().join("token_ids.npy")).unwrap();
    let shape = a.shape.clone();
    Tensor::from_vec(a.into_i64().unwrap(), shape, &Device::Cpu).unwrap()
}

fn assert_parity(what: &str, ours: &Tensor, reference: &Path) {
    let (shape, want) = npy_f32(reference);
    assert_eq!(ours.dims(), shape.as_slice(), "{what}: shape");
    let got = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let a = dev_support::agreement(&got, &want, shape[1]).unwrap();
    let (cos, abs) = (a.min_cosine as f32, a.max_abs_diff as f32);
    println!(
        "{what}: min cosine {cos:.9}, max |diff| {abs:.3e} ({} rows)",
        a.rows
    );
    assert!(cos >= MIN_COSINE, "{what}: min cosine {cos} < {MIN_COSINE}");
    assert!(abs <= MAX_ABS, "{what}: max |diff| {abs} > {MAX_ABS}");
}

/// Image and text embeddings of `model` against each reference in `refs` (`""`: cn_clip,
/// `"hf_"`: transformers), text both packed and padded.
fn check(label: &str, tower: &str, model: &ClipModel, refs: &[&str]) {
    let dir = fixtures().join(tower);
    let image = model.encode_image(&pixels(tower)).unwrap();
    let text = model.encode_text(&token_ids()).unwrap();
    let padded = model
        .encode_text_with(&token_ids(), TextLength::Full)
        .unwrap();
    for r in refs {
        let who = if r.is_empty() {
            "cn_clip"
        } else {
            "transformers"
        };
        assert_parity(
            &format!("{label} image vs {who}"),
            &image,
            &dir.join(format!("{r}image_embeds.npy")),
        );
        assert_parity(
            &format!("{label} text vs {who}"),
            &text,
            &dir.join(format!("{r}text_embeds.npy")),
        );
        assert_parity(
            &format!("{label} text (padded rows) vs {who}"),
            &padded,
            &dir.join(format!("{r}text_embeds.npy")),
        );
    }
}

fn logit_scale(tower: &str) -> f32 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("report.json")).unwrap())
            .unwrap();
    v[tower]["logit_scale"].as_f64().unwrap() as f32
}

#[test]
fn vit_in_cn_clip_naming_matches_cn_clip_and_transformers() {
    let path = fixtures().join("vit/cn_clip/model.safetensors");
    assert_eq!(Weights::open(&path).unwrap().naming(), Naming::OpenClip);
    let model = ClipModel::load(&path).unwrap();
    assert_eq!(model.family(), ModelFamily::ChineseClip);
    let cfg = model.chinese_clip_config().unwrap();
    let VisionConfig::Vit(v) = cfg.vision else {
        panic!("not a ViT")
    };
    // Head counts from config.json (width / 64 would give 1 head in each tower).
    assert_eq!(
        (v.width, v.heads, cfg.text.width, cfg.text.heads),
        (64, 4, 32, 2)
    );
    assert_eq!(
        (cfg.text.layers, cfg.text.vocab_size, cfg.embed_dim),
        (2, 10_000, 24)
    );
    assert_eq!(model.config().text.context_length, CN_CONTEXT_LENGTH);
    assert_eq!(model.name(), "custom");
    assert!((model.logit_scale() - logit_scale("vit")).abs() <= 1e-5 * logit_scale("vit"));
    check("ViT, cn_clip naming", "vit", &model, &["", "hf_"]);
}

#[test]
fn vit_in_transformers_naming_matches_cn_clip_and_transformers() {
    let path = fixtures().join("vit/hf/model.safetensors");
    assert_eq!(Weights::open(&path).unwrap().naming(), Naming::HuggingFace);
    let model = ClipModel::load(&path).unwrap();
    assert_eq!(model.family(), ModelFamily::ChineseClip);
    let cfg = model.chinese_clip_config().unwrap();
    let VisionConfig::Vit(v) = cfg.vision else {
        panic!("not a ViT")
    };
    assert_eq!((v.heads, cfg.text.heads), (4, 2));
    check("ViT, transformers naming", "vit", &model, &["", "hf_"]);
}

#[test]
fn resnet_in_cn_clip_naming_matches_cn_clip() {
    let path = fixtures().join("rn/cn_clip/model.safetensors");
    let model = ClipModel::load(&path).unwrap();
    assert_eq!(model.family(), ModelFamily::ChineseClip);
    assert!(matches!(
        model.chinese_clip_config().unwrap().vision,
        VisionConfig::ModifiedResNet(_)
    ));
    assert!((model.logit_scale() - logit_scale("rn")).abs() <= 1e-5 * logit_scale("rn"));
    check("ResNet, cn_clip naming", "rn", &model, &[""]);
}

#[test]
fn fixture_ids_are_our_tokenizers() {
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("texts.json")).unwrap())
            .unwrap();
    let batch = Tokenizer::for_family(ModelFamily::ChineseClip)
        .unwrap()
        .encode_batch(&texts, CN_CONTEXT_LENGTH, Truncation::Truncate)
        .unwrap();
    let want = Npy::read(fixtures().join("token_ids.npy"))
        .unwrap()
        .into_i64()
        .unwrap();
    let got: Vec<i64> = batch.ids().iter().map(|&i| i64::from(i)).collect();
    assert_eq!(got, want);
    // The same texts as u32 rows through `encode_tokens`.
    let model = ClipModel::load(fixtures().join("vit/hf/model.safetensors")).unwrap();
    let t = model.encode_tokens(batch.ids(), batch.len()).unwrap();
    assert_parity(
        "ViT text from encode_tokens",
        &t,
        &fixtures().join("vit/text_embeds.npy"),
    );
}

#[test]
fn family_tells_tokenizer_and_preprocessing() {
    assert_eq!(ModelFamily::ChineseClip.context_length(), 52);
    assert_eq!(ModelFamily::Clip.context_length(), 77);
    let vit = ClipModel::load(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vit_tiny/open_clip/open_clip_model.safetensors"),
    )
    .unwrap();
    assert_eq!(vit.family(), ModelFamily::Clip);
    assert_eq!(vit.preprocess_hints().resize, ResizeKind::ShorterSideCrop);
    let cn = ClipModel::load(fixtures().join("vit/cn_clip/model.safetensors")).unwrap();
    assert_eq!(cn.family(), ModelFamily::ChineseClip);
    assert_eq!(
        Tokenizer::for_family(cn.family()).unwrap().family(),
        ModelFamily::ChineseClip
    );
    // cn_clip's image_transform: Resize((s, s), BICUBIC), OpenAI's mean and std.
    let p = cn.preprocess_hints();
    assert_eq!(p.resize, ResizeKind::Squash);
    assert_eq!(p.interpolation, ResampleFilter::Bicubic);
    assert_eq!(p.mean, [0.48145466, 0.4578275, 0.40821073]);
    #[allow(clippy::excessive_precision)] // the values as cn_clip writes them
    let std = [0.26862954, 0.26130258, 0.27577711];
    assert_eq!(p.std, std);
    assert_eq!(p.image_size, cn.config().vision.image_size());
    assert_eq!(cn.score_function().name(), "softmax");
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    clip_model::candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn load_err(path: &Path, options: &LoadOptions) -> Error {
    match ClipModel::load_with(path, options) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => {
            println!("{e}");
            e
        }
    }
}

#[test]
fn wrong_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = LoadOptions::default();
    for (naming, name) in [
        ("cn_clip", "bert.encoder.layer.1.output.LayerNorm.bias"),
        ("hf", "text_model.encoder.layer.0.attention.self.key.weight"),
        ("hf", "text_model.embeddings.token_type_embeddings.weight"),
        ("cn_clip", "text_projection"),
    ] {
        let src = fixtures().join(format!("vit/{naming}/model.safetensors"));
        let mut tensors = read(&src);
        assert!(tensors.remove(name).is_some(), "{name}");
        let sub = dir.path().join(naming);
        std::fs::create_dir_all(&sub).unwrap();
        let out = sub.join("model.safetensors");
        clip_model::candle_core::safetensors::save(&tensors, &out).unwrap();
        std::fs::copy(src.with_file_name("config.json"), sub.join("config.json")).unwrap();
        match load_err(&out, &defaults) {
            Error::MissingTensor { name: n, .. } => assert_eq!(n, name),
            other => panic!("{name}: {other}"),
        }
    }
    // A wrong shape is named with the expected and found shapes.
    let src = fixtures().join("vit/cn_clip/model.safetensors");
    let mut tensors = read(&src);
    let name = "bert.encoder.layer.0.intermediate.dense.bias";
    tensors.insert(
        name.into(),
        Tensor::zeros(65, clip_model::candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let out = dir.path().join("shape.safetensors");
    clip_model::candle_core::safetensors::save(&tensors, &out).unwrap();
    let with_config = LoadOptions {
        config_file: Some(src.with_file_name("config.json")),
        ..LoadOptions::default()
    };
    match load_err(&out, &with_config) {
        Error::ShapeMismatch {
            name: n,
            expected,
            found,
        } => assert_eq!((n.as_str(), expected, found), (name, vec![64], vec![65])),
        other => panic!("{other}"),
    }
    // Without its config file the head count of a 32-wide BERT cannot be inferred.
    let no_config = LoadOptions {
        sidecar_config: false,
        ..LoadOptions::default()
    };
    assert!(matches!(load_err(&src, &no_config), Error::Architecture(_)));
    // A config that disagrees with the tensors.
    let bad = dir.path().join("bad_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.with_file_name("config.json")).unwrap())
            .unwrap();
    cfg["text_num_hidden_layers"] = 3.into();
    std::fs::write(&bad, cfg.to_string()).unwrap();
    let options = LoadOptions {
        config_file: Some(bad),
        ..LoadOptions::default()
    };
    match load_err(&src, &options) {
        Error::ConfigMismatch { field, .. } => assert_eq!(field, "text.layers"),
        other => panic!("{other}"),
    }
    // A preset of another shape.
    let options = LoadOptions {
        expect_preset: Some("CN-CLIP ViT-B/16".into()),
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_err(&src, &options),
        Error::ConfigMismatch { .. }
    ));
    // Token ids outside the vocabulary and rows longer than the position embedding.
    let model = ClipModel::load(&src).unwrap();
    assert!(matches!(
        model.encode_tokens(&[101, 10_000, 102], 1),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        model.encode_tokens(&vec![101; 65], 1),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn built_in_memory_like_presets() {
    // A tiny model from tensors in memory, through the same code as loading.
    let cfg = ChineseClipConfig::preset("CN-CLIP RN50").unwrap();
    assert_eq!(cfg.text.layers, 3);
    let shapes = cfg.tensor_shapes();
    assert!(
        shapes
            .iter()
            .any(|(n, s)| n == "text_projection" && s == &[768, 1024])
    );
    assert!(
        shapes
            .iter()
            .any(|(n, _)| n == "bert.encoder.layer.2.output.LayerNorm.bias")
    );
}

/// A Chinese-CLIP file whose logit scale is NaN is refused at load, naming the tensor and the
/// file, as for the other families (probabilities would all be NaN otherwise).
#[test]
fn non_finite_logit_scale_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("vit/cn_clip/model.safetensors");
    let mut tensors = read(&src);
    tensors.insert(
        "logit_scale".into(),
        Tensor::new(f32::NAN, &Device::Cpu).unwrap(),
    );
    let out = dir.path().join("model.safetensors");
    clip_model::candle_core::safetensors::save(&tensors, &out).unwrap();
    std::fs::copy(
        src.with_file_name("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    match load_err(&out, &LoadOptions::default()) {
        Error::NonFiniteTensor { name, path, .. } => {
            assert_eq!(name, "logit_scale");
            assert_eq!(path.as_deref(), Some(out.as_path()));
        }
        other => panic!("{other}"),
    }
}
