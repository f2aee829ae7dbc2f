//! The SQLite file of a [`FeatureStore`](crate::FeatureStore): its schema, header checks and row
//! helpers. The public API is in `store.rs`; this module only speaks SQL.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

use crate::pending::{Pending, now_ns, to_i64};
use crate::store::{Durability, ModelInfo, SCHEMA_VERSION, StoreHeader, VECTOR_DTYPE};
use crate::types::{AddOutcome, AddStatus, ContentHash, ImageId, ImageRecord};
use crate::{Error, Result};

pub(crate) trait SqlContext<T> {
    fn at(self, file: &Path) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn at(self, file: &Path) -> Result<T> {
        self.map_err(|cause| Error::Sqlite {
            file: file.to_path_buf(),
            cause,
        })
    }
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS images (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    hash     BLOB NOT NULL UNIQUE,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    vector   BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS files (
    path     TEXT PRIMARY KEY NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    recorded_ns INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS files_by_image ON files(image_id);
";

/// Opens an existing store file read-write (the caller has checked with [`probe`] that it is a
/// library; a missing file is never created here, see [`create_library`]).
pub(crate) fn connect(file: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(file, flags).at(file)
}

/// Creates a new, empty library at `file` for `model`, atomically: the file is built under a
/// temporary name beside it (schema and header committed, log checkpointed) and then linked to
/// `file` only if no file has appeared there meanwhile (another process creating the same library
/// wins, and its file is used). A process killed while creating leaves no file at `file`, only
/// possibly its temporary one. On any failure the temporary files are removed.
pub(crate) fn create_library(file: &Path, model: &ModelInfo, durability: Durability) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = file.file_name().ok_or_else(|| Error::Missing {
        file: file.to_path_buf(),
    })?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(
        ".new-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = Temporary(file.with_file_name(tmp_name));
    {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&tmp.0, flags).at(file)?;
        configure(&conn, file, durability)?;
        let tx = conn.transaction().at(file)?;
        tx.execute_batch(SCHEMA).at(file)?;
        {
            let mut put = tx
                .prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")
                .at(file)?;
            put.execute(["schema_version", &SCHEMA_VERSION.to_string()])
                .at(file)?;
            put.execute(["model_id", &model.model_id]).at(file)?;
            put.execute(["dim", &model.dim.to_string()]).at(file)?;
            put.execute(["dtype", VECTOR_DTYPE]).at(file)?;
        }
        tx.commit().at(file)?;
        // Closing the only connection checkpoints the log into the file and removes it.
        conn.close().map_err(|(_, e)| e).at(file)?;
    }
    match std::fs::hard_link(&tmp.0, file) {
        Ok(()) => Ok(()),
        // Another process created it first: its library is used.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A file system without hard links: a plain rename (which would replace a file created
        // at the very same moment by another process).
        Err(_) => std::fs::rename(&tmp.0, file).map_err(|cause| Error::Io {
            path: file.to_path_buf(),
            cause,
        }),
    }
}

/// A temporary database removed (with its `-wal` and `-shm` files) when dropped.
struct Temporary(PathBuf);

impl Drop for Temporary {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// How a store's connection reads the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-write, in WAL mode.
    ReadWrite,
    /// Read-only (`mode=ro`): reads through the write-ahead log, sees other processes' commits.
    ReadOnly,
    /// Read-only and `immutable=1`: used while no write-ahead log exists (nobody writes, every
    /// page is in the main file), so that reading creates no `-wal` / `-shm` file and works in a
    /// folder that cannot be written. The stamp shows when that stops being true.
    Immutable(FileStamp),
}

/// What tells that a file opened immutable has changed: its size and mtime, and whether a
/// write-ahead log has appeared (a writer creates it before changing anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    mtime: Option<std::time::SystemTime>,
    wal: bool,
}

fn wal_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

pub(crate) fn stamp(file: &Path) -> Result<FileStamp> {
    let meta = std::fs::metadata(file).map_err(|cause| Error::Io {
        path: file.to_path_buf(),
        cause,
    })?;
    Ok(FileStamp {
        len: meta.len(),
        mtime: meta.modified().ok(),
        wal: wal_path(file).exists(),
    })
}

/// `file:` URI of a path for SQLite, with `query` appended (bytes outside the unreserved set
/// percent-encoded, so any path works).
fn uri(file: &Path, query: &str) -> String {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        file.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = file.to_string_lossy().replace('\\', "/").into_bytes();
    let mut out = String::from("file:");
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('?');
    out.push_str(query);
    out
}

fn open_uri(file: &Path, query: &str) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(uri(file, query), flags).at(file)
}

