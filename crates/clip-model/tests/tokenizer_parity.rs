//! Parity with OpenAI's tokenizer (`clip/simple_tokenizer.py`), on fixtures made by
//! `tools/reference/tokenizer.py`: all 80,000 ImageNet prompts and a set of tricky strings.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use clip_model::Error;
use clip_model::tokenizer::{DEFAULT_CONTEXT_LENGTH, EOT, Tokenizer, Truncation};
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

/// The rows of `tokenizer_imagenet_ids.bin.gz`: a length byte, then that many little-endian u16 ids.
fn read_id_rows(sha256: &str) -> Vec<Vec<u32>> {
    let file = std::fs::File::open(fixture("tokenizer_imagenet_ids.bin.gz")).unwrap();
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
        "tokenizer_imagenet_ids.bin.gz does not match its SHA-256"
    );
    let mut rows = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n);
        let (ids, tail) = tail.split_at(2 * n);
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
fn imagenet_prompts_match_openai() {
    let meta: Prompts = serde_json::from_str(
        &std::fs::read_to_string(fixture("tokenizer_imagenet_prompts.json")).unwrap(),
    )
    .unwrap();
    let expected = read_id_rows(&meta.ids_sha256);
    assert_eq!(expected.len(), meta.rows);
    let prompts: Vec<String> = meta
        .classes
        .iter()
        .flat_map(|name| meta.templates.iter().map(move |t| t.replace("{}", name)))
        .collect();
    assert_eq!(prompts.len(), 80_000);

    let tokenizer = Tokenizer::openai().unwrap();
    let start = Instant::now();
    let batch = tokenizer
        .encode_batch(&prompts, DEFAULT_CONTEXT_LENGTH, Truncation::Error)
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(batch.shape(), [80_000, 77]);

    let mut mismatches = Vec::new();
    for (i, ((row, want), eot)) in batch
        .rows()
        .zip(&expected)
        .zip(batch.eot_positions())
        .enumerate()
    {
        let (ids, padding) = row.split_at(want.len());
        if ids != want.as_slice() || padding.iter().any(|&id| id != 0) || *eot != want.len() - 1 {
            mismatches.push(i);
        }
    }
    for &i in mismatches.iter().take(5) {
        eprintln!(
            "prompt {i} {:?}: ours {:?}, OpenAI {:?}",
            prompts[i],
            batch.row(i).unwrap(),
            expected[i]
        );
    }
    println!(
        "80,000 ImageNet prompts: {} identical, {} different; encode_batch took {:.2} s",
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
    cleaned: String,
    ids: Vec<u32>,
    truncated_77: Vec<u32>,
    without_mojibake_repair: Option<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    cleaned: String,
    ids: Vec<u32>,
}

#[test]
fn tricky_strings_match_openai() {
    let tricky: Tricky =
        serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer_tricky.json")).unwrap())
            .unwrap();
    assert!(tricky.strings.len() >= 60);
    assert_eq!(tricky.context_length, DEFAULT_CONTEXT_LENGTH);
    let tokenizer = Tokenizer::openai().unwrap();
    let mut failures = Vec::new();
    let mut divergences = 0;
    for s in &tricky.strings {
        let cleaned = Tokenizer::clean(&s.text);
        let ids = tokenizer.encode(&s.text).unwrap();
        // Strings whose text ftfy's mojibake repair changes: a known difference (that repair is not
        // reproduced); they must then equal OpenAI's tokenizer with only that ftfy step off.
        let (want_cleaned, want_ids) = match &s.without_mojibake_repair {
            Some(without) => {
                assert_ne!(without.ids, s.ids, "{}: not a divergence", s.name);
                divergences += 1;
                println!(
                    "known divergence (mojibake repair) {:?}: OpenAI {:?}, ours {:?}",
                    s.name, s.cleaned, cleaned
                );
                (&without.cleaned, &without.ids)
            }
            None => (&s.cleaned, &s.ids),
        };
        if &cleaned != want_cleaned {
            failures.push(format!(
                "{}: cleaned {cleaned:?}, OpenAI {want_cleaned:?}",
                s.name
            ));
        }
        if &ids != want_ids {
            failures.push(format!("{}: ids {ids:?}, OpenAI {want_ids:?}", s.name));
        }
        if s.without_mojibake_repair.is_some() {
            continue;
        }
        let truncated = tokenizer
            .encode_batch(&[&s.text], 77, Truncation::Truncate)
            .unwrap();
        if truncated.ids() != s.truncated_77.as_slice() {
            failures.push(format!(
                "{}: truncated {:?}, OpenAI {:?}",
                s.name,
                truncated.ids(),
                s.truncated_77
            ));
        }
        let eot = s.truncated_77.iter().position(|&id| id == EOT);
        if truncated.eot_positions().first() != eot.as_ref() {
            failures.push(format!(
                "{}: EOT at {:?}, OpenAI {eot:?}",
                s.name,
                truncated.eot_positions()
            ));
        }
        let strict = tokenizer.encode_batch(&[&s.text], 77, Truncation::Error);
        let ok = match &strict {
            Ok(batch) => s.ids.len() <= 77 && batch.ids() == s.truncated_77.as_slice(),
            Err(Error::TextTooLong {
                tokens,
                context_length,
                ..
            }) => s.ids.len() > 77 && (*tokens, *context_length) == (s.ids.len(), 77usize),
            Err(_) => false,
        };
        if !ok {
            failures.push(format!(
                "{}: without truncation {strict:?}, OpenAI has {} ids",
                s.name,
                s.ids.len()
            ));
        }
    }
    println!(
        "{} tricky strings: {} identical to OpenAI, {divergences} known divergences, {} failures",
        tricky.strings.len(),
        tricky.strings.len() - divergences - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn too_long_text_is_named_in_the_error() {
    let tokenizer = Tokenizer::openai().unwrap();
    let text = "a photograph of ".repeat(40);
    let err = tokenizer
        .encode_batch(&["fits", text.as_str()], 77, Truncation::Error)
        .unwrap_err();
    let message = err.to_string();
    let tokens = tokenizer.encode(&text).unwrap().len();
    assert!(
        message.contains("\"a photograph of a photograph")
            && message.contains(&format!("{tokens} tokens"))
            && message.contains("context length 77"),
        "{message}"
    );
}
