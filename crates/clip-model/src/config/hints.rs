//! [`ConfigHints`]: the values a config file beside the weights adds to what the tensors show.

use std::path::Path;

use serde_json::Value;

use super::{ClipConfig, HEAD_WIDTH, VisionConfig, json, mismatch};
use crate::error::{Error, Result};

/// Values read from a config file beside the weights; every field is optional.
///
/// Sizes are checked against the tensors; head counts and the activation are taken from here
/// because the tensors cannot show them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigHints {
    /// Where the values came from (for messages).
    pub source: String,
    /// `quick_gelu` (open_clip) / `hidden_act == "quick_gelu"` (transformers).
    pub quick_gelu: Option<bool>,
    /// Attention heads of the image tower.
    pub vision_heads: Option<usize>,
    /// Attention heads of the text tower.
    pub text_heads: Option<usize>,
    /// `(field, value)` pairs to check against the inferred config, e.g. `("vision.layers", 12)`.
    pub checks: Vec<(String, usize)>,
}

impl ConfigHints {
    /// Reads `open_clip_config.json` (with or without its `model_cfg` wrapper) or a Hugging Face
    /// CLIP `config.json`, told apart by their keys.
    pub fn from_file(path: &Path) -> Result<Self> {
        let v = super::json::read_json(path)?;
        Self::from_json(&v, &path.display().to_string())
    }

