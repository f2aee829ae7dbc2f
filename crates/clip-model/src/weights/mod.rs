//! Memory-mapped safetensors weights in either checkpoint naming, seen through open_clip's names.
//!
//! The model code asks for tensors by their open_clip / OpenAI names (`visual.conv1.weight`,
//! `transformer.resblocks.3.attn.in_proj_weight`, …). [`Weights`] answers from the file in its own
//! naming: open_clip's names are used as they are; the Hugging Face transformers names are mapped
//! (`q_proj`/`k_proj`/`v_proj` concatenated into `in_proj_weight`, `visual_projection.weight`
//! transposed into `visual.proj`, …). So there is one model code path and the mapping is a table.
//!
//! Errors name the tensor as the file spells it, and are typed ([`Error::MissingTensor`],
//! [`Error::ShapeMismatch`], [`Error::UnsupportedDtype`]). A missing tensor is always an error:
//! nothing is ever filled with random values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::error::{Error, Result, raise};

pub(crate) mod siglip;

/// The checkpoint naming of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Naming {
    /// OpenAI's and open_clip's names (`visual.conv1.weight`, `token_embedding.weight`, …), as in
    /// `open_clip_model.safetensors` files.
    OpenClip,
    /// Hugging Face transformers' `CLIPModel` names (`vision_model.embeddings.patch_embedding.weight`, …),
    /// as in `openai/clip-vit-base-patch32`'s `model.safetensors`; also transformers' `SiglipModel`
    /// names (`google/siglip-*`, `google/siglip2-*`).
    HuggingFace,
    /// open_clip's names for models with a timm image tower: `visual.trunk.*` (timm's
    /// `patch_embed`, `blocks`, `attn_pool`, …) and the text tower under `text.`, as in the
    /// `open_clip_model.safetensors` of `timm/ViT-B-16-SigLIP2` and the other SigLIP repos.
    OpenClipTimm,
}

impl Naming {
    /// Guesses the naming from the tensor names.
    pub(crate) fn detect(names: &dyn Fn(&str) -> bool, any_name: Option<&str>) -> Result<Self> {
        if names("vision_model.embeddings.patch_embedding.weight")
            || names("text_model.embeddings.token_embedding.weight")
        {
            Ok(Naming::HuggingFace)
        } else if names("visual.conv1.weight") || names("token_embedding.weight") {
            Ok(Naming::OpenClip)
        } else if names("visual.trunk.patch_embed.proj.weight") {
            Ok(Naming::OpenClipTimm)
        } else if names("patch_embed.proj.weight") {
            Err(Error::Architecture(
                "this is a timm image-tower checkpoint (`patch_embed.proj.weight`); use the \
                 repository's `open_clip_model.safetensors` instead"
                    .into(),
            ))
        } else {
            Err(Error::Architecture(format!(
                "neither open_clip names (`visual.conv1.weight`) nor Hugging Face CLIP names \
                 (`vision_model.embeddings.patch_embedding.weight`) found; first tensor: {}",
                any_name.unwrap_or("<none>")
            )))
        }
    }
}

/// One tensor's entry in the safetensors header.
#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the file.
    start: usize,
    end: usize,
}

