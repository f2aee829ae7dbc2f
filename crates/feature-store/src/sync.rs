//! Incremental indexing of a folder: [`ImageEmbedder`], [`SyncOptions`], [`SyncReport`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use std::time::Duration;

use crate::backend::{Backend, Claim};
use crate::index::VectorIndex;
use crate::pending::{KnownFile, Pending, path_text};
use crate::store::FeatureStore;
use crate::types::{AddOutcome, AddStatus, ContentHash};
use crate::{Error, Result};

/// One image handed to an [`ImageEmbedder`].
#[derive(Clone, Copy, Debug)]
pub struct EmbedInput<'a> {
    /// Where the bytes come from.
    pub path: &'a Path,
    /// The file's bytes, undecoded.
    pub bytes: &'a [u8],
}

/// Turns image files into embeddings. Implemented by the model glue (decode, preprocess,
/// encode); the store only needs vectors.
pub trait ImageEmbedder {
    /// Why one image could not be embedded (undecodable, too large, …).
    type Error: std::fmt::Display;

    /// Identifies the model; must equal the store's model id.
    fn model_id(&self) -> &str;

    /// Embedding length; must equal the store's dimension.
    fn dim(&self) -> usize;

    /// Embeds a batch: one result per input, in order. A failed image fails alone.
    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, Self::Error>>;
}

/// A deterministic stand-in for a model: the vector is derived from the BLAKE3 hash of the bytes
/// and has unit length. Equal bytes give equal vectors. For tests and demos without weights.
#[derive(Clone, Debug)]
pub struct HashEmbedder {
    model_id: String,
    dim: usize,
}

impl HashEmbedder {
    /// An embedder claiming to be `model_id`, producing `dim`-d vectors.
    pub fn new(model_id: impl Into<String>, dim: usize) -> Self {
        HashEmbedder {
            model_id: model_id.into(),
            dim,
        }
    }

    /// The vector of `bytes`.
    pub fn embed(&self, bytes: &[u8]) -> Vec<f32> {
        let mut reader = blake3::Hasher::new().update(bytes).finalize_xof();
        let mut raw = vec![0u8; self.dim * 4];
        reader.fill(&mut raw);
        let mut v: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| {
                let u = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (u as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

impl ImageEmbedder for HashEmbedder {
    type Error = std::convert::Infallible;

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, Self::Error>> {
        batch
            .iter()
            .map(|item| Ok(self.embed(item.bytes)))
            .collect()
    }
}

/// Options of [`FeatureStore::sync`] and [`Library::sync`](crate::Library::sync).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Files embedded and committed per transaction.
    pub batch_size: usize,
    /// Forget files under the folder that no longer exist (their images go when no path is left).
    pub remove_missing: bool,
    /// File extensions to index, lower case without dot; `None` indexes every file.
    pub extensions: Option<Vec<String>>,
    /// Larger files are reported as failed, not read.
    pub max_file_bytes: u64,
    /// How long a worker's claim on new bytes holds before other workers syncing into the same
    /// PostgreSQL library take the bytes over. Claims of a worker whose database session ended
    /// (the process died) are taken over at once; the lease covers a worker that hangs or lost
    /// its connection without the server noticing. It must exceed the time one batch takes to
    /// embed, else a slow batch is embedded twice (and stored once). The SQLite backend has one
    /// writer and ignores it.
    pub claim_lease: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            batch_size: 32,
            remove_missing: false,
            extensions: Some(
                ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"]
                    .map(String::from)
                    .to_vec(),
            ),
            max_file_bytes: 64 << 20,
            claim_lease: Duration::from_secs(60),
        }
    }
}

impl SyncOptions {
    /// Defaults: batches of 32, keep missing files, common image extensions, 64 MiB per file.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set the batch size (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Forget files that no longer exist.
    pub fn remove_missing(mut self, yes: bool) -> Self {
        self.remove_missing = yes;
        self
    }
    /// Index only these extensions (`None`: all files).
    pub fn extensions(mut self, extensions: Option<Vec<String>>) -> Self {
        self.extensions = extensions;
        self
    }
    /// Set the per-file size limit.
    pub fn max_file_bytes(mut self, limit: u64) -> Self {
        self.max_file_bytes = limit;
        self
    }
    /// Set the claim lease of cooperating workers (at least 100 ms).
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease.max(Duration::from_millis(100));
        self
    }
    /// How long a worker waits before looking again at bytes another worker is embedding.
    pub(crate) fn claim_poll(&self) -> Duration {
        (self.claim_lease / 10).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}

/// An image that was not stored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedImage {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// What a [`FeatureStore::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Files found under the folder.
    pub scanned: usize,
    /// Files skipped because size and mtime matched (not read).
    pub skipped: usize,
    /// Files read and hashed.
    pub read: usize,
    /// New images stored (each embedded once).
    pub added: usize,
    /// Paths recorded for bytes already stored (nothing embedded).
    pub duplicates: usize,
    /// Files whose mtime changed but whose bytes did not.
    pub unchanged: usize,
    /// Images the embedder was run on.
    pub embedded: usize,
    /// Paths forgotten because their files are gone.
    pub removed_paths: usize,
    /// Images deleted (no path held them any more).
    pub removed_images: usize,
    /// Transactions committed.
    pub batches: usize,
    /// Files that could not be read or embedded; not stored, retried by the next sync.
    pub failed: Vec<FailedImage>,
    /// Files whose new bytes another worker was embedding when this one reached them: recorded
    /// once that worker committed (or, if its claim expired, embedded here). Always 0 with SQLite.
    pub waited: usize,
}

