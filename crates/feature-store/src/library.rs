//! One interface over both backends: the [`Store`] trait and [`Library`], which opens a SQLite
//! file or a PostgreSQL database from one location string.

use std::path::{Path, PathBuf};

use crate::index::{Scored, SearchBuffer, SearchOptions, VectorIndex};
use crate::store::{FeatureStore, ModelInfo, OpenOptions, StoreHeader};
use crate::sync::{DynEmbedder, ImageEmbedder, NoProgress, ProgressSink, SyncOptions, SyncReport};
use crate::types::{AddOutcome, ContentHash, ImageId, ImageRecord, NewImage, SearchHit};
use crate::{Error, Result};

/// The operations every backend offers, object-safe: a library of image embeddings keyed by
/// [`ImageId`], each distinct content stored once with all the paths holding it.
///
/// Implemented by [`FeatureStore`] (SQLite file, exact in-memory search), by
/// [`PgStore`](crate::PgStore) (PostgreSQL + pgvector, searched in the server) and by
/// [`Library`], which holds either. Writes are transactions: a failing call changes nothing.
/// Search results are ordered by score, then by smaller id, in every backend.
pub trait Store: Send + Sync {
    /// Where the library is: the file path, or the PostgreSQL URL without its password.
    fn location(&self) -> String;
    /// The model whose embeddings are stored (from the header, checked on open).
    fn model(&self) -> &ModelInfo;
    /// The header: model, dtype of the stored vectors, schema version.
    fn header(&self) -> StoreHeader;
    /// Number of images (distinct contents).
    fn len(&self) -> Result<usize>;
    /// Whether no image is stored.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The image with key `id`.
    fn get(&self, id: ImageId) -> Result<Option<ImageRecord>>;
    /// Every path known to hold the bytes of image `id`, first seen first.
    fn paths(&self, id: ImageId) -> Result<Vec<PathBuf>>;
    /// A page of the library in insertion order: images `offset..offset + limit`.
    fn list(&self, offset: usize, limit: usize) -> Result<Vec<ImageRecord>>;
    /// The image holding exactly these bytes, if stored.
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>>;
    /// The image recorded at `path`, if any.
    fn find_path(&self, path: &Path) -> Result<Option<ImageId>>;
    /// The stored vector of `id` (f16-rounded where the library stores f16).
    fn stored_vector(&self, id: ImageId) -> Result<Option<Vec<f32>>>;
    /// Top-`k` by inner product into a reusable buffer: ids and scores only.
    fn search_scored<'b>(
        &self,
        query: &[f32],
        options: SearchOptions,
        buf: &'b mut SearchBuffer,
    ) -> Result<&'b [Scored]>;
    /// Maps scored ids to their paths.
    fn resolve(&self, hits: &[Scored]) -> Result<Vec<SearchHit>>;
    /// Top-`k` images by inner product with `query` (e.g. a text embedding), best first.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<SearchHit>> {
        let mut buf = SearchBuffer::new();
        let hits = self.search_scored(query, SearchOptions::top(k), &mut buf)?;
        self.resolve(hits)
    }
    /// Images most similar to the stored image `id`, leaving `id` itself out.
    fn similar(&self, id: ImageId, k: usize) -> Result<Vec<SearchHit>> {
        let query = self.stored_vector(id)?.ok_or(Error::UnknownId { id })?;
        let mut buf = SearchBuffer::new();
        let hits = self.search_scored(&query, SearchOptions::top(k).excluding(id), &mut buf)?;
        self.resolve(hits)
    }
    /// Adds images in one transaction, each only if its bytes are new (see
    /// [`FeatureStore::add_batch`]).
    fn add_batch(&mut self, images: &[NewImage]) -> Result<Vec<AddOutcome>>;
    /// Adds one image if its bytes are new.
    fn add(&mut self, image: &NewImage) -> Result<AddOutcome> {
        let mut out = self.add_batch(std::slice::from_ref(image))?;
        out.pop().ok_or(Error::EmbedderBatch {
            expected: 1,
            found: 0,
        })
    }
    /// Deletes image `id` and all its paths. Returns whether it existed.
    fn remove(&mut self, id: ImageId) -> Result<bool>;
    /// Forgets `path`; the image behind it is deleted when no other path holds its bytes.
    fn remove_path(&mut self, path: &Path) -> Result<Option<ImageId>>;
    /// Catches up with changes other processes committed: (images loaded, images dropped).
    /// A backend that searches in the server is always current and returns `(0, 0)`.
    fn refresh(&mut self) -> Result<(usize, usize)>;
    /// Whether other processes have committed changes that [`Store::refresh`] would load; cheap
    /// enough to ask before every read. Always `false` for a backend that searches in the server.
    fn changed(&self) -> Result<bool> {
        Ok(false)
    }
    /// Whether the library was opened read-only ([`OpenOptions::read_only`]): writes are
    /// [`Error::ReadOnly`].
    fn is_read_only(&self) -> bool;
    /// Checks the library's consistency; returns the problems found (empty when sound).
    fn integrity_check(&self) -> Result<Vec<String>>;
    /// [`Library::sync_with_progress`] through a `dyn` embedder.
    fn sync_dyn(
        &mut self,
        dir: &Path,
        embedder: &mut dyn DynEmbedder,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport>;
    /// [`Library::add_file`] through a `dyn` embedder.
    fn add_file_dyn(&mut self, path: &Path, embedder: &mut dyn DynEmbedder) -> Result<AddOutcome>;
}

