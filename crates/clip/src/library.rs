//! [`Library`]: a feature library bound to the model that fills and searches it.

use std::path::Path;

use feature_store::{
    EmbedInput, FeatureStore, ImageEmbedder, ImageId, ModelInfo, OpenOptions, ProgressSink,
    SearchHit, SyncOptions, SyncReport,
};

use crate::error::{Error, Result};
use crate::input::ImageInput;
use crate::model::Clip;

/// A picture library (`feature-store`: a SQLite file, or a PostgreSQL + pgvector database for a
/// `postgres://` URL, shared by many indexing workers) and the model whose embeddings it holds.
/// The library's header records the model's identity ([`Clip::model_id`], a hash of the
/// weights): opening it with other weights is an error, whatever their file is called.
#[derive(Debug)]
pub struct Library {
    clip: Clip,
    store: feature_store::Library,
}

impl Clip {
    /// Opens the library at `location` for this model, creating it when missing: a SQLite file
    /// (its folder is created too) or a `postgres://` URL (the database must exist).
    pub fn open_library(&self, location: impl AsRef<Path>) -> Result<Library> {
        let path = location.as_ref();
        let is_url = path.to_str().is_some_and(|s| s.contains("://"));
        if let Some(dir) = path
            .parent()
            .filter(|d| !is_url && !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|cause| Error::Io {
                path: dir.to_owned(),
                cause,
            })?;
        }
        self.open_library_with(path, &OpenOptions::new())
    }

    /// Opens the library at `path` with store options (precision, durability, whether to create).
    pub fn open_library_with(
        &self,
        path: impl AsRef<Path>,
        options: &OpenOptions,
    ) -> Result<Library> {
        let info = ModelInfo::new(self.model_id(), self.dim());
        let store = FeatureStore::open(path.as_ref(), &info, options)?;
        Ok(Library {
            clip: self.clone(),
            store,
        })
    }
}

impl Library {
    /// Indexes the pictures under `dir` (recursively): new and changed files are embedded once
    /// per content, in committed batches; files that cannot be read or decoded are listed in the
    /// report and retried next time. A progress bar is drawn when standard error is a terminal.
    pub fn sync(&mut self, dir: impl AsRef<Path>) -> Result<SyncReport> {
        let mut progress = feature_store::TerminalProgress::new();
        self.sync_with(dir, &SyncOptions::new(), &mut progress)
    }

    /// [`Library::sync`] with options and a progress receiver.
    pub fn sync_with(
        &mut self,
        dir: impl AsRef<Path>,
        options: &SyncOptions,
        progress: &mut dyn ProgressSink,
    ) -> Result<SyncReport> {
        let mut embedder = StoreEmbedder(&self.clip);
        let mut sink = DynSink(progress);
        Ok(self
            .store
            .sync_with_progress(dir.as_ref(), &mut embedder, options, &mut sink)?)
    }

    /// Adds (or finds) one picture file.
    pub fn add(&mut self, path: impl AsRef<Path>) -> Result<feature_store::AddOutcome> {
        let mut embedder = StoreEmbedder(&self.clip);
        Ok(self.store.add_file(path.as_ref(), &mut embedder)?)
    }

    /// The `k` pictures best matching a text, best first.
    pub fn search_text(&self, query: &str, k: usize) -> Result<Vec<SearchHit>> {
        let q = self.clip.embed_text(query)?;
        Ok(self.store.search(&q, k)?)
    }

    /// The `k` pictures most similar to an image (which need not be in the library).
    pub fn search_image<'a>(
        &self,
        image: impl Into<ImageInput<'a>>,
        k: usize,
    ) -> Result<Vec<SearchHit>> {
        let q = self.clip.embed_image(image)?;
        Ok(self.store.search(&q, k)?)
    }

    /// The `k` pictures most similar to library picture `id` (itself left out).
    pub fn similar(&self, id: ImageId, k: usize) -> Result<Vec<SearchHit>> {
        Ok(self.store.similar(id, k)?)
    }

    /// Removes picture `id` with all its paths; `false` if there was none.
    pub fn remove(&mut self, id: ImageId) -> Result<bool> {
        Ok(self.store.remove(id)?)
    }

    /// Number of pictures (distinct contents).
    pub fn len(&self) -> Result<usize> {
        Ok(self.store.len()?)
    }

    /// Whether the library holds no picture.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.store.is_empty()?)
    }

    /// The model.
    pub fn clip(&self) -> &Clip {
        &self.clip
    }

    /// The store, for listing, paging and lookups.
    pub fn store(&self) -> &feature_store::Library {
        &self.store
    }

    /// The store, mutably.
    pub fn store_mut(&mut self) -> &mut feature_store::Library {
        &mut self.store
    }
}

/// The model as the store's embedder: a bad file fails alone.
struct StoreEmbedder<'a>(&'a Clip);

impl ImageEmbedder for StoreEmbedder<'_> {
    type Error = Error;

    fn model_id(&self) -> &str {
        self.0.model_id()
    }

    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn embed_batch(&mut self, batch: &[EmbedInput<'_>]) -> Vec<Result<Vec<f32>>> {
        self.0.embed_images(batch.iter().map(|i| ImageInput::Named {
            bytes: i.bytes,
            name: i.path,
        }))
    }
}

struct DynSink<'a>(&'a mut dyn ProgressSink);

impl ProgressSink for DynSink<'_> {
    fn update(&mut self, progress: &feature_store::SyncProgress<'_>) {
        self.0.update(progress)
    }

    fn finish(&mut self) {
        self.0.finish()
    }
}
