//! SigLIP's two checkpoint namings seen through the internal names of [`crate::siglip`]:
//! transformers' `SiglipModel` ([`hf_source`]) and open_clip's timm tower ([`timm_source`]).

use super::{Source, Weights};

/// Whether a weights file holds a SigLIP model (its MAP head), in either naming.
pub(crate) fn is_siglip(weights: &Weights) -> bool {
    weights.contains("visual.map_head.probe")
}

/// The file name for an internal SigLIP name in transformers' `SiglipModel` naming, for the
/// names the CLIP mapping does not cover.
pub(crate) fn hf_source(name: &str) -> Option<Source> {
    let same = |s: &str| Some(Source::Same(s.to_string()));
    match name {
        "visual.conv1.bias" => same("vision_model.embeddings.patch_embedding.bias"),
        "logit_bias" => same("logit_bias"),
        "visual.map_head.probe" => same("vision_model.head.probe"),
        "visual.map_head.in_proj_weight" => same("vision_model.head.attention.in_proj_weight"),
        "visual.map_head.in_proj_bias" => same("vision_model.head.attention.in_proj_bias"),
        _ => {
            if let Some(param) = name.strip_prefix("text_head.") {
                return Some(Source::Same(format!("text_model.head.{param}")));
            }
            let rest = name.strip_prefix("visual.map_head.")?;
            let (module, param) = rest.rsplit_once('.')?;
            let hf = match module {
                "out_proj" => "attention.out_proj",
                "ln" => "layernorm",
                "mlp.c_fc" => "mlp.fc1",
                "mlp.c_proj" => "mlp.fc2",
                _ => return None,
            };
            Some(Source::Same(format!("vision_model.head.{hf}.{param}")))
        }
    }
}

/// The file name for an internal name in open_clip's SigLIP naming: a timm image tower under
/// `visual.trunk.`, open_clip's text tower under `text.`.
pub(crate) fn timm_source(name: &str) -> Option<Source> {
    let same = |s: String| Some(Source::Same(s));
    if let Some(rest) = name.strip_prefix("visual.") {
        if let Some(rest) = rest.strip_prefix("transformer.resblocks.") {
            let (layer, leaf) = rest.split_once('.')?;
            let p = format!("visual.trunk.blocks.{layer}");
            return match leaf {
                "attn.in_proj_weight" => same(format!("{p}.attn.qkv.weight")),
                "attn.in_proj_bias" => same(format!("{p}.attn.qkv.bias")),
                _ => {
                    let (module, param) = leaf.rsplit_once('.')?;
                    let timm = match module {
                        "ln_1" => "norm1",
                        "ln_2" => "norm2",
                        "attn.out_proj" => "attn.proj",
                        "mlp.c_fc" => "mlp.fc1",
                        "mlp.c_proj" => "mlp.fc2",
                        _ => return None,
                    };
                    same(format!("{p}.{timm}.{param}"))
                }
            };
        }
        return match rest {
            "conv1.weight" => same("visual.trunk.patch_embed.proj.weight".into()),
            "conv1.bias" => same("visual.trunk.patch_embed.proj.bias".into()),
            "positional_embedding" => Some(Source::Squeezed("visual.trunk.pos_embed".into())),
            "map_head.probe" => same("visual.trunk.attn_pool.latent".into()),
            "map_head.in_proj_weight" | "map_head.in_proj_bias" => {
                let kind = if rest.ends_with("weight") {
                    "weight"
                } else {
                    "bias"
                };
                Some(Source::QueryKeyValue(
                    format!("visual.trunk.attn_pool.q.{kind}"),
                    format!("visual.trunk.attn_pool.kv.{kind}"),
                ))
            }
            _ => {
                let (module, param) = rest.rsplit_once('.')?;
                let timm = match module {
                    "ln_post" => "norm",
                    "map_head.out_proj" => "attn_pool.proj",
                    "map_head.ln" => "attn_pool.norm",
                    "map_head.mlp.c_fc" => "attn_pool.mlp.fc1",
                    "map_head.mlp.c_proj" => "attn_pool.mlp.fc2",
                    _ => return None,
                };
                same(format!("visual.trunk.{timm}.{param}"))
            }
        };
    }
    match name {
        "logit_scale" | "logit_bias" => same(name.into()),
        _ => {
            if let Some(param) = name.strip_prefix("text_head.") {
                return same(format!("text.text_projection.{param}"));
            }
            if name.starts_with("transformer.resblocks.")
                || name.starts_with("ln_final.")
                || name == "token_embedding.weight"
                || name == "positional_embedding"
            {
                return same(format!("text.{name}"));
            }
            None
        }
    }
}

/// The file prefix of the internal block prefixes in open_clip's SigLIP naming.
pub(crate) fn timm_block_prefix(prefix: &str) -> &str {
    match prefix {
        "visual.transformer.resblocks" => "visual.trunk.blocks",
        "transformer.resblocks" => "text.transformer.resblocks",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_in_both_namings() {
        let cases = [
            (
                "visual.map_head.mlp.c_fc.weight",
                "vision_model.head.mlp.fc1.weight",
                "visual.trunk.attn_pool.mlp.fc1.weight",
            ),
            (
                "visual.map_head.out_proj.bias",
                "vision_model.head.attention.out_proj.bias",
                "visual.trunk.attn_pool.proj.bias",
            ),
            (
                "text_head.weight",
                "text_model.head.weight",
                "text.text_projection.weight",
            ),
            (
                "visual.conv1.bias",
                "vision_model.embeddings.patch_embedding.bias",
                "visual.trunk.patch_embed.proj.bias",
            ),
        ];
        for (internal, hf, timm) in cases {
            assert_eq!(
                hf_source(internal),
                Some(Source::Same(hf.into())),
                "{internal}"
            );
            assert_eq!(
                timm_source(internal),
                Some(Source::Same(timm.into())),
                "{internal}"
            );
        }
        assert_eq!(
            timm_source("visual.transformer.resblocks.3.attn.in_proj_weight"),
            Some(Source::Same("visual.trunk.blocks.3.attn.qkv.weight".into()))
        );
        assert_eq!(
            timm_source("transformer.resblocks.0.mlp.c_proj.bias"),
            Some(Source::Same(
                "text.transformer.resblocks.0.mlp.c_proj.bias".into()
            ))
        );
        assert_eq!(
            timm_source("visual.positional_embedding"),
            Some(Source::Squeezed("visual.trunk.pos_embed".into()))
        );
        assert_eq!(timm_source("visual.class_embedding"), None);
    }
}
