//! The gallery's picture library: a [`FeatureStore`] file plus a content-addressed media folder
//! beside it for uploaded pictures (`<db folder>/media/<blake3 hex>.<ext>`).
//!
//! Uploads are written to the media folder before their row is committed, under a name derived
//! from their bytes, so a crash leaves at worst an unreferenced file, never a row without a file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use feature_store::{ContentHash, FeatureStore, ImageId, ModelInfo, NewImage, OpenOptions};

use crate::ImageKind;

/// A library entry as the server shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key in the store.
    pub id: i64,
    /// The file name (no folders: the server never reveals paths).
    pub name: String,
}

/// The store and its media folder.
#[derive(Debug)]
pub struct Library {
    store: FeatureStore,
    media: PathBuf,
}

impl Library {
    /// Opens (or creates, with its folder) the library at `db` for the model `model_id` with
    /// `dim`-d vectors; fails if the file was made with another model or dimension.
    pub fn open(db: &Path, model_id: &str, dim: usize) -> anyhow::Result<Self> {
        let folder = folder_of(db);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        Self::open_with(db, model_id, dim, OpenOptions::new())
    }

    /// Opens an existing library for reading only (an error naming `gallery index` when there
    /// is none): nothing is created or changed, and a library that cannot be written (a
    /// read-only file or folder, another owner's) can be searched.
    pub fn open_existing(db: &Path, model_id: &str, dim: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            db.exists(),
            "no library at {}: create one with `gallery index DIR --db {}`",
            db.display(),
            db.display()
        );
        Self::open_with(db, model_id, dim, OpenOptions::new().read_only(true))
    }

    /// Opens the library for the server: read-write, created if missing; an existing library
    /// this process may not write is opened read-only instead (searched, but new pictures are
    /// refused). Returns whether it is read-only.
    pub fn open_for_serving(db: &Path, model_id: &str, dim: usize) -> anyhow::Result<(Self, bool)> {
        if !db.exists() {
            return Ok((Self::open(db, model_id, dim)?, false));
        }
        let model = ModelInfo::new(model_id, dim);
        match FeatureStore::open(db, &model, &OpenOptions::new().create(false)) {
            Ok(store) => Ok((Self::with_store(db, store), false)),
            Err(e) if e.is_write_denied() => {
                let lib = Self::open_with(db, model_id, dim, OpenOptions::new().read_only(true))?;
                Ok((lib, true))
            }
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("cannot open the library {}", db.display())))
            }
        }
    }

    fn open_with(
        db: &Path,
        model_id: &str,
        dim: usize,
        options: OpenOptions,
    ) -> anyhow::Result<Self> {
        let store = FeatureStore::open(db, &ModelInfo::new(model_id, dim), &options)
            .with_context(|| format!("cannot open the library {}", db.display()))?;
        Ok(Self::with_store(db, store))
    }

    fn with_store(db: &Path, store: FeatureStore) -> Self {
        let media = folder_of(db).join("media");
        Self { store, media }
    }

    /// Whether the library was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// Brings the in-memory index up to date when another process has committed to the file
    /// (pictures another `gallery index` or server added or removed). Cheap when nothing changed.
    pub fn refresh_if_changed(&mut self) -> anyhow::Result<bool> {
        Ok(self.store.refresh_if_changed()?.is_some())
    }

    /// Whether another process has committed to the file since the last refresh.
    pub fn changed(&self) -> anyhow::Result<bool> {
        Ok(self.store.changed()?)
    }

    /// The store itself (indexing a folder goes through it).
    pub fn store_mut(&mut self) -> &mut FeatureStore {
        &mut self.store
    }

    /// The store, read-only.
    pub fn store(&self) -> &FeatureStore {
        &self.store
    }

    /// The folder uploads are written to.
    pub fn media_dir(&self) -> &Path {
        &self.media
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the library is empty.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The id and vector of the image with these BLAKE3 bytes, if stored.
    pub fn find(&self, hash: &[u8; 32]) -> Option<(i64, Vec<f32>)> {
        let id = self.store.find_hash(&ContentHash(*hash)).ok().flatten()?;
        let v = self.store.vector(id)?;
        Some((id.0, v))
    }

    /// Stores an uploaded picture (file in the media folder + row) unless its bytes are known.
    /// Returns its id and whether it was new.
    pub fn add_upload(
        &mut self,
        bytes: &[u8],
        kind: ImageKind,
        vector: Vec<f32>,
    ) -> anyhow::Result<(i64, bool)> {
        let hash = ContentHash::of(bytes);
        if let Some(id) = self.store.find_hash(&hash)? {
            return Ok((id.0, false));
        }
        // Nothing is written, not even the media file, into a read-only library.
        if self.store.is_read_only() {
            return Err(feature_store::Error::ReadOnly {
                file: self.store.file().to_owned(),
            }
            .into());
        }
        std::fs::create_dir_all(&self.media)
            .with_context(|| format!("cannot create {}", self.media.display()))?;
        let media = self
            .media
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", self.media.display()))?;
        let path = media.join(format!("{}.{}", hash.to_hex(), kind.extension()));
        if !path.is_file() {
            write_atomically(&path, bytes)?;
        }
        let meta = std::fs::metadata(&path)?;
        let out = self.store.add(&NewImage {
            path: path.clone(),
            hash,
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
            vector,
        })?;
        Ok((out.id.0, true))
    }

    /// Top `k` by inner product with `query`, best first, optionally leaving one image out.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        exclude: Option<i64>,
    ) -> anyhow::Result<Vec<(Entry, f32)>> {
        let hits = match exclude {
            None => self.store.search(query, k)?,
            Some(id) => self.store.similar(ImageId(id), k)?,
        };
        Ok(hits
            .into_iter()
            .map(|h| (entry(h.id, &h.path), h.score))
            .collect())
    }

    /// The stored vector of `id`.
    pub fn vector(&self, id: i64) -> anyhow::Result<Option<Vec<f32>>> {
        Ok(self.store.vector(ImageId(id)))
    }

    /// Newest first: entries `offset..offset + limit` counted from the newest.
    pub fn page(&self, offset: usize, limit: usize) -> anyhow::Result<Vec<Entry>> {
        let total = self.store.len();
        if offset >= total {
            return Ok(Vec::new());
        }
        let end = total - offset;
        let start = end.saturating_sub(limit);
        let mut rows = self.store.list(start, end - start)?;
        rows.reverse();
        Ok(rows.iter().map(|r| entry(r.id, &r.path)).collect())
    }

    /// The file of image `id`, looked up in the store.
    pub fn path(&self, id: i64) -> anyhow::Result<Option<PathBuf>> {
        Ok(self.store.get(ImageId(id))?.map(|r| r.path))
    }
}

fn folder_of(db: &Path) -> PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

fn entry(id: ImageId, path: &Path) -> Entry {
    Entry {
        id: id.0,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    // On failure the temporary file is removed: no `*.tmp…` is left in the media folder.
    Ok(safe_file::write_atomic(path, bytes)?)
}
