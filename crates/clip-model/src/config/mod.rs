//! Architecture descriptions, named presets, and inference of the architecture from tensor shapes.
//!
//! [`ClipConfig::infer`] reads every size from the weights: widths, layer counts, patch and image
//! size, context length, vocabulary and embedding size. The attention head count is not visible in
//! the tensors; it is taken from a config file beside the weights (`open_clip_config.json`'s
//! `head_width`, or a Hugging Face `config.json`'s `num_attention_heads`). Without one it is
//! `width / 64` as in all OpenAI models, except for image towers of width ≥ 1280, which get 16
//! heads: the rule every released large open_clip ViT follows (ViT-H/14: 1280 wide, heads of 80;
//! ViT-g/14: 1408, 88; ViT-bigG/14: 1664, 104; see [`default_vision_heads`]). A model loaded
//! by that rule says so in [`crate::ClipModel::notes`]. MLP widths always come from the tensors.
//! A config file is also checked against the weights: any disagreement is
//! [`Error::ConfigMismatch`].
//!
//! The activation: without a config file, QuickGELU (OpenAI's weights). An `open_clip_config.json`
//! is read as open_clip reads it: `"quick_gelu": true` → QuickGELU, `false` *or absent* → exact
//! GELU (open_clip's default, used by most models trained with open_clip). A transformers
//! `config.json` gives it as `hidden_act`. [`crate::LoadOptions::activation`] overrides all.

use crate::error::{Error, Result};

pub mod chinese_clip;
mod hints;
mod infer;
mod json;
pub mod preprocess_hints;
pub(crate) mod resnet;
pub mod siglip;

pub use chinese_clip::{BertConfig, ChineseClipConfig, ChineseClipHints};
pub use hints::ConfigHints;
pub use resnet::ResNetConfig;
pub use siglip::SiglipVisionConfig;

/// Width of one attention head in all OpenAI CLIP models (`heads = width / 64`).
pub const HEAD_WIDTH: usize = 64;

/// Image towers at least this wide have [`LARGE_VIT_HEADS`] heads when no config file says
/// otherwise: every released open_clip ViT of width ≥ 1280 has 16 heads (ViT-H/14 1280 wide,
/// head width 80; ViT-g/14 1408, 88; ViT-bigG/14 1664, 104), where `width / 64` would be wrong.
pub const LARGE_VIT_WIDTH: usize = 1280;

/// Heads of an image tower of width ≥ [`LARGE_VIT_WIDTH`] without a config file.
pub const LARGE_VIT_HEADS: usize = 16;

/// The head count of an image tower of `width` when no config file gives it: 16 for widths
/// ≥ 1280 (the large open_clip ViTs), `width / 64` otherwise (OpenAI's models); `None` when
/// neither rule divides the width.
pub fn default_vision_heads(width: usize) -> Option<usize> {
    if width >= LARGE_VIT_WIDTH && width.is_multiple_of(LARGE_VIT_HEADS) {
        Some(LARGE_VIT_HEADS)
    } else if width > 0 && width.is_multiple_of(HEAD_WIDTH) {
        Some(width / HEAD_WIDTH)
    } else {
        None
    }
}

/// The MLP activation of the residual blocks.
///
/// OpenAI's CLIP models were trained with QuickGELU (`x * sigmoid(1.702 x)`); open_clip models
/// trained from scratch mostly use the exact (erf) GELU. Using the wrong one silently costs accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (OpenAI weights; open_clip's `quick_gelu: true`).
    #[default]
    QuickGelu,
    /// The exact GELU, `x * Φ(x)` with the error function (PyTorch's `nn.GELU()`).
    Gelu,
    /// The tanh approximation of GELU, `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))` (PyTorch's
    /// `nn.GELU(approximate="tanh")`, transformers' `gelu_pytorch_tanh`): SigLIP's activation.
    GeluTanh,
}

/// A Vision Transformer image tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitConfig {
    /// Input side in pixels (square).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Token width.
    pub width: usize,
    /// Residual attention blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Hidden width of each block's MLP.
    pub mlp_width: usize,
}

impl VitConfig {
    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }
}

/// The causal text transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextConfig {
    /// Tokens per text (77 for OpenAI models).
    pub context_length: usize,
    /// Vocabulary size (49408 for OpenAI models).
    pub vocab_size: usize,
    /// Token width.
    pub width: usize,
    /// Residual attention blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Hidden width of each block's MLP.
    pub mlp_width: usize,
}

