//! Bounded numbers on the command line: an absurd `--size` or `--batch-size` is an argument error
//! naming the allowed range, not an impossible allocation that aborts the process.

use clap::builder::TypedValueParser;

/// A whole number between `min` and `max` (inclusive), as a clap value parser.
pub fn count(min: u64, max: u64) -> impl TypedValueParser<Value = usize> {
    clap::value_parser!(u64)
        .range(min..=max)
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// Largest side of a preprocessed image (`preprocess --size`): the largest CLIP input is 448
/// (RN50x64); a 4096² float tensor is 200 MB.
pub const MAX_IMAGE_SIZE: i64 = 4096;

/// Most images per model call (`eval-imagenet --batch-size`).
pub const MAX_BATCH: u64 = 1024;

/// Most threads (`--threads`).
pub const MAX_THREADS: u64 = 1024;