/// A memory-mapped safetensors file with its header checked.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Maps `path` and checks its header; the tensor data are read only when asked for.
    ///
    /// Errors: [`Error::Io`], [`Error::NotSafetensors`], [`Error::Truncated`], [`Error::Corrupt`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // Only a regular file (a FIFO or device in its place is refused without waiting).
        let (file, _) = safe_file::open(&path, u64::MAX)?;
        // SAFETY: the map is read-only and private to this struct; as everywhere memory maps are
        // used (candle, safetensors), the file must not be modified while it is mapped.
        let mmap =
            unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|cause| Error::Io {
                path: path.clone(),
                cause,
            })?;
        let (n, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| classify(&path, &mmap, e))?;
        let data_start = 8 + n;
        let entries = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let entry = Entry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + info.data_offsets.0,
                    end: data_start + info.data_offsets.1,
                };
                (name, entry)
            })
            .collect();
        Ok(Self {
            path,
            mmap,
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file holds a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Gives the mapped pages of `start..end` back to the kernel once a tensor has been copied out,
    /// so that loading a large model does not keep the whole file resident next to the copies
    /// (RN50x64: peak RSS 3.3 GB without, 1.8 GB with). A later read faults the pages in again.
    fn release(&self, start: usize, end: usize) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let (start, end) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
            if end > start {
                // SAFETY: the map is a private, read-only file mapping that is never written, so
                // MADV_DONTNEED only drops clean page-cache pages; later reads refetch the same bytes
                // from the file. No reference into the range is used after this call.
                let advised = unsafe {
                    self.mmap.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
                // Only a hint: on failure the pages simply stay resident until the map is dropped.
                drop(advised);
            }
        }
        #[cfg(not(unix))]
        let _ = (start, end);
    }

    /// Loads one tensor, converted to `dtype`, on `device`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            path: Some(self.path.clone()),
        })?;
        let file_dtype = match entry.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            other => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                    supported: "F32, F16, BF16, F64",
                });
            }
        };
        let bytes = self
            .mmap
            .get(entry.start..entry.end)
            .ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                reason: format!("tensor `{name}` lies outside the file"),
            })?;
        let t = Tensor::from_raw_buffer(bytes, file_dtype, &entry.shape, &Device::Cpu)?;
        self.release(entry.start, entry.end);
        let t = if file_dtype == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        };
        Ok(t.to_device(device)?)
    }
}

/// Maps a safetensors header error to this crate's error kinds.
fn classify(path: &Path, bytes: &[u8], e: SafeTensorError) -> Error {
    let not = |reason: String| Error::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let header_start = bytes.get(8).copied();
    match e {
        SafeTensorError::HeaderTooSmall => not(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        )),
        SafeTensorError::HeaderTooLarge => {
            not("the header length field is implausibly large".into())
        }
        SafeTensorError::InvalidHeaderLength if header_start == Some(b'{') => {
            let n = bytes
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            Error::Truncated {
                path: path.to_path_buf(),
                expected: usize::try_from(n).unwrap_or(usize::MAX).saturating_add(8),
                found: bytes.len(),
            }
        }
        SafeTensorError::InvalidHeaderLength => {
            not("the header length field points past the end of the file".into())
        }
        SafeTensorError::InvalidHeader(_) => not("the header is not UTF-8 JSON".into()),
        SafeTensorError::InvalidHeaderDeserialization(err) if header_start == Some(b'{') => {
            Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("header JSON: {err}"),
            }
        }
        SafeTensorError::InvalidHeaderDeserialization(err) => {
            not(format!("the header is not safetensors JSON: {err}"))
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            let expected = expected_len(bytes);
            match expected {
                Some(expected) if expected > bytes.len() => Error::Truncated {
                    path: path.to_path_buf(),
                    expected,
                    found: bytes.len(),
                },
                Some(expected) => Error::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{} bytes after the last tensor's data (header describes {expected} bytes)",
                        bytes.len() - expected
                    ),
                },
                None => Error::Corrupt {
                    path: path.to_path_buf(),
                    reason: "the header does not match the file length".into(),
                },
            }
        }
        other => Error::Corrupt {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// The file length a (parseable) safetensors header describes.
fn expected_len(bytes: &[u8]) -> Option<usize> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let end = header
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    (8 + n).checked_add(usize::try_from(end).ok()?)
}

/// How an open_clip-named tensor is found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The tensor of this name, as it is.
    Same(String),
    /// The transpose of this 2-D tensor.
    Transposed(String),
    /// These tensors concatenated along dimension 0 (q, k, v projections).
    Concat(Vec<String>),
    /// A query projection and a joint key-value projection (twice as long) concatenated along
    /// dimension 0 (timm's attention pooling `q` and `kv`).
    QueryKeyValue(String, String),
    /// This tensor with its leading dimensions of size 1 dropped (timm's `pos_embed`
    /// `[1, tokens, width]`).
    Squeezed(String),
}

/// `shape` without its leading dimensions of size 1 (at least one dimension kept).
fn squeeze_leading(shape: &[usize]) -> Vec<usize> {
    let skip = shape
        .iter()
        .take(shape.len().saturating_sub(1))
        .take_while(|&&d| d == 1)
        .count();
    shape[skip..].to_vec()
}