/// Opens an existing file read-only, creating and changing nothing: `immutable=1` while no
/// write-ahead log exists, else `mode=ro` (falling back to `immutable=1` when SQLite cannot open
/// the log's index, as in a read-only folder without a `-shm` file).
pub(crate) fn open_read_only(file: &Path) -> Result<(Connection, Access)> {
    let before = stamp(file)?;
    if before.wal {
        let conn = open_uri(file, "mode=ro")?;
        // The first read opens the log.
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(_) => return Ok((conn, Access::ReadOnly)),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
                ) => {}
            Err(e) => return Err(e).at(file),
        }
    }
    Ok((open_uri(file, "immutable=1")?, Access::Immutable(before)))
}

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Looks at an existing file without changing it: `None` when there is no file; a header when it
/// is a feature library; [`Error::NotALibrary`] for anything else (an empty file, another
/// format, another program's SQLite database), [`safe_file::Error::NotRegular`] (as
/// [`Error::File`]) for a FIFO, device or folder. Returns the read-only connection it used.
pub(crate) fn probe(file: &Path) -> Result<Option<(StoreHeader, Connection, Access)>> {
    match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(Error::Io {
                path: file.to_path_buf(),
                cause,
            });
        }
        Ok(_) => {}
    }
    let not_library = |reason| Error::NotALibrary {
        file: file.to_path_buf(),
        reason,
    };
    let (head, meta) = {
        use std::io::Read;
        let (f, meta) = safe_file::open(file, u64::MAX)?;
        let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
        f.take(SQLITE_MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|cause| Error::Io {
                path: file.to_path_buf(),
                cause,
            })?;
        (head, meta)
    };
    if meta.len() == 0 {
        return Err(not_library("an empty file"));
    }
    if head != SQLITE_MAGIC {
        return Err(not_library("not a SQLite database"));
    }
    let (conn, access) = open_read_only(file)?;
    match read_meta(&conn, file)? {
        Some(header) => Ok(Some((header, conn, access))),
        None => Err(not_library(
            "a SQLite database without a feature library header",
        )),
    }
}

/// SQLite's counter of changes other connections committed to the file.
pub(crate) fn data_version(conn: &Connection, file: &Path) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .at(file)
}

pub(crate) fn configure(conn: &Connection, file: &Path, durability: Durability) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .at(file)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .at(file)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::BadHeader {
            file: file.to_path_buf(),
            key: "journal_mode",
            problem: format!("`{mode}`, WAL could not be enabled"),
        });
    }
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
    ))
    .at(file)?;
    Ok(())
}

pub(crate) fn read_meta(conn: &Connection, file: &Path) -> Result<Option<StoreHeader>> {
    let has_meta: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta')",
            [],
            |r| r.get(0),
        )
        .at(file)?;
    if !has_meta {
        return Ok(None);
    }
    let get = |key: &'static str| -> Result<Option<String>> {
        conn.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()
            .at(file)
    };
    let Some(version) = get("schema_version")? else {
        return Ok(None);
    };
    let schema_version = match version.parse::<u32>() {
        Ok(v) if v == SCHEMA_VERSION => v,
        _ => {
            return Err(Error::UnsupportedSchema {
                file: file.to_path_buf(),
                expected: SCHEMA_VERSION,
                found: version,
            });
        }
    };
    let required = |key: &'static str| -> Result<String> {
        get(key)?.ok_or_else(|| Error::BadHeader {
            file: file.to_path_buf(),
            key,
            problem: "missing".into(),
        })
    };
    let model_id = required("model_id")?;
    let dim_text = required("dim")?;
    let dim = match dim_text.parse::<usize>() {
        Ok(d) if d > 0 => d,
        _ => {
            return Err(Error::BadHeader {
                file: file.to_path_buf(),
                key: "dim",
                problem: format!("`{dim_text}`, expected a positive integer"),
            });
        }
    };
    let dtype = required("dtype")?;
    if dtype != VECTOR_DTYPE {
        return Err(Error::UnsupportedDtype {
            file: file.to_path_buf(),
            expected: VECTOR_DTYPE,
            found: dtype,
        });
    }
    Ok(Some(StoreHeader {
        model: ModelInfo { model_id, dim },
        dtype,
        schema_version,
    }))
}