impl<I: VectorIndex> Store for FeatureStore<I> {
    fn location(&self) -> String {
        self.file().display().to_string()
    }
    fn model(&self) -> &ModelInfo {
        FeatureStore::model(self)
    }
    fn header(&self) -> StoreHeader {
        StoreHeader {
            model: FeatureStore::model(self).clone(),
            dtype: crate::VECTOR_DTYPE.to_owned(),
            schema_version: crate::SCHEMA_VERSION,
        }
    }
    fn len(&self) -> Result<usize> {
        Ok(FeatureStore::len(self))
    }
    fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        FeatureStore::get(self, id)
    }
    fn paths(&self, id: ImageId) -> Result<Vec<PathBuf>> {
        FeatureStore::paths(self, id)
    }
    fn list(&self, offset: usize, limit: usize) -> Result<Vec<ImageRecord>> {
        FeatureStore::list(self, offset, limit)
    }
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>> {
        FeatureStore::find_hash(self, hash)
    }
    fn find_path(&self, path: &Path) -> Result<Option<ImageId>> {
        FeatureStore::find_path(self, path)
    }
    fn stored_vector(&self, id: ImageId) -> Result<Option<Vec<f32>>> {
        Ok(FeatureStore::vector(self, id))
    }
    fn search_scored<'b>(
        &self,
        query: &[f32],
        options: SearchOptions,
        buf: &'b mut SearchBuffer,
    ) -> Result<&'b [Scored]> {
        FeatureStore::search_into(self, query, options, buf)
    }
    fn resolve(&self, hits: &[Scored]) -> Result<Vec<SearchHit>> {
        FeatureStore::resolve(self, hits)
    }
    fn add_batch(&mut self, images: &[NewImage]) -> Result<Vec<AddOutcome>> {
        FeatureStore::add_batch(self, images)
    }
    fn remove(&mut self, id: ImageId) -> Result<bool> {
        FeatureStore::remove(self, id)
    }
    fn remove_path(&mut self, path: &Path) -> Result<Option<ImageId>> {
        FeatureStore::remove_path(self, path)
    }
    fn refresh(&mut self) -> Result<(usize, usize)> {
        FeatureStore::refresh(self)
    }
    fn changed(&self) -> Result<bool> {
        FeatureStore::changed(self)
    }
    fn is_read_only(&self) -> bool {
        FeatureStore::is_read_only(self)
    }
    fn integrity_check(&self) -> Result<Vec<String>> {
        FeatureStore::integrity_check(self)
    }
    fn sync_dyn(
        &mut self,
        dir: &Path,
        embedder: &mut dyn DynEmbedder,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport> {
        crate::sync::sync(self, dir, embedder, options, progress)
    }
    fn add_file_dyn(&mut self, path: &Path, embedder: &mut dyn DynEmbedder) -> Result<AddOutcome> {
        crate::sync::add_file(self, path, embedder)
    }
}

/// Which backend a location names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// A SQLite file (any location that is not a `postgres://` URL).
    Sqlite,
    /// A PostgreSQL database (`postgres://` or `postgresql://` URL).
    Postgres,
}

impl BackendKind {
    /// The backend `location` names: a `postgres://` / `postgresql://` URL is PostgreSQL,
    /// anything else a SQLite file path.
    pub fn of(location: &Path) -> BackendKind {
        match location.to_str() {
            Some(s) if is_postgres_url(s) => BackendKind::Postgres,
            _ => BackendKind::Sqlite,
        }
    }
}