/// Maps an open_clip name to the Hugging Face transformers name(s).
fn hf_source(name: &str) -> Option<Source> {
    let same = |s: String| Some(Source::Same(s));
    // Chinese-CLIP's BERT text tower: cn_clip's `bert.X` is transformers' `text_model.X`.
    if let Some(rest) = name.strip_prefix("bert.") {
        return same(format!("text_model.{rest}"));
    }
    let (tower, rest) = if let Some(rest) = name.strip_prefix("visual.") {
        ("vision_model", rest)
    } else {
        ("text_model", name)
    };
    if let Some(rest) = rest.strip_prefix("transformer.resblocks.") {
        let (layer, leaf) = rest.split_once('.')?;
        let p = format!("{tower}.encoder.layers.{layer}");
        return match leaf {
            "attn.in_proj_weight" | "attn.in_proj_bias" => {
                let kind = if leaf.ends_with("weight") {
                    "weight"
                } else {
                    "bias"
                };
                Some(Source::Concat(
                    ["q_proj", "k_proj", "v_proj"]
                        .iter()
                        .map(|q| format!("{p}.self_attn.{q}.{kind}"))
                        .collect(),
                ))
            }
            _ => {
                let (module, param) = leaf.rsplit_once('.')?;
                let hf = match module {
                    "ln_1" => "layer_norm1",
                    "ln_2" => "layer_norm2",
                    "attn.out_proj" => "self_attn.out_proj",
                    "mlp.c_fc" => "mlp.fc1",
                    "mlp.c_proj" => "mlp.fc2",
                    _ => return None,
                };
                same(format!("{p}.{hf}.{param}"))
            }
        };
    }
    match (tower, rest) {
        ("vision_model", "conv1.weight") => {
            same("vision_model.embeddings.patch_embedding.weight".into())
        }
        ("vision_model", "class_embedding") => {
            same("vision_model.embeddings.class_embedding".into())
        }
        ("vision_model", "positional_embedding") => {
            same("vision_model.embeddings.position_embedding.weight".into())
        }
        ("vision_model", "proj") => Some(Source::Transposed("visual_projection.weight".into())),
        ("vision_model", leaf) => {
            let (module, param) = leaf.rsplit_once('.')?;
            let hf = match module {
                "ln_pre" => "pre_layrnorm",
                "ln_post" => "post_layernorm",
                _ => return None,
            };
            same(format!("vision_model.{hf}.{param}"))
        }
        (_, "token_embedding.weight") => {
            same("text_model.embeddings.token_embedding.weight".into())
        }
        (_, "positional_embedding") => {
            same("text_model.embeddings.position_embedding.weight".into())
        }
        (_, "text_projection") => Some(Source::Transposed("text_projection.weight".into())),
        (_, "logit_scale") => same("logit_scale".into()),
        (_, leaf) => {
            let (module, param) = leaf.rsplit_once('.')?;
            match module {
                "ln_final" => same(format!("text_model.final_layer_norm.{param}")),
                _ => None,
            }
        }
    }
}

/// A weights file seen through open_clip's tensor names; also a candle `VarBuilder` backend.
#[derive(Debug)]
pub struct Weights {
    file: SafetensorsFile,
    naming: Naming,
}

