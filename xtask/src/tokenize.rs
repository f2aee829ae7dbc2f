//! `cargo xtask tokenize [--context-length 77] [--truncate] TEXT...`: OpenAI CLIP token ids, one JSON
//! array per text and line (start and end tokens included, zero-padded to the context length).

use anyhow::Context;
use clip_model::tokenizer::{DEFAULT_CONTEXT_LENGTH, Tokenizer, Truncation};

/// Arguments of `cargo xtask tokenize`.
#[derive(clap::Args)]
pub struct Args {
    /// Ids per text (all OpenAI CLIP models use 77).
    #[arg(long, default_value_t = DEFAULT_CONTEXT_LENGTH)]
    context_length: usize,
    /// Cut texts that are too long (keeping `<|endoftext|>` last) instead of failing.
    #[arg(long)]
    truncate: bool,
    /// The texts.
    #[arg(required = true)]
    texts: Vec<String>,
}

/// Prints the ids of each text; fails on an over-long text without `--truncate`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let tokenizer = Tokenizer::openai()?;
    let truncation = if args.truncate {
        Truncation::Truncate
    } else {
        Truncation::Error
    };
    let batch = tokenizer
        .encode_batch(&args.texts, args.context_length, truncation)
        .context("tokenizing (pass --truncate to cut long texts)")?;
    let mut out = String::new();
    for row in batch.rows() {
        out.push_str(&serde_json::to_string(row)?);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
