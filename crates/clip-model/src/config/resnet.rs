//! The ModifiedResNet image tower's architecture: [`ResNetConfig`], OpenAI's presets, and
//! inference from tensor shapes.

use candle_nn::VarBuilder;

use super::HEAD_WIDTH;
use crate::error::{Error, Result};
use crate::weights::join_name;

/// Tensors every bottleneck block has besides `conv1.weight`.
const BLOCK_TENSORS: [&str; 8] = [
    "bn1.weight",
    "bn1.running_var",
    "conv2.weight",
    "bn2.weight",
    "bn2.running_var",
    "conv3.weight",
    "bn3.weight",
    "bn3.running_var",
];

/// Architecture of a ModifiedResNet image tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Input image side in pixels (square); a multiple of 32.
    pub image_size: usize,
    /// Bottleneck blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Stem width (channels after the stem); stage `i` has `width * 2^i` inner channels.
    pub width: usize,
    /// Dimension of the image embedding (output of `attnpool.c_proj`).
    pub output_dim: usize,
    /// Attention heads of the pool.
    pub heads: usize,
}

impl ResNetConfig {
    /// A config with open_clip's head rule (`heads = width * 32 / 64`).
    pub fn new(image_size: usize, layers: [usize; 4], width: usize, output_dim: usize) -> Self {
        Self {
            image_size,
            layers,
            width,
            output_dim,
            heads: width * 32 / HEAD_WIDTH,
        }
    }

    /// OpenAI's RN50: 224 px, 1024-d embedding.
    pub fn rn50() -> Self {
        Self::new(224, [3, 4, 6, 3], 64, 1024)
    }

    /// OpenAI's RN101: 224 px, 512-d embedding.
    pub fn rn101() -> Self {
        Self::new(224, [3, 4, 23, 3], 64, 512)
    }

    /// OpenAI's RN50x4: 288 px, 640-d embedding.
    pub fn rn50x4() -> Self {
        Self::new(288, [4, 6, 10, 6], 80, 640)
    }

    /// OpenAI's RN50x16: 384 px, 768-d embedding.
    pub fn rn50x16() -> Self {
        Self::new(384, [6, 8, 18, 8], 96, 768)
    }

    /// OpenAI's RN50x64: 448 px, 1024-d embedding.
    pub fn rn50x64() -> Self {
        Self::new(448, [3, 15, 36, 10], 128, 1024)
    }

    /// The named presets, as `(name, config)`; names as OpenAI spells them.
    pub fn presets() -> [(&'static str, Self); 5] {
        [
            ("RN50", Self::rn50()),
            ("RN101", Self::rn101()),
            ("RN50x4", Self::rn50x4()),
            ("RN50x16", Self::rn50x16()),
            ("RN50x64", Self::rn50x64()),
        ]
    }

    /// The preset of that name (case-insensitive, `-` and `_` ignored: `rn50x64`, `RN50x64`, `RN-50`).
    pub fn preset(name: &str) -> Option<Self> {
        let key: String = name
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::presets()
            .into_iter()
            .find(|(n, _)| n.to_ascii_lowercase() == key)
            .map(|(_, c)| c)
    }

    /// The name of the preset equal to this config, if any.
    pub fn preset_name(&self) -> Option<&'static str> {
        Self::presets()
            .into_iter()
            .find(|(_, c)| c == self)
            .map(|(n, _)| n)
    }

    /// Channels entering the attention pool (`width * 32`).
    pub fn embed_dim(&self) -> usize {
        self.width * 32
    }

    /// Side of the final feature map (`image_size / 32`).
    pub fn grid_size(&self) -> usize {
        self.image_size / 32
    }

