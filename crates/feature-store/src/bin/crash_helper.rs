//! Helper of the crash-safety and scale-out tests: syncs a folder into a library (a SQLite file or
//! a `postgres://` URL) with a slow fake embedder and prints every committed batch, so that a
//! test can kill it at any moment and then check that everything reported as committed survived.
//!
//! Usage: `feature-store-crash-helper LIBRARY DIR BATCH_SIZE DELAY_MS [PER_IMAGE_MS LEASE_MS]`
//! (`DELAY_MS` per embedded batch, `PER_IMAGE_MS` more per embedded image, `LEASE_MS` the claim
//! lease of cooperating workers).
//! Output: `embed\t<hash>` for every image as its embedding starts, one
//! `batch\t<path>\t<path>…` line per committed batch, then `done <images> <embedded> <waited>`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::io::Write;

use feature_store::{
    ContentHash, EmbedInput, HashEmbedder, ImageEmbedder, Library, ModelInfo, OpenOptions, Store,
    SyncOptions, SyncProgress,
};

/// Model id and dimension the crash test uses.
const MODEL: &str = "test/hash-embedder";
const DIM: usize = 32;

struct Slow {
    inner: HashEmbedder,
    delay: Duration,
    per_image: Duration,
}

impl ImageEmbedder for Slow {
    type Error = std::convert::Infallible;
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, Self::Error>> {
        {
            let mut out = std::io::stdout().lock();
            for item in batch {
                // Printed as embedding starts: a worker killed from here on has spent work on
                // these (and, with PostgreSQL, holds their claims).
                let _ = writeln!(out, "embed\t{}", ContentHash::of(item.bytes));
            }
            let _ = out.flush();
        }
        std::thread::sleep(self.delay + self.per_image * batch.len() as u32);
        self.inner.embed_batch(batch)
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: feature-store-crash-helper LIBRARY DIR BATCH_SIZE DELAY_MS [PER_IMAGE_MS LEASE_MS]";
    let (db, dir, batch, delay, per_image, lease) = match args.as_slice() {
        [db, dir, batch, delay] => (db, dir, batch, delay, "0", "60000"),
        [db, dir, batch, delay, per_image, lease] => {
            (db, dir, batch, delay, per_image.as_str(), lease.as_str())
        }
        _ => return Err(usage.into()),
    };
    let ms = |text: &str, name: &str| -> Result<Duration, String> {
        text.parse()
            .map(Duration::from_millis)
            .map_err(|e| format!("{name}: {e}"))
    };
    let batch: usize = batch.parse().map_err(|e| format!("BATCH_SIZE: {e}"))?;
    let mut store = Library::open(db, &ModelInfo::new(MODEL, DIM), &OpenOptions::new())
        .map_err(|e| e.to_string())?;
    let mut embedder = Slow {
        inner: HashEmbedder::new(MODEL, DIM),
        delay: ms(delay, "DELAY_MS")?,
        per_image: ms(per_image, "PER_IMAGE_MS")?,
    };
    let options = SyncOptions::new()
        .batch_size(batch)
        .remove_missing(true)
        .extensions(None)
        .claim_lease(ms(lease, "LEASE_MS")?);
    let mut print_batch = |p: &SyncProgress<'_>| {
        if !p.committed.is_empty() {
            let paths: Vec<String> = p
                .committed
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "batch\t{}", paths.join("\t"));
            let _ = out.flush();
        }
    };
    let report = store
        .sync_with_progress(
            PathBuf::from(dir),
            &mut embedder,
            &options,
            &mut print_batch,
        )
        .map_err(|e| e.to_string())?;
    let len = store.len().map_err(|e| e.to_string())?;
    println!("done {len} {} {}", report.embedded, report.waited);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