pub(crate) fn is_postgres_url(s: &str) -> bool {
    let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

enum Inner {
    Sqlite(FeatureStore),
    #[cfg(feature = "postgres")]
    Postgres(crate::PgStore),
}

/// A library in either backend, chosen by its location: `library.sqlite` (any path) or
/// `postgres://user:password@host:port/database`. Use it through the [`Store`] trait; callers
/// never need to know which backend they hold.
///
/// ```
/// use feature_store::{HashEmbedder, Library, ModelInfo, OpenOptions, Store, SyncOptions};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.png"), b"a picture")?;
/// let model = ModelInfo::new("demo/hash", 8);
/// // The same code takes `postgres://clip:secret@127.0.0.1:55432/photos`.
/// let mut library = Library::open(dir.path().join("library.sqlite"), &model, &OpenOptions::new())?;
/// let mut embedder = HashEmbedder::new("demo/hash", 8);
/// let report = library.sync(dir.path(), &mut embedder, &SyncOptions::new())?;
/// assert_eq!((report.added, library.len()?), (1, 1));
/// let hits = library.search(&embedder.embed(b"a picture"), 1)?;
/// assert!(hits[0].path.ends_with("a.png"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Library {
    inner: Inner,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("location", &self.location())
            .field("model", self.model())
            .finish()
    }
}

impl Library {
    /// Opens (or, with [`OpenOptions::create`], creates) the library at `location` for
    /// embeddings of `model`: a SQLite file, or a PostgreSQL database for a `postgres://` URL
    /// (the database must exist; its tables are created on first use). An existing library must
    /// hold the same model id and dimension ([`Error::ModelMismatch`], [`Error::DimMismatch`]).
    pub fn open(
        location: impl AsRef<Path>,
        model: &ModelInfo,
        options: &OpenOptions,
    ) -> Result<Library> {
        let location = location.as_ref();
        let inner = match BackendKind::of(location) {
            BackendKind::Sqlite => Inner::Sqlite(FeatureStore::open(location, model, options)?),
            BackendKind::Postgres => Self::open_postgres(location, Some(model), options)?,
        };
        Ok(Library { inner })
    }

    /// Opens an existing library with the model recorded in its header.
    pub fn open_existing(location: impl AsRef<Path>, options: &OpenOptions) -> Result<Library> {
        let location = location.as_ref();
        let inner = match BackendKind::of(location) {
            BackendKind::Sqlite => Inner::Sqlite(FeatureStore::open_existing(location, options)?),
            BackendKind::Postgres => Self::open_postgres(location, None, options)?,
        };
        Ok(Library { inner })
    }