    /// Reads the architecture from tensor shapes.
    ///
    /// `prefix` is the tower's name prefix in the file (`"visual"` for open_clip / OpenAI files, `""` when the
    /// names start at the tower); `shape_of` returns the shape of a tensor by its full name, or `None` when the
    /// file lacks it. Heads follow open_clip's rule (64 channels per head).
    pub fn infer(prefix: &str, shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self> {
        let full = |name: &str| join_name(prefix, name);
        let get = |name: &str| -> Result<Vec<usize>> {
            let n = full(name);
            shape_of(&n).ok_or(Error::MissingTensor {
                name: n,
                path: None,
            })
        };
        let rank = |name: &str, shape: &[usize], rank: usize| -> Result<()> {
            if shape.len() == rank {
                Ok(())
            } else {
                Err(Error::Architecture(format!(
                    "`{}` has shape {shape:?}, expected a rank-{rank} tensor",
                    full(name)
                )))
            }
        };

        let stem = get("conv3.weight")?;
        rank("conv3.weight", &stem, 4)?;
        let width = stem[0];
        if width == 0 || !width.is_multiple_of(2) {
            return Err(Error::Architecture(format!(
                "`{}` has shape {stem:?}: the stem width must be even and non-zero",
                full("conv3.weight")
            )));
        }

        let mut layers = [0usize; 4];
        for (i, count) in layers.iter_mut().enumerate() {
            let block = |j: usize, t: &str| full(&format!("layer{}.{j}.{t}", i + 1));
            while shape_of(&block(*count, "conv1.weight")).is_some() {
                *count += 1;
            }
            // A block that lacks `conv1.weight` but has other tensors, or is followed by more
            // blocks, is a gap in the file, not the end of the stage.
            let more = BLOCK_TENSORS
                .iter()
                .any(|t| shape_of(&block(*count, t)).is_some())
                || shape_of(&block(*count + 1, "conv1.weight")).is_some();
            if *count == 0 || more {
                return Err(Error::MissingTensor {
                    name: block(*count, "conv1.weight"),
                    path: None,
                });
            }
        }

        let pos_name = "attnpool.positional_embedding";
        let pos = get(pos_name)?;
        rank(pos_name, &pos, 2)?;
        let embed = width * 32;
        if pos[1] != embed {
            return Err(Error::ShapeMismatch {
                name: full(pos_name),
                expected: vec![pos[0], embed],
                found: pos,
            });
        }
        let tokens = pos[0];
        let grid = (tokens.saturating_sub(1) as f64).sqrt().round() as usize;
        if grid == 0 || grid * grid + 1 != tokens {
            return Err(Error::Architecture(format!(
                "`{}` has {tokens} rows; a ModifiedResNet needs (image_size / 32)^2 + 1",
                full(pos_name)
            )));
        }

        let c_proj = get("attnpool.c_proj.weight")?;
        rank("attnpool.c_proj.weight", &c_proj, 2)?;
        if c_proj[1] != embed {
            return Err(Error::ShapeMismatch {
                name: full("attnpool.c_proj.weight"),
                expected: vec![c_proj[0], embed],
                found: c_proj,
            });
        }
        if !embed.is_multiple_of(HEAD_WIDTH) {
            return Err(Error::Architecture(format!(
                "pool width {embed} is not a multiple of the head width {HEAD_WIDTH}"
            )));
        }
        Ok(Self::new(grid * 32, layers, width, c_proj[0]))
    }

    /// Reads the architecture from the tensors reachable through `vb` (already pointed at the tower).
    ///
    /// Loads the few small tensors it looks at; prefer [`ResNetConfig::infer`] with the file's shape table.
    pub fn infer_from_var_builder(vb: &VarBuilder) -> Result<Self> {
        Self::infer("", |name| {
            if vb.contains_tensor(name) {
                vb.get_unchecked(name).ok().map(|t| t.dims().to_vec())
            } else {
                None
            }
        })
        .map_err(|e| prefix_names(e, &vb.prefix()))
    }

    /// Checks this (inferred) config against a named preset; a difference names the field.
    pub fn check_against(&self, preset_name: &str, preset: &Self) -> Result<()> {
        let fields: [(&str, String, String); 5] = [
            (
                "vision.image_size",
                preset.image_size.to_string(),
                self.image_size.to_string(),
            ),
            (
                "vision.layers",
                format!("{:?}", preset.layers),
                format!("{:?}", self.layers),
            ),
            (
                "vision.width",
                preset.width.to_string(),
                self.width.to_string(),
            ),
            (
                "embed_dim",
                preset.output_dim.to_string(),
                self.output_dim.to_string(),
            ),
            (
                "vision.heads",
                preset.heads.to_string(),
                self.heads.to_string(),
            ),
        ];
        for (field, config, weights) in fields {
            if config != weights {
                return Err(Error::ConfigMismatch {
                    source_name: preset_name.to_string(),
                    field: field.to_string(),
                    config,
                    weights,
                });
            }
        }
        Ok(())
    }
}

fn prefix_names(e: Error, prefix: &str) -> Error {
    match e {
        Error::MissingTensor { name, path } => Error::MissingTensor {
            name: join_name(prefix, &name),
            path,
        },
        Error::ShapeMismatch {
            name,
            expected,
            found,
        } => Error::ShapeMismatch {
            name: join_name(prefix, &name),
            expected,
            found,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_open_clip_configs() {
        // open_clip model_configs/RN*.json: image_size, layers, width, embed_dim; heads = width * 32 // 64.
        let rn50 = ResNetConfig::rn50();
        assert_eq!(
            (
                rn50.image_size,
                rn50.layers,
                rn50.width,
                rn50.output_dim,
                rn50.heads
            ),
            (224, [3, 4, 6, 3], 64, 1024, 32)
        );
        let x64 = ResNetConfig::rn50x64();
        assert_eq!(
            (
                x64.image_size,
                x64.layers,
                x64.width,
                x64.output_dim,
                x64.heads
            ),
            (448, [3, 15, 36, 10], 128, 1024, 64)
        );
        assert_eq!(
            ResNetConfig::preset("rn50x16"),
            Some(ResNetConfig::rn50x16())
        );
        assert_eq!(ResNetConfig::preset("RN-101"), Some(ResNetConfig::rn101()));
        assert_eq!(ResNetConfig::preset("vit-b-32"), None);
        assert_eq!(ResNetConfig::rn50x4().preset_name(), Some("RN50x4"));
    }
}
