//! What the tokenizer parity tests share: the fixtures folder and the check of all 80,000
//! ImageNet prompts against a reference tokenizer's id rows.

#![allow(dead_code)] // Each test file uses part of it.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use clip_model::tokenizer::{Tokenizer, Truncation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A prompts fixture: class names × templates, and the checksum of the reference's id rows.
#[derive(Deserialize)]
struct Prompts {
    rows: usize,
    ids_sha256: String,
    classes: Vec<String>,
    templates: Vec<String>,
}

/// The rows of a gzipped ids fixture (checked against `sha256`): a length byte, then that many
/// little-endian u16 ids.
fn read_id_rows(name: &str, sha256: &str) -> Vec<Vec<u32>> {
    let file = std::fs::File::open(fixture(name)).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, sha256, "{name} does not match its SHA-256");
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

/// Encodes every prompt of the `prompts` fixture (1000 classes × 80 templates) with `tokenizer`
/// at `context` and requires each row to equal the reference row of `ids` (tolerance 0), padded
/// with zeros, its end token where the reference's is; `reference` names it in messages.
pub fn imagenet_prompts_match(
    prompts: &str,
    ids: &str,
    tokenizer: &Tokenizer,
    context: usize,
    reference: &str,
) {
    let meta: Prompts =
        serde_json::from_str(&std::fs::read_to_string(fixture(prompts)).unwrap()).unwrap();
    let expected = read_id_rows(ids, &meta.ids_sha256);
    assert_eq!(expected.len(), meta.rows);
    assert_eq!((meta.classes.len(), meta.templates.len()), (1000, 80));
    let prompts: Vec<String> = meta
        .classes
        .iter()
        .flat_map(|name| meta.templates.iter().map(move |t| t.replace("{}", name)))
        .collect();
    assert_eq!(prompts.len(), 80_000);

    let start = Instant::now();
    let batch = tokenizer
        .encode_batch(&prompts, context, Truncation::Error)
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(batch.shape(), [80_000, context]);
    let mut mismatches = Vec::new();
    for (i, ((row, want), end)) in batch
        .rows()
        .zip(&expected)
        .zip(batch.eot_positions())
        .enumerate()
    {
        let (ids, padding) = row.split_at(want.len());
        if ids != want.as_slice() || padding.iter().any(|&id| id != 0) || *end != want.len() - 1 {
            mismatches.push(i);
        }
    }
    for &i in mismatches.iter().take(5) {
        eprintln!(
            "prompt {i} {:?}: ours {:?}, {reference} {:?}",
            prompts[i],
            batch.row(i).unwrap(),
            expected[i]
        );
    }
    println!(
        "80,000 ImageNet prompts against {reference}: {} identical, {} different; encode_batch \
         took {:.2} s",
        80_000 - mismatches.len(),
        mismatches.len(),
        elapsed.as_secs_f64()
    );
    assert!(mismatches.is_empty(), "{} prompts differ", mismatches.len());
}
