//! The crate's error type.

use std::path::PathBuf;

use crate::ImageId;

/// Everything that can go wrong in this crate. Each variant names the file or item involved and,
/// where it applies, what was expected and what was found. For a PostgreSQL library the `file`
/// fields hold its URL without the password: no error or log line ever shows a password.
///
/// A variant's message shows its cause (the SQLite, I/O or PostgreSQL error) once; the cause is
/// kept in a field named `cause`, not repeated as the error's source, so that printing the
/// chain (`{:#}` with `anyhow`) does not say it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite reported an error while working on `file`.
    #[error("feature store {file}: SQLite error: {cause}")]
    Sqlite {
        /// The store file.
        file: PathBuf,
        /// The underlying SQLite error (shown in the message).
        cause: rusqlite::Error,
    },
    /// Reading or listing a file or folder failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying I/O error (shown in the message).
        cause: std::io::Error,
    },
    /// A file given to read is not a regular file (a FIFO, a device, a folder) or not text.
    #[error(transparent)]
    File(safe_file::Error),
    /// The file exists but is not a feature library: an empty file, another format, or another
    /// program's SQLite database. It was only read, never changed.
    #[error("{file} is not a feature library ({reason}); it was left untouched")]
    NotALibrary {
        /// The file.
        file: PathBuf,
        /// What it is instead.
        reason: &'static str,
    },
    /// A change was asked of a library opened read-only ([`OpenOptions::read_only`](crate::OpenOptions::read_only)).
    #[error("feature store {file} is open read-only and cannot be changed")]
    ReadOnly {
        /// The store file.
        file: PathBuf,
    },
    /// The store file does not exist and the options do not allow creating it.
    #[error("feature store {file} does not exist")]
    Missing {
        /// The store file.
        file: PathBuf,
    },
    /// The store was built with another model.
    #[error(
        "feature store {file} holds embeddings of model `{stored}`, not of the requested model `{requested}`"
    )]
    ModelMismatch {
        /// The store file.
        file: PathBuf,
        /// The model id recorded in the file.
        stored: String,
        /// The model id asked for.
        requested: String,
    },
    /// The store holds vectors of another dimension.
    #[error("feature store {file} holds {stored}-d embeddings, but {requested}-d were requested")]
    DimMismatch {
        /// The store file.
        file: PathBuf,
        /// The dimension recorded in the file.
        stored: usize,
        /// The dimension asked for.
        requested: usize,
    },
    /// The store's vectors are in an element type this version cannot read.
    #[error("feature store {file} stores vectors as `{found}`, expected `{expected}`")]
    UnsupportedDtype {
        /// The store file.
        file: PathBuf,
        /// The dtype this version reads.
        expected: &'static str,
        /// The dtype recorded in the file.
        found: String,
    },
    /// The store was written by an incompatible version of this crate.
    #[error("feature store {file} has schema version {found}, this version reads {expected}")]
    UnsupportedSchema {
        /// The store file.
        file: PathBuf,
        /// The schema version this version reads.
        expected: u32,
        /// The schema version recorded in the file.
        found: String,
    },
    /// A header entry is missing or cannot be parsed.
    #[error("feature store {file}: header entry `{key}` is {problem}")]
    BadHeader {
        /// The store file.
        file: PathBuf,
        /// The header key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored vector blob has the wrong length.
    #[error(
        "feature store {file}: vector of image {id} has {found_bytes} bytes, expected {expected_bytes} ({dim} little-endian f32)"
    )]
    BadVectorBlob {
        /// The store file.
        file: PathBuf,
        /// The image whose vector is malformed.
        id: ImageId,
        /// Bytes expected (`dim * 4`).
        expected_bytes: usize,
        /// Bytes found.
        found_bytes: usize,
        /// The store's dimension.
        dim: usize,
    },
    /// A vector handed to the store (to add, or as a query) has the wrong length.
    #[error("{item}: vector has {found} values, the store holds {expected}-d vectors")]
    VectorDim {
        /// What the vector belongs to (a path, or `query`).
        item: String,
        /// The store's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("{item}: vector value {index} is {value}, expected a finite number")]
    NonFiniteVector {
        /// What the vector belongs to (a path, `query`, or a stored image).
        item: String,
        /// Position of the first bad value.
        index: usize,
        /// The bad value.
        value: f32,
    },
    /// A vector value does not fit the index's element type (f16 holds at most ±65504).
    #[error("{item}: vector value {index} is {value}, beyond ±{max} that the f16 index holds")]
    OutOfRange {
        /// What the vector belongs to.
        item: String,
        /// Position of the first bad value.
        index: usize,
        /// The bad value.
        value: f32,
        /// The largest magnitude held.
        max: f32,
    },
    /// A path cannot be stored because it is not valid UTF-8.
    #[error("{path}: path is not valid UTF-8 and cannot be stored")]
    NonUtf8Path {
        /// The path, shown lossily.
        path: PathBuf,
    },
    /// `sync` was given something that is not a folder.
    #[error("{path} is not a folder")]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// No image with this id is stored.
    #[error("no image with id {id} in the feature store")]
    UnknownId {
        /// The id asked for.
        id: ImageId,
    },
    /// An embedder was used with a store of another model or dimension.
    #[error(
        "embedder produces {embedder_dim}-d vectors of model `{embedder_model}`, the feature store holds {store_dim}-d vectors of `{store_model}`"
    )]
    EmbedderMismatch {
        /// The embedder's model id.
        embedder_model: String,
        /// The embedder's dimension.
        embedder_dim: usize,
        /// The store's model id.
        store_model: String,
        /// The store's dimension.
        store_dim: usize,
    },
    /// An embedder returned a different number of results than it was given images.
    #[error("embedder returned {found} results for a batch of {expected} images")]
    EmbedderBatch {
        /// Images in the batch.
        expected: usize,
        /// Results returned.
        found: usize,
    },
    /// Embedding a single image failed (from [`FeatureStore::add_file`](crate::FeatureStore::add_file)).
    #[error("{path}: cannot embed: {reason}")]
    Embed {
        /// The image file.
        path: PathBuf,
        /// The embedder's message.
        reason: String,
    },
    /// A PostgreSQL library location is not a valid connection URL.
    #[error("feature library {url}: not a valid PostgreSQL URL: {reason}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// What the parser reported.
        reason: String,
    },
    /// Connecting to the PostgreSQL server failed: server down or unreachable, wrong password,
    /// unknown database or user.
    #[cfg(feature = "postgres")]
    #[error("feature library {url}: cannot connect: {}", pg_detail(.cause))]
    PgConnect {
        /// The URL, without its password.
        url: String,
        /// The client's error (shown in the message).
        cause: postgres::Error,
    },
    /// The PostgreSQL server reported an error while working on the library.
    #[cfg(feature = "postgres")]
    #[error("feature library {url}: PostgreSQL error: {}", pg_detail(.cause))]
    Postgres {
        /// The URL, without its password.
        url: String,
        /// The client's error (shown in the message).
        cause: postgres::Error,
    },
    /// The location needs a backend this build leaves out.
    #[error(
        "feature library {location}: this build has no `{feature}` backend (cargo feature `{feature}`)"
    )]
    BackendDisabled {
        /// The location, without a password.
        location: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// A file is larger than the configured limit.
    #[error("{path}: file has {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl Error {
    /// Whether the error says only that this process may not write the library: a read-only
    /// file, folder or file system, another owner's file, or a library opened read-only. A
    /// caller that only reads can open it with [`OpenOptions::read_only`](crate::OpenOptions::read_only).
    pub fn is_write_denied(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            Error::Sqlite { cause, .. } => matches!(
                cause.sqlite_error_code(),
                Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied)
            ),
            Error::Io { cause, .. } => matches!(
                cause.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            Error::ReadOnly { .. } => true,
            _ => false,
        }
    }
}

impl From<safe_file::Error> for Error {
    /// Oversize files and I/O failures keep their own variants ([`Error::TooLarge`],
    /// [`Error::Io`]); a FIFO, device or folder is [`Error::File`].
    fn from(e: safe_file::Error) -> Self {
        match e {
            safe_file::Error::Io { path, cause } => Error::Io { path, cause },
            safe_file::Error::TooLarge { path, size, limit } => {
                Error::TooLarge { path, size, limit }
            }
            other => Error::File(other),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The server's own message for a database error (the client's `Display` says only "db error").
#[cfg(feature = "postgres")]
fn pg_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => e.to_string(),
    }
}
