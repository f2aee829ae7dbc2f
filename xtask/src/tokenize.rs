//! `cargo xtask tokenize [--tokenizer openai|cn-clip|FILE] [--context-length N] [--truncate] TEXT...`:
//! token ids, one JSON array per text and line (start and end tokens included, padded to the
//! context length). `openai` (default): OpenAI CLIP's BPE, 77 ids; `cn-clip`: Chinese-CLIP's
//! WordPiece (cn_clip's `tokenize`), 52 ids; a SigLIP `tokenizer.json`: its SentencePiece, 64 ids.

use anyhow::Context;
use clip_model::SentencePieceTokenizer;
use clip_model::tokenizer::{Tokenizer, Truncation};

/// Arguments of `cargo xtask tokenize`.
#[derive(clap::Args)]
pub struct Args {
    /// `openai`, `cn-clip`, or the path of a SigLIP `tokenizer.json`.
    #[arg(long, default_value = "openai")]
    tokenizer: String,
    /// Ids per text (default: the tokenizer's models' context, 77 / 52 / 64).
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..))]
    context_length: Option<u16>,
    /// Cut texts that are too long (keeping the end token last) instead of failing.
    #[arg(long)]
    truncate: bool,
    /// The texts.
    #[arg(required = true)]
    texts: Vec<String>,
}

/// Prints the ids of each text; fails on an over-long text without `--truncate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let tokenizer = match args.tokenizer.as_str() {
        "openai" => Tokenizer::openai()?,
        "cn-clip" => Tokenizer::cn_clip()?,
        path => {
            Tokenizer::sentencepiece(SentencePieceTokenizer::siglip_from_file(path).with_context(
                || format!("--tokenizer {path}: not openai, cn-clip or a usable tokenizer.json"),
            )?)
        }
    };
    let context_length = args
        .context_length
        .map_or_else(|| tokenizer.default_context_length(), usize::from);
    let truncation = if args.truncate {
        Truncation::Truncate
    } else {
        Truncation::Error
    };
    let batch = tokenizer
        .encode_batch(&args.texts, context_length, truncation)
        .context("tokenizing (pass --truncate to cut long texts)")?;
    let mut out = String::new();
    for row in batch.rows() {
        out.push_str(&serde_json::to_string(row)?);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
