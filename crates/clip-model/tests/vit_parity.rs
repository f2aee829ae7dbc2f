//! Parity with open_clip on the committed tiny ViT model (made by tools/reference/model_parity.py).
//!
//! Tolerances: the reference is open_clip in f32 on the same weights and inputs. Both sides compute
//! the same f32 arithmetic in a different order (matmul blocking, fused softmax/layer norm), which
//! moves results by a few ulps per operation; through 2 residual blocks of width ≤ 64 that stays
//! orders of magnitude below the bars the project sets (cosine ≥ 0.99999, max |diff| ≤ 1e-4).

use std::path::PathBuf;

use clip_model::candle_core::{DType, Tensor};
use clip_model::{Activation, ClipModel, LoadOptions, Naming, TextLength, VisionConfig, Weights};

const MIN_COSINE: f32 = 0.99999;
const MAX_ABS: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_tiny")
}

fn npy(name: &str) -> Tensor {
    dev_support::read_tensor(fixtures().join(name)).unwrap()
}

fn pixels() -> Tensor {
    npy("pixels.npy")
}

fn token_ids() -> Tensor {
    npy("token_ids.npy")
}

/// Per row: (cosine, max |diff|); asserts the bars and prints the worst values.
fn compare(what: &str, ours: &Tensor, reference: &str) -> (f32, f32) {
    let want = npy(reference);
    assert_eq!(ours.dims(), want.dims(), "{what}: shape");
    let got = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dim = want.dims()[1];
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // NaN anywhere makes both numbers NaN, which fails the bars below.
    let a = dev_support::agreement(&got, &want, dim).unwrap();
    let (min_cos, max_abs) = (a.min_cosine as f32, a.max_abs_diff as f32);
    println!(
        "{what}: min cosine {min_cos:.9}, max |diff| {max_abs:.3e} ({} rows)",
        a.rows
    );
    (min_cos, max_abs)
}

fn assert_parity(what: &str, ours: &Tensor, reference: &str) {
    let (cos, abs) = compare(what, ours, reference);
    assert!(cos >= MIN_COSINE, "{what}: min cosine {cos} < {MIN_COSINE}");
    assert!(abs <= MAX_ABS, "{what}: max |diff| {abs} > {MAX_ABS}");
}

fn check_model(label: &str, model: &ClipModel) {
    assert_parity(
        &format!("{label} image"),
        &model.encode_image(&pixels()).unwrap(),
        "image_embeds.npy",
    );
    assert_parity(
        &format!("{label} text"),
        &model.encode_text(&token_ids()).unwrap(),
        "text_embeds.npy",
    );
}

#[test]
fn open_clip_naming_matches_open_clip() {
    let path = fixtures().join("open_clip/open_clip_model.safetensors");
    assert_eq!(Weights::open(&path).unwrap().naming(), Naming::OpenClip);
    let model = ClipModel::load(&path).unwrap();
    let cfg = model.config();
    let VisionConfig::Vit(v) = cfg.vision else {
        panic!("not a ViT")
    };
    // The sizes written in tools/reference/model_parity.py (TINY).
    assert_eq!(
        (
            v.image_size,
            v.patch_size,
            v.width,
            v.layers,
            v.heads,
            v.mlp_width
        ),
        (32, 8, 64, 2, 4, 256)
    );
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
        (77, 1000, 32, 2, 2, 128)
    );
    assert_eq!((cfg.embed_dim, cfg.activation), (32, Activation::QuickGelu));
    assert_eq!(model.name(), "custom");
    check_model("open_clip naming", &model);
}

#[test]
fn transformers_naming_matches_open_clip() {
    let path = fixtures().join("hf/model.safetensors");
    assert_eq!(Weights::open(&path).unwrap().naming(), Naming::HuggingFace);
    let model = ClipModel::load(&path).unwrap();
    let open_clip =
        ClipModel::load(fixtures().join("open_clip/open_clip_model.safetensors")).unwrap();
    assert_eq!(model.config(), open_clip.config());
    check_model("transformers naming", &model);
}

