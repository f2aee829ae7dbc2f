//! Where the examples find CLIP weights.
//!
//! Order: `--weights FILE` (or a hub id such as `timm/vit_base_patch32_clip_224.openai` when built
//! with the `hub` feature), then the `CLIP_WEIGHTS` environment variable, then
//! [`DEFAULT_WEIGHTS`] relative to the current directory (and to the workspace root).

use std::path::{Path, PathBuf};

/// Environment variable naming a weights file.
pub const WEIGHTS_ENV: &str = "CLIP_WEIGHTS";
/// The default weights path, relative to the current directory or the workspace root.
pub const DEFAULT_WEIGHTS: &str = "models/vit-b-32/open_clip_model.safetensors";
/// The hub repository holding the default weights.
pub const DEFAULT_HUB_ID: &str = "timm/vit_base_patch32_clip_224.openai";
/// The file to take from [`DEFAULT_HUB_ID`].
pub const HUB_FILE: &str = "open_clip_model.safetensors";

/// Why no weights file could be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// Nothing at the given or default places.
    #[error("no CLIP weights found: {looked}\n{}", how_to_get())]
    NotFound {
        /// What was looked at, in words.
        looked: String,
    },
    /// A hub id was given but this binary was built without the `hub` feature.
    #[error(
        "`{id}` is not a file; to fetch it from the Hugging Face hub rebuild with `--features hub` \
         (e.g. `cargo run --release --features hub --example zero_shot -- --weights {id}`)\n{}",
        how_to_get()
    )]
    HubDisabled {
        /// The id given.
        id: String,
    },
    /// Fetching from the hub failed.
    #[error(
        "could not fetch `{id}` from the Hugging Face hub: {cause}\n{}",
        how_to_get()
    )]
    Hub {
        /// The id given.
        id: String,
        /// The cause, in words.
        cause: String,
    },
}

/// How to get the default weights, in words (shown whenever weights are missing).
pub fn how_to_get() -> String {
    format!(
        "To get the OpenAI ViT-B/32 weights (about 600 MB):\n  \
         - download `{HUB_FILE}` from https://huggingface.co/{DEFAULT_HUB_ID} and put it at \
         `{DEFAULT_WEIGHTS}` (or anywhere, then pass `--weights FILE` or set {WEIGHTS_ENV}=FILE), or\n  \
         - with network: build with `--features hub` and pass `--weights {DEFAULT_HUB_ID}` \
         (cached in the Hugging Face cache, ~/.cache/huggingface)."
    )
}

/// Resolves the weights file from an optional `--weights` argument.
pub fn resolve(arg: Option<&str>) -> Result<PathBuf, WeightsError> {
    resolve_with(arg, std::env::var_os(WEIGHTS_ENV).map(PathBuf::from))
}

/// [`resolve`] with the environment variable's value passed in (for tests).
pub fn resolve_with(arg: Option<&str>, env: Option<PathBuf>) -> Result<PathBuf, WeightsError> {
    if let Some(a) = arg {
        let p = Path::new(a);
        if p.is_file() {
            return Ok(p.to_owned());
        }
        if let Some(id) = clip_model::HubId::parse(a) {
            return from_hub(&id);
        }
        return Err(WeightsError::NotFound {
            looked: format!("--weights {a}: no such file"),
        });
    }
    if let Some(e) = env {
        if e.is_file() {
            return Ok(e);
        }
        return Err(WeightsError::NotFound {
            looked: format!("{WEIGHTS_ENV}={}: no such file", e.display()),
        });
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap_or(root);
    let candidates = [PathBuf::from(DEFAULT_WEIGHTS), root.join(DEFAULT_WEIGHTS)];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    Err(WeightsError::NotFound {
        looked: format!(
            "no --weights given, {WEIGHTS_ENV} unset, and nothing at the default `{DEFAULT_WEIGHTS}` \
             (looked in the current directory and in {})",
            root.display()
        ),
    })
}

#[cfg(feature = "hub")]
fn from_hub(id: &clip_model::HubId) -> Result<PathBuf, WeightsError> {
    id.fetch()
        .map(|files| files.weights)
        .map_err(|e| WeightsError::Hub {
            id: id.to_string(),
            cause: e.to_string(),
        })
}

#[cfg(not(feature = "hub"))]
fn from_hub(id: &clip_model::HubId) -> Result<PathBuf, WeightsError> {
    Err(WeightsError::HubDisabled {
        id: id.repo.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_file_wins() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().to_str().unwrap();
        assert_eq!(resolve_with(Some(p), None).unwrap(), f.path());
    }

    #[test]
    fn env_var_used_and_checked() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(resolve_with(None, Some(f.path().into())).unwrap(), f.path());
        let e = resolve_with(None, Some("/nonexistent/w.safetensors".into())).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("CLIP_WEIGHTS=/nonexistent"), "{msg}");
        assert!(msg.contains(DEFAULT_HUB_ID), "{msg}");
    }

    #[test]
    fn missing_file_message_says_how_to_get_weights() {
        let msg = resolve_with(Some("nope/dir/w.safetensors"), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no such file"), "{msg}");
        assert!(
            msg.contains(HUB_FILE) && msg.contains(DEFAULT_WEIGHTS),
            "{msg}"
        );
    }

    #[cfg(not(feature = "hub"))]
    #[test]
    fn hub_id_without_feature_is_explained() {
        let msg = resolve_with(Some("timm/vit_base_patch32_clip_224.openai"), None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--features hub"), "{msg}");
    }
}
