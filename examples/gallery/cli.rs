//! The `gallery` command line: `index`, `search`, `similar`, `serve`. The example's `main` only
//! parses the arguments and prints the error; the commands live here so that tests run them.
//!
//! Only `index` and `serve` may create or change a library; `search` and `similar` open it
//! read-only, so they work on a library they cannot write and never touch a file that is not one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clip::{Clip, Precision};

use super::library::{Entry, Library};
use super::options::ServeOptions;
use super::server::{self, MAX_QUERY_CHARS, query_text};
use super::worker::Worker;
use crate::args::{self, MAX_QUEUE};
use crate::model::sync_folder;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "gallery",
    about = "Text-to-image search over a picture library, with a web page"
)]
pub struct Cli {
    /// The model: a short name (ViT-B-32, RN50x64, ...), a hub id, or a safetensors file.
    /// Default: $CLIP_MODEL, else ViT-B-32 (downloaded on first use).
    #[arg(long, global = true, alias = "weights")]
    pub model: Option<String>,
    /// `f32` (default), or `bf16`: on the CPU bf16 weights and products with f32 accumulation
    /// where it has AVX-512-BF16 (faster, embeddings within cosine 0.999 of f32), else f32.
    /// A library indexed in one precision can be searched in the other.
    #[arg(long, global = true, default_value = "f32")]
    pub precision: Precision,
    /// The sub-command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The sub-commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
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
        #[arg(value_parser = search_text)]
        text: String,
        /// The library file (only read).
        #[arg(long)]
        db: PathBuf,
        /// How many results (1 to 1000).
        #[arg(short, default_value_t = 10, value_parser = args::k())]
        k: usize,
    },
    /// The library pictures most similar to a picture.
    Similar {
        /// The picture (need not be in the library).
        image: PathBuf,
        /// The library file (only read).
        #[arg(long)]
        db: PathBuf,
        /// How many results (1 to 1000).
        #[arg(short, default_value_t = 10, value_parser = args::k())]
        k: usize,
    },
    /// Serve the web page.
    Serve {
        /// The library file (created if missing; served read-only if this process may not write it).
        #[arg(long)]
        db: PathBuf,
        /// Address to listen on (loopback by default; anything else exposes the demo to the network).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Model jobs allowed to wait (1 to 4096); further requests get 503 until the queue drains.
        #[arg(long, default_value_t = 16, value_parser = args::count(1, MAX_QUEUE))]
        queue: usize,
        /// Access and limits (see SECURITY.md).
        #[command(flatten)]
        options: ServeOptions,
    },
}

/// The search text as the server checks it (same message for an empty one).
fn search_text(s: &str) -> Result<String, String> {
    query_text(s, MAX_QUERY_CHARS).map(str::to_owned)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let clip = Clip::builder()
        .precision(cli.precision)
        .load_or_default(cli.model.as_deref())?;
    match cli.cmd {
        Cmd::Index { dir, db } => index(clip, &dir, &db),
        Cmd::Search { text, db, k } => {
            let lib = Library::open_existing(&db, clip.model_id(), clip.dim())?;
            let q = clip.embed_text(&text)?;
            print_hits(&lib.search(&q, k, None)?, &lib)
        }
        Cmd::Similar { image, db, k } => {
            let lib = Library::open_existing(&db, clip.model_id(), clip.dim())?;
            // A regular file within the picture cap; a FIFO or device is refused at once.
            let bytes = safe_file::read(&image, clip::MAX_FILE_BYTES)
                .with_context(|| format!("cannot read the picture {}", image.display()))?;
            let hits = match lib.find(blake3::hash(&bytes).as_bytes()) {
                Some((id, v)) => lib.search(&v, k, Some(id))?,
                None => {
                    let v = clip
                        .embed_image(clip::ImageInput::Named {
                            bytes: &bytes,
                            name: &image,
                        })
                        .with_context(|| format!("cannot embed {}", image.display()))?;
                    lib.search(&v, k, None)?
                }
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

fn index(clip: Clip, dir: &Path, db: &Path) -> anyhow::Result<()> {
    let mut lib = Library::open(db, clip.model_id(), clip.dim())?;
    let started = std::time::Instant::now();
    let report = sync_folder(&clip, &mut lib, dir)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "scanned {} files: {} added, {} duplicates, {} unchanged, {} failed",
        report.scanned,
        report.added,
        report.duplicates,
        report.skipped + report.unchanged,
        report.failed.len()
    );
    if report.embedded > 0 {
        println!(
            "embedded {} images in {secs:.1} s ({:.1} images/s, reading and decoding included)",
            report.embedded,
            report.embedded as f64 / secs.max(1e-9)
        );
    }
    println!("library {}: {} images", db.display(), lib.len());
    for f in &report.failed {
        // The reason names the file already when the model read it.
        let path = f.path.display().to_string();
        if f.reason.contains(&path) {
            eprintln!("failed: {}", f.reason);
        } else {
            eprintln!("failed: {path}: {}", f.reason);
        }
    }
    let failed = report.failed.len();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} files could not be added (listed above); the others were",
        report.scanned.max(failed)
    );
    Ok(())
}

fn print_hits(hits: &[(Entry, f32)], lib: &Library) -> anyhow::Result<()> {
    if lib.is_empty() {
        println!("the library is empty: add pictures with `gallery index DIR --db FILE`");
    } else if hits.is_empty() {
        println!("no other picture in the library");
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
    let configured = options.configure(!super::is_loopback(&addr))?;
    let (lib, read_only) = Library::open_for_serving(db, clip.model_id(), clip.dim())?;
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
        if !super::is_loopback(&addr) {
            eprintln!(
                "warning: listening on {addr}, reachable from other machines; every API and \
                 image request needs the access token"
            );
        }
        if read_only {
            eprintln!(
                "warning: {} cannot be written by this process: serving it read-only (search \
                 works, new pictures are refused)",
                db.display()
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
        use std::io::Write as _;
        std::io::stdout().flush()?;
        super::serve(listener, state).await?;
        Ok(())
    })
}
