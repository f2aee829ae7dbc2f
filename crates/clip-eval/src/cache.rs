//! An on-disk cache of zero-shot classifiers, keyed by model, class names and templates.
//!
//! File layout (little-endian), version 1:
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `CLIPZSC\0` |
//! | 4 | format version (`u32`, 1) |
//! | 4 | header length `h` (`u32`) |
//! | h | header JSON: `key`, `model_id`, `dim`, `n_classes`, `classes`, `templates`, `weights_sha256` |
//! | 4·n·d | weights, `f32`, row-major `n_classes × dim` |
//!
//! Loading checks every field: magic, version, header, that the key, class names and templates
//! are the requested ones, that the data has exactly `n_classes × dim` values whose SHA-256
//! matches, and that they are finite. Anything else is an [`Error::Cache`], never a panic.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classifier::{Classifier, build_classifier};
use crate::error::{Error, Result, io_err};
use crate::prompts::Templates;

const MAGIC: &[u8; 8] = b"CLIPZSC\0";
/// Format version written and accepted.
pub const CACHE_VERSION: u32 = 1;
/// Largest header accepted (class names and templates are a few tens of KiB).
const MAX_HEADER: usize = 64 << 20;
/// Largest cache file read: 1 GiB (21k classes × 1280-d is 110 MB).
const MAX_CACHE_FILE_BYTES: u64 = 1 << 30;

/// The cache key: SHA-256 over the model id, the class names and the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Lower-case hex SHA-256.
    pub hex: String,
    /// The model id it was made from.
    pub model_id: String,
    /// The class names.
    pub classes: Vec<String>,
    /// The templates.
    pub templates: Vec<String>,
}

impl CacheKey {
    /// The key of a classifier. `model_id` should identify the weights, not only the
    /// architecture (e.g. `ViT-B/32@<weights sha256>`).
    pub fn new(model_id: &str, classes: &[String], templates: &Templates) -> Self {
        let mut h = Sha256::new();
        let mut put = |s: &[u8]| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s);
        };
        put(b"clip-eval zero-shot classifier v1");
        put(model_id.as_bytes());
        put(&(classes.len() as u64).to_le_bytes());
        for c in classes {
            put(c.as_bytes());
        }
        put(&(templates.templates.len() as u64).to_le_bytes());
        for t in &templates.templates {
            put(t.as_bytes());
        }
        CacheKey {
            hex: hex(&h.finalize()),
            model_id: model_id.to_string(),
            classes: classes.to_vec(),
            templates: templates.templates.clone(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    model_id: String,
    dim: usize,
    n_classes: usize,
    classes: Vec<String>,
    templates: Vec<String>,
    weights_sha256: String,
}

/// Writes `classifier` to `path` under `key` (through a temporary file and a rename).
pub fn write_cache_file(path: &Path, key: &CacheKey, classifier: &Classifier) -> Result<()> {
    if key.classes != classifier.classes() {
        return Err(Error::Cache {
            path: path.to_path_buf(),
            message: "the classifier's class names differ from the key's".into(),
        });
    }
    let data: Vec<u8> = classifier
        .weights()
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let header = Header {
        key: key.hex.clone(),
        model_id: key.model_id.clone(),
        dim: classifier.dim(),
        n_classes: classifier.n_classes(),
        classes: key.classes.clone(),
        templates: key.templates.clone(),
        weights_sha256: hex(&Sha256::digest(&data)),
    };
    let header = serde_json::to_vec(&header).map_err(|e| Error::Cache {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut bytes = Vec::with_capacity(16 + header.len() + data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    // A failed write leaves neither a partial cache file nor a temporary one.
    safe_file::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads and validates a cache file written for `key`.
pub fn read_cache_file(path: &Path, key: &CacheKey) -> Result<Classifier> {
    let bytes = safe_file::read(path, MAX_CACHE_FILE_BYTES)?;
    parse_cache(&bytes, key).map_err(|message| Error::Cache {
        path: path.to_path_buf(),
        message,
    })
}

fn parse_cache(bytes: &[u8], key: &CacheKey) -> Result<Classifier, String> {
    let u32_at = |o: usize| -> Result<u32, String> {
        bytes
            .get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("truncated: {} bytes, need at least {}", bytes.len(), o + 4))
    };
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err("not a classifier cache file (bad magic)".into());
    }
    let version = u32_at(8)?;
    if version != CACHE_VERSION {
        return Err(format!(
            "format version {version}, expected {CACHE_VERSION}"
        ));
    }
    let h_len = u32_at(12)? as usize;
    if h_len > MAX_HEADER {
        return Err(format!("header length {h_len} exceeds {MAX_HEADER}"));
    }
    let header = bytes
        .get(16..16 + h_len)
        .ok_or_else(|| format!("truncated header: need {h_len} bytes after byte 16"))?;
    let header: Header = serde_json::from_slice(header).map_err(|e| format!("header JSON: {e}"))?;
    if header.key != key.hex {
        return Err(format!(
            "key {} does not match the requested {}",
            header.key, key.hex
        ));
    }
    if header.model_id != key.model_id
        || header.classes != key.classes
        || header.templates != key.templates
    {
        return Err("model id, class names or templates differ from the requested ones".into());
    }
    if header.n_classes != key.classes.len() || header.n_classes != header.classes.len() {
        return Err(format!(
            "n_classes {} but {} class names requested",
            header.n_classes,
            key.classes.len()
        ));
    }
    let n_bytes = header
        .n_classes
        .checked_mul(header.dim)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| {
            format!(
                "dim {} x n_classes {} overflows",
                header.dim, header.n_classes
            )
        })?;
    let data = &bytes[16 + h_len..];
    if header.dim == 0 || data.len() != n_bytes {
        return Err(format!(
            "weights: expected {} x {} f32 = {n_bytes} bytes, found {}",
            header.n_classes,
            header.dim,
            data.len()
        ));
    }
    if hex(&Sha256::digest(data)) != header.weights_sha256 {
        return Err("weights SHA-256 mismatch (file corrupt)".into());
    }
    let weights: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Classifier::new(header.dim, header.classes, weights).map_err(|e| e.to_string())
}

/// Whether [`ClassifierCache::get_or_build`] read the classifier or built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Read from the cache.
    Hit,
    /// Built with the encoder and written to the cache.
    Built,
}

/// A folder of cached classifiers, one file per [`CacheKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierCache {
    dir: PathBuf,
}

