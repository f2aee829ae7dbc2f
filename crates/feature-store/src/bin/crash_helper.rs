//! Helper of the crash-safety test: syncs a folder into a store with a slow fake embedder and
//! prints every committed batch, so that the test can kill it at any moment and then check that
//! everything reported as committed survived.
//!
//! Usage: `feature-store-crash-helper DB DIR BATCH_SIZE DELAY_MS`
//! Output: one `batch\t<path>\t<path>…` line per committed batch, then `done <images>`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use feature_store::{
    EmbedInput, FeatureStore, HashEmbedder, ImageEmbedder, ModelInfo, OpenOptions, SyncOptions,
    SyncProgress,
};

/// Model id and dimension the crash test uses.
const MODEL: &str = "test/hash-embedder";
const DIM: usize = 32;

struct Slow {
    inner: HashEmbedder,
    delay: Duration,
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
        std::thread::sleep(self.delay);
        self.inner.embed_batch(batch)
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, dir, batch, delay] = args.as_slice() else {
        return Err("usage: feature-store-crash-helper DB DIR BATCH_SIZE DELAY_MS".into());
    };
    let batch: usize = batch.parse().map_err(|e| format!("BATCH_SIZE: {e}"))?;
    let delay: u64 = delay.parse().map_err(|e| format!("DELAY_MS: {e}"))?;
    let mut store = FeatureStore::open(db, &ModelInfo::new(MODEL, DIM), &OpenOptions::new())
        .map_err(|e| e.to_string())?;
    let mut embedder = Slow {
        inner: HashEmbedder::new(MODEL, DIM),
        delay: Duration::from_millis(delay),
    };
    let options = SyncOptions::new()
        .batch_size(batch)
        .remove_missing(true)
        .extensions(None);
    let mut print_batch = |p: &SyncProgress<'_>| {
        if !p.committed.is_empty() {
            let paths: Vec<String> = p
                .committed
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            println!("batch\t{}", paths.join("\t"));
        }
    };
    store
        .sync_with_progress(
            PathBuf::from(dir),
            &mut embedder,
            &options,
            &mut print_batch,
        )
        .map_err(|e| e.to_string())?;
    println!("done {}", store.len());
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