    /// Reads the header of an existing library without loading it.
    pub fn read_header(location: impl AsRef<Path>) -> Result<StoreHeader> {
        let location = location.as_ref();
        match BackendKind::of(location) {
            BackendKind::Sqlite => FeatureStore::<crate::FlatIndex>::read_header(location),
            #[cfg(feature = "postgres")]
            BackendKind::Postgres => crate::PgStore::read_header(url_text(location)),
            #[cfg(not(feature = "postgres"))]
            BackendKind::Postgres => Err(disabled(location)),
        }
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(
        location: &Path,
        model: Option<&ModelInfo>,
        options: &OpenOptions,
    ) -> Result<Inner> {
        let url = url_text(location);
        let store = match model {
            Some(model) => crate::PgStore::open(url, model, options)?,
            None => crate::PgStore::open_existing(url, options)?,
        };
        Ok(Inner::Postgres(store))
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(
        location: &Path,
        _model: Option<&ModelInfo>,
        _options: &OpenOptions,
    ) -> Result<Inner> {
        Err(disabled(location))
    }

    /// Which backend holds the library.
    pub fn backend(&self) -> BackendKind {
        match &self.inner {
            Inner::Sqlite(_) => BackendKind::Sqlite,
            #[cfg(feature = "postgres")]
            Inner::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The SQLite store, if that is the backend (for its in-memory index).
    pub fn as_sqlite(&self) -> Option<&FeatureStore> {
        match &self.inner {
            Inner::Sqlite(s) => Some(s),
            #[cfg(feature = "postgres")]
            Inner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL store, if that is the backend.
    #[cfg(feature = "postgres")]
    pub fn as_postgres(&self) -> Option<&crate::PgStore> {
        match &self.inner {
            Inner::Sqlite(_) => None,
            Inner::Postgres(s) => Some(s),
        }
    }

    fn store(&self) -> &dyn Store {
        match &self.inner {
            Inner::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            Inner::Postgres(s) => s,
        }
    }

    fn store_mut(&mut self) -> &mut dyn Store {
        match &mut self.inner {
            Inner::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            Inner::Postgres(s) => s,
        }
    }

    /// Indexes the image files under `dir` with `embedder` (see
    /// [`Library::sync_with_progress`]).
    pub fn sync<E: ImageEmbedder>(
        &mut self,
        dir: impl AsRef<Path>,
        embedder: &mut E,
        options: &SyncOptions,
    ) -> Result<SyncReport> {
        self.sync_with_progress(dir, embedder, options, &mut NoProgress)
    }

    /// Indexes the image files under `dir` incrementally, in committed batches (see
    /// [`FeatureStore::sync_with_progress`]). With PostgreSQL, several processes (on one machine
    /// or many) may sync the same folder into the same library at once: they claim new bytes
    /// through the database, so each content is embedded by one of them, and claims of a worker
    /// that died are taken over after [`SyncOptions::claim_lease`].
    pub fn sync_with_progress<E: ImageEmbedder>(
        &mut self,
        dir: impl AsRef<Path>,
        embedder: &mut E,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport> {
        self.store_mut()
            .sync_dyn(dir.as_ref(), embedder, options, progress)
    }

    /// Adds one file if new (see [`FeatureStore::add_file`]).
    pub fn add_file<E: ImageEmbedder>(
        &mut self,
        path: impl AsRef<Path>,
        embedder: &mut E,
    ) -> Result<AddOutcome> {
        self.store_mut().add_file_dyn(path.as_ref(), embedder)
    }
}

impl Store for Library {
    fn location(&self) -> String {
        self.store().location()
    }
    fn model(&self) -> &ModelInfo {
        self.store().model()
    }
    fn header(&self) -> StoreHeader {
        self.store().header()
    }
    fn len(&self) -> Result<usize> {
        self.store().len()
    }
    fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        self.store().get(id)
    }
    fn paths(&self, id: ImageId) -> Result<Vec<PathBuf>> {
        self.store().paths(id)
    }
    fn list(&self, offset: usize, limit: usize) -> Result<Vec<ImageRecord>> {
        self.store().list(offset, limit)
    }
    fn find_hash(&self, hash: &ContentHash) -> Result<Option<ImageId>> {
        self.store().find_hash(hash)
    }
    fn find_path(&self, path: &Path) -> Result<Option<ImageId>> {
        self.store().find_path(path)
    }
    fn stored_vector(&self, id: ImageId) -> Result<Option<Vec<f32>>> {
        self.store().stored_vector(id)
    }
    fn search_scored<'b>(
        &self,
        query: &[f32],
        options: SearchOptions,
        buf: &'b mut SearchBuffer,
    ) -> Result<&'b [Scored]> {
        self.store().search_scored(query, options, buf)
    }
    fn resolve(&self, hits: &[Scored]) -> Result<Vec<SearchHit>> {
        self.store().resolve(hits)
    }
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<SearchHit>> {
        self.store().search(query, k)
    }
    fn similar(&self, id: ImageId, k: usize) -> Result<Vec<SearchHit>> {
        self.store().similar(id, k)
    }
    fn add_batch(&mut self, images: &[NewImage]) -> Result<Vec<AddOutcome>> {
        self.store_mut().add_batch(images)
    }
    fn remove(&mut self, id: ImageId) -> Result<bool> {
        self.store_mut().remove(id)
    }
    fn remove_path(&mut self, path: &Path) -> Result<Option<ImageId>> {
        self.store_mut().remove_path(path)
    }
    fn refresh(&mut self) -> Result<(usize, usize)> {
        self.store_mut().refresh()
    }
    fn changed(&self) -> Result<bool> {
        self.store().changed()
    }
    fn is_read_only(&self) -> bool {
        self.store().is_read_only()
    }
    fn integrity_check(&self) -> Result<Vec<String>> {
        self.store().integrity_check()
    }
    fn sync_dyn(
        &mut self,
        dir: &Path,
        embedder: &mut dyn DynEmbedder,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport> {
        self.store_mut().sync_dyn(dir, embedder, options, progress)
    }
    fn add_file_dyn(&mut self, path: &Path, embedder: &mut dyn DynEmbedder) -> Result<AddOutcome> {
        self.store_mut().add_file_dyn(path, embedder)
    }
}

/// The URL text of a location [`BackendKind::of`] found to be PostgreSQL (hence valid UTF-8).
fn url_text(location: &Path) -> &str {
    location.to_str().unwrap_or_default()
}

#[cfg(not(feature = "postgres"))]
fn disabled(location: &Path) -> Error {
    Error::BackendDisabled {
        location: crate::pg_url::redact(url_text(location)),
        feature: "postgres",
    }
}
