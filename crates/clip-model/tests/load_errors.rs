//! Wrong files give typed errors naming what is wrong. The bad files are made here from the
//! committed tiny fixture (tools/reference/model_parity.py).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip_model::candle_core::{DType, Device, Tensor};
use clip_model::{ClipModel, Error, LoadOptions};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_tiny")
}

fn open_clip_file() -> PathBuf {
    fixtures().join("open_clip/open_clip_model.safetensors")
}

fn hf_file() -> PathBuf {
    fixtures().join("hf/model.safetensors")
}

fn read(path: &Path) -> HashMap<String, Tensor> {
    clip_model::candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Writes `tensors` with the config file of `like` beside it; returns the new weights path.
fn write(dir: &Path, like: &Path, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let name = like.file_name().unwrap();
    let out = dir.join(name);
    clip_model::candle_core::safetensors::save(tensors, &out).unwrap();
    for cfg in ["open_clip_config.json", "config.json"] {
        let src = like.parent().unwrap().join(cfg);
        if src.exists() {
            std::fs::copy(&src, dir.join(cfg)).unwrap();
        }
    }
    out
}

fn load_err(path: &Path) -> Error {
    match ClipModel::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => {
            println!("{}: {e}", path.file_name().unwrap().to_string_lossy());
            e
        }
    }
}

