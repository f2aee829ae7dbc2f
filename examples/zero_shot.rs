//! Zero-shot classification of pictures among any labels.
//!
//! ```text
//! cargo run --release --example zero_shot                       # the demo photos, default labels
//! cargo run --release --example zero_shot -- a.jpg b.png --labels "dog,cat,red car"
//! cargo run --release --example zero_shot -- --labels-file labels.txt --weights model.safetensors x.jpg
//! ```
//! Weights: `--weights FILE` (or a hub id with `--features hub`), else `$CLIP_WEIGHTS`, else
//! `models/vit-b-32/open_clip_model.safetensors`.

use std::path::PathBuf;
use std::process::exit;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use clip_eval::{Templates, ZeroShot};
use clip_examples::clip::Clip;
use clip_examples::{Embedder, labels};

#[derive(Parser)]
#[command(about = "Classify pictures among any labels with CLIP (zero-shot)")]
struct Args {
    /// Pictures to classify (default: the demo photos in examples/photos).
    images: Vec<PathBuf>,
    /// Comma-separated labels, e.g. "dog,cat,red car" (default: a small built-in list).
    #[arg(long, conflicts_with = "labels_file")]
    labels: Option<String>,
    /// A file with one label per line (`#` starts a comment line).
    #[arg(long)]
    labels_file: Option<PathBuf>,
    /// CLIP weights: a safetensors file (or a hub id when built with `--features hub`).
    #[arg(long)]
    weights: Option<String>,
    /// Prompt templates: `single` ("a photo of a {}."), `openai80` (OpenAI's 80 ImageNet
    /// templates, averaged; more accurate, 80x the text encoding) or a file (one per line).
    #[arg(long, default_value = "single")]
    templates: String,
    /// How many labels to print per picture.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let labels = match (&args.labels, &args.labels_file) {
        (Some(l), _) => labels::parse_list(l)?,
        (None, Some(f)) => labels::read_file(f)?,
        (None, None) => labels::defaults(),
    };
    let images = match args.images.is_empty() {
        true => clip_examples::demo_photos()?,
        false => args.images,
    };
    let templates = match args.templates.as_str() {
        "single" => Templates::single(),
        "openai80" => Templates::openai80()?,
        file => Templates::from_file(file)?,
    };
    let clip = Clip::load(args.weights.as_deref())?;
    let classifier = ZeroShot::new(&labels, &templates, |prompts: &[String]| {
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        anyhow::Ok(clip.embed_texts(&refs)?)
    })?
    .with_logit_scale(clip.logit_scale());
    println!(
        "{} labels x {} templates, model {}",
        labels.len(),
        templates.len(),
        clip.model_id()
    );
    let mut failed = 0;
    for path in &images {
        let t = Instant::now();
        let embedded = std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .and_then(|b| Ok(clip.embed_image(&b)?));
        let image = match embedded {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                failed += 1;
                continue;
            }
        };
        println!("\n{} ({} ms)", path.display(), t.elapsed().as_millis());
        for (label, p) in classifier.classify(&image)?.iter().take(args.top) {
            println!("  {:6.2} %  {label}", p * 100.0);
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} pictures failed", images.len());
    Ok(())
}
