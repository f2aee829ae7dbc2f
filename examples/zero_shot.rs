//! Zero-shot classification of pictures among any labels.
//!
//! ```text
//! cargo run --release --example zero_shot                       # the demo photos, default labels
//! cargo run --release --example zero_shot -- a.jpg b.png --labels "dog,cat,red car"
//! cargo run --release --example zero_shot -- --labels-file labels.txt --model RN50x64 x.jpg
//! ```
//! The model: `--model NAME|HUB_ID|FILE`, else `$CLIP_MODEL`, else ViT-B-32 (downloaded into the
//! Hugging Face cache on the first run).

use std::path::PathBuf;
use std::process::exit;
use std::time::Instant;

use clap::Parser;
use clip::{Clip, Device, Precision, Templates};
use clip_examples::labels;

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
    /// The model: a short name (ViT-B-32, RN50x64, ...), a hub id, or a safetensors file.
    #[arg(long, alias = "weights")]
    model: Option<String>,
    /// Prompt templates: `auto` (one template in the model's language: "a photo of a {}.", or
    /// "{}的照片。" for Chinese-CLIP), `single`, `zh-single`, `openai80` (OpenAI's 80 ImageNet
    /// templates, averaged; more accurate, 80x the text encoding), `zh80` (cn_clip's 80 Chinese
    /// ones) or a file (one per line).
    #[arg(long, default_value = "auto")]
    templates: String,
    /// How many labels to print per picture (1 to 1000).
    #[arg(long, default_value_t = 5, value_parser = clip_examples::args::k())]
    top: usize,
    /// Where the model runs: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// `f32` (default), or `bf16`: on the CPU bf16 weights and products with f32 accumulation
    /// where it has AVX-512-BF16 (faster, embeddings within cosine 0.999 of f32), else f32.
    #[arg(long, default_value = "f32")]
    precision: Precision,
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
    let clip = Clip::builder()
        .device(args.device)
        .precision(args.precision)
        .load_or_default(args.model.as_deref())?;
    let templates = match args.templates.as_str() {
        "auto" => clip.single_template(),
        choice => Templates::from_choice(choice)?,
    };
    let classifier = clip.classifier(&labels, &templates)?;
    println!(
        "{} labels x {} templates ({}), model {} ({}); probabilities: {}",
        labels.len(),
        templates.len(),
        templates.set,
        clip.model_id(),
        clip.family(),
        clip.score_function()
    );
    let mut failed = 0;
    for path in &images {
        let t = Instant::now();
        match classifier.classify(path) {
            Ok(ranked) => {
                println!("\n{} ({} ms)", path.display(), t.elapsed().as_millis());
                for p in ranked.iter().take(args.top) {
                    println!("  {:6.2} %  {}", p.probability * 100.0, p.label);
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} pictures failed", images.len());
    Ok(())
}