impl ClassifierCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ClassifierCache { dir: dir.into() }
    }

    /// The file for `key`.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("zeroshot-{}.bin", key.hex))
    }

    /// The cached classifier for `key`: `Ok(None)` when there is no file, an error when the
    /// file is unreadable or corrupt.
    pub fn load(&self, key: &CacheKey) -> Result<Option<Classifier>> {
        let path = self.path(key);
        if !path.exists() {
            return Ok(None);
        }
        read_cache_file(&path, key).map(Some)
    }

    /// Like [`load`](Self::load), also requiring the embedding dimension the model produces: a
    /// cached classifier of another dimension is an [`Error::Cache`].
    pub fn load_expecting(&self, key: &CacheKey, dim: usize) -> Result<Option<Classifier>> {
        match self.load(key)? {
            Some(c) if c.dim() != dim => Err(Error::Cache {
                path: self.path(key),
                message: format!("dim {} but the model embeds in {dim}", c.dim()),
            }),
            other => Ok(other),
        }
    }

    /// Stores `classifier` under `key`; returns the file written.
    pub fn store(&self, key: &CacheKey, classifier: &Classifier) -> Result<PathBuf> {
        let path = self.path(key);
        write_cache_file(&path, key, classifier)?;
        Ok(path)
    }

    /// The cached classifier, or one built with [`build_classifier`] and stored. A corrupt
    /// cache file is an error (delete it to rebuild).
    pub fn get_or_build<E, F>(
        &self,
        model_id: &str,
        names: &[String],
        templates: &Templates,
        batch_size: usize,
        encode: F,
    ) -> Result<(Classifier, CacheStatus), E>
    where
        F: FnMut(&[String]) -> Result<Vec<Vec<f32>>, E>,
        E: From<Error>,
    {
        let key = CacheKey::new(model_id, names, templates);
        if let Some(c) = self.load(&key)? {
            return Ok((c, CacheStatus::Hit));
        }
        let c = build_classifier(names, templates, batch_size, encode)?;
        self.store(&key, &c)?;
        Ok((c, CacheStatus::Built))
    }
}
