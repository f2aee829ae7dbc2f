//! The gallery demo: index a folder of pictures, search it with English text, and serve a web page.
//!
//! ```text
//! cargo run --release --example gallery -- index examples/photos --db gallery/lib.sqlite
//! cargo run --release --example gallery -- search "a cat" --db gallery/lib.sqlite -k 3
//! cargo run --release --example gallery -- similar examples/photos/chelsea.png --db gallery/lib.sqlite
//! cargo run --release --example gallery -- serve --db gallery/lib.sqlite   # http://127.0.0.1:8080
//! ```
//! All sub-commands take `--model NAME|HUB_ID|FILE` (default: `$CLIP_MODEL`, else ViT-B-32,
//! downloaded into the Hugging Face cache on first use).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clip::Clip;
use clip_examples::gallery::library::Library;
use clip_examples::gallery::{self, server, worker::Worker};
use clip_examples::model::sync_folder;
// --- access and limits of `serve` (see SECURITY.md) ---
use clip_examples::gallery::options::ServeOptions;

#[derive(Parser)]
#[command(about = "Text-to-image search over a picture library, with a web page")]
struct Cli {
    /// The model: a short name (ViT-B-32, RN50x64, ...), a hub id, or a safetensors file.
    /// Default: $CLIP_MODEL, else ViT-B-32 (downloaded on first use).
    #[arg(long, global = true, alias = "weights")]
    model: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add the pictures of a folder (recursively) to the library; only new or changed files are embedded.
    Index {
        /// The folder.
        dir: PathBuf,
        /// The library file (created if missing).
        #[arg(long)]
        db: PathBuf,
    },
    /// The library pictures best matching an English text.
    Search {
        /// The text, e.g. "a dog on a beach".
        text: String,
        /// The library file.
        #[arg(long)]
        db: PathBuf,
        /// How many results.
        #[arg(short, default_value_t = 10)]
        k: usize,
    },
    /// The library pictures most similar to a picture.
    Similar {
        /// The picture (need not be in the library).
        image: PathBuf,
        /// The library file.
        #[arg(long)]
        db: PathBuf,
        /// How many results.
        #[arg(short, default_value_t = 10)]
        k: usize,
    },
    /// Serve the web page.
    Serve {
        /// The library file (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Address to listen on (loopback by default; anything else exposes the demo to the network).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Model jobs allowed to wait; further requests get 503 until the queue drains.
        #[arg(long, default_value_t = 16)]
        queue: usize,
        // --- access and limits (see SECURITY.md) ---
        #[command(flatten)]
        options: ServeOptions,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let clip = Clip::builder().load_or_default(cli.model.as_deref())?;
    match cli.cmd {
        Cmd::Index { dir, db } => index(clip, &dir, &db),
        Cmd::Search { text, db, k } => {
            let lib = Library::open_existing(&db, clip.model_id(), clip.dim())?;
            let q = clip.embed_text(&text)?;
            print_hits(&lib.search(&q, k, None)?, &lib)
        }
        Cmd::Similar { image, db, k } => {
            let lib = Library::open_existing(&db, clip.model_id(), clip.dim())?;
            let bytes = std::fs::read(&image)
                .with_context(|| format!("cannot read {}", image.display()))?;
            let hits = match lib.find(blake3::hash(&bytes).as_bytes()) {
                Some((id, v)) => lib.search(&v, k, Some(id))?,
                None => lib.search(&clip.embed_image(&bytes)?, k, None)?,
            };
            print_hits(&hits, &lib)
        }
        Cmd::Serve {
            db,
            addr,
            queue,
            options,
        } => serve(clip, &db, addr, queue, &options),
    }
}

fn open(clip: &Clip, db: &Path) -> anyhow::Result<Library> {
    Library::open(db, clip.model_id(), clip.dim())
}

fn index(clip: Clip, dir: &Path, db: &Path) -> anyhow::Result<()> {
    let mut lib = open(&clip, db)?;
    let report = sync_folder(&clip, &mut lib, dir)?;
    println!(
        "scanned {} files: {} added, {} duplicates, {} unchanged, {} failed",
        report.scanned,
        report.added,
        report.duplicates,
        report.skipped + report.unchanged,
        report.failed.len()
    );
    println!("library {}: {} images", db.display(), lib.len());
    Ok(())
}

fn print_hits(hits: &[(gallery::library::Entry, f32)], lib: &Library) -> anyhow::Result<()> {
    if hits.is_empty() {
        println!("the library is empty: add pictures with `gallery index DIR --db FILE`");
    }
    for (e, score) in hits {
        let path = lib.path(e.id)?.unwrap_or_default();
        println!("{score:7.4}  #{:<5} {}", e.id, path.display());
    }
    Ok(())
}

fn serve(
    clip: Clip,
    db: &Path,
    addr: SocketAddr,
    queue: usize,
    options: &ServeOptions,
) -> anyhow::Result<()> {
    // --- access and limits (see SECURITY.md) ---
    let configured = options.configure(!gallery::is_loopback(&addr))?;
    let lib = open(&clip, db)?;
    let model = clip.model_id().to_owned();
    let size = lib.len();
    let worker = Worker::start(Arc::new(clip), queue);
    let state = server::AppState::new(worker, lib, configured.settings);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if !gallery::is_loopback(&addr) {
            eprintln!(
                "warning: listening on {addr}, reachable from other machines; every API and \
                 image request needs the access token"
            );
        }
        println!("model {model}, library {} ({size} images)", db.display());
        println!("serving on http://{local} (Ctrl-C stops)");
        // --- the access link, when a token was generated (see SECURITY.md) ---
        if let Some(token) = &configured.generated_token {
            let base = if local.ip().is_unspecified() {
                format!("<this machine's address>:{}", local.port())
            } else {
                local.to_string()
            };
            println!("access token: {token}\nopen http://{base}/?token={token}");
        }
        gallery::serve(listener, state).await?;
        Ok(())
    })
}