impl TextConfig {
    /// The end-of-text token id: the last id of the vocabulary (49407 for OpenAI's).
    ///
    /// The text embedding is read at the first occurrence of this id in each row. open_clip
    /// (and transformers for OpenAI's weights) read it at the position of the largest id, which
    /// is the same position for every row a CLIP tokenizer makes, because end-of-text is the
    /// largest id of the vocabulary.
    pub fn eot_token_id(&self) -> u32 {
        u32::try_from(self.vocab_size.saturating_sub(1)).unwrap_or(u32::MAX)
    }
}

/// The image tower's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VisionConfig {
    /// A Vision Transformer.
    Vit(VitConfig),
    /// OpenAI's ModifiedResNet (RN50, RN101, RN50x4, RN50x16, RN50x64).
    ModifiedResNet(ResNetConfig),
    /// A SigLIP / SigLIP 2 image tower with its attention-pooling head.
    Siglip(SiglipVisionConfig),
}

impl VisionConfig {
    /// Input side in pixels.
    pub fn image_size(&self) -> usize {
        match self {
            VisionConfig::Vit(c) => c.image_size,
            VisionConfig::ModifiedResNet(c) => c.image_size,
            VisionConfig::Siglip(c) => c.image_size,
        }
    }
}

/// A whole CLIP model: image tower, text tower, shared embedding size and MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipConfig {
    /// Dimension of the joint embedding space.
    pub embed_dim: usize,
    /// The image tower.
    pub vision: VisionConfig,
    /// The text tower.
    pub text: TextConfig,
    /// The MLP activation of both towers.
    pub activation: Activation,
}

const OPENAI_TEXT_512: TextConfig = TextConfig {
    context_length: 77,
    vocab_size: 49408,
    width: 512,
    layers: 12,
    heads: 8,
    mlp_width: 2048,
};

impl ClipConfig {
    /// OpenAI's ViT-B/32.
    pub fn vit_b_32() -> Self {
        Self::openai_vit(224, 32, 768, 12, 512, OPENAI_TEXT_512)
    }

    /// OpenAI's ViT-B/16.
    pub fn vit_b_16() -> Self {
        Self::openai_vit(224, 16, 768, 12, 512, OPENAI_TEXT_512)
    }

    /// OpenAI's ViT-L/14.
    pub fn vit_l_14() -> Self {
        Self::openai_vit(224, 14, 1024, 24, 768, Self::text_768())
    }

    /// OpenAI's ViT-L/14@336px.
    pub fn vit_l_14_336() -> Self {
        Self::openai_vit(336, 14, 1024, 24, 768, Self::text_768())
    }

    /// OpenAI's ResNet models: the image tower preset of [`ResNetConfig::presets`] with its text
    /// tower (width = embedding size except RN50, 64 channels per head, 12 layers).
    fn openai_resnet(vision: ResNetConfig) -> Self {
        let width = match vision.output_dim {
            1024 if vision.width == 64 => 512,
            d => d,
        };
        Self {
            embed_dim: vision.output_dim,
            vision: VisionConfig::ModifiedResNet(vision),
            text: TextConfig {
                width,
                heads: width / HEAD_WIDTH,
                mlp_width: 4 * width,
                ..OPENAI_TEXT_512
            },
            activation: Activation::QuickGelu,
        }
    }

    fn text_768() -> TextConfig {
        TextConfig {
            width: 768,
            heads: 12,
            mlp_width: 3072,
            ..OPENAI_TEXT_512
        }
    }

    fn openai_vit(
        image_size: usize,
        patch_size: usize,
        width: usize,
        layers: usize,
        embed_dim: usize,
        text: TextConfig,
    ) -> Self {
        Self {
            embed_dim,
            vision: VisionConfig::Vit(VitConfig {
                image_size,
                patch_size,
                width,
                layers,
                heads: width / HEAD_WIDTH,
                mlp_width: 4 * width,
            }),
            text,
            activation: Activation::QuickGelu,
        }
    }

