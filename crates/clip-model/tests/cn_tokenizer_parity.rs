//! Parity with Chinese-CLIP's tokenizer (`cn_clip.clip.tokenize`, cn_clip 1.6.0), on fixtures made by
//! `tools/reference/cn_clip_parity.py tokenizer`: all 80,000 Chinese ImageNet prompts and tricky strings.
//! Ids must be identical (tolerance 0): tokenizing is exact integer work.

mod common;

use common::fixture;

use clip_model::tokenizer::{CN_CONTEXT_LENGTH, CN_SEP, Tokenizer, Truncation};
use clip_model::{Error, ModelFamily};
use serde::Deserialize;

#[test]
fn chinese_imagenet_prompts_match_cn_clip() {
    let tokenizer = Tokenizer::cn_clip().unwrap();
    common::imagenet_prompts_match(
        "cn_tokenizer_imagenet.json",
        "cn_tokenizer_imagenet_ids.bin.gz",
        &tokenizer,
        CN_CONTEXT_LENGTH,
        "cn_clip",
    );
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
