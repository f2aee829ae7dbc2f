//! Embedding library: image vectors mapped back to images, dedupe, persistence, exact top-k search.
//!
//! Two backends behind one interface, the [`Store`] trait; [`Library::open`] picks one from the
//! location: a path is a SQLite file ([`FeatureStore`], the embedded default), a
//! `postgres://user:password@host/db` URL a PostgreSQL database with pgvector ([`PgStore`],
//! cargo feature `postgres`, on by default) that many indexing processes and servers share.
//!
//! - [`FeatureStore`] keeps one SQLite file (WAL) whose header records the model id, embedding
//!   dimension, dtype and schema version; opening it for another model fails with
//!   [`Error::ModelMismatch`] / [`Error::DimMismatch`]. Each distinct content (BLAKE3 hash of the
//!   file bytes) is stored once with its vector; every path holding those bytes is recorded.
//! - [`FeatureStore::sync`] indexes a folder incrementally in committed batches with any
//!   [`ImageEmbedder`]; an interrupted sync resumes where it stopped.
//! - Search is exact top-k by inner product over all vectors, held in memory in one contiguous
//!   matrix ([`FlatIndex`], f32 or f16) and scanned by all rayon threads. The store talks to it only
//!   through the [`VectorIndex`] trait, so another engine can take its place.
//!
//! The crate stores vectors produced by anyone: it does not decode images or run models.
//!
//! # PostgreSQL
//! [`PgStore`] keeps the same tables in a database, vectors as pgvector `vector` (f32) or
//! `halfvec` (f16), and searches in the server: exactly (`<#>` scan, the default) or through an
//! HNSW index ([`SearchMethod::Hnsw`]); results are ordered by score, then id, as in SQLite.
//! Every write is one transaction, so a killed indexer leaves no partial batch. Several
//! processes may [`Library::sync`] the same folder into one database: new bytes are claimed
//! through a `claims` table, so each content is embedded once; a dead worker's claims are taken
//! over as soon as the server has closed its session, a hung worker's when their lease
//! ([`SyncOptions::claim_lease`]) expires. Errors name the
//! URL without its password. `tools/pg/pg.sh start` runs a local server for tests and trials;
//! `docs/scaling.md` has the measured numbers and when to move from SQLite to PostgreSQL.
//!
//! The client is the synchronous `postgres` crate with the `pgvector` crate's types: the store's
//! API is synchronous like the SQLite one (`sync` runs an embedder between commits), so a blocking
//! client keeps async runtimes out of the callers' signatures; `sqlx` would bring a runtime,
//! macros and a much larger build for nothing this crate needs.
//!
//! # Guarantees
//! - **Dedupe**: the same bytes are stored once, whatever the path. The first path is the image's
//!   [`ImageRecord::path`]; further paths are recorded too ([`FeatureStore::paths`]) so `sync`
//!   can skip them unread. An image is deleted when no path holds its bytes any more.
//! - **Crash safety**: WAL journal with `synchronous=NORMAL` by default. A commit is in the
//!   write-ahead log before it returns, so killing the process (SIGKILL, panic, OOM) loses no
//!   committed batch and never corrupts the file (`tests/crash_safety.rs` kills an indexing
//!   process 20 times and checks this). Only a power loss or OS crash may roll back the last
//!   commits; [`Durability::Full`] fsyncs every commit for that case.
//! - **Bad input**: vectors of the wrong length, NaN or out of range, non-UTF-8 paths and
//!   corrupt blobs are typed [`Error`]s naming the file; a failing `add_batch` stores nothing.
//!   In `sync`, an image the embedder fails on is listed in [`SyncReport::failed`] and the rest of
//!   its batch is stored. Pictures are read only when they are regular files within
//!   [`SyncOptions::max_file_bytes()`], opened without blocking (`safe-file`): a FIFO or device in
//!   the folder fails alone, it never hangs the sync.
//! - **Other files are left alone**: opening checks, without writing, that an existing file is a
//!   feature library; an empty file, another format or another program's SQLite database is
//!   [`Error::NotALibrary`] and stays byte for byte as it was. Only a missing file is created.
//! - **Read-only**: [`OpenOptions::read_only`] opens an existing library creating and changing
//!   nothing (no write lock, no `-wal` / `-shm` file while no writer is active), so a library in
//!   a folder or of an owner this process may not write can be searched; writes are
//!   [`Error::ReadOnly`].
//! - **Other writers**: [`FeatureStore::changed`] tells cheaply (one `PRAGMA data_version`) that
//!   another process has committed, [`FeatureStore::refresh`] loads what it added and drops what
//!   it removed; a server asks before every read.
//! - **Search**: results are ordered by score, then by smaller id; the order does not depend on
//!   the number of threads.
//!
//! ```
//! use feature_store::{FeatureStore, HashEmbedder, ModelInfo, OpenOptions, SyncOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let photos = dir.path().join("photos");
//! std::fs::create_dir(&photos)?;
//! std::fs::write(photos.join("a.png"), b"first picture")?;
//! std::fs::write(photos.join("b.png"), b"second picture")?;
//! std::fs::write(photos.join("copy-of-a.png"), b"first picture")?;
//!
//! // A stand-in embedder; real code wraps a CLIP image encoder.
//! let mut embedder = HashEmbedder::new("demo/hash", 8);
//! let model = ModelInfo::new("demo/hash", 8);
//! let mut store = FeatureStore::open(dir.path().join("library.db"), &model, &OpenOptions::new())?;
//!
//! let report = store.sync(&photos, &mut embedder, &SyncOptions::new())?;
//! assert_eq!((report.added, report.duplicates), (2, 1));
//! assert_eq!(store.len(), 2);
//!
//! // Text → image would pass a text embedding; here the query is an image's own vector.
//! let query = embedder.embed(b"second picture");
//! let hits = store.search(&query, 1)?;
//! assert!(hits[0].path.ends_with("b.png"));
//! assert!((hits[0].score - 1.0).abs() < 1e-5);
//!
//! // A second sync embeds nothing (files older than 2 s are not even read again).
//! let again = store.sync(&photos, &mut embedder, &SyncOptions::new())?;
//! assert_eq!((again.added, again.embedded), (0, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod backend;
mod error;
mod index;
mod kernel;
mod library;
mod pending;
#[cfg(feature = "postgres")]
mod pg;
mod pg_url;
mod sqlite;
mod store;
mod sync;
mod types;

pub use error::{Error, Result};
pub use index::{FlatIndex, Precision, Scored, SearchBuffer, SearchOptions, VectorIndex};
pub use library::{BackendKind, Library, Store};
#[cfg(feature = "postgres")]
pub use pg::{PG_DTYPE_F16, PG_DTYPE_F32, PG_SCHEMA_VERSION, PgStore};
pub use store::{
    Durability, FeatureStore, HnswParams, ModelInfo, OpenOptions, SCHEMA_VERSION, SearchMethod,
    StoreHeader, VECTOR_DTYPE,
};
#[cfg(feature = "progress-bar")]
pub use sync::TerminalProgress;
pub use sync::{
    DynEmbedder, EmbedInput, FailedImage, HashEmbedder, ImageEmbedder, NoProgress, ProgressSink,
    SyncOptions, SyncProgress, SyncReport,
};
pub use types::{AddOutcome, AddStatus, ContentHash, ImageId, ImageRecord, NewImage, SearchHit};
