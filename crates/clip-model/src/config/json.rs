//! Reading config JSON: the file itself and the integer fields every family's hints read.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// A JSON config file (read through `safe-file`, at most 16 MiB); bad JSON is
/// [`Error::Config`] naming the file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = safe_file::read_to_string(path, 16 << 20)?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The non-negative integer at `key` of `v`; `None` when absent or null, a message naming the
/// key for any other value.
pub(crate) fn uint(v: &Value, key: &str) -> std::result::Result<Option<usize>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("`{key}` is {x}, expected a non-negative integer")),
    }
}

/// For each `(field, object, key)` whose key is present, `(field, value)` appended to `checks`
/// (the sizes a config's hints check against the tensors).
pub(crate) fn push_checks<F: From<&'static str>>(
    checks: &mut Vec<(F, usize)>,
    rows: &[(&'static str, &Value, &str)],
) -> std::result::Result<(), String> {
    for &(field, object, key) in rows {
        if let Some(n) = uint(object, key)? {
            checks.push((field.into(), n));
        }
    }
    Ok(())
}
