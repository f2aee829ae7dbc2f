//! ModifiedResNet parity against open_clip on a tiny random model.
//!
//! Fixtures made by `tools/reference/resnet_parity.py`: a ModifiedResNet with layers [2, 2, 2, 1], width 4
//! (two attention heads), 64 px input and a 32-d embedding, whose batch norms carry random affine parameters
//! and non-trivial running statistics; two fixed random pre-normalised images and open_clip's embeddings.
//!
//! Tolerance: cosine >= 0.99999 and max abs <= 1e-4 per embedding (values up to ~8). Both sides run in f32;
//! the differences come from summation order and from folding batch norm into the convolutions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use clip_model::Error;
use clip_model::resnet::{ModifiedResNet, ResNetConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("resnet_tiny.safetensors"), &Device::Cpu)
        .unwrap()
}

fn npy(name: &str) -> Tensor {
    dev_support::read_tensor(fixtures().join(name)).unwrap()
}

fn tiny_config() -> ResNetConfig {
    ResNetConfig::new(64, [2, 2, 2, 1], 4, 32)
}

fn shapes(ts: &HashMap<String, Tensor>) -> HashMap<String, Vec<usize>> {
    ts.iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect()
}

/// The tower's weights as open_clip names them (`visual.*`).
fn tower(ts: HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(ts, DType::F32, &Device::Cpu).pp("visual")
}

#[test]
fn config_is_inferred_from_shapes() {
    let s = shapes(&tensors());
    let cfg = ResNetConfig::infer("visual", |n| s.get(n).cloned()).unwrap();
    assert_eq!(cfg, tiny_config());
    assert_eq!(cfg.heads, 2);
    // The same through a VarBuilder.
    let vb = VarBuilder::from_tensors(tensors(), DType::F32, &Device::Cpu);
    assert_eq!(
        ResNetConfig::infer_from_var_builder(&vb.pp("visual")).unwrap(),
        cfg
    );
    // Against a preset: names the differing field.
    let err = cfg
        .check_against("RN50", &ResNetConfig::rn50())
        .unwrap_err();
    assert!(
        matches!(err, Error::ConfigMismatch { ref field, .. } if field == "vision.image_size"),
        "{err}"
    );
    cfg.check_against("tiny", &tiny_config()).unwrap();
}

#[test]
fn matches_open_clip() {
    let model = ModifiedResNet::from_var_builder(tower(tensors())).unwrap();
    assert_eq!(model.image_size(), 64);
    assert_eq!(model.output_dim(), 32);
    let x = npy("resnet_tiny_input.npy");
    let want = npy("resnet_tiny_expected.npy");
    let got = model.encode(&x).unwrap();
    assert_eq!(got.dims(), want.dims());
    let got = got.to_vec2::<f32>().unwrap();
    let want = want.to_vec2::<f32>().unwrap();
    // NaN anywhere makes both numbers NaN, which fails the bars below.
    let agree = dev_support::agreement(&got.concat(), &want.concat(), want[0].len()).unwrap();
    let (worst_abs, worst_cos) = (agree.max_abs_diff, agree.min_cosine);
    println!("resnet tiny parity: max abs diff {worst_abs:.3e}, min cosine {worst_cos:.9}");
    assert!(worst_cos >= 0.99999, "min cosine {worst_cos}");
    assert!(worst_abs <= 1e-4, "max abs diff {worst_abs}");

    // Batching does not mix images: the second image alone gives the same embedding.
    let one = model
        .encode(&x.narrow(0, 1, 1).unwrap())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let d = dev_support::max_abs_diff(&one[0], &got[1]).unwrap();
    assert!(d <= 1e-5, "batch of 1 vs batch of 2 differ by {d}");
}

