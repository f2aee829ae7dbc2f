//! Small value types shared by the store, the index and `sync`.

use std::fmt;
use std::path::PathBuf;

/// The key of a stored image: stable for the life of the image, never reused, and increasing in
/// insertion order. It is not a row position of the in-memory matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageId(pub i64);

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// BLAKE3 hash of an image file's bytes: images with equal hashes are stored once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// What the store knows about one image (see [`FeatureStore::get`](crate::FeatureStore::get)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image's key.
    pub id: ImageId,
    /// The first path the content was seen at that still holds it (other paths with the same
    /// bytes: [`FeatureStore::paths`](crate::FeatureStore::paths)).
    pub path: PathBuf,
    /// Hash of the file's bytes.
    pub hash: ContentHash,
    /// File size in bytes.
    pub size: u64,
    /// Modification time of the file, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// A search result mapped back to its image.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The image's key.
    pub id: ImageId,
    /// Where the image is (its [`ImageRecord::path`]).
    pub path: PathBuf,
    /// Inner product with the query.
    pub score: f32,
}

/// An image with its embedding, for [`FeatureStore::add`](crate::FeatureStore::add).
#[derive(Clone, Debug, PartialEq)]
pub struct NewImage {
    /// Where the image file is (must be valid UTF-8).
    pub path: PathBuf,
    /// Hash of its bytes ([`ContentHash::of`]).
    pub hash: ContentHash,
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 if unknown: the next `sync` of
    /// the file then re-reads and re-hashes it, but does not re-embed equal bytes).
    pub mtime_ns: i64,
    /// The embedding; its length must be the store's dimension.
    pub vector: Vec<f32>,
}

/// What adding a path did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddStatus {
    /// New content: stored with its vector.
    Added,
    /// The bytes were already stored (under another path, or this one before it changed): the
    /// path was recorded as a further path of that image, nothing was embedded.
    Duplicate,
    /// The path already held these bytes; only its size/mtime were refreshed.
    Unchanged,
}

/// The result of adding one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddOutcome {
    /// The image now behind the path.
    pub id: ImageId,
    /// What happened.
    pub status: AddStatus,
    /// An image deleted because this path was its last one and now holds other bytes.
    pub removed: Option<ImageId>,
}
