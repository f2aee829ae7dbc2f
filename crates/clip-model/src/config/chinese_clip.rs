//! Chinese-CLIP (OFA-Sys): architecture, presets, and inference from the tensors of a file.
//!
//! A Chinese-CLIP model is OpenAI's image tower (ViT, or ModifiedResNet for RN50; QuickGELU) with a
//! BERT text tower ([`crate::nn::text_bert::BertTextTower`]). Two checkpoint namings load:
//!
//! - cn_clip's own (`visual.…` as OpenAI, `bert.embeddings.…`, `bert.encoder.layer.N.…`,
//!   `text_projection` `[width, embed_dim]`, `logit_scale`), as in its `.pt` checkpoints converted
//!   to safetensors (`tools/reference/cn_clip_parity.py convert`; a `module.` prefix is removed
//!   there, and `bert.pooler.*` is ignored);
//! - transformers' `ChineseCLIPModel` (`vision_model.…`, `text_model.embeddings.…`,
//!   `text_model.encoder.layer.N.…`, `text_projection.weight` `[embed_dim, width]`,
//!   `visual_projection.weight`), as in the hub repositories `OFA-Sys/chinese-clip-vit-*`.
//!
//! Sizes come from the tensors. Attention head counts cannot be seen there: they are taken from a
//! config file beside the weights (transformers' `config.json`, or a cn_clip model config: the
//! vision JSON merged with the text JSON of `cn_clip/clip/model_configs`), else from the preset
//! with the same widths (ViT-H/14: 16 heads of 80), else `width / 64`.

use std::path::Path;

use serde_json::Value;

use crate::config::{ClipConfig, ConfigHints, ResNetConfig, TextConfig, VisionConfig, VitConfig};
use crate::error::{Error, Result};
use crate::tokenizer::CN_CONTEXT_LENGTH;
use crate::weights::Weights;

/// The tensor whose presence marks a Chinese-CLIP checkpoint (cn_clip naming; transformers'
/// `text_model.embeddings.word_embeddings.weight` is seen under this name too).
pub const CHINESE_CLIP_MARKER: &str = "bert.embeddings.word_embeddings.weight";

/// A Chinese-CLIP model's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChineseClipConfig {
    /// Dimension of the joint embedding space.
    pub embed_dim: usize,
    /// The image tower (QuickGELU).
    pub vision: VisionConfig,
    /// The BERT text tower.
    pub text: BertConfig,
    /// Tokens per text the tokenizer makes (52 for every published model).
    pub context_length: usize,
}

fn vit(
    image_size: usize,
    patch_size: usize,
    width: usize,
    layers: usize,
    head_width: usize,
) -> VisionConfig {
    VisionConfig::Vit(VitConfig {
        image_size,
        patch_size,
        width,
        layers,
        heads: width / head_width,
        mlp_width: 4 * width,
    })
}

impl ChineseClipConfig {
    fn new(embed_dim: usize, vision: VisionConfig, text: BertConfig) -> Self {
        Self {
            embed_dim,
            vision,
            text,
            context_length: CN_CONTEXT_LENGTH,
        }
    }

    /// The published models, as `(name, config)`: cn_clip's `RN50@RBT3-chinese`,
    /// `ViT-B-16@RoBERTa-wwm-ext-base-chinese`, `ViT-L-14@…base…`, `ViT-L-14-336@…base…`,
    /// `ViT-H-14@RoBERTa-wwm-ext-large-chinese`.
    pub fn presets() -> Vec<(&'static str, Self)> {
        vec![
            (
                "CN-CLIP RN50",
                Self::new(
                    1024,
                    VisionConfig::ModifiedResNet(ResNetConfig::rn50()),
                    BertConfig::rbt3(),
                ),
            ),
            (
                "CN-CLIP ViT-B/16",
                Self::new(
                    512,
                    vit(224, 16, 768, 12, 64),
                    BertConfig::roberta_wwm_ext_base(),
                ),
            ),
            (
                "CN-CLIP ViT-L/14",
                Self::new(
                    768,
                    vit(224, 14, 1024, 24, 64),
                    BertConfig::roberta_wwm_ext_base(),
                ),
            ),
            (
                "CN-CLIP ViT-L/14@336",
                Self::new(
                    768,
                    vit(336, 14, 1024, 24, 64),
                    BertConfig::roberta_wwm_ext_base(),
                ),
            ),
            (
                "CN-CLIP ViT-H/14",
                Self::new(
                    1024,
                    vit(224, 14, 1280, 32, 80),
                    BertConfig::roberta_wwm_ext_large(),
                ),
            ),
        ]
    }

