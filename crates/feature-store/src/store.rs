//! [`FeatureStore`]: the SQLite file, its header checks, adding, browsing and searching.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::index::{FlatIndex, Precision, Scored, SearchBuffer, SearchOptions, VectorIndex};
use crate::pending::{KnownFile, Pending, path_text, to_i64};
use crate::sqlite::{
    Access, BatchEffect, SqlContext, apply_one, configure, connect, create_library, data_version,
    decode_vector, detach, image_record, open_read_only, probe, read_meta, stamp,
};
use crate::types::{AddOutcome, ContentHash, ImageId, ImageRecord, NewImage, SearchHit};
use crate::{Error, Result};

/// Schema version written to and expected in the header.
pub const SCHEMA_VERSION: u32 = 1;
/// Element type of stored vectors: little-endian IEEE f32, `dim * 4` bytes per blob.
pub const VECTOR_DTYPE: &str = "f32le";

/// The model whose embeddings a store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Identifies the model and its weights, e.g. `openai/clip-vit-base-patch32`.
    pub model_id: String,
    /// Embedding length.
    pub dim: usize,
}

impl ModelInfo {
    /// Model `model_id` producing `dim`-d embeddings.
    pub fn new(model_id: impl Into<String>, dim: usize) -> Self {
        ModelInfo {
            model_id: model_id.into(),
            dim,
        }
    }
}

/// The header of a store file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHeader {
    /// The model the vectors come from.
    pub model: ModelInfo,
    /// Element type of stored vectors ([`VECTOR_DTYPE`]).
    pub dtype: String,
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
}

/// How hard commits push data to disk.
///
/// The store always runs SQLite in WAL mode. A committed transaction is in the write-ahead log
/// before `commit` returns, so with either setting a killed *process* (SIGKILL, panic, OOM) loses
/// nothing committed and never corrupts the file; the crash-safety test checks exactly that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL`: the log is fsynced at checkpoints, not at every commit. After a
    /// power loss or OS crash the last commits may be rolled back, but the file stays consistent.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced; it survives power loss too, at the cost of one
    /// fsync per batch.
    Full,
}

/// Parameters of a pgvector HNSW index (see [`SearchMethod::Hnsw`]). `m` and `ef_construction`
/// default to pgvector's; `ef_search` defaults to 200, not pgvector's 40: text queries come from
/// another distribution than the stored image vectors (CLIP's modality gap) and at 40 HNSW found
/// only 61% of their true top 10 over 100k 512-d rows, 93% at 200; over 1M rows 20% and 53%
/// (`docs/scaling.md`). Measure recall with real text queries before relying on HNSW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HnswParams {
    /// Links per node (pgvector `m`, default 16).
    pub m: u32,
    /// Candidate list size while building (pgvector `ef_construction`, default 64).
    pub ef_construction: u32,
    /// Candidate list size while searching (`hnsw.ef_search`, default 200); recall and latency
    /// grow with it.
    pub ef_search: u32,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 64,
            ef_search: 200,
        }
    }
}

impl HnswParams {
    /// Set the search-time candidate list size.
    pub fn ef_search(mut self, ef_search: u32) -> Self {
        self.ef_search = ef_search.max(1);
        self
    }
    /// Set the links per node (at least 2).
    pub fn m(mut self, m: u32) -> Self {
        self.m = m.max(2);
        self
    }
    /// Set the build-time candidate list size (at least `2 * m`, as pgvector requires).
    pub fn ef_construction(mut self, ef: u32) -> Self {
        self.ef_construction = ef.max(2 * self.m);
        self
    }
}

/// How a PostgreSQL library is searched. The SQLite backend always scans its in-memory matrix
/// exactly and ignores this.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchMethod {
    /// Every row scored (`<#>` scan): results equal the SQLite backend's.
    #[default]
    Exact,
    /// Approximate, through an HNSW index on the vectors (built on open if missing; building it
    /// over millions of rows takes minutes).
    Hnsw(HnswParams),
}

