//! The large open_clip ViTs' attention layout: head widths 80 (ViT-H/14) and 104 (ViT-bigG/14)
//! read from `open_clip_config.json`, with QuickGELU and exact GELU, against open_clip on tiny
//! random models (made by `tools/reference/model_parity.py heads`); the head-count rule used
//! without a config file; the preprocessing read from `preprocess_cfg`.
//!
//! Tolerances as in vit_parity.rs: f32 against f32 in another order of operations, one block of
//! width ≤ 208, so cosine ≥ 0.99999 and max |diff| ≤ 1e-4 leave orders of magnitude of margin.

use std::collections::HashMap;
use std::path::PathBuf;

use clip_model::candle_core::{Device, Tensor};
use clip_model::{
    Activation, ClipModel, LoadOptions, ModelFamily, ResizeKind, ScoreFunction, VisionConfig,
};
use dev_support::Npy;

const MIN_COSINE: f64 = 0.99999;
const MAX_ABS: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_heads")
}

fn npy(path: PathBuf) -> (Vec<usize>, Vec<f32>) {
    let a = Npy::read(path).unwrap();
    let shape = a.shape.clone();
    (shape, a.into_f32().unwrap())
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

fn inputs() -> (Tensor, Tensor) {
    let (shape, data) = npy(fixtures().join("pixels.npy"));
    let pixels = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
    let a = Npy::read(fixtures().join("token_ids.npy")).unwrap();
    let shape = a.shape.clone();
    let ids = Tensor::from_vec(a.into_i64().unwrap(), shape, &Device::Cpu).unwrap();
    (pixels, ids)
}

#[test]
fn head_widths_80_and_104_match_open_clip_with_both_activations() {
    let (pixels, ids) = inputs();
    for (name, width, head_width) in [("h80", 160, 80), ("h104", 208, 104)] {
        let weights = fixtures().join(name).join("open_clip_model.safetensors");
        for (act, want_act) in [
            ("quickgelu", Activation::QuickGelu),
            ("gelu", Activation::Gelu),
        ] {
            let opts = LoadOptions {
                config_file: Some(
                    fixtures()
                        .join(name)
                        .join(act)
                        .join("open_clip_config.json"),
                ),
                ..LoadOptions::default()
            };
            let model = ClipModel::load_with(&weights, &opts).unwrap();
            let VisionConfig::Vit(v) = model.config().vision else {
                panic!("not a ViT")
            };
            assert_eq!(
                (v.width, v.heads, v.mlp_width),
                (width, width / head_width, 2 * width)
            );
            assert_eq!(model.config().activation, want_act);
            assert_eq!(model.family(), ModelFamily::Clip);
            assert!(matches!(
                model.score_function(),
                ScoreFunction::Softmax { .. }
            ));
            assert!(model.notes().is_empty(), "{:?}", model.notes());
            // The preprocessing of the config file (DFN5B-style squash with OpenAI's mean / std).
            let p = model.preprocess_hints();
            assert_eq!((p.image_size, p.resize), (32, ResizeKind::Squash));
            let dir = fixtures().join(name).join(act);
            assert_parity(
                &format!("{name} {act} image"),
                &model.encode_image(&pixels).unwrap(),
                dir.join("image_embeds.npy"),
            );
            assert_parity(
                &format!("{name} {act} text"),
                &model.encode_text(&ids).unwrap(),
                dir.join("text_embeds.npy"),
            );
        }
    }
}

#[test]
fn no_config_and_no_rule_is_an_error() {
    // Without its config the 160-wide tower falls to width / 64, which does not divide 160:
    // an error that says what to do, not a silently wrong model.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("h80/open_clip_model.safetensors"),
        dir.path().join("open_clip_model.safetensors"),
    )
    .unwrap();
    let err = ClipModel::load(dir.path().join("open_clip_model.safetensors")).unwrap_err();
    assert!(err.to_string().contains("open_clip_config.json"), "{err}");
}

/// Writes a safetensors file of zeros with these shapes.
fn write_zeros(path: &std::path::Path, shapes: &[(String, Vec<usize>)]) {
    let tensors: HashMap<String, Tensor> = shapes
        .iter()
        .map(|(n, s)| {
            let t = Tensor::zeros(
                s.as_slice(),
                clip_model::candle_core::DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            (n.clone(), t)
        })
        .collect();
    clip_model::candle_core::safetensors::save(&tensors, path).unwrap();
}

#[test]
fn large_widths_get_sixteen_heads_without_a_config_and_say_so() {
    // ViT-H/14, ViT-g/14 and ViT-bigG/14 widths with a 1×1 patch grid and no blocks: only the
    // shapes matter for the inference of the architecture.
    for (width, head_width) in [(1280usize, 80usize), (1408, 88), (1664, 104)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open_clip_model.safetensors");
        let shapes = vec![
            ("visual.conv1.weight".to_string(), vec![width, 3, 2, 2]),
            ("visual.class_embedding".into(), vec![width]),
            ("visual.positional_embedding".into(), vec![2, width]),
            ("visual.ln_pre.weight".into(), vec![width]),
            ("visual.ln_pre.bias".into(), vec![width]),
            ("visual.ln_post.weight".into(), vec![width]),
            ("visual.ln_post.bias".into(), vec![width]),
            ("visual.proj".into(), vec![width, 8]),
            ("token_embedding.weight".into(), vec![10, 64]),
            ("positional_embedding".into(), vec![4, 64]),
            ("ln_final.weight".into(), vec![64]),
            ("ln_final.bias".into(), vec![64]),
            ("text_projection".into(), vec![64, 8]),
            ("logit_scale".into(), vec![]),
        ];
        write_zeros(&path, &shapes);
        let model = ClipModel::load(&path).unwrap();
        let VisionConfig::Vit(v) = model.config().vision else {
            panic!("not a ViT")
        };
        assert_eq!(v.heads, 16, "width {width}");
        assert_eq!(v.width / v.heads, head_width);
        assert_eq!(model.config().text.heads, 1, "text keeps width / 64");
        let notes = model.notes().join("\n");
        assert!(notes.contains("16 heads of"), "{notes}");
    }
}
