//! `cargo xtask tokenize --tokenizer cn-clip` prints cn_clip's `tokenize` rows: the expected rows
//! are the reference's, from `crates/clip-model/tests/fixtures/cn_tokenizer_tricky.json`
//! (`tools/reference/cn_clip_parity.py tokenizer`, cn_clip 1.6.0).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("tokenize")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cn_clip_rows_equal_the_references() {
    let text = std::fs::read_to_string(
        root().join("crates/clip-model/tests/fixtures/cn_tokenizer_tricky.json"),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases: Vec<&Value> = v["strings"].as_array().unwrap().iter().take(12).collect();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let mut args = vec!["--tokenizer", "cn-clip", "--truncate"];
    args.extend(&texts);
    let out = xtask(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), cases.len());
    for (line, case) in lines.iter().zip(&cases) {
        let got: Vec<u64> = serde_json::from_str(line).unwrap();
        let want: Vec<u64> = case["row52"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{:?}", case["text"]);
    }
}

#[test]
fn openai_stays_the_default_and_bad_tokenizers_are_named() {
    let out = xtask(&["a photo of a cat."]);
    assert!(out.status.success());
    let row: Vec<u64> =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(row.len(), 77);
    // OpenAI's clip.tokenize("a photo of a cat.") (tokenizer_tricky.json of clip-model).
    assert_eq!(&row[..8], [49406, 320, 1125, 539, 320, 2368, 269, 49407]);
    let out = xtask(&["--tokenizer", "no/such/tokenizer.json", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/tokenizer.json"), "{err}");
}