/// Options for opening a store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Element type: of the in-memory matrix for SQLite (the file always holds f32); of the
    /// stored column for a new PostgreSQL library (`vector` or `halfvec`; an existing one keeps
    /// the type it was created with).
    pub precision: Precision,
    /// Commit durability (SQLite; a PostgreSQL server commits with its own `synchronous_commit`).
    pub durability: Durability,
    /// Create the file, or a PostgreSQL database's tables, if missing (default: yes).
    pub create: bool,
    /// How a PostgreSQL library is searched (default: exact).
    pub search: SearchMethod,
    /// Open an existing library for reading only (default: no). Nothing is created or changed:
    /// a missing library is [`Error::Missing`], writes are [`Error::ReadOnly`]; a SQLite file in
    /// a folder or of an owner that forbids writing can be searched.
    pub read_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            precision: Precision::F32,
            durability: Durability::Normal,
            create: true,
            search: SearchMethod::Exact,
            read_only: false,
        }
    }
}

impl OpenOptions {
    /// The defaults: f32 matrix, `synchronous=NORMAL`, create if missing.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set the in-memory precision.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// Set the commit durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Whether a missing file is created.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Set how a PostgreSQL library is searched.
    pub fn search(mut self, search: SearchMethod) -> Self {
        self.search = search;
        self
    }
    /// Whether to open an existing library for reading only (see [`OpenOptions::read_only`]).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// An embedding library in one SQLite file, mirrored into an in-memory [`VectorIndex`].
///
/// Tables: `meta` (model id, dimension, dtype, schema version), `images` (one row per distinct
/// content: id, hash, first path, size, mtime, vector blob) and `files` (every path known to hold
/// an image's bytes, with its size and mtime, so unchanged files are skipped without reading).
/// An image lives as long as at least one path holds its bytes.
///
/// Opening an existing file never changes it before its header is checked: a file that is not
/// a feature library is refused untouched ([`Error::NotALibrary`]), and only a missing file is
/// created. With [`OpenOptions::read_only`] nothing is ever written or created.
///
/// Reads take `&self` and the type is `Sync`, so a server can keep it in an `RwLock`; it asks
/// [`FeatureStore::changed`] before reading and calls [`FeatureStore::refresh`] when another
/// process has committed.
pub struct FeatureStore<I: VectorIndex = FlatIndex> {
    file: PathBuf,
    conn: Mutex<Connection>,
    access: Access,
    /// `PRAGMA data_version` when the index was last brought up to date.
    seen_version: i64,
    model: ModelInfo,
    index: I,
}

impl<I: VectorIndex> std::fmt::Debug for FeatureStore<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureStore")
            .field("file", &self.file)
            .field("model", &self.model)
            .field("len", &self.index.len())
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

impl FeatureStore<FlatIndex> {
    /// Opens (or creates) the store at `file` for embeddings of `model`, loading every vector
    /// into an in-memory [`FlatIndex`].
    ///
    /// A new file records `model` in its header; an existing one must have been written for the
    /// same model id and dimension, else [`Error::ModelMismatch`] / [`Error::DimMismatch`].
    pub fn open(file: impl AsRef<Path>, model: &ModelInfo, options: &OpenOptions) -> Result<Self> {
        let index = FlatIndex::new(model.dim, options.precision);
        Self::open_with_index(file, model, options, index)
    }

    /// Opens an existing store with the model recorded in its header.
    pub fn open_existing(file: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let header = Self::read_header(&file)?;
        let options = options.clone().create(false);
        Self::open(file, &header.model, &options)
    }
}

impl<I: VectorIndex> FeatureStore<I> {
    /// Reads the header of an existing store without loading it, changing nothing.
    pub fn read_header(file: impl AsRef<Path>) -> Result<StoreHeader> {
        let file = file.as_ref();
        match probe(file)? {
            Some((header, _, _)) => Ok(header),
            None => Err(Error::Missing {
                file: file.to_path_buf(),
            }),
        }
    }

