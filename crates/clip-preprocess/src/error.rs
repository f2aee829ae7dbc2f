//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading and preprocessing an image.
///
/// Each variant names the input (`path`; in-memory inputs are named `<memory>`) and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read (missing, unreadable, a directory, ...).
    #[error("{path}: cannot read image file: {cause}", path = path.display())]
    Io {
        /// The input.
        path: PathBuf,
        /// The underlying I/O error (shown in the message; not repeated as an error source).
        cause: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a folder) or the file is larger than
    /// [`PreprocessConfig::max_file_bytes`](crate::PreprocessConfig::max_file_bytes).
    #[error(transparent)]
    File(safe_file::Error),
    /// The file is empty (zero bytes).
    #[error("{path}: empty file (0 bytes), not an image", path = path.display())]
    Empty {
        /// The input.
        path: PathBuf,
    },
    /// The bytes do not start with the signature of a supported image format.
    #[error(
        "{path}: not a supported image (expected JPEG, PNG, GIF, WebP, BMP or TIFF; found leading bytes {found})",
        path = path.display()
    )]
    UnknownFormat {
        /// The input.
        path: PathBuf,
        /// The first bytes of the input, hex encoded.
        found: String,
    },
    /// The image data ends before the decoder finished.
    #[error("{path}: truncated {format} file: the data ends before the image is complete", path = path.display())]
    Truncated {
        /// The input.
        path: PathBuf,
        /// The image format.
        format: &'static str,
    },
    /// The decoder rejected the data.
    #[error("{path}: corrupt {format} data: {message}", path = path.display())]
    Decode {
        /// The input.
        path: PathBuf,
        /// The image format.
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The header announces more pixels than the configured limit (a possible decompression bomb).
    /// Checked from the header, before any pixel is decoded.
    #[error(
        "{path}: image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels \
         (possible decompression bomb; raise `max_pixels` to accept it)",
        path = path.display(),
        pixels = *width as u64 * *height as u64
    )]
    TooManyPixels {
        /// The input.
        path: PathBuf,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The configured limit.
        limit: u64,
    },
    /// The header announces an image layout this crate does not handle (e.g. 12-bit JPEG).
    #[error("{path}: unsupported {format}: {detail}", path = path.display())]
    Unsupported {
        /// The input.
        path: PathBuf,
        /// The image format.
        format: &'static str,
        /// What is unsupported.
        detail: String,
    },
    /// An already-decoded pixel buffer does not hold `width × height × 3` bytes.
    #[error(
        "RGB buffer of {width}x{height}: expected {expected} bytes (width x height x 3), found {found}"
    )]
    BadBuffer {
        /// The stated width.
        width: usize,
        /// The stated height.
        height: usize,
        /// `width × height × 3`.
        expected: usize,
        /// The buffer's length.
        found: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid preprocessing config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
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