    /// The named presets, by their usual names.
    pub fn presets() -> Vec<(&'static str, Self)> {
        vec![
            ("ViT-B/32", Self::vit_b_32()),
            ("ViT-B/16", Self::vit_b_16()),
            ("ViT-L/14", Self::vit_l_14()),
            ("ViT-L/14@336", Self::vit_l_14_336()),
            ("RN50", Self::openai_resnet(ResNetConfig::rn50())),
            ("RN101", Self::openai_resnet(ResNetConfig::rn101())),
            ("RN50x4", Self::openai_resnet(ResNetConfig::rn50x4())),
            ("RN50x16", Self::openai_resnet(ResNetConfig::rn50x16())),
            ("RN50x64", Self::openai_resnet(ResNetConfig::rn50x64())),
        ]
    }

    /// A preset by name (`"ViT-B/32"`, also accepted: `"vit-b-32"`, `"ViT-B-32"`).
    pub fn preset(name: &str) -> Option<Self> {
        preset_named(Self::presets(), name)
    }

    /// The name of the preset this config equals (activation included), or `None` for a custom model.
    pub fn preset_name(&self) -> Option<&'static str> {
        name_of_preset(Self::presets(), self)
    }

    /// The preset name, or `"custom"`.
    pub fn name(&self) -> &'static str {
        self.preset_name().unwrap_or("custom")
    }

    /// Every tensor of this architecture with its shape, by open_clip name, in checkpoint order.
    ///
    /// Handy to build models from tensors in memory ([`crate::ClipModel::from_tensors`]).
    /// For a ModifiedResNet image tower only the text tower and `logit_scale` are listed. For a
    /// SigLIP model the names are the internal ones of [`crate::siglip`].
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        if let VisionConfig::Siglip(v) = &self.vision {
            return siglip::tensor_shapes(self, v);
        }
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
        let blocks = |push: &mut dyn FnMut(String, Vec<usize>),
                      prefix: &str,
                      w: usize,
                      mlp: usize,
                      layers: usize| {
            for i in 0..layers {
                let p = format!("{prefix}transformer.resblocks.{i}");
                push(format!("{p}.ln_1.weight"), vec![w]);
                push(format!("{p}.ln_1.bias"), vec![w]);
                push(format!("{p}.attn.in_proj_weight"), vec![3 * w, w]);
                push(format!("{p}.attn.in_proj_bias"), vec![3 * w]);
                push(format!("{p}.attn.out_proj.weight"), vec![w, w]);
                push(format!("{p}.attn.out_proj.bias"), vec![w]);
                push(format!("{p}.ln_2.weight"), vec![w]);
                push(format!("{p}.ln_2.bias"), vec![w]);
                push(format!("{p}.mlp.c_fc.weight"), vec![mlp, w]);
                push(format!("{p}.mlp.c_fc.bias"), vec![mlp]);
                push(format!("{p}.mlp.c_proj.weight"), vec![w, mlp]);
                push(format!("{p}.mlp.c_proj.bias"), vec![w]);
            }
        };
        if let VisionConfig::Vit(v) = self.vision {
            let (w, p) = (v.width, v.patch_size);
            push("visual.class_embedding".into(), vec![w]);
            push(
                "visual.positional_embedding".into(),
                vec![v.grid_size() * v.grid_size() + 1, w],
            );
            push("visual.proj".into(), vec![w, self.embed_dim]);
            push("visual.conv1.weight".into(), vec![w, 3, p, p]);
            push("visual.ln_pre.weight".into(), vec![w]);
            push("visual.ln_pre.bias".into(), vec![w]);
            blocks(&mut push, "visual.", w, v.mlp_width, v.layers);
            push("visual.ln_post.weight".into(), vec![w]);
            push("visual.ln_post.bias".into(), vec![w]);
        }
        let t = &self.text;
        push(
            "positional_embedding".into(),
            vec![t.context_length, t.width],
        );
        push("text_projection".into(), vec![t.width, self.embed_dim]);
        push("logit_scale".into(), vec![]);
        push("token_embedding.weight".into(), vec![t.vocab_size, t.width]);
        blocks(&mut push, "", t.width, t.mlp_width, t.layers);
        push("ln_final.weight".into(), vec![t.width]);
        push("ln_final.bias".into(), vec![t.width]);
        out
    }

    /// Checks that `other` (e.g. a preset the user asked for) describes the same architecture;
    /// the first difference is [`Error::ConfigMismatch`] naming the field.
    pub fn check_against(&self, source_name: &str, other: &Self) -> Result<()> {
        let mut fields = vec![("embed_dim", other.embed_dim, self.embed_dim)];
        match (&self.vision, &other.vision) {
            (VisionConfig::Vit(a), VisionConfig::Vit(b)) => fields.extend([
                ("vision.image_size", b.image_size, a.image_size),
                ("vision.patch_size", b.patch_size, a.patch_size),
                ("vision.width", b.width, a.width),
                ("vision.layers", b.layers, a.layers),
                ("vision.heads", b.heads, a.heads),
                ("vision.mlp_width", b.mlp_width, a.mlp_width),
            ]),
            (VisionConfig::ModifiedResNet(a), VisionConfig::ModifiedResNet(b)) => {
                a.check_against(source_name, b)?
            }
            (VisionConfig::Siglip(a), VisionConfig::Siglip(b)) => fields.extend([
                ("vision.image_size", b.image_size, a.image_size),
                ("vision.patch_size", b.patch_size, a.patch_size),
                ("vision.width", b.width, a.width),
                ("vision.layers", b.layers, a.layers),
                ("vision.heads", b.heads, a.heads),
                ("vision.mlp_width", b.mlp_width, a.mlp_width),
            ]),
            (a, b) => {
                return Err(mismatch(
                    source_name,
                    "vision",
                    tower_kind(b),
                    tower_kind(a),
                ));
            }
        }
        fields.extend([
            (
                "text.context_length",
                other.text.context_length,
                self.text.context_length,
            ),
            (
                "text.vocab_size",
                other.text.vocab_size,
                self.text.vocab_size,
            ),
            ("text.width", other.text.width, self.text.width),
            ("text.layers", other.text.layers, self.text.layers),
            ("text.heads", other.text.heads, self.text.heads),
            ("text.mlp_width", other.text.mlp_width, self.text.mlp_width),
        ]);
        for (field, config, weights) in fields {
            if config != weights {
                return Err(mismatch(source_name, field, config, weights));
            }
        }
        if self.activation != other.activation {
            return Err(mismatch(
                source_name,
                "activation",
                format!("{:?}", other.activation),
                format!("{:?}", self.activation),
            ));
        }
        Ok(())
    }
}

