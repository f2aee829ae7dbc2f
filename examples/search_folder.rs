//! Text search over a folder of pictures from the terminal. Every run first brings the index up
//! to date (only new or changed files are embedded), then answers the query.
//!
//! ```text
//! cargo run --release --example search_folder -- ~/Pictures "a dog on a beach"
//! cargo run --release --example search_folder -- ~/Pictures "a red car" -k 20 --model ViT-L-14
//! ```
//! The index lives in `--db FILE` (default: `clip-rs/search_folder.sqlite` in the user's data
//! folder, `$XDG_DATA_HOME` or `~/.local/share`), one per model.

use std::path::PathBuf;
use std::process::exit;

use clap::Parser;
use clip::{Clip, Precision};

#[derive(Parser)]
#[command(about = "Index a folder of pictures and search it by text (incremental on every run)")]
struct Args {
    /// The folder (searched recursively).
    dir: PathBuf,
    /// What to look for, e.g. "a dog on a beach".
    query: String,
    /// How many results (1 to 1000).
    #[arg(short, default_value_t = 10, value_parser = clip_examples::args::k())]
    k: usize,
    /// The model: a short name (ViT-B-32, RN50x64, ...), a hub id, or a safetensors file.
    #[arg(long)]
    model: Option<String>,
    /// The index file.
    #[arg(long)]
    db: Option<PathBuf>,
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
    let clip = Clip::builder()
        .precision(args.precision)
        .load_or_default(args.model.as_deref())?;
    let db = match args.db {
        Some(db) => db,
        None => default_db(clip.name())?,
    };
    let mut library = clip.open_library(&db)?;
    let report = library.sync(&args.dir)?;
    for f in &report.failed {
        eprintln!("skipped {}: {}", f.path.display(), f.reason);
    }
    eprintln!(
        "{} pictures indexed in {} ({} new)",
        library.len()?,
        db.display(),
        report.added
    );
    // The library may hold other folders too (with --db): keep the hits under this one.
    let dir = args.dir.canonicalize()?;
    let hits = library.search_text(&args.query, args.k.saturating_mul(10))?;
    for hit in hits
        .iter()
        .filter(|h| h.path.starts_with(&dir))
        .take(args.k)
    {
        println!("{:.4}  {}", hit.score, hit.path.display());
    }
    Ok(())
}

fn default_db(model: &str) -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| anyhow::anyhow!("no HOME or XDG_DATA_HOME: pass --db FILE"))?;
    let name: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Ok(base
        .join("clip-rs")
        .join(format!("search_folder-{name}.sqlite")))
}
