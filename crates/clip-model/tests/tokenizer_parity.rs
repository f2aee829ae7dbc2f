//! Parity with OpenAI's tokenizer (`clip/simple_tokenizer.py`), on fixtures made by
//! `tools/reference/tokenizer.py`: all 80,000 ImageNet prompts and a set of tricky strings.

mod common;

use common::fixture;

use clip_model::Error;
use clip_model::tokenizer::{DEFAULT_CONTEXT_LENGTH, EOT, Tokenizer, Truncation};
use serde::Deserialize;

#[test]
fn imagenet_prompts_match_openai() {
    let tokenizer = Tokenizer::openai().unwrap();
    common::imagenet_prompts_match(
        "tokenizer_imagenet_prompts.json",
        "tokenizer_imagenet_ids.bin.gz",
        &tokenizer,
        DEFAULT_CONTEXT_LENGTH,
        "OpenAI",
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
