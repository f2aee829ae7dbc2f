//! The error type of this crate.

use std::path::PathBuf;

/// Errors of this crate: every variant names where the problem is and what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message, not repeated as the error's source).
        cause: std::io::Error,
    },
    /// A file to read is a FIFO, a device or a folder, or too large.
    #[error(transparent)]
    File(safe_file::Error),
    /// The 128-byte MATLAB v5 header is missing or invalid.
    #[error("not a MATLAB v5 MAT-file: {reason}")]
    Header {
        /// What is wrong with the header.
        reason: String,
    },
    /// An element or its data runs past the end of the bytes that contain it.
    #[error(
        "{context}: truncated: {what} needs {needed} bytes at offset {offset}, only {available} left"
    )]
    Truncated {
        /// Where in the file's structure (e.g. `synsets(3).gloss`).
        context: String,
        /// The part being read (e.g. `tag`, `dimensions`).
        what: &'static str,
        /// Byte offset inside the enclosing element's data.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// An element holds something other than what the format allows there.
    #[error("{context}: {what}: expected {expected}, found {found}")]
    Malformed {
        /// Where in the file's structure.
        context: String,
        /// The part being read.
        what: &'static str,
        /// What the format requires.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A zlib-compressed element could not be inflated.
    #[error("{context}: compressed element: {message}")]
    Decompress {
        /// Where in the file's structure.
        context: String,
        /// The inflater's message.
        message: String,
    },
    /// Inflating the compressed elements would exceed the configured limit.
    #[error("{context}: decompressed data exceeds the limit of {limit} bytes")]
    DecompressLimit {
        /// Where in the file's structure.
        context: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// A variable the caller needs is not in the file.
    #[error("variable `{name}` not found (file has: {found})")]
    MissingVariable {
        /// The variable's name.
        name: String,
        /// Names of the variables present, comma-separated.
        found: String,
    },
    /// A synset field is missing or holds the wrong kind of value.
    #[error("synsets({index}).{field}: expected {expected}, found {found}")]
    Field {
        /// 1-based element index in the `synsets` struct array (MATLAB's numbering).
        index: usize,
        /// The field name.
        field: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The synsets are inconsistent (duplicate ids or wnids, unknown child ids).
    #[error("inconsistent synsets: {0}")]
    Inconsistent(String),
    /// A line of the ground-truth file is not a known devkit id.
    #[error("{path}:{line}: {message}")]
    GroundTruth {
        /// The file.
        path: PathBuf,
        /// 1-based line number (= the validation image number).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<safe_file::Error> for Error {
    /// I/O failures keep their variant ([`Error::Io`]); the rest is [`Error::File`].
    fn from(e: safe_file::Error) -> Self {
        match e {
            safe_file::Error::Io { path, cause } => Error::Io { path, cause },
            other => Error::File(other),
        }
    }
}
