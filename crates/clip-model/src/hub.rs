//! Hugging Face hub access (cargo feature `hub`): a model id + revision → local files.
//!
//! Only this module touches the network; loading always goes through a local path. Files already
//! in the hub cache (`$HF_HOME/hub`, by default `~/.cache/huggingface/hub`) are used without
//! network. When a file is neither cached nor downloadable, the error says which URL to download
//! and where to put it.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// Weight files looked for in a repository, in order: open_clip's, then transformers'.
pub const WEIGHT_FILES: [&str; 2] = ["open_clip_model.safetensors", "model.safetensors"];

/// The local files of a hub model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFiles {
    /// The safetensors weights.
    pub weights: PathBuf,
    /// The config file beside them (`open_clip_config.json` or `config.json`), if the repository has one.
    pub config: Option<PathBuf>,
}

/// Where to look for files.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// The cache folder (default: `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Never use the network, only the cache (also when `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

/// Local files for `repo_id` at `revision` (a branch, tag or commit, e.g. `"main"`), downloaded
/// into the hub cache when missing.
pub fn fetch(repo_id: &str, revision: &str) -> Result<HubFiles> {
    fetch_with(repo_id, revision, &HubOptions::default())
}

/// [`fetch`] with options.
pub fn fetch_with(repo_id: &str, revision: &str, options: &HubOptions) -> Result<HubFiles> {
    let cache = match &options.cache_dir {
        Some(d) => Cache::new(d.clone()),
        None => Cache::from_env(),
    };
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
    let offline = options.offline
        || std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let cached = |name: &str| cache.repo(repo.clone()).get(name);
    let hint = |file: &str| {
        cache
            .path()
            .join(repo.folder_name())
            .join("snapshots")
            .join("<commit>")
            .join(file)
            .display()
            .to_string()
    };
    let hub_error = |file: &str, reason: String| Error::Hub {
        repo: repo_id.to_string(),
        revision: revision.to_string(),
        file: file.to_string(),
        reason,
        cache_hint: hint(file),
    };

    // Cache first, for both candidates: no network when the files are there.
    if let Some(weights) = WEIGHT_FILES.iter().find_map(|f| cached(f)) {
        let config = config_for(&weights, |n| cached(n));
        return Ok(HubFiles { weights, config });
    }
    if offline {
        return Err(hub_error(
            WEIGHT_FILES[0],
            format!("offline and not in the cache (nor `{}`)", WEIGHT_FILES[1]),
        ));
    }
    let mut builder = ApiBuilder::from_env().with_progress(false);
    if let Some(d) = &options.cache_dir {
        builder = builder.with_cache_dir(d.clone());
    }
    let api = builder
        .build()
        .map_err(|e| hub_error(WEIGHT_FILES[0], e.to_string()))?;
    let api_repo = api.repo(repo.clone());
    let mut last_error = String::new();
    for file in WEIGHT_FILES {
        match api_repo.get(file) {
            Ok(weights) => {
                let config = config_for(&weights, |n| api_repo.get(n).ok());
                return Ok(HubFiles { weights, config });
            }
            Err(e) => last_error = format!("{last_error}{file}: {e}; "),
        }
    }
    Err(hub_error(WEIGHT_FILES[0], last_error))
}

/// Fetches (see [`fetch`]) and loads a hub model; the repository's config file is used when present.
pub fn load(
    repo_id: &str,
    revision: &str,
    options: &crate::LoadOptions,
) -> Result<crate::ClipModel> {
    let files = fetch(repo_id, revision)?;
    let mut options = options.clone();
    if options.config_file.is_none() {
        options.config_file = files.config;
    }
    crate::ClipModel::load_with(&files.weights, &options)
}

/// The config file that goes with a weights file: `open_clip_config.json` for open_clip weights,
/// `config.json` for transformers weights.
fn config_for(weights: &std::path::Path, get: impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    let open_clip = weights.file_name().is_some_and(|n| n == WEIGHT_FILES[0]);
    if open_clip {
        get("open_clip_config.json")
    } else {
        get("config.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_without_cache_says_what_to_download() {
        let dir = std::env::temp_dir().join(format!("clip-model-hub-empty-{}", std::process::id()));
        let opts = HubOptions {
            cache_dir: Some(dir.clone()),
            offline: true,
        };
        let err = fetch_with("openai/clip-vit-base-patch32", "main", &opts).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Hub { .. }), "{msg}");
        assert!(
            msg.contains("https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/open_clip_model.safetensors"),
            "{msg}"
        );
        assert!(
            msg.contains("models--openai--clip-vit-base-patch32"),
            "{msg}"
        );
    }

    #[test]
    fn cached_files_are_found_offline() {
        let dir = std::env::temp_dir().join(format!("clip-model-hub-cache-{}", std::process::id()));
        let repo = dir.join("models--org--tiny");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        std::fs::write(snap.join("model.safetensors"), b"x").unwrap();
        std::fs::write(snap.join("config.json"), b"{}").unwrap();
        let opts = HubOptions {
            cache_dir: Some(dir.clone()),
            offline: true,
        };
        let files = fetch_with("org/tiny", "main", &opts).unwrap();
        assert_eq!(files.weights, snap.join("model.safetensors"));
        assert_eq!(files.config, Some(snap.join("config.json")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
