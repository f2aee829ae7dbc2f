//! The crate's error type.

use std::path::PathBuf;

/// Errors of this crate.
///
/// Loading errors carry the file, the tensor name (as spelled in the file) and the expected and
/// found values, so a user can tell which file is wrong and how. A cause (an I/O error) is shown
/// in the message once, not repeated as the error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message).
        cause: std::io::Error,
    },
    /// A file to read is a FIFO, a device or a folder, too large, or not text.
    #[error(transparent)]
    File(safe_file::Error),
    /// A scalar of the weights (`logit_scale`, `logit_bias`) is NaN or infinite, or overflows
    /// once exponentiated: every probability computed with it would be NaN.
    #[error(
        "tensor `{name}` gives {value}, expected a finite number (damaged weights?){}",
        path_suffix(.path)
    )]
    NonFiniteTensor {
        /// The weights file, when known.
        path: Option<PathBuf>,
        /// The tensor.
        name: &'static str,
        /// The value it gives.
        value: f32,
    },
    /// The file is not a safetensors file (bad header length or header that is not safetensors JSON).
    #[error("{path}: not a safetensors file: {reason}")]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The safetensors header promises more bytes than the file holds.
    #[error("{path}: truncated safetensors file: header needs {expected} bytes, file has {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header describes (header included).
        expected: usize,
        /// Bytes in the file.
        found: usize,
    },
    /// The safetensors header is readable but inconsistent (overlapping or out-of-order tensor data, …).
    #[error("{path}: corrupt safetensors file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A tensor the model needs is not in the file.
    #[error("missing tensor `{name}`{}", path_suffix(.path))]
    MissingTensor {
        /// Tensor name as the file would spell it.
        name: String,
        /// The file, when known.
        path: Option<PathBuf>,
    },
    /// A tensor has another shape than the architecture needs.
    #[error("tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Tensor name as the file spells it.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor (or a requested model dtype) has a dtype this crate does not load.
    #[error("tensor `{name}`: unsupported dtype {dtype} (supported: {supported})")]
    UnsupportedDtype {
        /// Tensor name (or `model dtype` for a requested dtype).
        name: String,
        /// The dtype found.
        dtype: String,
        /// The dtypes accepted here.
        supported: &'static str,
    },
    /// The weights do not describe a model this crate knows (no vision tower found, …).
    #[error("cannot infer the architecture: {0}")]
    Architecture(String),
    /// A config file cannot be read as the expected JSON.
    #[error("{path}: invalid config: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A config value disagrees with what the weights imply.
    #[error("{source_name}: `{field}` is {config} but the weights imply {weights}")]
    ConfigMismatch {
        /// Where the config value came from (a file path or a preset name).
        source_name: String,
        /// The field, e.g. `vision.layers`.
        field: String,
        /// The value in the config.
        config: String,
        /// The value inferred from the tensors.
        weights: String,
    },
    /// An input tensor (pixels, token ids) has the wrong shape, dtype or values.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An error inside candle (tensor arithmetic, device).
    #[error("candle: {0}")]
    Candle(candle_core::Error),
    /// A text has more tokens than the context length and truncation was not asked for.
    #[error(
        "text \"{start}\" has {tokens} tokens (start and end of text included), more than the context \
         length {context_length}: shorten it or ask for truncation"
    )]
    TextTooLong {
        /// The beginning of the text.
        start: String,
        /// Its number of tokens, `<|startoftext|>` and `<|endoftext|>` included.
        tokens: usize,
        /// The context length asked for.
        context_length: usize,
    },
    /// A context length too small for `<|startoftext|>` and `<|endoftext|>`.
    #[error(
        "context length {context_length} is out of range: it must hold the 2 special tokens and be at most 65536"
    )]
    InvalidContextLength {
        /// The context length asked for.
        context_length: usize,
    },
    /// The tokenizer's vocabulary is unreadable, or the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A CPU kernel was handed operands whose sizes do not fit together (a bug in the calling
    /// code, reported instead of a panic: the model code checks shapes before the kernels run).
    #[error("{op}: {operand} has size {found}, expected {expected}")]
    KernelOperand {
        /// The kernel, e.g. `packed product`.
        op: &'static str,
        /// The operand, e.g. `input`, `residual`.
        operand: &'static str,
        /// The size the kernel needs (values).
        expected: usize,
        /// The size handed in.
        found: usize,
    },
    /// Kernels were asked for that this CPU cannot run.
    #[error("the {kernel} kernels are not supported on this CPU")]
    UnsupportedCpu {
        /// The kernel family, e.g. `AVX-512`.
        kernel: &'static str,
    },
    /// A device name that is none of `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    #[error("unknown device `{name}`: expected cpu, cuda, cuda:N, metal or metal:N")]
    UnknownDevice {
        /// The name given.
        name: String,
    },
    /// A GPU device asked for from a build without the cargo feature for it.
    #[error("device `{name}` needs the `{feature}` feature of clip-model, which this build lacks")]
    DeviceNotBuilt {
        /// The name given, e.g. `cuda:0`.
        name: String,
        /// The missing cargo feature (`cuda` or `metal`).
        feature: &'static str,
    },
    /// A GPU device this build supports but cannot open (no GPU, no driver, ordinal out of range).
    #[error("device `{name}` is not available: {reason}")]
    DeviceUnavailable {
        /// The name given, e.g. `cuda:1`.
        name: String,
        /// Why, as the driver reported it.
        reason: String,
    },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" in {}", p.display()),
        None => String::new(),
    }
}

impl From<candle_core::Error> for Error {
    /// Recovers this crate's typed errors carried through candle; others become [`Error::Candle`].
    fn from(e: candle_core::Error) -> Self {
        lower(e)
    }
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

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Carries one of this crate's errors through layer code that returns `candle_core::Result`;
/// [`lower`] recovers it at the public API.
pub(crate) fn raise(e: Error) -> candle_core::Error {
    candle_core::Error::WrappedContext {
        wrapped: Box::new(e),
        context: "clip-model".to_string(),
    }
}

/// Turns an error from layer code into this crate's error, recovering the typed ones [`raise`]d.
pub(crate) fn lower(e: candle_core::Error) -> Error {
    match e {
        candle_core::Error::WrappedContext { wrapped, context } => {
            match wrapped.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::Candle(candle_core::Error::WrappedContext {
                    wrapped: other,
                    context,
                }),
            }
        }
        candle_core::Error::WithBacktrace { inner, .. } => lower(*inner),
        candle_core::Error::Context { inner, context } => match lower(*inner) {
            Error::Candle(c) => Error::Candle(candle_core::Error::Context {
                inner: Box::new(c),
                context,
            }),
            ours => ours,
        },
        other => Error::Candle(other),
    }
}