    /// Like [`FeatureStore::open`], loading the vectors into `index` (which should be empty and
    /// of dimension `model.dim`).
    pub fn open_with_index(
        file: impl AsRef<Path>,
        model: &ModelInfo,
        options: &OpenOptions,
        mut index: I,
    ) -> Result<Self> {
        let file = file.as_ref().to_path_buf();
        if index.dim() != model.dim {
            return Err(Error::DimMismatch {
                file,
                stored: model.dim,
                requested: index.dim(),
            });
        }
        if model.dim == 0 {
            return Err(Error::DimMismatch {
                file,
                stored: 0,
                requested: 0,
            });
        }
        let check_model = |header: StoreHeader| -> Result<()> {
            if header.model.model_id != model.model_id {
                return Err(Error::ModelMismatch {
                    file: file.clone(),
                    stored: header.model.model_id,
                    requested: model.model_id.clone(),
                });
            }
            if header.model.dim != model.dim {
                return Err(Error::DimMismatch {
                    file: file.clone(),
                    stored: header.model.dim,
                    requested: model.dim,
                });
            }
            Ok(())
        };
        // Only a file that is a library, or none, goes further: nothing is written before.
        let found = probe(&file)?;
        let (mut conn, access) = match found {
            Some((header, conn, access)) if options.read_only => {
                check_model(header)?;
                (conn, access)
            }
            None if options.read_only || !options.create => {
                return Err(Error::Missing { file });
            }
            found => {
                if found.is_none() {
                    // Built aside and moved into place: a crash leaves no half-made file. What
                    // is there afterwards (another process may have won) is checked again.
                    create_library(&file, model, options.durability)?;
                    if probe(&file)?.is_none() {
                        return Err(Error::Missing { file });
                    }
                }
                drop(found);
                (connect(&file)?, Access::ReadWrite)
            }
        };
        if access == Access::ReadWrite {
            configure(&conn, &file, options.durability)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .at(&file)?;
            match read_meta(&tx, &file)? {
                Some(header) => check_model(header)?,
                None => {
                    return Err(Error::NotALibrary {
                        file,
                        reason: "a SQLite database without a feature library header",
                    });
                }
            }
            tx.commit().at(&file)?;
        }
        let seen_version = data_version(&conn, &file)?;
        {
            let mut stmt = conn
                .prepare("SELECT id, vector FROM images ORDER BY id")
                .at(&file)?;
            let mut rows = stmt.query([]).at(&file)?;
            let mut vector = vec![0.0f32; model.dim];
            while let Some(row) = rows.next().at(&file)? {
                let id = ImageId(row.get(0).at(&file)?);
                let blob = row.get_ref(1).at(&file)?;
                let blob = blob.as_blob().map_err(|e| Error::Sqlite {
                    file: file.clone(),
                    cause: e.into(),
                })?;
                decode_vector(&file, id, blob, &mut vector)?;
                if index.upsert(id, &vector).is_err() {
                    // Name the file in the error.
                    index.validate(&format!("{} image {id}", file.display()), &vector)?;
                    index.upsert(id, &vector)?;
                }
            }
        }
        Ok(FeatureStore {
            file,
            conn: Mutex::new(conn),
            access,
            seen_version,
            model: model.clone(),
            index,
        })
    }

    /// Whether the store was opened read-only ([`OpenOptions::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.access != Access::ReadWrite
    }

    fn writable(&self) -> Result<()> {
        match self.access {
            Access::ReadWrite => Ok(()),
            _ => Err(Error::ReadOnly {
                file: self.file.clone(),
            }),
        }
    }

    /// Whether another process (or another handle) has committed to the file since the store
    /// was opened or last [refreshed](FeatureStore::refresh). Cheap (one `PRAGMA data_version`,
    /// or one `stat` for a file opened immutable), so a server can ask before every read.
    pub fn changed(&self) -> Result<bool> {
        match &self.access {
            Access::Immutable(stamp_then) => Ok(stamp(&self.file)? != *stamp_then),
            _ => Ok(data_version(&self.conn(), &self.file)? != self.seen_version),
        }
    }

