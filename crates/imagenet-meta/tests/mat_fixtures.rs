//! The tiny MAT-files written by `tools/reference/imagenet_meta.py` (scipy's `savemat` and a
//! byte-by-byte writer) must read back as the values the script wrote.

use std::path::PathBuf;

use imagenet_meta::mat::{Array, Data, MatFile, NumericData};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn class_name(d: &NumericData) -> &'static str {
    d.class_name()
}

fn check_numbers(path: &str, got: &NumericData, want: &Value) {
    let want = want
        .as_array()
        .unwrap_or_else(|| panic!("{path}: expected list"));
    assert_eq!(got.len(), want.len(), "{path}: element count");
    for (i, w) in want.iter().enumerate() {
        if let Some(wi) = w
            .as_i64()
            .map(i128::from)
            .or_else(|| w.as_u64().map(i128::from))
        {
            assert_eq!(got.get_i128(i), Some(wi), "{path}[{i}]");
        } else {
            let wf = w.as_f64().unwrap();
            let g = got.get_f64(i).unwrap();
            // Floats go through decimal JSON text: allow one part in 1e15.
            assert!(
                (g - wf).abs() <= 1e-15 * wf.abs().max(1.0),
                "{path}[{i}]: {g} vs {wf}"
            );
        }
    }
}

fn check(path: &str, got: &Array, want: &Value) {
    let dims: Vec<usize> = serde_json::from_value(want["dims"].clone()).unwrap();
    assert_eq!(got.dims, dims, "{path}: dims");
    match (want["kind"].as_str().unwrap(), &got.data) {
        (
            "numeric",
            Data::Numeric {
                real,
                imag,
                logical,
            },
        ) => {
            assert_eq!(
                class_name(real),
                want["class"].as_str().unwrap(),
                "{path}: class"
            );
            assert_eq!(
                *logical,
                want["logical"].as_bool().unwrap(),
                "{path}: logical"
            );
            check_numbers(path, real, &want["data"]);
            match (imag, &want["imag"]) {
                (None, Value::Null) => {}
                (Some(im), w @ Value::Array(_)) => check_numbers(&format!("{path}.imag"), im, w),
                (g, w) => panic!("{path}: imag {g:?} vs {w}"),
            }
        }
        ("char", Data::Char(_)) => {
            let rows: Vec<String> = serde_json::from_value(want["rows"].clone()).unwrap();
            assert_eq!(got.char_rows().unwrap(), rows, "{path}: text");
        }
        ("cell", Data::Cell(cells)) => {
            let w = want["cells"].as_array().unwrap();
            assert_eq!(cells.len(), w.len(), "{path}: cell count");
            for (i, (g, w)) in cells.iter().zip(w).enumerate() {
                check(&format!("{path}{{{i}}}"), g, w);
            }
        }
        ("struct", Data::Struct(s)) => {
            let fields: Vec<String> = serde_json::from_value(want["fields"].clone()).unwrap();
            assert_eq!(s.field_names, fields, "{path}: fields");
            let elements = want["elements"].as_array().unwrap();
            assert_eq!(s.len(), elements.len(), "{path}: element count");
            for (e, values) in elements.iter().enumerate() {
                for (f, w) in fields.iter().zip(values.as_array().unwrap()) {
                    check(&format!("{path}({e}).{f}"), s.get(e, f).unwrap(), w);
                }
            }
        }
        (kind, data) => panic!("{path}: expected {kind}, got {data:?}"),
    }
}

#[test]
fn tiny_files_match_the_values_written() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny_expected.json")).unwrap(),
    )
    .unwrap();
    let files = expected.as_object().unwrap();
    assert_eq!(files.len(), 4);
    for (file, vars) in files {
        let mat = MatFile::open(fixtures().join(file)).unwrap();
        assert_eq!(mat.big_endian, file.ends_with("_be.mat"), "{file}");
        let vars = vars.as_object().unwrap();
        assert_eq!(mat.variables.len(), vars.len(), "{file}: variable count");
        for (name, want) in vars {
            let got = mat
                .variable(name)
                .unwrap_or_else(|| panic!("{file}: no variable {name}"));
            check(&format!("{file}:{name}"), got, want);
        }
    }
}

#[test]
fn little_and_big_endian_hand_made_files_agree() {
    let le = MatFile::open(fixtures().join("handmade_le.mat")).unwrap();
    let be = MatFile::open(fixtures().join("handmade_be.mat")).unwrap();
    assert_eq!(le.variables, be.variables);
}

#[test]
fn compressed_and_uncompressed_files_agree() {
    let c = MatFile::open(fixtures().join("tiny_compressed.mat")).unwrap();
    let u = MatFile::open(fixtures().join("tiny_uncompressed.mat")).unwrap();
    assert_eq!(c.variables, u.variables);
}
