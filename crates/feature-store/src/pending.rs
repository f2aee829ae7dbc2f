//! What both backends share below the public API: a path waiting to be recorded ([`Pending`]),
//! a recorded path's size and mtime ([`KnownFile`]) and small conversions.

use std::path::Path;

use crate::types::ContentHash;
use crate::{Error, Result};

pub(crate) fn path_text(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::NonUtf8Path {
        path: path.to_path_buf(),
    })
}

/// One path to record, with its vector when its bytes may be new.
pub(crate) struct Pending {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) hash: ContentHash,
    pub(crate) vector: Option<Vec<f32>>,
}

/// A known path, as recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KnownFile {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) recorded_ns: i64,
}

/// File systems stamp mtimes with a coarse clock (a few ms on Linux, 2 s on FAT). A file
/// recorded less than this after its mtime could be rewritten with the same size and the same
/// mtime, so it is re-hashed once more by the next sync (git's "racily clean" rule).
const RACY_WINDOW_NS: i64 = 2_000_000_000;

impl KnownFile {
    /// Whether a file with this size and mtime can be skipped without reading it.
    pub(crate) fn matches(&self, size: u64, mtime_ns: i64) -> bool {
        self.size == size
            && self.mtime_ns == mtime_ns
            && self.recorded_ns.saturating_sub(self.mtime_ns) >= RACY_WINDOW_NS
    }
}

pub(crate) fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// A `u64` count as SQL `BIGINT`, saturating.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