    /// [`FeatureStore::refresh`] if [`FeatureStore::changed`]; `None` when nothing changed.
    pub fn refresh_if_changed(&mut self) -> Result<Option<(usize, usize)>> {
        if self.changed()? {
            self.refresh().map(Some)
        } else {
            Ok(None)
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        self.conn.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// The store file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The model whose embeddings are stored.
    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    /// The model id recorded in the header.
    pub fn model_id(&self) -> &str {
        &self.model.model_id
    }

    /// Embedding length.
    pub fn dim(&self) -> usize {
        self.model.dim
    }

    /// Number of images (distinct contents).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no image is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The in-memory index.
    pub fn index(&self) -> &I {
        &self.index
    }

    /// The image with key `id`.
    pub fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        let conn = self.conn();
        let row: Option<(String, Vec<u8>, i64, i64)> = conn
            .prepare_cached("SELECT path, hash, size, mtime_ns FROM images WHERE id=?1")
            .at(&self.file)?
            .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()
            .at(&self.file)?;
        row.map(|(path, hash, size, mtime_ns)| {
            image_record(&self.file, (id, path, hash, size, mtime_ns))
        })
        .transpose()
    }

    /// Every path known to hold the bytes of image `id`, first seen first.
    pub fn paths(&self, id: ImageId) -> Result<Vec<PathBuf>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT path FROM files WHERE image_id=?1 ORDER BY rowid")
            .at(&self.file)?;
        let paths = stmt
            .query_map([id.0], |r| r.get::<_, String>(0))
            .at(&self.file)?
            .map(|p| p.map(PathBuf::from))
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.file)?;
        Ok(paths)
    }

    /// A page of the library in insertion order: images `offset..offset + limit`.
    pub fn list(&self, offset: usize, limit: usize) -> Result<Vec<ImageRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, path, hash, size, mtime_ns FROM images ORDER BY id LIMIT ?1 OFFSET ?2",
            )
            .at(&self.file)?;
        let rows = stmt
            .query_map(params![to_i64(limit as u64), to_i64(offset as u64)], |r| {
                Ok((
                    ImageId(r.get(0)?),
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .at(&self.file)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.file)?;
        rows.into_iter()
            .map(|row| image_record(&self.file, row))
            .collect()
    }

    /// The image holding exactly these bytes, if stored.
    pub fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>> {
        self.conn()
            .prepare_cached("SELECT id FROM images WHERE hash=?1")
            .at(&self.file)?
            .query_row([&hash.0[..]], |r| r.get(0).map(ImageId))
            .optional()
            .at(&self.file)
    }

    /// The image recorded at `path`, if any.
    pub fn find_path(&self, path: &Path) -> Result<Option<ImageId>> {
        let text = path_text(path)?;
        self.conn()
            .prepare_cached("SELECT image_id FROM files WHERE path=?1")
            .at(&self.file)?
            .query_row([text], |r| r.get(0).map(ImageId))
            .optional()
            .at(&self.file)
    }

    /// The stored vector of `id` (as held in memory).
    pub fn vector(&self, id: ImageId) -> Option<Vec<f32>> {
        self.index.vector(id)
    }

    /// Top-`k` images by inner product with `query` (e.g. a text embedding), best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<SearchHit>> {
        let mut buf = SearchBuffer::new();
        self.search_into(query, SearchOptions::top(k), &mut buf)?;
        self.resolve(buf.hits())
    }

    /// Images most similar to the stored image `id`, leaving `id` itself out. For an image file
    /// that may not be stored, embed it and call [`FeatureStore::search_into`] with
    /// `SearchOptions::top(k).excluding(id)` where `id` comes from [`FeatureStore::find_hash`].
    pub fn similar(&self, id: ImageId, k: usize) -> Result<Vec<SearchHit>> {
        let query = self.index.vector(id).ok_or(Error::UnknownId { id })?;
        let mut buf = SearchBuffer::new();
        self.search_into(&query, SearchOptions::top(k).excluding(id), &mut buf)?;
        self.resolve(buf.hits())
    }

    /// The hot path: ids and scores only, into a reusable buffer; no allocation once the buffer
    /// has grown. Map results to paths with [`FeatureStore::resolve`].
    pub fn search_into<'b>(
        &self,
        query: &[f32],
        options: SearchOptions,
        buf: &'b mut SearchBuffer,
    ) -> Result<&'b [Scored]> {
        self.index.search_into(query, options, buf)?;
        Ok(buf.hits())
    }

    /// Maps scored ids to their paths.
    pub fn resolve(&self, hits: &[Scored]) -> Result<Vec<SearchHit>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT path FROM images WHERE id=?1")
            .at(&self.file)?;
        hits.iter()
            .map(|h| {
                let path: Option<String> = stmt
                    .query_row([h.id.0], |r| r.get(0))
                    .optional()
                    .at(&self.file)?;
                let path = path.ok_or(Error::UnknownId { id: h.id })?;
                Ok(SearchHit {
                    id: h.id,
                    path: PathBuf::from(path),
                    score: h.score,
                })
            })
            .collect()
    }

    /// Adds one image if its bytes are new (see [`FeatureStore::add_batch`]).
    pub fn add(&mut self, image: &NewImage) -> Result<AddOutcome> {
        let mut out = self.add_batch(std::slice::from_ref(image))?;
        out.pop().ok_or(Error::EmbedderBatch {
            expected: 1,
            found: 0,
        })
    }

    /// Adds images in one transaction, each only if its bytes are new:
    /// - bytes already stored (same hash, any path): the path is recorded as a further path of
    ///   that image and the vector is not stored again;
    /// - a known path with other bytes than before: the path moves to the new content; the old
    ///   image is deleted if no other path holds it;
    /// - otherwise a new image is stored.
    ///
    /// Every item is checked first (UTF-8 path, vector length, finite values); one bad item
    /// fails the call and leaves the store unchanged, in the file and in memory.
    pub fn add_batch(&mut self, images: &[NewImage]) -> Result<Vec<AddOutcome>> {
        let mut pending = Vec::with_capacity(images.len());
        for image in images {
            let path = path_text(&image.path)?;
            self.index
                .validate(&image.path.display().to_string(), &image.vector)?;
            pending.push(Pending {
                path: path.to_owned(),
                size: image.size,
                mtime_ns: image.mtime_ns,
                hash: image.hash,
                vector: Some(image.vector.clone()),
            });
        }
        let outcomes = self.commit_batch(&pending)?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Records a batch in one transaction and mirrors it into the index after the commit.
    /// `None` for items whose bytes are new but that carry no vector.
    pub(crate) fn commit_batch(&mut self, pending: &[Pending]) -> Result<Vec<Option<AddOutcome>>> {
        self.writable()?;
        let file = self.file.clone();
        let mut effect = BatchEffect::default();
        let conn = self.conn_mut();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&file)?;
        let mut outcomes = Vec::with_capacity(pending.len());
        for (slot, item) in pending.iter().enumerate() {
            outcomes.push(apply_one(&tx, &file, item, slot, &mut effect)?);
        }
        tx.commit().at(&file)?;
        self.mirror(pending, &effect)?;
        Ok(outcomes)
    }

    fn mirror(&mut self, pending: &[Pending], effect: &BatchEffect) -> Result<()> {
        for id in &effect.removed {
            self.index.remove(*id);
        }
        for &(id, slot) in &effect.inserted {
            if let Some(vector) = pending.get(slot).and_then(|p| p.vector.as_deref()) {
                self.index.upsert(id, vector)?;
            }
        }
        Ok(())
    }

    /// Brings the in-memory index up to date with what other processes (or other handles)
    /// committed to the file since it was opened, e.g. a server while `sync` runs elsewhere.
    /// Stored vectors never change under an id, so new ids are loaded and vanished ids dropped.
    /// Returns (images loaded, images dropped).
    pub fn refresh(&mut self) -> Result<(usize, usize)> {
        let file = self.file.clone();
        let dim = self.model.dim;
        if let Access::Immutable(then) = &self.access
            && stamp(&file)? != *then
        {
            // A writer has appeared: read through its log from now on.
            let (conn, access) = open_read_only(&file)?;
            *self.conn_mut() = conn;
            self.access = access;
        }
        // Taken before reading, so that a commit made meanwhile is seen next time.
        self.seen_version = data_version(self.conn_mut(), &file)?;
        let in_file: HashSet<ImageId> = {
            let conn = self.conn_mut();
            let mut stmt = conn.prepare("SELECT id FROM images").at(&file)?;
            stmt.query_map([], |r| r.get(0).map(ImageId))
                .at(&file)?
                .collect::<rusqlite::Result<_>>()
                .at(&file)?
        };
        let held: HashSet<ImageId> = self.index.ids().into_iter().collect();
        let mut dropped = 0;
        for id in held.difference(&in_file) {
            self.index.remove(*id);
            dropped += 1;
        }
        let mut new: Vec<ImageId> = in_file.difference(&held).copied().collect();
        new.sort_unstable();
        let mut vector = vec![0.0f32; dim];
        for id in &new {
            let blob: Option<Vec<u8>> = self
                .conn_mut()
                .prepare_cached("SELECT vector FROM images WHERE id=?1")
                .at(&file)?
                .query_row([id.0], |r| r.get(0))
                .optional()
                .at(&file)?;
            // Deleted again since the id list was read: nothing to load.
            let Some(blob) = blob else { continue };
            decode_vector(&file, *id, &blob, &mut vector)?;
            self.index
                .validate(&format!("{} image {id}", file.display()), &vector)?;
            self.index.upsert(*id, &vector)?;
        }
        Ok((new.len(), dropped))
    }

    /// Forgets `path`; the image behind it is deleted when no other path holds its bytes.
    /// Returns the deleted image, if any.
    pub fn remove_path(&mut self, path: &Path) -> Result<Option<ImageId>> {
        let text = path_text(path)?.to_owned();
        self.remove_paths(std::slice::from_ref(&text))
            .map(|mut removed| removed.pop())
    }

    /// Forgets several paths in one transaction; returns the deleted images.
    pub(crate) fn remove_paths(&mut self, paths: &[String]) -> Result<Vec<ImageId>> {
        self.writable()?;
        let file = self.file.clone();
        let mut effect = BatchEffect::default();
        let conn = self.conn_mut();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&file)?;
        for path in paths {
            let old: Option<ImageId> = tx
                .query_row("SELECT image_id FROM files WHERE path=?1", [path], |r| {
                    r.get(0).map(ImageId)
                })
                .optional()
                .at(&file)?;
            if let Some(old) = old {
                detach(&tx, &file, old, path, &mut effect)?;
            }
        }
        tx.commit().at(&file)?;
        self.mirror(&[], &effect)?;
        Ok(effect.removed)
    }

    /// Deletes image `id` and all its paths. Returns whether it existed.
    pub fn remove(&mut self, id: ImageId) -> Result<bool> {
        self.writable()?;
        let file = self.file.clone();
        let conn = self.conn_mut();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(&file)?;
        tx.execute("DELETE FROM files WHERE image_id=?1", [id.0])
            .at(&file)?;
        let n = tx
            .execute("DELETE FROM images WHERE id=?1", [id.0])
            .at(&file)?;
        tx.commit().at(&file)?;
        self.index.remove(id);
        Ok(n > 0)
    }

    /// The image, size and mtime recorded for `path`.
    pub(crate) fn known_file(&self, path: &str) -> Result<Option<(ImageId, KnownFile)>> {
        self.conn()
            .prepare_cached("SELECT image_id, size, mtime_ns, recorded_ns FROM files WHERE path=?1")
            .at(&self.file)?
            .query_row([path], |r| {
                Ok((
                    ImageId(r.get(0)?),
                    KnownFile {
                        size: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(u64::MAX),
                        mtime_ns: r.get(2)?,
                        recorded_ns: r.get(3)?,
                    },
                ))
            })
            .optional()
            .at(&self.file)
    }

    /// Every recorded path with its size and mtime.
    pub(crate) fn known_files(&self) -> Result<Vec<(String, KnownFile)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT path, size, mtime_ns, recorded_ns FROM files")
            .at(&self.file)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    KnownFile {
                        size: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(u64::MAX),
                        mtime_ns: r.get(2)?,
                        recorded_ns: r.get(3)?,
                    },
                ))
            })
            .at(&self.file)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.file)?;
        Ok(rows)
    }

    /// Runs SQLite's `PRAGMA integrity_check` and checks that the in-memory index matches the
    /// `images` table; returns the problems found (empty when the store is sound).
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut problems: Vec<String> = conn
            .prepare("PRAGMA integrity_check")
            .at(&self.file)?
            .query_map([], |r| r.get::<_, String>(0))
            .at(&self.file)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.file)?
            .into_iter()
            .filter(|line| line != "ok")
            .collect();
        let images: i64 = conn
            .query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))
            .at(&self.file)?;
        if usize::try_from(images).ok() != Some(self.index.len()) {
            problems.push(format!(
                "{images} images in the file, {} vectors in memory",
                self.index.len()
            ));
        }
        let orphans: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM images WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.image_id = images.id)",
                [],
                |r| r.get(0),
            )
            .at(&self.file)?;
        if orphans > 0 {
            problems.push(format!("{orphans} images without a path"));
        }
        Ok(problems)
    }
}