fn tower_kind(v: &VisionConfig) -> &'static str {
    match v {
        VisionConfig::Vit(_) => "ViT",
        VisionConfig::ModifiedResNet(_) => "ModifiedResNet",
        VisionConfig::Siglip(_) => "SigLIP",
    }
}

pub(crate) fn mismatch(
    source: &str,
    field: &str,
    config: impl ToString,
    weights: impl ToString,
) -> Error {
    Error::ConfigMismatch {
        source_name: source.to_string(),
        field: field.to_string(),
        config: config.to_string(),
        weights: weights.to_string(),
    }
}

/// The preset called `name` among `presets`; case, `/`, `-`, `@`, `_` and spaces are ignored.
pub(crate) fn preset_named<C>(presets: Vec<(&'static str, C)>, name: &str) -> Option<C> {
    let key = |s: &str| {
        s.to_ascii_lowercase()
            .replace(['/', '-', '@', '_', ' '], "")
    };
    let want = key(name);
    presets
        .into_iter()
        .find(|(n, _)| key(n) == want)
        .map(|(_, c)| c)
}

/// The name of the preset among `presets` equal to `config`.
pub(crate) fn name_of_preset<C: PartialEq>(
    presets: Vec<(&'static str, C)>,
    config: &C,
) -> Option<&'static str> {
    presets
        .into_iter()
        .find(|(_, c)| c == config)
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_openai_sizes() {
        let b32 = ClipConfig::vit_b_32();
        let VisionConfig::Vit(v) = b32.vision else {
            panic!("ViT-B/32 is a ViT")
        };
        assert_eq!((v.heads, v.grid_size(), b32.text.heads), (12, 7, 8));
        assert_eq!(b32.text.eot_token_id(), 49407);
        assert_eq!(ClipConfig::preset("vit-b-32"), Some(b32));
        assert_eq!(ClipConfig::vit_l_14_336().name(), "ViT-L/14@336");
        let mut custom = b32;
        custom.activation = Activation::Gelu;
        assert_eq!(custom.name(), "custom");
    }
}
