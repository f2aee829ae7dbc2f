//! Times OpenAI-preset preprocessing (decode → resize → crop → normalise, 224 px) of image files
//! held in memory, one at a time on the calling thread. Prints one line of JSON with the best
//! seconds per image over the rounds. Used by `tools/reference/time_preprocess.py`, which times
//! Pillow + torchvision on the same files in the same run.
//!
//! `cargo run --release -p clip-preprocess --example time_preprocess -- [--rounds N] FILES...`

use std::time::Instant;

use clip_preprocess::{PreprocessConfig, Preprocessor};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut rounds = 3usize;
    if args.first().is_some_and(|a| a == "--rounds") && args.len() >= 2 {
        rounds = args[1].parse()?;
        args.drain(..2);
    }
    if args.is_empty() {
        return Err("usage: time_preprocess [--rounds N] FILES...".into());
    }
    let files = args
        .iter()
        .map(std::fs::read)
        .collect::<Result<Vec<_>, _>>()?;
    let pre = Preprocessor::new(PreprocessConfig::openai(224))?;
    // Warm-up (page cache, allocator).
    for b in &files {
        pre.preprocess_bytes(b)?;
    }
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        for b in &files {
            std::hint::black_box(pre.preprocess_bytes(b)?);
        }
        best = best.min(t.elapsed().as_secs_f64() / files.len() as f64);
    }
    // Decoding alone (same decoder, no resize), to show where the time goes.
    let mut decode = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        for b in &files {
            std::hint::black_box(clip_preprocess::decode_bytes(b, None)?);
        }
        decode = decode.min(t.elapsed().as_secs_f64() / files.len() as f64);
    }
    println!(
        "{{\"images\": {}, \"rounds\": {rounds}, \"seconds_per_image\": {best:.9}, \"decode_seconds_per_image\": {decode:.9}}}",
        files.len()
    );
    Ok(())
}