/// Decodes a stored vector blob, checking its length.
pub(crate) fn decode_vector(file: &Path, id: ImageId, blob: &[u8], out: &mut [f32]) -> Result<()> {
    if blob.len() != out.len() * 4 {
        return Err(Error::BadVectorBlob {
            file: file.to_path_buf(),
            id,
            expected_bytes: out.len() * 4,
            found_bytes: blob.len(),
            dim: out.len(),
        });
    }
    for (v, b) in out.iter_mut().zip(blob.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

pub(crate) fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn hash_from_blob(file: &Path, id: ImageId, blob: &[u8]) -> Result<ContentHash> {
    <[u8; 32]>::try_from(blob)
        .map(ContentHash)
        .map_err(|_| Error::BadHeader {
            file: file.to_path_buf(),
            key: "images.hash",
            problem: format!("{} bytes for image {id}, expected 32", blob.len()),
        })
}

/// An [`ImageRecord`] from an `images` row `(id, path, hash, size, mtime_ns)`.
pub(crate) fn image_record(
    file: &Path,
    (id, path, hash, size, mtime_ns): (ImageId, String, Vec<u8>, i64, i64),
) -> Result<ImageRecord> {
    Ok(ImageRecord {
        id,
        path: PathBuf::from(path),
        hash: hash_from_blob(file, id, &hash)?,
        size: u64::try_from(size).map_err(|_| Error::BadHeader {
            file: file.to_path_buf(),
            key: "images.size",
            problem: format!("negative size {size} for image {id}"),
        })?,
        mtime_ns,
    })
}

/// Changes of one committed batch to mirror into the index.
#[derive(Default)]
pub(crate) struct BatchEffect {
    /// (new image, index into the pending list whose vector it got)
    pub(crate) inserted: Vec<(ImageId, usize)>,
    pub(crate) removed: Vec<ImageId>,
}

/// Removes `path` from image `old`; deletes the image if no path holds it any more.
pub(crate) fn detach(
    tx: &Transaction<'_>,
    file: &Path,
    old: ImageId,
    path: &str,
    effect: &mut BatchEffect,
) -> Result<Option<ImageId>> {
    tx.execute("DELETE FROM files WHERE path=?1", [path])
        .at(file)?;
    let next: Option<(String, i64, i64)> = tx
        .prepare_cached(
            "SELECT path, size, mtime_ns FROM files WHERE image_id=?1 ORDER BY rowid LIMIT 1",
        )
        .at(file)?
        .query_row([old.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .at(file)?;
    match next {
        None => {
            tx.execute("DELETE FROM images WHERE id=?1", [old.0])
                .at(file)?;
            effect.removed.push(old);
            Ok(Some(old))
        }
        Some((p, size, mtime)) => {
            tx.execute(
                "UPDATE images SET path=?2, size=?3, mtime_ns=?4 WHERE id=?1 AND path=?5",
                params![old.0, p, size, mtime, path],
            )
            .at(file)?;
            Ok(None)
        }
    }
}

/// Records one path inside a transaction. `Ok(None)`: the bytes are new but no vector was given.
pub(crate) fn apply_one(
    tx: &Transaction<'_>,
    file: &Path,
    item: &Pending,
    slot: usize,
    effect: &mut BatchEffect,
) -> Result<Option<AddOutcome>> {
    let old: Option<ImageId> = tx
        .prepare_cached("SELECT image_id FROM files WHERE path=?1")
        .at(file)?
        .query_row([&item.path], |r| r.get(0).map(ImageId))
        .optional()
        .at(file)?;
    let same: Option<ImageId> = tx
        .prepare_cached("SELECT id FROM images WHERE hash=?1")
        .at(file)?
        .query_row([&item.hash.0[..]], |r| r.get(0).map(ImageId))
        .optional()
        .at(file)?;
    let (size, mtime) = (to_i64(item.size), item.mtime_ns);
    match (old, same) {
        (Some(o), Some(s)) if o == s => {
            tx.execute(
                "UPDATE files SET size=?2, mtime_ns=?3, recorded_ns=?4 WHERE path=?1",
                params![item.path, size, mtime, now_ns()],
            )
            .at(file)?;
            tx.execute(
                "UPDATE images SET size=?3, mtime_ns=?4 WHERE id=?1 AND path=?2",
                params![s.0, item.path, size, mtime],
            )
            .at(file)?;
            Ok(Some(AddOutcome {
                id: s,
                status: AddStatus::Unchanged,
                removed: None,
            }))
        }
        (_, Some(s)) => {
            let removed = match old {
                Some(o) => detach(tx, file, o, &item.path, effect)?,
                None => None,
            };
            tx.execute(
                "INSERT INTO files (path, image_id, size, mtime_ns, recorded_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![item.path, s.0, size, mtime, now_ns()],
            )
            .at(file)?;
            Ok(Some(AddOutcome {
                id: s,
                status: AddStatus::Duplicate,
                removed,
            }))
        }
        (_, None) => {
            let Some(vector) = &item.vector else {
                return Ok(None);
            };
            let removed = match old {
                Some(o) => detach(tx, file, o, &item.path, effect)?,
                None => None,
            };
            tx.prepare_cached(
                "INSERT INTO images (hash, path, size, mtime_ns, vector) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .at(file)?
            .execute(params![&item.hash.0[..], item.path, size, mtime, encode_vector(vector)])
            .at(file)?;
            let id = ImageId(tx.last_insert_rowid());
            tx.prepare_cached(
                "INSERT INTO files (path, image_id, size, mtime_ns, recorded_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .at(file)?
            .execute(params![item.path, id.0, size, mtime, now_ns()])
            .at(file)?;
            effect.inserted.push((id, slot));
            Ok(Some(AddOutcome {
                id,
                status: AddStatus::Added,
                removed,
            }))
        }
    }
}