#[test]
fn missing_tensor_is_named() {
    for (file, name) in [
        (open_clip_file(), "visual.ln_post.bias"),
        (open_clip_file(), "visual.class_embedding"),
        (
            hf_file(),
            "vision_model.encoder.layers.1.self_attn.k_proj.weight",
        ),
        (hf_file(), "text_projection.weight"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut t = read(&file);
        assert!(t.remove(name).is_some(), "{name}");
        let bad = write(dir.path(), &file, &t);
        match load_err(&bad) {
            Error::MissingTensor { name: got, .. } => assert_eq!(got, name),
            e => panic!("{name}: {e:?}"),
        }
    }
}

#[test]
fn missing_layer_tensor_is_named_not_a_smaller_model() {
    // Without the config file, a block with a missing tensor must not silently end the stack.
    let dir = tempfile::tempdir().unwrap();
    let mut t = read(&open_clip_file());
    t.remove("transformer.resblocks.1.mlp.c_proj.bias");
    let bad = write(dir.path(), &open_clip_file(), &t);
    match load_err(&bad) {
        Error::MissingTensor { name, .. } => {
            assert_eq!(name, "transformer.resblocks.1.mlp.c_proj.bias")
        }
        e => panic!("{e:?}"),
    }
    // The last block's first tensor, the one a naive layer count would stop at.
    for (file, name) in [
        (
            open_clip_file(),
            "visual.transformer.resblocks.1.ln_1.weight",
        ),
        (hf_file(), "text_model.encoder.layers.1.layer_norm1.weight"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut t = read(&file);
        t.remove(name);
        let bad = write(dir.path(), &file, &t);
        std::fs::remove_file(dir.path().join(if file == hf_file() {
            "config.json"
        } else {
            "open_clip_config.json"
        }))
        .unwrap();
        let opts = LoadOptions {
            config_file: Some(file.parent().unwrap().join(if file == hf_file() {
                "config.json"
            } else {
                "open_clip_config.json"
            })),
            ..LoadOptions::default()
        };
        match ClipModel::load_with(&bad, &opts) {
            Err(Error::MissingTensor { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn wrong_shape_names_tensor_expected_and_found() {
    let cases: [(PathBuf, &str, Vec<usize>, Vec<usize>); 3] = [
        (
            open_clip_file(),
            "transformer.resblocks.1.mlp.c_fc.weight",
            vec![100, 32],
            vec![128, 32],
        ),
        (
            hf_file(),
            "text_model.encoder.layers.0.self_attn.v_proj.bias",
            vec![31],
            vec![32],
        ),
        (open_clip_file(), "visual.ln_pre.weight", vec![63], vec![64]),
    ];
    for (file, name, found, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut t = read(&file);
        t.insert(
            name.to_string(),
            Tensor::zeros(found.as_slice(), DType::F32, &Device::Cpu).unwrap(),
        );
        let bad = write(dir.path(), &file, &t);
        match load_err(&bad) {
            Error::ShapeMismatch {
                name: n,
                expected: e,
                found: f,
            } => assert_eq!((n.as_str(), e, f), (name, expected, found)),
            e => panic!("{name}: {e:?}"),
        }
    }
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = read(&open_clip_file());
    t.insert(
        "visual.ln_pre.weight".into(),
        Tensor::zeros(64, DType::U8, &Device::Cpu).unwrap(),
    );
    let bad = write(dir.path(), &open_clip_file(), &t);
    match load_err(&bad) {
        Error::UnsupportedDtype { name, dtype, .. } => {
            assert_eq!(
                (name.as_str(), dtype.as_str()),
                ("visual.ln_pre.weight", "U8")
            )
        }
        e => panic!("{e:?}"),
    }
    // A requested model dtype candle cannot compute CLIP in.
    let opts = LoadOptions {
        dtype: DType::U32,
        ..LoadOptions::default()
    };
    assert!(matches!(
        ClipModel::load_with(open_clip_file(), &opts),
        Err(Error::UnsupportedDtype { .. })
    ));
}

#[test]
fn f16_file_loads_as_f32() {
    // Checkpoints are often stored in f16; the values are converted to the model dtype.
    let dir = tempfile::tempdir().unwrap();
    let t: HashMap<String, Tensor> = read(&open_clip_file())
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
        .collect();
    let f16 = write(dir.path(), &open_clip_file(), &t);
    let model = ClipModel::load(&f16).unwrap();
    assert_eq!(model.dtype(), DType::F32);
}

#[test]
fn truncated_file() {
    let bytes = std::fs::read(open_clip_file()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Cut in the tensor data, and cut inside the JSON header.
    for keep in [bytes.len() - 1000, 200] {
        let bad = dir.path().join("open_clip_model.safetensors");
        std::fs::write(&bad, &bytes[..keep]).unwrap();
        match load_err(&bad) {
            Error::Truncated {
                expected, found, ..
            } => {
                assert_eq!(found, keep);
                assert!(expected > keep);
                if keep > 1000 {
                    assert_eq!(expected, bytes.len());
                }
            }
            e => panic!("{keep}: {e:?}"),
        }
    }
}

#[test]
fn not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        (
            "text",
            b"this is a text file, not model weights at all\n".repeat(10),
        ),
        ("short", b"abc".to_vec()),
        ("zip", {
            // A PyTorch `.bin` / `.pt` file is a zip archive.
            let mut v = b"PK\x03\x04".to_vec();
            v.extend(std::iter::repeat_n(0u8, 200));
            v
        }),
        ("json", {
            // A sensible header length, but not JSON.
            let mut v = 16u64.to_le_bytes().to_vec();
            v.extend(b"<html>not json</html>");
            v
        }),
    ];
    for (label, bytes) in cases {
        let p = dir.path().join(format!("{label}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        match load_err(&p) {
            Error::NotSafetensors { path, .. } => assert_eq!(path, p),
            e => panic!("{label}: {e:?}"),
        }
    }
}

#[test]
fn corrupt_header() {
    let dir = tempfile::tempdir().unwrap();
    // Two tensors whose data ranges overlap.
    let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend(std::iter::repeat_n(0u8, 12));
    let p = dir.path().join("overlap.safetensors");
    std::fs::write(&p, bytes).unwrap();
    assert!(matches!(load_err(&p), Error::Corrupt { .. }));
    // Extra bytes after the last tensor.
    let mut bytes = std::fs::read(open_clip_file()).unwrap();
    bytes.extend_from_slice(&[0u8; 16]);
    let p = dir.path().join("trailing.safetensors");
    std::fs::write(&p, bytes).unwrap();
    assert!(matches!(load_err(&p), Error::Corrupt { .. }));
}

#[test]
fn missing_file_is_io_error() {
    let p = fixtures().join("does-not-exist.safetensors");
    let e = load_err(&p);
    // The cause is in the message once, not again as the error's source.
    dev_support::assert_cause_once(&e);
    assert!(matches!(e, Error::Io { path, .. } if path == p));
}

#[test]
fn unknown_naming_is_an_architecture_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = HashMap::new();
    t.insert(
        "encoder.weight".to_string(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    clip_model::candle_core::safetensors::save(&t, dir.path().join("x.safetensors")).unwrap();
    assert!(matches!(
        load_err(&dir.path().join("x.safetensors")),
        Error::Architecture(_)
    ));
}

#[test]
fn config_file_disagreeing_with_weights() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("open_clip_model.safetensors");
    std::fs::copy(open_clip_file(), &weights).unwrap();
    let cfg = std::fs::read_to_string(fixtures().join("open_clip/open_clip_config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["model_cfg"]["vision_cfg"]["layers"] = 3.into();
    std::fs::write(
        dir.path().join("open_clip_config.json"),
        serde_json::to_string(&v).unwrap(),
    )
    .unwrap();
    match load_err(&weights) {
        Error::ConfigMismatch {
            field,
            config,
            weights,
            ..
        } => assert_eq!(
            (field.as_str(), config.as_str(), weights.as_str()),
            ("vision.layers", "3", "2")
        ),
        e => panic!("{e:?}"),
    }
    // Invalid JSON is a config error naming the file.
    std::fs::write(dir.path().join("open_clip_config.json"), "{not json").unwrap();
    assert!(matches!(load_err(&weights), Error::Config { .. }));
}

#[test]
fn heads_need_a_config_when_width_is_not_a_multiple_of_64() {
    // Without its config file the tiny model's text width 32 leaves the head count unknown.
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("open_clip_model.safetensors");
    std::fs::copy(open_clip_file(), &weights).unwrap();
    match load_err(&weights) {
        Error::Architecture(msg) => assert!(msg.contains("head"), "{msg}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn expected_preset_mismatch() {
    let opts = LoadOptions {
        expect_preset: Some("ViT-B/32".into()),
        ..LoadOptions::default()
    };
    match ClipModel::load_with(open_clip_file(), &opts) {
        Err(Error::ConfigMismatch { field, .. }) => assert_eq!(field, "embed_dim"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors() {
    let model = ClipModel::load(open_clip_file()).unwrap();
    let dev = Device::Cpu;
    let wrong_size = Tensor::zeros((1, 3, 33, 32), DType::F32, &dev).unwrap();
    assert!(matches!(
        model.encode_image(&wrong_size),
        Err(Error::InvalidInput(_))
    ));
    let ints = Tensor::zeros((1, 3, 32, 32), DType::U32, &dev).unwrap();
    assert!(matches!(
        model.encode_image(&ints),
        Err(Error::InvalidInput(_))
    ));
    let out_of_vocab = Tensor::new(&[[998u32, 1000, 999]], &dev).unwrap();
    assert!(matches!(
        model.encode_text(&out_of_vocab),
        Err(Error::InvalidInput(_))
    ));
    let no_eot = Tensor::new(&[[998u32, 5, 6]], &dev).unwrap();
    assert!(matches!(
        model.encode_text(&no_eot),
        Err(Error::InvalidInput(_))
    ));
    let too_long = Tensor::zeros((1, 78), DType::U32, &dev).unwrap();
    assert!(matches!(
        model.encode_text(&too_long),
        Err(Error::InvalidInput(_))
    ));
    let negative = Tensor::new(&[[998i64, -1, 999]], &dev).unwrap();
    assert!(matches!(
        model.encode_text(&negative),
        Err(Error::InvalidInput(_))
    ));
}

/// A NaN, infinite or overflowing logit scale would make every probability NaN: the load fails
/// naming the tensor and the file.
#[test]
fn non_finite_logit_scale_is_refused_by_name() {
    for bad in [f32::NAN, f32::INFINITY, 1000.0] {
        let dir = tempfile::tempdir().unwrap();
        let mut t = read(&open_clip_file());
        t.insert(
            "logit_scale".into(),
            Tensor::new(bad, &Device::Cpu).unwrap(),
        );
        let p = write(dir.path(), &open_clip_file(), &t);
        match load_err(&p) {
            Error::NonFiniteTensor {
                path: Some(path),
                name: "logit_scale",
                ..
            } => assert_eq!(path, p),
            other => panic!("logit_scale {bad}: {other:?}"),
        }
    }
}

/// A FIFO or device given as weights is refused at once, not waited on.
#[cfg(unix)]
#[test]
fn special_files_as_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.safetensors");
    dev_support::mkfifo(&fifo);
    for p in [fifo, PathBuf::from("/dev/zero")] {
        let q = p.clone();
        let e = dev_support::within_10s(&format!("loading {}", p.display()), move || {
            ClipModel::load(&q).err().map(|e| e.to_string())
        })
        .expect("loaded");
        assert!(
            e.contains(&p.display().to_string()) && e.contains("not a regular file"),
            "{e}"
        );
    }
}
