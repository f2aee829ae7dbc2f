//! The error type of this crate.

use std::path::PathBuf;

/// Errors of this crate: each variant says what was expected and what was found. A cause (an
/// I/O error) is shown in the message once, not repeated as the error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message).
        cause: std::io::Error,
    },
    /// A file given to read is a FIFO, a device or a folder, too large, or not text.
    #[error(transparent)]
    File(safe_file::Error),
    /// An embedding, a score or a scale holds NaN or an infinity (damaged weights): refused
    /// rather than turned into meaningless probabilities or accuracies.
    #[error("{what} holds {value}, expected finite numbers (are the model's weights damaged?)")]
    NonFinite {
        /// What holds it (`image embedding #3`, `logit scale`, ...).
        what: String,
        /// The first bad value.
        value: f32,
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
    move |cause| Error::Io { path, cause }
}

impl From<safe_file::Error> for Error {
    /// I/O failures keep their variant ([`Error::Io`]); the rest is [`Error::File`].
    fn from(e: safe_file::Error) -> Self {
        match e {
            safe_file::Error::Io { path, cause } => Error::Io { path, cause },
            other => Error::File(other),
        }
    }
}

/// [`Error::NonFinite`] for the first non-finite value of `values`, if any.
pub(crate) fn check_finite(values: &[f32], what: impl FnOnce(usize) -> String) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::NonFinite {
            what: what(i),
            value: values[i],
        }),
        None => Ok(()),
    }
}