#[test]
fn logit_scale_matches() {
    let model = ClipModel::load(fixtures().join("hf/model.safetensors")).unwrap();
    let text = std::fs::read_to_string(fixtures().join("logit_scale.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = v["logit_scale_exp"].as_f64().unwrap() as f32;
    println!("logit scale: ours {} open_clip {want}", model.logit_scale());
    assert!((model.logit_scale() - want).abs() <= 1e-6 * want);
}

#[test]
fn exact_gelu_from_config_matches_open_clip() {
    let opts = LoadOptions {
        config_file: Some(fixtures().join("gelu/open_clip_config.json")),
        ..LoadOptions::default()
    };
    let weights = fixtures().join("open_clip/open_clip_model.safetensors");
    let model = ClipModel::load_with(&weights, &opts).unwrap();
    assert_eq!(model.config().activation, Activation::Gelu);
    let image = model.encode_image(&pixels()).unwrap();
    let text = model.encode_text(&token_ids()).unwrap();
    assert_parity("gelu image", &image, "gelu/image_embeds.npy");
    assert_parity("gelu text", &text, "gelu/text_embeds.npy");
    // The activation matters: the QuickGELU model is far from the GELU reference.
    let quick = ClipModel::load(&weights).unwrap();
    let (_, abs) = compare(
        "quickgelu vs gelu reference",
        &quick.encode_image(&pixels()).unwrap(),
        "gelu/image_embeds.npy",
    );
    assert!(
        abs > 1e-3,
        "QuickGELU and GELU results should differ, max |diff| {abs}"
    );
}

#[test]
fn text_up_to_eot_equals_full_length() {
    // Float reassociation only: the cut run multiplies the same numbers, masked positions
    // contribute exp(-inf) = 0 either way, so 1e-5 leaves a wide margin over the f32 noise.
    let model = ClipModel::load(fixtures().join("open_clip/open_clip_model.safetensors")).unwrap();
    let ids = token_ids();
    // The rows have end-of-text at positions 1, 4, 16, 39 and 76: test a batch that stops short.
    let short = ids.narrow(0, 0, 3).unwrap();
    for (label, batch) in [("all rows", &ids), ("short rows", &short)] {
        let cut = model
            .encode_text_with(batch, TextLength::UpToLongestEot)
            .unwrap();
        let full = model.encode_text_with(batch, TextLength::Full).unwrap();
        let diff = (cut - full)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{label}: max |up-to-EOT − full| = {diff:.3e}");
        assert!(diff <= 1e-5, "{label}: {diff}");
    }
    // Rows given shorter than the context (just up to EOT) give the same result.
    let cut_input = short.narrow(1, 0, 17).unwrap();
    let a = model.encode_text(&cut_input).unwrap();
    let b = model.encode_text(&short).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() <= 1e-5);
}

#[test]
fn normalized_embeddings_have_unit_norm_and_match_reference_direction() {
    let model = ClipModel::load(fixtures().join("open_clip/open_clip_model.safetensors")).unwrap();
    let img = model.encode_image_normalized(&pixels()).unwrap();
    let norms = img.sqr().unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    for n in norms {
        assert!((n - 1.0).abs() < 1e-5, "{n}");
    }
    // The cosine to the reference is scale-free: the normalised output points the same way.
    let (cos, _) = compare("normalised image", &img, "image_embeds.npy");
    assert!(cos >= MIN_COSINE);
    let txt = model.encode_text_normalized(&token_ids()).unwrap();
    let (cos, _) = compare("normalised text", &txt, "text_embeds.npy");
    assert!(cos >= MIN_COSINE);
}

#[test]
fn half_precision_runs_close_to_f32() {
    // f16 / bf16 keep ~3 / ~2 significant digits per operation; a loose cosine bar shows the
    // conversion and layer code work in those dtypes, not parity.
    for (dtype, min_cos) in [(DType::F16, 0.999), (DType::BF16, 0.99)] {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let model = ClipModel::load_with(fixtures().join("hf/model.safetensors"), &opts).unwrap();
        assert_eq!(model.dtype(), dtype);
        let (cos, _) = compare(
            &format!("{dtype:?} image"),
            &model.encode_image(&pixels()).unwrap(),
            "image_embeds.npy",
        );
        assert!(cos >= min_cos, "{dtype:?} image cosine {cos}");
        let (cos, _) = compare(
            &format!("{dtype:?} text"),
            &model.encode_text(&token_ids()).unwrap(),
            "text_embeds.npy",
        );
        assert!(cos >= min_cos, "{dtype:?} text cosine {cos}");
    }
}

#[test]
fn tensor_shapes_list_matches_the_checkpoint() {
    let path = fixtures().join("open_clip/open_clip_model.safetensors");
    let w = Weights::open(&path).unwrap();
    let model = ClipModel::load(&path).unwrap();
    let listed = model.config().tensor_shapes();
    let mut names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, w.file().names());
    for (name, shape) in &listed {
        assert_eq!(w.file().shape(name).unwrap(), shape.as_slice(), "{name}");
    }
}

#[test]
fn transformers_config_hidden_act_gelu_matches_open_clip_gelu() {
    // The transformers config beside the weights gives the activation as `hidden_act`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("hf/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(fixtures().join("hf/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["text_config"]["hidden_act"] = "gelu".into();
    v["vision_config"]["hidden_act"] = "gelu".into();
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    let model = ClipModel::load(dir.path().join("model.safetensors")).unwrap();
    assert_eq!(model.config().activation, Activation::Gelu);
    assert_parity(
        "transformers gelu image",
        &model.encode_image(&pixels()).unwrap(),
        "gelu/image_embeds.npy",
    );
    assert_parity(
        "transformers gelu text",
        &model.encode_text(&token_ids()).unwrap(),
        "gelu/text_embeds.npy",
    );
}

/// The other CPU paths must match open_clip too: the plain candle path (what CUDA / Metal run, and
/// the CPU with `CLIP_MODEL_UNFUSED=1`) and the fused blocks on candle's matmul instead of the
/// packed kernels (`CLIP_MODEL_UNPACKED=1`, and CPUs without AVX2). Both switches are read once
/// per process, so this re-runs the parity tests of this binary in child processes.
#[test]
fn unfused_and_unpacked_paths_match_open_clip() {
    if std::env::var_os("CLIP_MODEL_UNFUSED").is_some()
        || std::env::var_os("CLIP_MODEL_UNPACKED").is_some()
    {
        return; // Already a child (or the whole run is switched): the other tests cover it.
    }
    let tests = [
        "open_clip_naming_matches_open_clip",
        "transformers_naming_matches_open_clip",
        "exact_gelu_from_config_matches_open_clip",
        "text_up_to_eot_equals_full_length",
    ];
    for switch in ["CLIP_MODEL_UNFUSED", "CLIP_MODEL_UNPACKED"] {
        let out = dev_support::rerun_tests_with_env(&tests, switch, "1");
        println!("{switch}=1 run:\n{out}");
    }
}
