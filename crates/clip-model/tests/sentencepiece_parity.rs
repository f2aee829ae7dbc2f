//! SigLIP's SentencePiece tokenizers against transformers on 3220 strings (English ImageNet
//! prompts, Chinese ImageNet names and templates, Japanese, Russian, Arabic, Greek, Korean, Hindi,
//! Thai, emoji, case, punctuation and whitespace runs, texts far beyond 64 tokens), with small
//! models trained by the `sentencepiece` package and converted to `tokenizer.json` by
//! transformers (`tools/reference/sentencepiece_tokenizer.py`). Ids must be equal: there is no
//! tolerance in tokenizing.

use std::path::PathBuf;

use clip_model::{SentencePieceOptions, SentencePieceTokenizer, TextCleaning, Truncation};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentencepiece")
}

fn cases(name: &str) -> (Vec<String>, Vec<Vec<u32>>) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}_ids.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let strings = v["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let ids = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    (strings, ids)
}

fn check(name: &str, options: SentencePieceOptions) {
    let tok = SentencePieceTokenizer::from_file(
        fixtures().join(format!("{name}_tokenizer.json")),
        options,
    )
    .unwrap();
    let (strings, want) = cases(name);
    assert!(strings.len() > 3000);
    let batch = tok.encode_batch(&strings).unwrap();
    let mut bad = Vec::new();
    for (i, (row, w)) in batch.rows().zip(&want).enumerate() {
        assert_eq!(row.len(), 64);
        if row != w.as_slice() {
            bad.push(i);
        }
    }
    for &i in bad.iter().take(5) {
        println!(
            "{name}: {:?}\n  ours {:?}\n  want {:?}",
            strings[i],
            &batch.row(i).unwrap()[..16],
            &want[i][..16]
        );
    }
    let chinese = strings
        .iter()
        .filter(|s| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
        .count();
    println!(
        "{name}: {} of {} strings give transformers' ids ({chinese} with Chinese characters)",
        strings.len() - bad.len(),
        strings.len()
    );
    assert!(bad.is_empty(), "{name}: {} strings differ", bad.len());
}

#[test]
fn siglip_matches_transformers_siglip_tokenizer() {
    check("siglip", SentencePieceOptions::siglip());
}

#[test]
fn siglip2_matches_transformers_siglip2_tokenizer() {
    check("siglip2", SentencePieceOptions::siglip2());
}

#[test]
fn lowercasing_matters_and_long_texts_are_cut_or_refused() {
    let path = fixtures().join("siglip2_tokenizer.json");
    let lower = SentencePieceTokenizer::from_file(&path, SentencePieceOptions::siglip2()).unwrap();
    let raw = SentencePieceTokenizer::from_file(
        &path,
        SentencePieceOptions {
            cleaning: TextCleaning::None,
            ..SentencePieceOptions::siglip2()
        },
    )
    .unwrap();
    assert_ne!(
        lower.encode("A PHOTO OF A DOG").unwrap(),
        raw.encode("A PHOTO OF A DOG").unwrap()
    );
    assert_eq!(
        lower.encode("A PHOTO OF A DOG").unwrap(),
        raw.encode("a photo of a dog").unwrap()
    );
    let long = "a photo of a dog ".repeat(40);
    assert_eq!(lower.encode(&long).unwrap().len(), 64);
    let strict = SentencePieceTokenizer::from_file(
        &path,
        SentencePieceOptions {
            truncation: Truncation::Error,
            ..SentencePieceOptions::siglip2()
        },
    )
    .unwrap();
    assert!(matches!(
        strict.encode(&long).unwrap_err(),
        clip_model::Error::TextTooLong { .. }
    ));
}

#[test]
fn a_file_that_is_not_a_tokenizer_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, b"{\"not\": \"a tokenizer\"}").unwrap();
    assert!(matches!(
        SentencePieceTokenizer::from_file(&path, SentencePieceOptions::siglip2()).unwrap_err(),
        clip_model::Error::Config { .. }
    ));
    assert!(matches!(
        SentencePieceTokenizer::from_file(
            dir.path().join("missing.json"),
            SentencePieceOptions::siglip2()
        )
        .unwrap_err(),
        clip_model::Error::Io { .. }
    ));
}

/// The generation is read from the file, and the common `Tokenizer` wrapping it gives the same
/// rows as transformers.
#[test]
fn siglip_from_file_picks_each_generations_options_and_tokenizer_wraps_it() {
    use clip_model::{ModelFamily, Tokenizer};
    for (name, options) in [
        ("siglip", SentencePieceOptions::siglip()),
        ("siglip2", SentencePieceOptions::siglip2()),
    ] {
        let path = fixtures().join(format!("{name}_tokenizer.json"));
        let tok = SentencePieceTokenizer::siglip_from_file(&path).unwrap();
        assert_eq!(tok.options(), &options, "{name}");
        let common = Tokenizer::sentencepiece(tok);
        assert_eq!(common.family(), ModelFamily::Siglip);
        assert_eq!(common.default_context_length(), 64);
        let (strings, want) = cases(name);
        let batch = common
            .encode_batch(&strings[..200], 64, Truncation::Truncate)
            .unwrap();
        for (i, row) in batch.rows().enumerate() {
            assert_eq!(row, want[i].as_slice(), "{name}: {:?}", strings[i]);
        }
        // Other row lengths are refused rather than silently padded differently.
        assert!(
            common
                .encode_batch(&["a"], 77, Truncation::Truncate)
                .is_err()
        );
    }
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), br#"{"model": {"type": "WordPiece"}}"#).unwrap();
    let err = SentencePieceTokenizer::siglip_from_file(bad.path()).unwrap_err();
    assert!(err.to_string().contains("WordPiece"), "{err}");
}
