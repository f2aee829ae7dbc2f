//! What a model spec names: a local file or folder, a hub id, or a short name.

use std::path::{Path, PathBuf};

use clip_model::HubId;

use crate::error::{Error, Result};

/// A model this crate knows by a short name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownModel {
    /// The short name (open_clip's spelling), e.g. `ViT-B-32`.
    pub name: &'static str,
    /// The hub repository holding its weights.
    pub hub_id: &'static str,
    /// Published zero-shot ImageNet top-1 (%), for choosing; not measured by this project
    /// (Chinese-CLIP: with Chinese class names).
    pub imagenet_top1: f32,
}

/// The models known by short name. Names are matched case-insensitively, `/` and `-` alike
/// (`ViT-B/32` = `vit-b-32`).
pub const MODELS: &[KnownModel] = &[
    KnownModel {
        name: "ViT-B-32",
        hub_id: "timm/vit_base_patch32_clip_224.openai",
        imagenet_top1: 63.3,
    },
    KnownModel {
        name: "ViT-B-16",
        hub_id: "timm/vit_base_patch16_clip_224.openai",
        imagenet_top1: 68.3,
    },
    KnownModel {
        name: "ViT-L-14",
        hub_id: "timm/vit_large_patch14_clip_224.openai",
        imagenet_top1: 75.5,
    },
    KnownModel {
        name: "ViT-L-14-336",
        hub_id: "timm/vit_large_patch14_clip_336.openai",
        imagenet_top1: 76.2,
    },
    KnownModel {
        name: "RN50",
        hub_id: "timm/resnet50_clip.openai",
        imagenet_top1: 59.8,
    },
    KnownModel {
        name: "RN101",
        hub_id: "timm/resnet101_clip.openai",
        imagenet_top1: 62.3,
    },
    KnownModel {
        name: "RN50x4",
        hub_id: "timm/resnet50x4_clip.openai",
        imagenet_top1: 65.8,
    },
    KnownModel {
        name: "RN50x16",
        hub_id: "timm/resnet50x16_clip.openai",
        imagenet_top1: 70.5,
    },
    KnownModel {
        name: "RN50x64",
        hub_id: "timm/resnet50x64_clip.openai",
        imagenet_top1: 73.9,
    },
    // Large open_clip ViTs (open_clip_model.safetensors + open_clip_config.json: heads,
    // activation and preprocessing come from the config).
    KnownModel {
        name: "ViT-H-14",
        hub_id: "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        imagenet_top1: 78.0,
    },
    KnownModel {
        name: "ViT-bigG-14",
        hub_id: "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
        imagenet_top1: 80.1,
    },
    KnownModel {
        name: "ViT-H-14-378-DFN",
        hub_id: "apple/DFN5B-CLIP-ViT-H-14-378",
        imagenet_top1: 84.4,
    },
    // SigLIP 2, fixed resolution (transformers naming; tokenizer.json and
    // preprocessor_config.json come with the weights). Multilingual: Chinese queries work too.
    KnownModel {
        name: "SigLIP2-B-16",
        hub_id: "google/siglip2-base-patch16-224",
        imagenet_top1: 78.2,
    },
    KnownModel {
        name: "SigLIP2-L-16-384",
        hub_id: "google/siglip2-large-patch16-384",
        imagenet_top1: 83.1,
    },
    KnownModel {
        name: "SigLIP2-So400m-14-384",
        hub_id: "google/siglip2-so400m-patch14-384",
        imagenet_top1: 84.1,
    },
    // Chinese-CLIP (transformers' ChineseCLIPModel naming); top-1 with Chinese class names.
    KnownModel {
        name: "CN-ViT-B-16",
        hub_id: "OFA-Sys/chinese-clip-vit-base-patch16",
        imagenet_top1: 48.3,
    },
    KnownModel {
        name: "CN-ViT-L-14",
        hub_id: "OFA-Sys/chinese-clip-vit-large-patch14",
        imagenet_top1: 54.7,
    },
    KnownModel {
        name: "CN-ViT-L-14-336",
        hub_id: "OFA-Sys/chinese-clip-vit-large-patch14-336px",
        imagenet_top1: 56.7,
    },
    KnownModel {
        name: "CN-ViT-H-14",
        hub_id: "OFA-Sys/chinese-clip-vit-huge-patch14",
        imagenet_top1: 59.6,
    },
];