/// The stem's and each stage's output (NCHW) against open_clip's `stem` / `layer1..4` on the same
/// input; same bars as the embeddings (maps hold values up to ~10).
#[test]
fn feature_maps_match_open_clip() {
    let model = ModifiedResNet::from_var_builder(tower(tensors())).unwrap();
    let x = npy("resnet_tiny_input.npy");
    let maps = model.feature_maps(&x).unwrap();
    let dims: Vec<Vec<usize>> = maps.iter().map(|m| m.dims().to_vec()).collect();
    // 64 px: stem /4 (4 channels), then stages /1, /2, /4, /8 with 16, 32, 64, 128 channels.
    assert_eq!(
        dims,
        [
            vec![2, 4, 16, 16],
            vec![2, 16, 16, 16],
            vec![2, 32, 8, 8],
            vec![2, 64, 4, 4],
            vec![2, 128, 2, 2]
        ]
    );
    let got: Vec<f32> = maps
        .iter()
        .flat_map(|m| m.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let want = npy("resnet_tiny_maps.npy")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(got.len(), want.len());
    let d = dev_support::max_abs_diff(&got, &want).unwrap();
    println!("resnet tiny feature maps: max abs diff {d:.3e}");
    assert!(d <= 1e-4, "max abs diff {d}");
}

#[test]
fn half_precision_runs_close_to_f32() {
    // f16 / bf16 keep ~3 / ~2 significant digits per operation; a loose cosine bar shows the
    // folding, conversion and layer code work in those dtypes (the plain candle path), not parity.
    let want = npy("resnet_tiny_expected.npy").to_vec2::<f32>().unwrap();
    for (dtype, min_cos) in [(DType::F16, 0.999), (DType::BF16, 0.99)] {
        let vb = VarBuilder::from_tensors(tensors(), dtype, &Device::Cpu).pp("visual");
        let model = ModifiedResNet::from_var_builder(vb).unwrap();
        let x = npy("resnet_tiny_input.npy").to_dtype(dtype).unwrap();
        let got = model.encode(&x).unwrap();
        assert_eq!(got.dtype(), dtype);
        let got = got.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
        let agree = dev_support::agreement(&got.concat(), &want.concat(), want[0].len()).unwrap();
        println!("resnet tiny {dtype:?}: min cosine {:.6}", agree.min_cosine);
        assert!(
            agree.min_cosine >= min_cos,
            "{dtype:?} cosine {}",
            agree.min_cosine
        );
    }
}

#[test]
fn missing_tensor_is_named() {
    let mut ts = tensors();
    ts.remove("visual.layer3.1.bn2.running_var");
    let err = ModifiedResNet::from_var_builder(tower(ts)).unwrap_err();
    assert!(
        matches!(err, Error::MissingTensor { ref name, .. } if name == "visual.layer3.1.bn2.running_var"),
        "{err}"
    );
}

#[test]
fn missing_stage_block_is_an_architecture_gap() {
    // Without any block of stage 2 the layer count cannot be inferred.
    let mut ts = tensors();
    ts.retain(|k, _| !k.starts_with("visual.layer2."));
    let err = ModifiedResNet::from_var_builder(tower(ts)).unwrap_err();
    assert!(
        matches!(err, Error::MissingTensor { ref name, .. } if name == "visual.layer2.0.conv1.weight"),
        "{err}"
    );
}

#[test]
fn gap_in_a_stage_is_a_missing_tensor() {
    // Block 1 of stage 3 loses its first convolution: not a shorter stage but a broken file.
    let mut ts = tensors();
    ts.remove("visual.layer3.1.conv1.weight");
    let err = ModifiedResNet::from_var_builder(tower(ts)).unwrap_err();
    assert!(
        matches!(err, Error::MissingTensor { ref name, .. } if name == "visual.layer3.1.conv1.weight"),
        "{err}"
    );
}

#[test]
fn loads_from_file_through_the_crate_loader() {
    let path = fixtures().join("resnet_tiny.safetensors");
    let model = ModifiedResNet::from_file(&path, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(*model.config(), tiny_config());
    let got = model.encode(&npy("resnet_tiny_input.npy")).unwrap();
    let want = npy("resnet_tiny_expected.npy");
    let d = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d <= 1e-4, "max abs diff {d}");

    // A file that is not safetensors is a typed error, not a panic.
    let bad =
        std::env::temp_dir().join(format!("resnet_not_safetensors_{}.bin", std::process::id()));
    std::fs::write(&bad, b"definitely not a safetensors header").unwrap();
    let err = ModifiedResNet::from_file(&bad, DType::F32, &Device::Cpu).unwrap_err();
    std::fs::remove_file(&bad).ok();
    assert!(
        matches!(
            err,
            Error::NotSafetensors { .. } | Error::Truncated { .. } | Error::Corrupt { .. }
        ),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let mut ts = tensors();
    let name = "visual.layer2.0.downsample.0.weight";
    // (out 32, in 16, 1, 1) in the file; replace with a 3x3 kernel.
    ts.insert(
        name.into(),
        Tensor::zeros((32, 16, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = ModifiedResNet::from_var_builder(tower(ts)).unwrap_err();
    match err {
        Error::ShapeMismatch {
            name: n,
            expected,
            found,
        } => {
            assert_eq!(n, name);
            assert_eq!(expected, vec![32, 16, 1, 1]);
            assert_eq!(found, vec![32, 16, 3, 3]);
        }
        other => panic!("unexpected error: {other}"),
    }

    // A pool width that disagrees with the stem width.
    let mut ts = tensors();
    ts.insert(
        "visual.attnpool.positional_embedding".into(),
        Tensor::zeros((5, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = ModifiedResNet::from_var_builder(tower(ts)).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { ref name, ref expected, .. }
            if name == "visual.attnpool.positional_embedding" && expected == &vec![5, 128]),
        "{err}"
    );

    // A positional embedding whose row count is not a square grid plus one.
    let mut ts = tensors();
    ts.insert(
        "visual.attnpool.positional_embedding".into(),
        Tensor::zeros((6, 128), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = ModifiedResNet::from_var_builder(tower(ts)).unwrap_err();
    assert!(matches!(err, Error::Architecture(_)), "{err}");
}

#[test]
fn wrong_input_is_an_error() {
    let model = ModifiedResNet::from_var_builder(tower(tensors())).unwrap();
    for dims in [
        vec![1, 3, 224, 224],
        vec![1, 1, 64, 64],
        vec![3, 64, 64],
        vec![0, 3, 64, 64],
    ] {
        let x = Tensor::zeros(dims.clone(), DType::F32, &Device::Cpu).unwrap();
        let err = model.encode(&x).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{dims:?}: {err}");
    }
    // `Module::forward` on the raw tensor path refuses a wrong size too (an error, no panic):
    // a larger image, one smaller than a pooling window, an empty batch.
    for dims in [[1, 3, 96, 96], [1, 3, 16, 16], [0, 3, 64, 64]] {
        let x = Tensor::zeros(&dims, DType::F32, &Device::Cpu).unwrap();
        assert!(model.forward(&x).is_err(), "{dims:?}");
    }
}

/// The NCHW paths must match open_clip too: candle's `gemm` behind the fused convolutions
/// (`CLIP_MODEL_UNPACKED=1`, and CPUs without AVX2) and the plain candle path (`CLIP_MODEL_UNFUSED=1`,
/// what CUDA / Metal run). Both switches are read once per process, so this re-runs the parity tests
/// of this binary in child processes.
#[test]
fn nchw_paths_match_open_clip() {
    if std::env::var_os("CLIP_MODEL_UNFUSED").is_some()
        || std::env::var_os("CLIP_MODEL_UNPACKED").is_some()
    {
        return; // Already a child (or the whole run is switched): the other tests cover it.
    }
    let tests = ["matches_open_clip", "feature_maps_match_open_clip"];
    for switch in ["CLIP_MODEL_UNFUSED", "CLIP_MODEL_UNPACKED"] {
        let out = dev_support::rerun_tests_with_env(&tests, switch, "1");
        println!("{switch}=1 run:\n{out}");
    }
}
