//! Files named by users: read without hanging or exhausting memory, written atomically.
//!
//! Every program of the workspace reads paths it is given (pictures, weights, label and template
//! lists, libraries); a FIFO, `/dev/zero` or a huge file in their place must not hang or exhaust
//! it. This crate is the one check they all go through:
//!
//! - [`open`]: opens a file for reading only if it is a regular file of at most `limit` bytes.
//!   The path's metadata is checked first, so a device or FIFO is never even opened; the open
//!   itself does not block (`O_NONBLOCK`: a FIFO swapped in meanwhile gets no chance to wait for
//!   a writer), and the check is repeated on the open handle, so the file read is the file
//!   checked. Anything else is [`Error::NotRegular`] or [`Error::TooLarge`].
//! - [`read`] / [`read_to_string`]: the whole file through [`open`], the cap enforced while
//!   reading too (a file that grows after the check).
//! - [`write_atomic`]: bytes written to a temporary file beside the target, synced, then renamed
//!   over it; on any failure the temporary file is removed, so no `*.tmp…` is left behind.
//!
//! [`Error`] names the path in every variant; its message carries the cause once (the cause is
//! not repeated as an error source).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let labels = dir.path().join("labels.txt");
//! safe_file::write_atomic(&labels, b"cat\ndog\n")?;
//! assert_eq!(safe_file::read_to_string(&labels, 1 << 20)?, "cat\ndog\n");
//! // A cap smaller than the file is an error naming both.
//! let e = safe_file::read(&labels, 4).unwrap_err();
//! assert!(matches!(e, safe_file::Error::TooLarge { size: 8, limit: 4, .. }));
//! // A folder (like a FIFO or a device) is not a regular file.
//! assert!(matches!(
//!     safe_file::read(dir.path(), 1 << 20),
//!     Err(safe_file::Error::NotRegular { .. })
//! ));
//! # Ok::<(), safe_file::Error>(())
//! ```
#![deny(missing_docs)]

use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a file was not read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read or written (missing, permission denied, disk full...).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error (shown in the message; not repeated as an error source).
        cause: std::io::Error,
    },
    /// The path names a FIFO, a device, a socket or a folder.
    #[error("{}: {kind}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead (`a FIFO`, `a character device`, `a folder`, ...).
        kind: &'static str,
    },
    /// The file holds more bytes than the caller accepts.
    #[error("{}: file has {size} bytes, the limit is {limit}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least; reading stops one byte past the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A text file is not valid UTF-8.
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
}

impl Error {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::NotRegular { path, .. }
            | Error::TooLarge { path, .. }
            | Error::NotUtf8 { path } => path,
        }
    }

    /// The I/O error kind, for [`Error::Io`].
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { cause, .. } => Some(cause.kind()),
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_owned(),
        cause,
    }
}

/// What a file type is, in words, when it is not a regular file.
fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("a special file")
}

fn check_meta(path: &Path, meta: &Metadata, limit: u64) -> Result<()> {
    if let Some(kind) = kind_of(meta) {
        return Err(Error::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    if meta.len() > limit {
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}

/// The metadata of `path` (links followed) if it is a regular file, without opening it.
pub fn check(path: impl AsRef<Path>) -> Result<Metadata> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(io(path))?;
    check_meta(path, &meta, u64::MAX)?;
    Ok(meta)
}

/// Opens `path` for reading if it is a regular file of at most `limit` bytes; returns the handle
/// and its metadata (taken from the handle). Never blocks on a FIFO and never opens a device.
pub fn open(path: impl AsRef<Path>, limit: u64) -> Result<(File, Metadata)> {
    let path = path.as_ref();
    // Before opening: opening some devices has effects of its own, and a FIFO would block.
    let before = std::fs::metadata(path).map_err(io(path))?;
    check_meta(path, &before, limit)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking open: a FIFO put in the file's place since the check returns at once
        // (and is refused below). Reads of regular files ignore the flag.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(io(path))?;
    // On the handle: the file read is the file checked.
    let meta = file.metadata().map_err(io(path))?;
    check_meta(path, &meta, limit)?;
    Ok((file, meta))
}

/// Reads a regular file of at most `limit` bytes (see [`open`]).
pub fn read(path: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let (file, meta) = open(path, limit)?;
    read_open(path, file, &meta, limit)
}

/// Reads the rest of a file opened by [`open`], at most `limit` bytes.
pub fn read_open(path: &Path, file: File, meta: &Metadata, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(Error::TooLarge {
            path: path.to_owned(),
            size,
            limit,
        });
    }
    Ok(bytes)
}

/// Reads a regular UTF-8 text file of at most `limit` bytes (see [`open`]).
pub fn read_to_string(path: impl AsRef<Path>, limit: u64) -> Result<String> {
    let path = path.as_ref();
    String::from_utf8(read(path, limit)?).map_err(|_| Error::NotUtf8 {
        path: path.to_owned(),
    })
}

/// A temporary file that is removed when dropped, unless it was renamed into place.
struct Temp {
    path: PathBuf,
    keep: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a part.
/// The bytes go to `<name>.tmp<pid>-<n>` beside the target, are synced, and the file is renamed
/// over `path`. On any failure the temporary file is removed and the target is unchanged.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = path.as_ref();
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.to_owned(),
        cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
    })?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp_path = path.with_file_name(tmp_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(io(&tmp_path))?;
    let mut tmp = Temp {
        path: tmp_path,
        keep: false,
    };
    file.write_all(bytes).map_err(io(&tmp.path))?;
    file.sync_all().map_err(io(&tmp.path))?;
    drop(file);
    std::fs::rename(&tmp.path, path).map_err(io(path))?;
    tmp.keep = true;
    Ok(())
}