    /// A preset by name; case, `/`, `-`, `@`, `_` and spaces are ignored, and the `CN-CLIP` prefix
    /// may be written `cn-clip-` (`"cn-clip-vit-b-16"`).
    pub fn preset(name: &str) -> Option<Self> {
        super::preset_named(Self::presets(), name)
    }

    /// The name of the preset this config equals, if any.
    pub fn preset_name(&self) -> Option<&'static str> {
        super::name_of_preset(Self::presets(), self)
    }

    /// The preset name, or `"custom"`.
    pub fn name(&self) -> &'static str {
        self.preset_name().unwrap_or("custom")
    }

    /// The model as a [`ClipConfig`] for callers that read sizes from it: the image tower as it
    /// is, the text fields from the BERT tower (`context_length` is the tokenizer's 52).
    pub fn clip_config(&self) -> ClipConfig {
        ClipConfig {
            embed_dim: self.embed_dim,
            vision: self.vision,
            text: TextConfig {
                context_length: self.context_length,
                vocab_size: self.text.vocab_size,
                width: self.text.width,
                layers: self.text.layers,
                heads: self.text.heads,
                mlp_width: self.text.mlp_width,
            },
            activation: crate::Activation::QuickGelu,
        }
    }

    /// Every tensor with its shape, by cn_clip name (a ViT image tower's included; for a
    /// ModifiedResNet only the text tower and `logit_scale`).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = self
            .clip_config()
            .tensor_shapes()
            .into_iter()
            .filter(|(n, _)| n.starts_with("visual.") || n == "logit_scale")
            .collect();
        out.extend(self.text.tensor_shapes(self.embed_dim));
        out
    }

    /// Whether `weights` hold a Chinese-CLIP model (a BERT text tower).
    pub fn detect(weights: &Weights) -> bool {
        weights.contains(CHINESE_CLIP_MARKER)
    }

    /// Reads the architecture from the tensor shapes, head counts from `hints` (or the preset of
    /// the same widths, or `width / 64`), checking the hints' sizes.
    pub fn infer(weights: &Weights, hints: Option<&ChineseClipHints>) -> Result<Self> {
        let empty = ChineseClipHints::default();
        let h = hints.unwrap_or(&empty);
        let dims = |name: &str, rank: usize| weights.require_rank(name, rank);
        let (vision, embed_dim) = if weights.contains("visual.layer1.0.conv1.weight")
            || weights.contains("visual.attnpool.c_proj.weight")
        {
            let rn = ResNetConfig::infer("visual", |n| weights.shape(n))?;
            (VisionConfig::ModifiedResNet(rn), rn.output_dim)
        } else {
            let width = dims("visual.conv1.weight", 4)?[0];
            let heads = h.vision_heads.or_else(|| {
                Self::presets()
                    .into_iter()
                    .find_map(|(_, p)| match p.vision {
                        VisionConfig::Vit(v) if v.width == width => Some(v.heads),
                        _ => None,
                    })
            });
            let vhints = ConfigHints {
                source: h.source.clone(),
                vision_heads: heads,
                ..ConfigHints::default()
            };
            let (v, e) = ClipConfig::infer_vit(weights, &vhints, &dims)?;
            (VisionConfig::Vit(v), e)
        };
        let word = dims(CHINESE_CLIP_MARKER, 2)?;
        let (vocab_size, width) = (word[0], word[1]);
        let pos = dims("bert.embeddings.position_embeddings.weight", 2)?;
        let types = dims("bert.embeddings.token_type_embeddings.weight", 2)?;
        let layers = weights.block_count("bert.encoder.layer");
        let mlp_width = if layers > 0 {
            dims("bert.encoder.layer.0.intermediate.dense.weight", 2)?[0]
        } else {
            4 * width
        };
        let heads = match h.text_heads {
            Some(n) if n > 0 && width % n == 0 => n,
            Some(n) => {
                return Err(Error::ConfigMismatch {
                    source_name: h.source.clone(),
                    field: "text.heads".into(),
                    config: n.to_string(),
                    weights: format!("a divisor of the width {width}"),
                });
            }
            None if width % 64 == 0 => width / 64,
            None => {
                return Err(Error::Architecture(format!(
                    "the text width {width} is not a multiple of 64, so the attention head count \
                     cannot be inferred; put the model's config.json beside the weights"
                )));
            }
        };
        let proj = dims("text_projection", 2)?;
        if proj != [width, embed_dim] {
            return Err(Error::ShapeMismatch {
                name: weights.file_name("text_projection"),
                expected: vec![width, embed_dim],
                found: proj,
            });
        }
        let cfg = Self {
            embed_dim,
            vision,
            text: BertConfig {
                vocab_size,
                width,
                layers,
                heads,
                mlp_width,
                max_position_embeddings: pos[0],
                type_vocab_size: types[0],
            },
            context_length: h.context_length.unwrap_or(CN_CONTEXT_LENGTH),
        };
        h.check(&cfg)?;
        Ok(cfg)
    }

    /// Checks that `other` (e.g. a preset the user asked for) describes the same architecture.
    pub fn check_against(&self, source_name: &str, other: &Self) -> Result<()> {
        self.clip_config()
            .check_against(source_name, &other.clip_config())?;
        let fields = [
            (
                "text.max_position_embeddings",
                other.text.max_position_embeddings,
                self.text.max_position_embeddings,
            ),
            (
                "text.type_vocab_size",
                other.text.type_vocab_size,
                self.text.type_vocab_size,
            ),
        ];
        for (field, config, weights) in fields {
            if config != weights {
                return Err(Error::ConfigMismatch {
                    source_name: source_name.into(),
                    field: field.into(),
                    config: config.to_string(),
                    weights: weights.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Values read from a Chinese-CLIP config file; every field optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChineseClipHints {
    /// Where the values came from (for messages).
    pub source: String,
    /// Attention heads of a ViT image tower.
    pub vision_heads: Option<usize>,
    /// Attention heads of the BERT tower.
    pub text_heads: Option<usize>,
    /// Context length, when the file gives one.
    pub context_length: Option<usize>,
    /// `(field, value)` pairs checked against the tensors, e.g. `("text.layers", 12)`.
    pub checks: Vec<(String, usize)>,
}

impl ChineseClipHints {
    /// Reads transformers' `ChineseCLIPConfig` `config.json`, or a cn_clip model config (a vision
    /// JSON of `model_configs` merged with a text one).
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
        let uint = |v: &Value, key: &str| super::json::uint(v, key).map_err(bad);
        let checks = |h: &mut Self, rows: &[(&'static str, &Value, &str)]| {
            super::json::push_checks(&mut h.checks, rows).map_err(bad)
        };
        let mut h = Self {
            source: source.to_string(),
            ..Self::default()
        };
        let eps_ok = |c: &Value| match c.get("layer_norm_eps").and_then(Value::as_f64) {
            Some(e) if (e - BERT_LN_EPS).abs() > 1e-15 => Err(bad(format!(
                "text `layer_norm_eps` is {e}, only {BERT_LN_EPS} is supported"
            ))),
            _ => Ok(()),
        };
        if let Some(text) = v.get("text_config") {
            // transformers ChineseCLIPConfig.
            if let Some(t) = v.get("model_type").and_then(Value::as_str)
                && t != "chinese_clip"
            {
                return Err(bad(format!("model_type is `{t}`, expected `chinese_clip`")));
            }
            let vision = v.get("vision_config").unwrap_or(&Value::Null);
            for (c, tower) in [(text, "text"), (vision, "vision")] {
                let want = if tower == "text" {
                    "gelu"
                } else {
                    "quick_gelu"
                };
                if let Some(a) = c.get("hidden_act").and_then(Value::as_str)
                    && a != want
                {
                    return Err(bad(format!(
                        "{tower} `hidden_act` is `{a}`, expected `{want}`"
                    )));
                }
            }
            eps_ok(text)?;
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
                    ("text.mlp_width", text, "intermediate_size"),
                    ("text.vocab_size", text, "vocab_size"),
                    (
                        "text.max_position_embeddings",
                        text,
                        "max_position_embeddings",
                    ),
                    ("text.type_vocab_size", text, "type_vocab_size"),
                ],
            )?;
            return Ok(h);
        }
        if v.get("text_hidden_size").is_some() || v.get("vision_width").is_some() {
            // cn_clip model_configs (vision JSON + text JSON merged).
            if let Some(a) = v.get("text_hidden_act").and_then(Value::as_str)
                && a != "gelu"
            {
                return Err(bad(format!("`text_hidden_act` is `{a}`, expected `gelu`")));
            }
            let resnet = v.get("vision_layers").is_some_and(|l| {
                l.is_array() || l.as_str().is_some_and(|s| s.trim_start().starts_with('['))
            });
            if !resnet && let Some(w) = uint(v, "vision_width")? {
                let hw = uint(v, "vision_head_width")?.unwrap_or(64);
                if hw == 0 || w % hw != 0 {
                    return Err(bad(format!(
                        "vision_width {w} is not a multiple of vision_head_width {hw}"
                    )));
                }
                h.vision_heads = Some(w / hw);
                h.checks.push(("vision.width".into(), w));
                if let Some(n) = uint(v, "vision_layers")? {
                    h.checks.push(("vision.layers".into(), n));
                }
                if let Some(n) = uint(v, "vision_patch_size")? {
                    h.checks.push(("vision.patch_size".into(), n));
                }
            }
            h.text_heads = uint(v, "text_num_attention_heads")?;
            checks(
                &mut h,
                &[
                    ("embed_dim", v, "embed_dim"),
                    ("vision.image_size", v, "image_resolution"),
                    ("text.width", v, "text_hidden_size"),
                    ("text.layers", v, "text_num_hidden_layers"),
                    ("text.mlp_width", v, "text_intermediate_size"),
                    ("text.vocab_size", v, "vocab_size"),
                    (
                        "text.max_position_embeddings",
                        v,
                        "text_max_position_embeddings",
                    ),
                    ("text.type_vocab_size", v, "text_type_vocab_size"),
                ],
            )?;
            h.context_length = uint(v, "context_length")?;
            return Ok(h);
        }
        Err(bad(
            "neither a transformers ChineseCLIPConfig (`text_config`) nor a cn_clip model config \
             (`text_hidden_size`)"
                .into(),
        ))
    }

    fn check(&self, cfg: &ChineseClipConfig) -> Result<()> {
        let vit = match cfg.vision {
            VisionConfig::Vit(v) => Some(v),
            _ => None,
        };
        for (field, value) in &self.checks {
            let actual = match (field.as_str(), vit) {
                ("embed_dim", _) => cfg.embed_dim,
                ("vision.image_size", _) => cfg.vision.image_size(),
                ("vision.width", Some(v)) => v.width,
                ("vision.layers", Some(v)) => v.layers,
                ("vision.patch_size", Some(v)) => v.patch_size,
                ("vision.mlp_width", Some(v)) => v.mlp_width,
                ("text.width", _) => cfg.text.width,
                ("text.layers", _) => cfg.text.layers,
                ("text.mlp_width", _) => cfg.text.mlp_width,
                ("text.vocab_size", _) => cfg.text.vocab_size,
                ("text.max_position_embeddings", _) => cfg.text.max_position_embeddings,
                ("text.type_vocab_size", _) => cfg.text.type_vocab_size,
                _ => continue,
            };
            if actual != *value {
                return Err(Error::ConfigMismatch {
                    source_name: self.source.clone(),
                    field: field.clone(),
                    config: value.to_string(),
                    weights: actual.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Layer-norm ε of every BERT layer norm (cn_clip and transformers' Chinese-CLIP configs).
pub const BERT_LN_EPS: f64 = 1e-12;

/// A BERT encoder's architecture (the text tower of Chinese-CLIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BertConfig {
    /// Vocabulary size (21,128 for Chinese-CLIP).
    pub vocab_size: usize,
    /// Hidden width (`hidden_size`).
    pub width: usize,
    /// Encoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// Attention heads (`num_attention_heads`).
    pub heads: usize,
    /// Hidden width of each layer's feed-forward block (`intermediate_size`).
    pub mlp_width: usize,
    /// Rows of the position embedding: the longest text the tower takes (512).
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding (2).
    pub type_vocab_size: usize,
}

impl BertConfig {
    /// RoBERTa-wwm-ext-base-chinese (cn_clip's `RoBERTa-wwm-ext-base-chinese.json`).
    pub fn roberta_wwm_ext_base() -> Self {
        Self {
            vocab_size: 21128,
            width: 768,
            layers: 12,
            heads: 12,
            mlp_width: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
        }
    }

    /// RoBERTa-wwm-ext-large-chinese.
    pub fn roberta_wwm_ext_large() -> Self {
        Self {
            width: 1024,
            layers: 24,
            heads: 16,
            mlp_width: 4096,
            ..Self::roberta_wwm_ext_base()
        }
    }

    /// RBT3-chinese (3 layers of the base width).
    pub fn rbt3() -> Self {
        Self {
            layers: 3,
            ..Self::roberta_wwm_ext_base()
        }
    }

    /// Every tensor of the tower with its shape, by cn_clip name (`bert.…`), plus
    /// `text_projection` `[width, embed_dim]`.
    pub fn tensor_shapes(&self, embed_dim: usize) -> Vec<(String, Vec<usize>)> {
        let (w, m) = (self.width, self.mlp_width);
        let mut out = vec![
            (
                "bert.embeddings.word_embeddings.weight".into(),
                vec![self.vocab_size, w],
            ),
            (
                "bert.embeddings.position_embeddings.weight".into(),
                vec![self.max_position_embeddings, w],
            ),
            (
                "bert.embeddings.token_type_embeddings.weight".into(),
                vec![self.type_vocab_size, w],
            ),
            ("bert.embeddings.LayerNorm.weight".into(), vec![w]),
            ("bert.embeddings.LayerNorm.bias".into(), vec![w]),
        ];
        for i in 0..self.layers {
            let p = format!("bert.encoder.layer.{i}");
            for (name, shape) in [
                ("attention.self.query.weight", vec![w, w]),
                ("attention.self.query.bias", vec![w]),
                ("attention.self.key.weight", vec![w, w]),
                ("attention.self.key.bias", vec![w]),
                ("attention.self.value.weight", vec![w, w]),
                ("attention.self.value.bias", vec![w]),
                ("attention.output.dense.weight", vec![w, w]),
                ("attention.output.dense.bias", vec![w]),
                ("attention.output.LayerNorm.weight", vec![w]),
                ("attention.output.LayerNorm.bias", vec![w]),
                ("intermediate.dense.weight", vec![m, w]),
                ("intermediate.dense.bias", vec![m]),
                ("output.dense.weight", vec![w, m]),
                ("output.dense.bias", vec![w]),
                ("output.LayerNorm.weight", vec![w]),
                ("output.LayerNorm.bias", vec![w]),
            ] {
                out.push((format!("{p}.{name}"), shape));
            }
        }
        out.push(("text_projection".into(), vec![w, embed_dim]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_take_heads_from_cn_clip_configs() {
        let h = ChineseClipConfig::preset("cn-clip-vit-h-14").unwrap();
        let VisionConfig::Vit(v) = h.vision else {
            panic!("ViT-H/14 is a ViT")
        };
        assert_eq!((v.heads, v.width / v.heads), (16, 80));
        assert_eq!((h.text.width, h.text.heads, h.text.layers), (1024, 16, 24));
        assert_eq!(
            ChineseClipConfig::preset("CN-CLIP RN50")
                .unwrap()
                .text
                .layers,
            3
        );
        assert_eq!(h.name(), "CN-CLIP ViT-H/14");
    }

    #[test]
    fn cn_clip_model_config_hints() {
        // model_configs/ViT-H-14.json merged with RoBERTa-wwm-ext-large-chinese.json (cn_clip 1.6.0).
        let v: Value = serde_json::json!({"embed_dim": 1024, "image_resolution": 224,
            "vision_layers": 32, "vision_width": 1280, "vision_head_width": 80, "vision_patch_size": 14,
            "vocab_size": 21128, "text_hidden_act": "gelu", "text_hidden_size": 1024,
            "text_intermediate_size": 4096, "text_max_position_embeddings": 512,
            "text_num_attention_heads": 16, "text_num_hidden_layers": 24, "text_type_vocab_size": 2});
        let h = ChineseClipHints::from_json(&v, "x").unwrap();
        assert_eq!((h.vision_heads, h.text_heads), (Some(16), Some(16)));
        h.check(&ChineseClipConfig::preset("CN-CLIP ViT-H/14").unwrap())
            .unwrap();
        let rn: Value = serde_json::json!({"embed_dim": 1024, "vision_layers": "[3,4,6,3]",
            "vision_width": 64, "text_hidden_size": 768, "text_num_hidden_layers": 3});
        let h = ChineseClipHints::from_json(&rn, "x").unwrap();
        assert_eq!(h.vision_heads, None);
        h.check(&ChineseClipConfig::preset("CN-CLIP RN50").unwrap())
            .unwrap();
    }
}
