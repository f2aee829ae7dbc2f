//! A whole `ClipModel` with a ModifiedResNet image tower: the tiny ResNet fixture
//! (tools/reference/resnet_parity.py) combined with the tiny ViT model's text tower
//! (tools/reference/model_parity.py), whose embedding size is the same (32). Each tower is
//! compared with its own open_clip reference; the bars are the project's (cosine ≥ 0.99999,
//! max |diff| ≤ 1e-4), with f32 on both sides.

use std::collections::HashMap;
use std::path::PathBuf;

use clip_model::candle_core::{Device, Tensor};
use clip_model::{ClipModel, VisionConfig, VisionTower};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn npy(path: PathBuf) -> Tensor {
    dev_support::read_tensor(path).unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let dim = got.dims()[1];
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // NaN anywhere makes both numbers NaN, which fails the bars.
    let a = dev_support::agreement(&got, &want, dim).unwrap();
    println!(
        "{what}: min cosine {:.9}, max |diff| {:.3e}",
        a.min_cosine, a.max_abs_diff
    );
    assert!(a.min_cosine >= 0.99999 && a.max_abs_diff <= 1e-4, "{what}");
}

#[test]
fn resnet_image_tower_in_a_clip_model() {
    let dev = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = clip_model::candle_core::safetensors::load(
        fixtures().join("resnet_tiny.safetensors"),
        &dev,
    )
    .unwrap();
    let vit = clip_model::candle_core::safetensors::load(
        fixtures().join("vit_tiny/open_clip/open_clip_model.safetensors"),
        &dev,
    )
    .unwrap();
    tensors.extend(vit.into_iter().filter(|(k, _)| !k.starts_with("visual.")));
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("open_clip_model.safetensors");
    clip_model::candle_core::safetensors::save(&tensors, &weights).unwrap();
    // The text width 32 needs its head count from a config file.
    std::fs::write(
        dir.path().join("open_clip_config.json"),
        r#"{"model_cfg": {"embed_dim": 32, "quick_gelu": true,
            "vision_cfg": {"layers": [2, 2, 2, 1], "image_size": 64},
            "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 2}}}"#,
    )
    .unwrap();

    let model = ClipModel::load(&weights).unwrap();
    assert!(matches!(model.vision(), VisionTower::ModifiedResNet(_)));
    assert!(matches!(
        model.config().vision,
        VisionConfig::ModifiedResNet(_)
    ));
    assert_eq!(model.name(), "custom");
    let image = model
        .encode_image(&npy(fixtures().join("resnet_tiny_input.npy")))
        .unwrap();
    assert_close(
        "ResNet image",
        &image,
        &npy(fixtures().join("resnet_tiny_expected.npy")),
    );
    let text = model
        .encode_text(&npy(fixtures().join("vit_tiny/token_ids.npy")))
        .unwrap();
    assert_close(
        "text",
        &text,
        &npy(fixtures().join("vit_tiny/text_embeds.npy")),
    );
}

#[test]
fn resnet_presets_have_openai_text_towers() {
    let rn50 = clip_model::ClipConfig::preset("RN50").unwrap();
    assert_eq!(
        (rn50.embed_dim, rn50.text.width, rn50.text.heads),
        (1024, 512, 8)
    );
    let rn50x64 = clip_model::ClipConfig::preset("RN50x64").unwrap();
    assert_eq!(
        (rn50x64.embed_dim, rn50x64.text.width, rn50x64.text.heads),
        (1024, 1024, 16)
    );
    assert_eq!(rn50x64.name(), "RN50x64");
}