/// The model used when none is named: OpenAI's ViT-B/32 (about 600 MB).
pub const DEFAULT_MODEL: &str = "ViT-B-32";

/// Environment variable naming the model to use when none is given (a spec as for
/// [`crate::Clip::load`]). `CLIP_WEIGHTS` (a file) is read too, for older set-ups.
pub const MODEL_ENV: &str = "CLIP_MODEL";

/// Weight files looked for in a folder or hub repository, in order: open_clip's, then transformers'.
pub const WEIGHT_FILES: [&str; 2] = ["open_clip_model.safetensors", "model.safetensors"];

/// Files fetched with a hub model's weights when its repository has them: SigLIP's vocabulary
/// (`tokenizer.json`) and transformers' image-processor settings (`preprocessor_config.json`).
pub const SIDECAR_FILES: [&str; 2] = ["tokenizer.json", "preprocessor_config.json"];

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local safetensors file (its config, if any, lies beside it).
    File(PathBuf),
    /// A hub repository at a revision.
    Hub(HubId),
}

/// The known model with this short name, if any.
pub fn known(name: &str) -> Option<&'static KnownModel> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('/', "-");
    let want = norm(name);
    MODELS.iter().find(|m| norm(m.name) == want)
}

/// Resolves a spec: an existing path first (a file, or a folder with a weights file), then a
/// known short name, then a hub id.
pub fn resolve(spec: &str) -> Result<Source> {
    let path = Path::new(spec);
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return weights_in(path).map(Source::File);
        }
        // A regular file; a FIFO or device is refused by name (never opened).
        safe_file::check(path).map_err(Error::File)?;
        return Ok(Source::File(path.to_owned()));
    }
    if let Some(m) = known(spec) {
        let id = HubId::parse(m.hub_id).ok_or_else(|| unknown(spec))?;
        return Ok(Source::Hub(id));
    }
    if let Some(id) = HubId::parse(spec) {
        return Ok(Source::Hub(id));
    }
    Err(unknown(spec))
}

/// The weights file of a local folder.
fn weights_in(dir: &Path) -> Result<PathBuf> {
    for f in WEIGHT_FILES {
        let p = dir.join(f);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::NoWeightsInFolder {
        dir: dir.to_owned(),
        looked: WEIGHT_FILES.join(", "),
    })
}

fn unknown(spec: &str) -> Error {
    Error::UnknownModel {
        spec: spec.to_owned(),
        known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_map_to_hub_ids() {
        for (spec, repo) in [
            ("ViT-B-32", "timm/vit_base_patch32_clip_224.openai"),
            ("vit-b/32", "timm/vit_base_patch32_clip_224.openai"),
            ("RN50x64", "timm/resnet50x64_clip.openai"),
            ("siglip2-b-16", "google/siglip2-base-patch16-224"),
            ("cn-vit-b-16", "OFA-Sys/chinese-clip-vit-base-patch16"),
            ("vit-h-14", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
        ] {
            match resolve(spec).unwrap() {
                Source::Hub(id) => {
                    assert_eq!((id.repo.as_str(), id.revision.as_str()), (repo, "main"))
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
        match resolve("openai/clip-vit-base-patch32@abc").unwrap() {
            Source::Hub(id) => assert_eq!(id.revision, "abc"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_folders_and_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(err, Error::NoWeightsInFolder { .. }), "{err}");
        let w = dir.path().join("model.safetensors");
        std::fs::write(&w, b"x").unwrap();
        assert_eq!(
            resolve(dir.path().to_str().unwrap()).unwrap(),
            Source::File(w.clone())
        );
        assert_eq!(resolve(w.to_str().unwrap()).unwrap(), Source::File(w));
        let err = resolve("no/such/dir/x.safetensors").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ViT-B-32") && msg.contains("no/such/dir"),
            "{msg}"
        );
    }
}