impl Weights {
    /// Opens a safetensors file and detects its naming.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let file = SafetensorsFile::open(path)?;
        let first = file.names().first().map(|s| s.to_string());
        let naming = Naming::detect(&|n| file.contains(n), first.as_deref())?;
        Ok(Self { file, naming })
    }

    /// The naming detected in the file.
    pub fn naming(&self) -> Naming {
        self.naming
    }

    /// The underlying file.
    pub fn file(&self) -> &SafetensorsFile {
        &self.file
    }

    fn source(&self, name: &str) -> Option<Source> {
        match self.naming {
            Naming::OpenClip => Some(Source::Same(name.to_string())),
            Naming::HuggingFace => hf_source(name).or_else(|| siglip::hf_source(name)),
            Naming::OpenClipTimm => siglip::timm_source(name),
        }
    }

    /// The name(s) the file uses for an open_clip name, for messages.
    pub fn file_name(&self, name: &str) -> String {
        match self.source(name) {
            Some(Source::Same(n) | Source::Transposed(n) | Source::Squeezed(n)) => n,
            Some(Source::Concat(parts)) => parts.join(" + "),
            Some(Source::QueryKeyValue(q, kv)) => format!("{q} + {kv}"),
            None => name.to_string(),
        }
    }

    /// Whether the tensor (open_clip name) can be read from the file.
    pub fn contains(&self, name: &str) -> bool {
        match self.source(name) {
            Some(Source::Same(n) | Source::Transposed(n) | Source::Squeezed(n)) => {
                self.file.contains(&n)
            }
            Some(Source::Concat(parts)) => parts.iter().all(|p| self.file.contains(p)),
            Some(Source::QueryKeyValue(q, kv)) => self.file.contains(&q) && self.file.contains(&kv),
            None => false,
        }
    }

    /// The shape of a tensor by its open_clip name, as the model would see it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match self.source(name)? {
            Source::Same(n) => self.file.shape(&n).map(<[usize]>::to_vec),
            Source::Squeezed(n) => self.file.shape(&n).map(squeeze_leading),
            Source::Transposed(n) => {
                let s = self.file.shape(&n)?;
                Some(s.iter().rev().copied().collect())
            }
            Source::QueryKeyValue(q, kv) => self.shape_of_concat(&[q, kv]),
            Source::Concat(parts) => self.shape_of_concat(&parts),
        }
    }

    /// The shape of these tensors concatenated along dimension 0.
    fn shape_of_concat(&self, parts: &[String]) -> Option<Vec<usize>> {
        {
            {
                let mut shape: Option<Vec<usize>> = None;
                for p in parts {
                    let s = self.file.shape(p)?;
                    match shape.as_mut() {
                        None => shape = Some(s.to_vec()),
                        Some(acc) => {
                            if acc.len() != s.len() || acc.get(1..) != s.get(1..) || s.is_empty() {
                                return None;
                            }
                            acc[0] += s[0];
                        }
                    }
                }
                shape
            }
        }
    }

    /// Number of residual blocks under an open_clip prefix such as `visual.transformer.resblocks`:
    /// one more than the largest block index of any tensor there, so a block with a missing
    /// tensor is reported as missing rather than shortening the model.
    pub fn block_count(&self, prefix: &str) -> usize {
        let file_prefix = match self.naming {
            Naming::OpenClip => prefix.to_string(),
            Naming::HuggingFace => match prefix {
                "visual.transformer.resblocks" => "vision_model.encoder.layers".to_string(),
                "transformer.resblocks" => "text_model.encoder.layers".to_string(),
                "bert.encoder.layer" => "text_model.encoder.layer".to_string(),
                other => other.to_string(),
            },
            Naming::OpenClipTimm => siglip::timm_block_prefix(prefix).to_string(),
        };
        let file_prefix = format!("{file_prefix}.");
        self.file
            .entries
            .keys()
            .filter_map(|k| k.strip_prefix(&file_prefix))
            .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1)
    }

    /// The shape of a tensor, or [`Error::MissingTensor`] naming it as the file would.
    pub fn require_shape(&self, name: &str) -> Result<Vec<usize>> {
        self.shape(name).ok_or_else(|| self.missing(name))
    }

    /// [`Weights::require_shape`] of a tensor that must have `rank` dimensions; another rank is
    /// [`Error::Architecture`] naming the tensor as the file would.
    pub fn require_rank(&self, name: &str, rank: usize) -> Result<Vec<usize>> {
        let s = self.require_shape(name)?;
        if s.len() != rank {
            return Err(Error::Architecture(format!(
                "`{}` has shape {s:?}, expected a tensor of rank {rank}",
                self.file_name(name)
            )));
        }
        Ok(s)
    }

    fn missing(&self, name: &str) -> Error {
        let parts = match self.source(name) {
            Some(Source::Concat(parts)) => Some(parts),
            Some(Source::QueryKeyValue(q, kv)) => Some(vec![q, kv]),
            _ => None,
        };
        let file_name = match parts {
            Some(parts) => parts
                .iter()
                .find(|p| !self.file.contains(p))
                .cloned()
                .unwrap_or_else(|| parts.join(" + ")),
            None => self.file_name(name),
        };
        Error::MissingTensor {
            name: file_name,
            path: Some(self.file.path().to_path_buf()),
        }
    }

    /// Loads a tensor by its open_clip name, checking its shape when `expected` is given.
    pub fn load(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let source = self.source(name).ok_or_else(|| self.missing(name))?;
        let mismatch =
            |file_name: &str, expected: Vec<usize>, found: &[usize]| Error::ShapeMismatch {
                name: file_name.to_string(),
                expected,
                found: found.to_vec(),
            };
        let found_of = |n: &str| {
            self.file.shape(n).ok_or_else(|| Error::MissingTensor {
                name: n.to_string(),
                path: Some(self.file.path().to_path_buf()),
            })
        };
        match source {
            Source::Same(n) => {
                let found = found_of(&n)?;
                if let Some(e) = expected
                    && e != found
                {
                    return Err(mismatch(&n, e.to_vec(), found));
                }
                self.file.load(&n, dtype, device)
            }
            Source::Squeezed(n) => {
                let found = found_of(&n)?;
                let squeezed = squeeze_leading(found);
                if let Some(e) = expected
                    && e != squeezed.as_slice()
                {
                    let mut want = vec![1; found.len().saturating_sub(e.len())];
                    want.extend_from_slice(e);
                    return Err(mismatch(&n, want, found));
                }
                Ok(self.file.load(&n, dtype, device)?.reshape(squeezed)?)
            }
            Source::Transposed(n) => {
                let found = found_of(&n)?;
                if let Some(e) = expected {
                    let want: Vec<usize> = e.iter().rev().copied().collect();
                    if want != found {
                        return Err(mismatch(&n, want, found));
                    }
                }
                Ok(self.file.load(&n, dtype, device)?.t()?.contiguous()?)
            }
            Source::Concat(parts) => {
                let k = parts.len();
                let mut ts = Vec::with_capacity(k);
                for p in &parts {
                    let found = found_of(p)?;
                    if let Some(e) = expected {
                        let mut want = e.to_vec();
                        if let Some(d0) = want.first_mut() {
                            *d0 /= k;
                        }
                        if want != found || e.first().is_some_and(|d| d % k != 0) {
                            return Err(mismatch(p, want, found));
                        }
                    }
                    ts.push(self.file.load(p, dtype, device)?);
                }
                Ok(Tensor::cat(&ts, 0)?)
            }
            Source::QueryKeyValue(q, kv) => {
                let mut ts = Vec::with_capacity(2);
                for (p, share) in [(&q, 1), (&kv, 2)] {
                    let found = found_of(p)?;
                    if let Some(e) = expected {
                        let mut want = e.to_vec();
                        if let Some(d0) = want.first_mut() {
                            *d0 = *d0 / 3 * share;
                        }
                        if want != found || e.first().is_some_and(|d| d % 3 != 0) {
                            return Err(mismatch(p, want, found));
                        }
                    }
                    ts.push(self.file.load(p, dtype, device)?);
                }
                Ok(Tensor::cat(&ts, 0)?)
            }
        }
    }
}

