//! The facade's error type.

use std::path::PathBuf;

/// Everything that can go wrong through the facade. Each variant names the thing (file, URL,
/// label, text) and what was expected. A cause is shown in the message once, not repeated as the
/// error's source (so `{:#}` with `anyhow` does not print it twice).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model spec is neither an existing file or folder, nor a hub id, nor a known short name.
    #[error(
        "unknown model `{spec}`: expected a safetensors file or a folder holding one, a hub id \
         (`owner/name[@revision]`), or one of the short names {known}"
    )]
    UnknownModel {
        /// What was given.
        spec: String,
        /// The short names this crate knows, comma-separated.
        known: String,
    },
    /// A folder given as the model holds no weights file.
    #[error("{}: no weights file in this folder (looked for {looked})", dir.display())]
    NoWeightsInFolder {
        /// The folder.
        dir: PathBuf,
        /// The file names looked for.
        looked: String,
    },
    /// A hub id was given but this build has no network code.
    #[error(
        "`{id}` is a hub id and is not in the hub cache ({cache}), and this build has no \
         download code: enable the `clip` crate's `hub` feature, or download {url} and pass its path"
    )]
    HubDisabled {
        /// The hub id.
        id: String,
        /// The hub cache folder looked in.
        cache: PathBuf,
        /// The URL of the weights file.
        url: String,
    },
    /// Offline (`HF_HUB_OFFLINE=1` or the `offline` option) and the file is not in the cache.
    #[error(
        "offline and `{file}` of `{repo}` is not in the hub cache ({cache}): download {url} and pass \
         its path (e.g. `--model FILE` or CLIP_MODEL=FILE), or run once with network"
    )]
    Offline {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// The URL it would be downloaded from.
        url: String,
        /// The hub cache folder.
        cache: PathBuf,
    },
    /// The server answered 404 (or 401/403 for a gated or private repository without a token).
    #[error("{url}: not found on the hub (HTTP {status}){hint}")]
    NotOnHub {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Extra advice (e.g. about tokens for gated repositories).
        hint: &'static str,
    },
    /// The download failed (network, server error, timeout, refused bytes).
    #[error("downloading {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// A downloaded file does not match what the server announced (size or sha256 etag): it was
    /// deleted, not loaded.
    #[error(
        "downloading {url}: {what} mismatch (expected {expected}, got {found}); the file was discarded"
    )]
    Corrupt {
        /// The URL.
        url: String,
        /// `size` or `sha256`.
        what: &'static str,
        /// What the server announced.
        expected: String,
        /// What arrived.
        found: String,
    },
    /// A file the model needs beside its weights is missing (e.g. SigLIP's `tokenizer.json`).
    #[error("{}: missing: {what}", path.display())]
    MissingFile {
        /// Where the file was looked for.
        path: PathBuf,
        /// What the file is.
        what: &'static str,
    },
    /// A file of the hub cache or a local model folder could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause (shown in the message).
        cause: std::io::Error,
    },
    /// A path given as a model is a FIFO, a device or a socket, not a file or folder.
    #[error(transparent)]
    File(safe_file::Error),
    /// The weights could not be loaded or the model failed.
    #[error(transparent)]
    Model(#[from] clip_model::Error),
    /// An image could not be read or decoded; the message names it.
    #[error("{cause}")]
    Image {
        /// The path, or a description such as `image #3 of the batch (bytes)`.
        source_name: String,
        /// The cause (its message is this error's message, and names the image).
        cause: clip_preprocess::Error,
    },
    /// A text is empty or has more tokens than the model's context.
    #[error("text #{index} ({preview:?}): {reason}")]
    Text {
        /// Its position in the batch.
        index: usize,
        /// Its beginning.
        preview: String,
        /// What is wrong.
        reason: String,
    },
    /// The label list is empty or a label is empty.
    #[error("labels: {0}")]
    Labels(String),
    /// Zero-shot classification failed (e.g. a template without `{{}}`).
    #[error(transparent)]
    Eval(#[from] clip_eval::Error),
    /// The feature library failed (another model's library, a damaged file, ...).
    #[error(transparent)]
    Library(#[from] feature_store::Error),
    /// The model produced NaN or infinite values for an input (damaged weights): an embedding,
    /// or the probabilities of a classification.
    #[error("{input}: the model produced NaN or infinite values (are the weights damaged?)")]
    NonFinite {
        /// The input, in words.
        input: String,
    },
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The facade's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