    /// Reads hints from parsed JSON; `source` names it in messages (and is the `path` of an
    /// [`Error::Config`] for a value of the wrong kind or an unsupported setting).
    pub fn from_json(v: &Value, source: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            path: source.into(),
            reason,
        };
        let mut h = ConfigHints {
            source: source.to_string(),
            ..Self::default()
        };
        let uint = |v: &Value, key: &str| json::uint(v, key).map_err(bad);
        let checks = |h: &mut ConfigHints, rows: &[(&'static str, &Value, &str)]| {
            json::push_checks(&mut h.checks, rows).map_err(bad)
        };
        if let Some(vision) = v.get("vision_config") {
            // Hugging Face transformers CLIPConfig.
            let text = v.get("text_config").unwrap_or(&Value::Null);
            let act = |c: &Value| {
                c.get("hidden_act")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            h.quick_gelu = match act(text).or_else(|| act(vision)).as_deref() {
                Some("quick_gelu") => Some(true),
                Some("gelu") => Some(false),
                Some(other) => return Err(bad(format!("unsupported hidden_act `{other}`"))),
                None => Some(true),
            };
            h.vision_heads = uint(vision, "num_attention_heads")?;
            h.text_heads = uint(text, "num_attention_heads")?;
            checks(
                &mut h,
                &[
                    ("embed_dim", v, "projection_dim"),
                    ("vision.width", vision, "hidden_size"),
                    ("vision.layers", vision, "num_hidden_layers"),
                    ("vision.image_size", vision, "image_size"),
                    ("vision.patch_size", vision, "patch_size"),
                    ("vision.mlp_width", vision, "intermediate_size"),
                    ("text.width", text, "hidden_size"),
                    ("text.layers", text, "num_hidden_layers"),
                    ("text.context_length", text, "max_position_embeddings"),
                    ("text.vocab_size", text, "vocab_size"),
                    ("text.mlp_width", text, "intermediate_size"),
                ],
            )?;
            return Ok(h);
        }
        // open_clip: the hub's open_clip_config.json wraps the model config in `model_cfg`.
        let m = v.get("model_cfg").unwrap_or(v);
        let vision = m.get("vision_cfg").ok_or_else(|| {
            bad("no `vision_cfg` (open_clip) or `vision_config` (transformers)".into())
        })?;
        let text = m.get("text_cfg").unwrap_or(&Value::Null);
        // open_clip builds exact GELU unless `quick_gelu` is true.
        h.quick_gelu = Some(
            m.get("quick_gelu")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
        let resnet = vision.get("layers").is_some_and(Value::is_array);
        if resnet {
            // ModifiedResNet: the tower's sizes are read from the tensors (heads = width * 32 / 64).
            if let Some(width) = uint(vision, "width")? {
                h.checks.push(("vision.width".into(), width));
            }
        } else if let Some(width) = uint(vision, "width")? {
            let head_width = uint(vision, "head_width")?.unwrap_or(HEAD_WIDTH);
            if head_width == 0 || width % head_width != 0 {
                return Err(bad(format!(
                    "vision width {width} is not a multiple of head_width {head_width}"
                )));
            }
            h.vision_heads = Some(width / head_width);
            h.checks.push(("vision.width".into(), width));
            if let Some(r) = vision.get("mlp_ratio").and_then(Value::as_f64) {
                h.checks
                    .push(("vision.mlp_width".into(), (width as f64 * r) as usize));
            }
        }
        if let Some(width) = uint(text, "width")? {
            h.checks.push(("text.width".into(), width));
            h.text_heads = Some(uint(text, "heads")?.unwrap_or(8));
            if let Some(r) = text.get("mlp_ratio").and_then(Value::as_f64) {
                h.checks
                    .push(("text.mlp_width".into(), (width as f64 * r) as usize));
            }
        } else {
            h.text_heads = uint(text, "heads")?;
        }
        checks(
            &mut h,
            &[
                ("embed_dim", m, "embed_dim"),
                ("vision.image_size", vision, "image_size"),
                ("vision.patch_size", vision, "patch_size"),
                ("text.layers", text, "layers"),
                ("text.context_length", text, "context_length"),
                ("text.vocab_size", text, "vocab_size"),
            ],
        )?;
        if !resnet && let Some(n) = uint(vision, "layers")? {
            h.checks.push(("vision.layers".into(), n));
        }
        Ok(h)
    }

    /// Checks the size fields against an inferred config.
    pub(super) fn check(&self, cfg: &ClipConfig) -> Result<()> {
        for (field, value) in &self.checks {
            let vit = match cfg.vision {
                VisionConfig::Vit(v) => Some(v),
                VisionConfig::ModifiedResNet(_) | VisionConfig::Siglip(_) => None,
            };
            let actual = match (field.as_str(), vit) {
                ("embed_dim", _) => cfg.embed_dim,
                ("vision.image_size", _) => cfg.vision.image_size(),
                ("vision.width", Some(v)) => v.width,
                ("vision.layers", Some(v)) => v.layers,
                ("vision.patch_size", Some(v)) => v.patch_size,
                ("vision.mlp_width", Some(v)) => v.mlp_width,
                ("vision.width", None) => match cfg.vision {
                    VisionConfig::ModifiedResNet(r) => r.width,
                    VisionConfig::Vit(v) => v.width,
                    VisionConfig::Siglip(v) => v.width,
                },
                ("text.width", _) => cfg.text.width,
                ("text.layers", _) => cfg.text.layers,
                ("text.context_length", _) => cfg.text.context_length,
                ("text.vocab_size", _) => cfg.text.vocab_size,
                ("text.mlp_width", _) => cfg.text.mlp_width,
                _ => continue,
            };
            if actual != *value {
                return Err(mismatch(&self.source, field, value, actual));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_config_hints() {
        let v: Value = serde_json::json!({"model_cfg": {"embed_dim": 512, "quick_gelu": true,
            "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}});
        let h = ConfigHints::from_json(&v, "x").unwrap();
        assert_eq!(
            (h.quick_gelu, h.vision_heads, h.text_heads),
            (Some(true), Some(12), Some(8))
        );
        h.check(&ClipConfig::vit_b_32()).unwrap();
        let no_quick: Value = serde_json::json!({"vision_cfg": {"width": 64}});
        assert_eq!(
            ConfigHints::from_json(&no_quick, "x").unwrap().quick_gelu,
            Some(false)
        );
        let rn: Value = serde_json::json!({"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 64}});
        let h = ConfigHints::from_json(&rn, "x").unwrap();
        h.check(&ClipConfig::preset("RN50").unwrap()).unwrap();
    }

    #[test]
    fn bad_values_are_config_errors_naming_the_source() {
        for (json, needle) in [
            (
                serde_json::json!({"vision_cfg": {"width": -3}}),
                "`width` is -3",
            ),
            (serde_json::json!({"text_cfg": {}}), "no `vision_cfg`"),
            (
                serde_json::json!({"vision_config": {}, "text_config": {"hidden_act": "relu"}}),
                "unsupported hidden_act `relu`",
            ),
        ] {
            match ConfigHints::from_json(&json, "cfg.json") {
                Err(Error::Config { path, reason }) => {
                    assert_eq!(path, std::path::Path::new("cfg.json"));
                    assert!(reason.contains(needle), "{reason}");
                }
                other => panic!("{json}: expected Error::Config, got {other:?}"),
            }
        }
    }
}
