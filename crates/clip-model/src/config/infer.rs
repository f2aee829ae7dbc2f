//! [`ClipConfig::infer`]: the architecture read from the tensor shapes of a weights file.

use super::{
    Activation, ClipConfig, ConfigHints, HEAD_WIDTH, ResNetConfig, TextConfig, VisionConfig,
    VitConfig, mismatch,
};
use crate::error::{Error, Result};
use crate::weights::Weights;

impl ClipConfig {
    /// Reads the architecture from the tensor shapes of `weights`, taking head counts and the
    /// activation from `hints` (a config file) where given and checking its other values.
    ///
    /// Without hints: `heads = width / 64` and QuickGELU (OpenAI weights).
    pub fn infer(weights: &Weights, hints: Option<&ConfigHints>) -> Result<Self> {
        let dims = |name: &str, rank: usize| weights.require_rank(name, rank);
        let empty = ConfigHints::default();
        let h = hints.unwrap_or(&empty);

        // Image tower: a ModifiedResNet has `visual.layer1…` and an attention pool.
        let (vision, embed_dim) = if weights.contains("visual.layer1.0.conv1.weight")
            || weights.contains("visual.attnpool.c_proj.weight")
        {
            let rn = ResNetConfig::infer("visual", |n| weights.shape(n))?;
            (VisionConfig::ModifiedResNet(rn), rn.output_dim)
        } else {
            let (v, e) = Self::infer_vit(weights, h, &dims)?;
            (VisionConfig::Vit(v), e)
        };
        let text = Self::infer_text(weights, h, &dims)?;
        let activation = match h.quick_gelu {
            Some(false) => Activation::Gelu,
            _ => Activation::QuickGelu,
        };
        let cfg = Self {
            embed_dim,
            vision,
            text,
            activation,
        };
        h.check(&cfg)?;
        Ok(cfg)
    }

    pub(crate) fn infer_vit(
        weights: &Weights,
        h: &ConfigHints,
        dims: &dyn Fn(&str, usize) -> Result<Vec<usize>>,
    ) -> Result<(VitConfig, usize)> {
        let conv = dims("visual.conv1.weight", 4)?;
        let (width, in_ch, patch, patch_w) = (conv[0], conv[1], conv[2], conv[3]);
        if in_ch != 3 || patch != patch_w {
            return Err(Error::ShapeMismatch {
                name: weights.file_name("visual.conv1.weight"),
                expected: vec![width, 3, patch, patch],
                found: conv,
            });
        }
        let pos = dims("visual.positional_embedding", 2)?;
        let tokens = pos[0];
        let grid = (1..=tokens).find(|g| g * g + 1 >= tokens).unwrap_or(0);
        if grid * grid + 1 != tokens || pos[1] != width {
            return Err(Error::Architecture(format!(
                "`{}` has shape {pos:?}: expected [grid² + 1, {width}] for a square patch grid",
                weights.file_name("visual.positional_embedding")
            )));
        }
        let vlayers = count_layers(weights, "visual.transformer.resblocks");
        let vmlp = if vlayers > 0 {
            dims("visual.transformer.resblocks.0.mlp.c_fc.weight", 2)?[0]
        } else {
            4 * width
        };
        let vproj = dims("visual.proj", 2)?;
        let embed_dim = vproj[1];
        let vheads = heads_for(h.vision_heads, width, "vision", h)?;
        let vision = VitConfig {
            image_size: grid * patch,
            patch_size: patch,
            width,
            layers: vlayers,
            heads: vheads,
            mlp_width: vmlp,
        };
        Ok((vision, embed_dim))
    }

    fn infer_text(
        weights: &Weights,
        h: &ConfigHints,
        dims: &dyn Fn(&str, usize) -> Result<Vec<usize>>,
    ) -> Result<TextConfig> {
        let tok = dims("token_embedding.weight", 2)?;
        let (vocab_size, twidth) = (tok[0], tok[1]);
        let tpos = dims("positional_embedding", 2)?;
        let tlayers = count_layers(weights, "transformer.resblocks");
        let tmlp = if tlayers > 0 {
            dims("transformer.resblocks.0.mlp.c_fc.weight", 2)?[0]
        } else {
            4 * twidth
        };
        let theads = heads_for(h.text_heads, twidth, "text", h)?;
        let text = TextConfig {
            context_length: tpos[0],
            vocab_size,
            width: twidth,
            layers: tlayers,
            heads: theads,
            mlp_width: tmlp,
        };
        Ok(text)
    }
}

/// Number of residual blocks under `prefix` (see [`Weights::block_count`]).
fn count_layers(weights: &Weights, prefix: &str) -> usize {
    weights.block_count(prefix)
}

fn heads_for(hint: Option<usize>, width: usize, tower: &str, h: &ConfigHints) -> Result<usize> {
    match hint {
        Some(0) => Err(mismatch(
            &h.source,
            &format!("{tower}.heads"),
            0,
            "at least 1",
        )),
        Some(heads) if !width.is_multiple_of(heads) => Err(mismatch(
            &h.source,
            &format!("{tower}.heads"),
            heads,
            format!("a divisor of the width {width}"),
        )),
        Some(heads) => Ok(heads),
        None => {
            let rule = if tower == "vision" {
                super::default_vision_heads(width)
            } else {
                (width > 0 && width.is_multiple_of(HEAD_WIDTH)).then_some(width / HEAD_WIDTH)
            };
            rule.ok_or_else(|| {
                Error::Architecture(format!(
                    "the {tower} width {width} is not a multiple of {HEAD_WIDTH}, so the attention head \
                     count cannot be inferred; put an open_clip_config.json giving it beside the weights"
                ))
            })
        }
    }
}
