//! The error type of this crate.

use std::path::PathBuf;

/// Errors of this crate: each variant says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file (templates, summary) could not be parsed.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A line of a JSON-lines file could not be parsed.
    #[error("{path}:{line}: {message}")]
    JsonLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A prompt template or template list is invalid.
    #[error("templates: {0}")]
    Templates(String),
    /// A class-name list is invalid.
    #[error("class names: {0}")]
    ClassNames(String),
    /// A matrix or vector has the wrong size.
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Expected size.
        expected: String,
        /// Actual size.
        found: String,
    },
    /// The text encoder returned something unusable.
    #[error("text encoder: {0}")]
    Encoder(String),
    /// A class index is out of range.
    #[error("{what}: class index {index} out of range for {n_classes} classes")]
    ClassIndex {
        /// Which value.
        what: &'static str,
        /// The index.
        index: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// A classifier cache file is corrupt or belongs to another key.
    #[error("classifier cache {path}: {message}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