/// Where a running sync is.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SyncProgress<'a> {
    /// Files needing work (new or changed), known once the folder is scanned.
    pub total: usize,
    /// Of those, how many are committed.
    pub done: usize,
    /// The paths of the batch just committed, failed ones included (empty on the first call).
    pub committed: &'a [PathBuf],
    /// The counts so far.
    pub report: &'a SyncReport,
}

/// Receives progress of a sync; called once after the scan and after every committed batch.
pub trait ProgressSink {
    /// A new state.
    fn update(&mut self, progress: &SyncProgress<'_>);
    /// The sync ended (successfully or not).
    fn finish(&mut self) {}
}

impl<F: FnMut(&SyncProgress<'_>)> ProgressSink for F {
    fn update(&mut self, progress: &SyncProgress<'_>) {
        self(progress)
    }
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn update(&mut self, _: &SyncProgress<'_>) {}
}

/// A progress bar on standard error (drawn only when it is a terminal).
#[cfg(feature = "progress-bar")]
#[derive(Debug)]
pub struct TerminalProgress {
    bar: indicatif::ProgressBar,
}

#[cfg(feature = "progress-bar")]
impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "progress-bar")]
impl TerminalProgress {
    /// A bar, shown once the total is known.
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images  {per_sec}  eta {eta}  {msg}",
        ) {
            bar.set_style(style);
        }
        TerminalProgress { bar }
    }
}

#[cfg(feature = "progress-bar")]
impl ProgressSink for TerminalProgress {
    fn update(&mut self, p: &SyncProgress<'_>) {
        self.bar.set_length(p.total as u64);
        self.bar.set_position(p.done as u64);
        if !p.report.failed.is_empty() {
            self.bar
                .set_message(format!("{} failed", p.report.failed.len()));
        }
    }
    fn finish(&mut self) {
        self.bar.finish();
    }
}

/// Modification time in nanoseconds since the epoch (negative before it, 0 if unknown).
pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        },
        Err(_) => 0,
    }
}

struct Candidate {
    path: PathBuf,
    text: String,
}

fn wanted(path: &Path, options: &SyncOptions) -> bool {
    match &options.extensions {
        None => true,
        Some(exts) => path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e))),
    }
}