impl SimpleBackend for Weights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, Some(s.dims()), dtype, dev).map_err(raise)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, None, dtype, dev).map_err(raise)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// `prefix.name`, or `name` alone for an empty prefix: a tensor's full name under a `VarBuilder`
/// prefix.
pub(crate) fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_open_clip_names() {
        let cases = [
            (
                "visual.conv1.weight",
                Source::Same("vision_model.embeddings.patch_embedding.weight".into()),
            ),
            (
                "visual.ln_pre.bias",
                Source::Same("vision_model.pre_layrnorm.bias".into()),
            ),
            (
                "visual.transformer.resblocks.11.mlp.c_fc.weight",
                Source::Same("vision_model.encoder.layers.11.mlp.fc1.weight".into()),
            ),
            (
                "transformer.resblocks.0.ln_2.weight",
                Source::Same("text_model.encoder.layers.0.layer_norm2.weight".into()),
            ),
            (
                "transformer.resblocks.2.attn.in_proj_bias",
                Source::Concat(vec![
                    "text_model.encoder.layers.2.self_attn.q_proj.bias".into(),
                    "text_model.encoder.layers.2.self_attn.k_proj.bias".into(),
                    "text_model.encoder.layers.2.self_attn.v_proj.bias".into(),
                ]),
            ),
            (
                "visual.proj",
                Source::Transposed("visual_projection.weight".into()),
            ),
            (
                "text_projection",
                Source::Transposed("text_projection.weight".into()),
            ),
            (
                "ln_final.weight",
                Source::Same("text_model.final_layer_norm.weight".into()),
            ),
        ];
        for (open_clip, hf) in cases {
            assert_eq!(hf_source(open_clip), Some(hf), "{open_clip}");
        }
        assert_eq!(hf_source("visual.attnpool.q_proj.weight"), None);
    }
}
