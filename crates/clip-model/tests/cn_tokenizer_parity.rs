//! Parity with Chinese-CLIP's tokenizer (`cn_clip.clip.tokenize`, cn_clip 1.6.0), on fixtures made by
//! `tools/reference/cn_clip_parity.py tokenizer`: all 80,000 Chinese ImageNet prompts and tricky strings.
//! Ids must be identical (tolerance 0): tokenizing is exact integer work.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use clip_model::tokenizer::{CN_CONTEXT_LENGTH, CN_SEP, Tokenizer, Truncation};
use clip_model::{Error, ModelFamily};
use serde::Deserialize;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[derive(Deserialize)]
struct Prompts {
    rows: usize,
    ids_sha256: String,
    classes: Vec<String>,
    templates: Vec<String>,
}

/// Rows of `cn_tokenizer_imagenet_ids.bin.gz`: a length byte, then that many little-endian u16 ids.
fn read_id_rows(sha256: &str) -> Vec<Vec<u32>> {
    let file = std::fs::File::open(fixture("cn_tokenizer_imagenet_ids.bin.gz")).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest, sha256,
        "cn_tokenizer_imagenet_ids.bin.gz does not match its SHA-256"
    );
    let mut rows = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((&n, tail)) = rest.split_first() {
        let (ids, tail) = tail.split_at(2 * usize::from(n));
        rows.push(
            ids.chunks_exact(2)
                .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        );
        rest = tail;
    }
    rows
}

#[test]
fn chinese_imagenet_prompts_match_cn_clip() {
    let meta: Prompts = serde_json::from_str(
        &std::fs::read_to_string(fixture("cn_tokenizer_imagenet.json")).unwrap(),
    )
    .unwrap();
    let expected = read_id_rows(&meta.ids_sha256);
    assert_eq!(expected.len(), meta.rows);
    assert_eq!((meta.classes.len(), meta.templates.len()), (1000, 80));
    let prompts: Vec<String> = meta
        .classes
        .iter()
        .flat_map(|name| meta.templates.iter().map(move |t| t.replace("{}", name)))
        .collect();
    assert_eq!(prompts.len(), 80_000);

    let tokenizer = Tokenizer::cn_clip().unwrap();
    let start = Instant::now();
    let batch = tokenizer
        .encode_batch(&prompts, CN_CONTEXT_LENGTH, Truncation::Error)
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(batch.shape(), [80_000, 52]);
    let mut mismatches = Vec::new();
    for (i, ((row, want), sep)) in batch
        .rows()
        .zip(&expected)
        .zip(batch.eot_positions())
        .enumerate()
    {
        let (ids, padding) = row.split_at(want.len());
        if ids != want.as_slice() || padding.iter().any(|&id| id != 0) || *sep != want.len() - 1 {
            mismatches.push(i);
        }
    }
    for &i in mismatches.iter().take(5) {
        eprintln!(
            "prompt {i} {:?}: ours {:?}, cn_clip {:?}",
            prompts[i],
            batch.row(i).unwrap(),
            expected[i]
        );
    }
    println!(
        "80,000 Chinese ImageNet prompts: {} identical, {} different; encode_batch took {:.2} s",
        80_000 - mismatches.len(),
        mismatches.len(),
        elapsed.as_secs_f64()
    );
    assert!(mismatches.is_empty(), "{} prompts differ", mismatches.len());
}

#[derive(Deserialize)]
struct Tricky {
    context_length: usize,
    strings: Vec<TrickyString>,
}

#[derive(Deserialize)]
struct TrickyString {
    name: String,
    text: String,
    tokens: Vec<String>,
    ids: Vec<u32>,
    row52: Vec<u32>,
}

#[test]
fn tricky_strings_match_cn_clip() {
    let tricky: Tricky = serde_json::from_str(
        &std::fs::read_to_string(fixture("cn_tokenizer_tricky.json")).unwrap(),
    )
    .unwrap();
    assert!(tricky.strings.len() >= 100);
    assert_eq!(tricky.context_length, CN_CONTEXT_LENGTH);
    let tokenizer = Tokenizer::for_family(ModelFamily::ChineseClip).unwrap();
    let mut failures = Vec::new();
    let mut truncated = 0;
    for s in &tricky.strings {
        let ids = tokenizer.encode(&s.text).unwrap();
        if ids != s.ids {
            failures.push(format!(
                "{} {:?}: ids {ids:?}, cn_clip {:?} ({:?})",
                s.name, s.text, s.ids, s.tokens
            ));
            continue;
        }
        let row = tokenizer
            .encode_batch(&[&s.text], CN_CONTEXT_LENGTH, Truncation::Truncate)
            .unwrap();
        if row.ids() != s.row52.as_slice() {
            failures.push(format!(
                "{}: row {:?}, cn_clip {:?}",
                s.name,
                row.ids(),
                s.row52
            ));
        }
        let sep = s.row52.iter().position(|&id| id == CN_SEP);
        if row.eot_positions().first() != sep.as_ref() {
            failures.push(format!("{}: [SEP] at {:?}", s.name, row.eot_positions()));
        }
        let strict = tokenizer.encode_batch(&[&s.text], CN_CONTEXT_LENGTH, Truncation::Error);
        let ok = match &strict {
            Ok(batch) => s.ids.len() <= 52 && batch.ids() == s.row52.as_slice(),
            Err(Error::TextTooLong {
                tokens,
                context_length,
                ..
            }) => {
                truncated += 1;
                s.ids.len() > 52 && (*tokens, *context_length) == (s.ids.len(), 52usize)
            }
            Err(_) => false,
        };
        if !ok {
            failures.push(format!("{}: without truncation {strict:?}", s.name));
        }
    }
    println!(
        "{} tricky strings: {} identical to cn_clip ({truncated} longer than 52 tokens, truncated \
         identically), {} different",
        tricky.strings.len(),
        tricky.strings.len() - failures.len(),
        failures.len()
    );
    assert!(
        truncated >= 4,
        "only {truncated} strings exercise truncation"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_joins_word_pieces() {
    let t = Tokenizer::cn_clip().unwrap();
    let ids = t.encode("一只猫 playing").unwrap();
    assert_eq!(t.decode(&ids).unwrap(), "[CLS] 一 只 猫 playing [SEP]");
    assert!(matches!(t.decode(&[21128]), Err(Error::InvalidInput(_))));
    assert_eq!(t.vocab_size(), 21128);
    assert_eq!(t.default_context_length(), 52);
    assert_eq!(t.family(), ModelFamily::ChineseClip);
    assert_eq!(Tokenizer::openai().unwrap().family(), ModelFamily::Clip);
}