/// Lists the files under `root` (not following symlinked folders), sorted.
fn walk(
    root: &Path,
    options: &SyncOptions,
    files: &mut Vec<(PathBuf, std::fs::Metadata)>,
    failed: &mut Vec<FailedImage>,
) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                failed.push(FailedImage {
                    path: dir,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    failed.push(FailedImage {
                        path: dir.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) if wanted(&path, options) => match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => files.push((path, meta)),
                    Ok(_) => {}
                    Err(e) => failed.push(FailedImage {
                        path,
                        reason: e.to_string(),
                    }),
                },
                Ok(_) => {}
                Err(e) => failed.push(FailedImage {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
}

/// Reads a file, returning its bytes, size and mtime as seen by the open handle: only a regular
/// file of at most `limit` bytes, opened without blocking (a FIFO or device put in a picture's
/// place fails alone instead of hanging the sync).
fn read_file(path: &Path, limit: u64) -> Result<(Vec<u8>, u64, i64)> {
    let (file, meta) = safe_file::open(path, limit)?;
    let bytes = safe_file::read_open(path, file, &meta, limit)?;
    let size = bytes.len() as u64;
    Ok((bytes, size, mtime_ns(&meta)))
}

/// An [`ImageEmbedder`] with its error turned into text, so that it can be passed as
/// `&mut dyn DynEmbedder` through the object-safe [`Store`](crate::Store) interface. Every
/// `ImageEmbedder` is one; callers never implement it themselves.
pub trait DynEmbedder {
    /// [`ImageEmbedder::model_id`].
    fn dyn_model_id(&self) -> &str;
    /// [`ImageEmbedder::dim`].
    fn dyn_dim(&self) -> usize;
    /// [`ImageEmbedder::embed_batch`], errors as text.
    fn dyn_embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, String>>;
}

impl<E: ImageEmbedder> DynEmbedder for E {
    fn dyn_model_id(&self) -> &str {
        self.model_id()
    }
    fn dyn_dim(&self) -> usize {
        self.dim()
    }
    fn dyn_embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        self.embed_batch(batch)
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }
}

impl ImageEmbedder for dyn DynEmbedder + '_ {
    type Error = String;
    fn model_id(&self) -> &str {
        self.dyn_model_id()
    }
    fn dim(&self) -> usize {
        self.dyn_dim()
    }
    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>, String>> {
        self.dyn_embed_batch(batch)
    }
}

fn check_embedder<E: ImageEmbedder + ?Sized, B: Backend>(store: &B, embedder: &E) -> Result<()> {
    let model = store.model();
    if embedder.model_id() != model.model_id || embedder.dim() != model.dim {
        return Err(Error::EmbedderMismatch {
            embedder_model: embedder.model_id().to_owned(),
            embedder_dim: embedder.dim(),
            store_model: model.model_id.clone(),
            store_dim: model.dim,
        });
    }
    Ok(())
}

const DELETED_MEANWHILE: &str =
    "its bytes were deleted from the store by another writer meanwhile; retried by the next sync";

/// Adds one file if new (see [`FeatureStore::add_file`]), for any backend.
pub(crate) fn add_file<B: Backend, E: ImageEmbedder + ?Sized>(
    store: &mut B,
    path: &Path,
    embedder: &mut E,
) -> Result<AddOutcome> {
    check_embedder(store, embedder)?;
    let text = path_text(path)?.to_owned();
    let meta = safe_file::check(path)?;
    if let Some((id, known)) = store.known_file(&text)?
        && known.matches(meta.len(), mtime_ns(&meta))
    {
        return Ok(AddOutcome {
            id,
            status: AddStatus::Unchanged,
            removed: None,
        });
    }
    let (bytes, size, mtime) = read_file(path, SyncOptions::default().max_file_bytes)?;
    let hash = ContentHash::of(&bytes);
    let vector = if store.find_hash(&hash)?.is_some() {
        None
    } else {
        let mut out = embedder.embed_batch(&[EmbedInput {
            path,
            bytes: &bytes,
        }]);
        if out.len() != 1 {
            return Err(Error::EmbedderBatch {
                expected: 1,
                found: out.len(),
            });
        }
        match out.pop() {
            Some(Ok(v)) => {
                store.validate(&path.display().to_string(), &v)?;
                Some(v)
            }
            Some(Err(e)) => {
                return Err(Error::Embed {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
            None => None,
        }
    };
    let pending = [Pending {
        path: text,
        size,
        mtime_ns: mtime,
        hash,
        vector,
    }];
    match store.commit_batch(&pending)?.pop().flatten() {
        Some(outcome) => Ok(outcome),
        None => Err(Error::Embed {
            path: path.to_path_buf(),
            reason: DELETED_MEANWHILE.into(),
        }),
    }
}

/// Indexes a folder (see [`FeatureStore::sync_with_progress`]), for any backend.
pub(crate) fn sync<B: Backend, E: ImageEmbedder + ?Sized>(
    store: &mut B,
    dir: &Path,
    embedder: &mut E,
    options: &SyncOptions,
    progress: &mut dyn ProgressSink,
) -> Result<SyncReport> {
    let result = sync_inner(store, dir, embedder, options, progress);
    progress.finish();
    result
}

fn sync_inner<B: Backend, E: ImageEmbedder + ?Sized>(
    store: &mut B,
    dir: &Path,
    embedder: &mut E,
    options: &SyncOptions,
    progress: &mut dyn ProgressSink,
) -> Result<SyncReport> {
    check_embedder(store, embedder)?;
    let root = dir.canonicalize().map_err(|cause| Error::Io {
        path: dir.to_path_buf(),
        cause,
    })?;
    if !root.is_dir() {
        return Err(Error::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    let mut report = SyncReport::default();
    let mut files = Vec::new();
    walk(&root, options, &mut files, &mut report.failed);
    report.scanned = files.len();

    let known: HashMap<String, KnownFile> = store.known_files()?.into_iter().collect();
    let mut seen = HashSet::with_capacity(files.len());
    let mut todo = Vec::new();
    for (path, meta) in files {
        let Some(text) = path.to_str().map(str::to_owned) else {
            report.failed.push(FailedImage {
                reason: Error::NonUtf8Path { path: path.clone() }.to_string(),
                path,
            });
            continue;
        };
        seen.insert(text.clone());
        match known.get(&text) {
            Some(k) if k.matches(meta.len(), mtime_ns(&meta)) => report.skipped += 1,
            _ => todo.push(Candidate { path, text }),
        }
    }

    let total = todo.len();
    progress.update(&SyncProgress {
        total,
        done: 0,
        committed: &[],
        report: &report,
    });
    let batch_size = options.batch_size.max(1);
    let mut done = 0;
    let mut deferred = Vec::new();
    let mut round = todo;
    let mut first = true;
    loop {
        for chunk in round.chunks(batch_size) {
            let before = deferred.len();
            let committed =
                sync_batch(store, chunk, embedder, options, &mut report, &mut deferred)?;
            done += chunk.len() - (deferred.len() - before);
            progress.update(&SyncProgress {
                total,
                done,
                committed: &committed,
                report: &report,
            });
        }
        if first {
            report.waited = deferred.len();
            first = false;
        }
        if deferred.is_empty() {
            break;
        }
        // New bytes another worker is embedding: wait for its commit (then they are recorded as
        // duplicates) or for its claim to expire (then this process embeds them).
        std::thread::sleep(options.claim_poll());
        round = std::mem::take(&mut deferred);
        // Paths the other worker recorded meanwhile need nothing more.
        let mut left = Vec::with_capacity(round.len());
        for c in round {
            let meta = std::fs::metadata(&c.path).ok();
            match (store.known_file(&c.text)?, meta) {
                (Some((_, k)), Some(m)) if k.matches(m.len(), mtime_ns(&m)) => {
                    report.skipped += 1;
                    done += 1;
                }
                _ => left.push(c),
            }
        }
        round = left;
    }

    if options.remove_missing {
        let gone: Vec<String> = known
            .keys()
            .filter(|p| {
                let path = Path::new(p.as_str());
                // Not found by this scan and not on disk (a file filtered out by extension
                // or behind a symlinked folder is kept).
                path.starts_with(&root) && !seen.contains(*p) && !path.exists()
            })
            .cloned()
            .collect();
        for chunk in gone.chunks(batch_size.max(256)) {
            let removed = store.remove_paths(chunk)?;
            report.removed_paths += chunk.len();
            report.removed_images += removed.len();
            report.batches += 1;
        }
    }
    Ok(report)
}

/// Reads, hashes, claims, embeds and commits one batch. Files whose new bytes another worker
/// holds a live claim on go to `deferred`. Returns the paths handled (committed or failed).
fn sync_batch<B: Backend, E: ImageEmbedder + ?Sized>(
    store: &mut B,
    chunk: &[Candidate],
    embedder: &mut E,
    options: &SyncOptions,
    report: &mut SyncReport,
    deferred: &mut Vec<Candidate>,
) -> Result<Vec<PathBuf>> {
    // Read and hash; decide which bytes are new (not stored, not earlier in this batch).
    let mut pending = Vec::with_capacity(chunk.len());
    let mut bytes_of = Vec::with_capacity(chunk.len());
    let mut batch_hashes = HashSet::new();
    let mut handled = Vec::with_capacity(chunk.len());
    for c in chunk {
        match read_file(&c.path, options.max_file_bytes) {
            Ok((bytes, size, mtime)) => {
                report.read += 1;
                let hash = ContentHash::of(&bytes);
                let new = batch_hashes.insert(hash) && store.find_hash(&hash)?.is_none();
                pending.push((
                    c,
                    Pending {
                        path: c.text.clone(),
                        size,
                        mtime_ns: mtime,
                        hash,
                        vector: None,
                    },
                ));
                bytes_of.push(new.then_some(bytes));
            }
            Err(e) => {
                handled.push(c.path.clone());
                report.failed.push(FailedImage {
                    path: c.path.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    // Claim the new bytes, so that cooperating workers embed each content once.
    let new_slots: Vec<usize> = (0..pending.len())
        .filter(|&i| bytes_of[i].is_some())
        .collect();
    let mut busy = HashSet::new();
    let mut claimed = Vec::new();
    if !new_slots.is_empty() {
        let hashes: Vec<ContentHash> = new_slots.iter().map(|&i| pending[i].1.hash).collect();
        let claims = store.claim(&hashes, options.claim_lease)?;
        for (&i, claim) in new_slots.iter().zip(claims) {
            match claim {
                Claim::Mine => claimed.push(pending[i].1.hash),
                Claim::Busy => {
                    busy.insert(pending[i].1.hash);
                    bytes_of[i] = None;
                }
                // Stored by another worker since `find_hash`: a duplicate now.
                Claim::Stored => bytes_of[i] = None,
            }
        }
    }
    let inputs: Vec<(usize, EmbedInput<'_>)> = bytes_of
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            b.as_deref().map(|bytes| {
                (
                    i,
                    EmbedInput {
                        path: &pending[i].0.path,
                        bytes,
                    },
                )
            })
        })
        .collect();
    let mut bad = HashSet::new();
    if !inputs.is_empty() {
        let batch: Vec<EmbedInput<'_>> = inputs.iter().map(|(_, e)| *e).collect();
        let results = embedder.embed_batch(&batch);
        if results.len() != batch.len() {
            store.release(&claimed)?;
            return Err(Error::EmbedderBatch {
                expected: batch.len(),
                found: results.len(),
            });
        }
        report.embedded += batch.len();
        for ((i, input), result) in inputs.iter().zip(results) {
            let checked = match result {
                Ok(v) => store
                    .validate(&input.path.display().to_string(), &v)
                    .map(|()| v)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match checked {
                Ok(v) => pending[*i].1.vector = Some(v),
                Err(reason) => {
                    bad.insert(*i);
                    report.failed.push(FailedImage {
                        path: input.path.to_path_buf(),
                        reason,
                    });
                }
            }
        }
    }
    drop(bytes_of);
    // Duplicates of a failed image within this batch have no vector to point to: retried
    // next time with the failed image. Paths of bytes another worker is embedding wait for it.
    let failed_hashes: HashSet<ContentHash> = bad.iter().map(|&i| pending[i].1.hash).collect();
    if !failed_hashes.is_empty() {
        let failed: Vec<ContentHash> = failed_hashes.iter().copied().collect();
        store.release(&failed)?;
    }
    let mut paths = Vec::with_capacity(pending.len());
    let mut items = Vec::with_capacity(pending.len());
    for (i, (c, p)) in pending.into_iter().enumerate() {
        if busy.contains(&p.hash) && p.vector.is_none() {
            deferred.push(Candidate {
                path: c.path.clone(),
                text: c.text.clone(),
            });
        } else if bad.contains(&i) || (p.vector.is_none() && failed_hashes.contains(&p.hash)) {
            handled.push(c.path.clone());
        } else {
            paths.push(c);
            items.push(p);
        }
    }
    let outcomes = store.commit_batch(&items)?;
    report.batches += 1;
    for (c, outcome) in paths.iter().zip(outcomes) {
        handled.push(c.path.clone());
        match outcome {
            Some(o) => {
                match o.status {
                    AddStatus::Added => report.added += 1,
                    AddStatus::Duplicate => report.duplicates += 1,
                    AddStatus::Unchanged => report.unchanged += 1,
                }
                if o.removed.is_some() {
                    report.removed_images += 1;
                }
            }
            None => report.failed.push(FailedImage {
                path: c.path.clone(),
                reason: DELETED_MEANWHILE.into(),
            }),
        }
    }
    Ok(handled)
}

impl<I: VectorIndex> FeatureStore<I> {
    /// Adds one file if new: skipped without reading when its path is recorded with the same size
    /// and mtime; embedded only when its bytes are not stored yet. Files over 64 MiB are refused
    /// ([`Error::TooLarge`]).
    pub fn add_file<E: ImageEmbedder>(
        &mut self,
        path: impl AsRef<Path>,
        embedder: &mut E,
    ) -> Result<AddOutcome> {
        add_file(self, path.as_ref(), embedder)
    }

    /// Indexes the image files under `dir` (recursively, incrementally) with `embedder`; see
    /// [`FeatureStore::sync_with_progress`].
    pub fn sync<E: ImageEmbedder>(
        &mut self,
        dir: impl AsRef<Path>,
        embedder: &mut E,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        self.sync_with_progress(dir, embedder, options, &mut NoProgress)
    }

    /// Indexes the image files under `dir`:
    /// - files whose path is recorded with the same size and mtime are skipped unread (files
    ///   recorded within 2 s of their mtime are re-hashed once more, since a same-size rewrite
    ///   inside the file system's timestamp granularity would keep the mtime);
    /// - other files are read and hashed; bytes already stored are recorded as a further path;
    ///   new bytes are embedded, `batch_size` files at a time, each batch committed in one
    ///   transaction, so an interrupted sync keeps its finished batches and the next one does only
    ///   what is left;
    /// - with `remove_missing`, recorded paths under `dir` whose files are gone are forgotten.
    ///
    /// Paths are stored absolute (`dir` is canonicalised). Files that cannot be read or embedded
    /// are listed in [`SyncReport::failed`] and not stored.
    pub fn sync_with_progress<E: ImageEmbedder>(
        &mut self,
        dir: impl AsRef<Path>,
        embedder: &mut E,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport> {
        sync(self, dir.as_ref(), embedder, options, progress)
    }
}
