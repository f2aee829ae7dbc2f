//! SigLIP and SigLIP 2 (fixed resolution): image and text towers, their tensor names, and the
//! architecture read from the weights.
//!
//! - Image tower ([`SiglipVisionTransformer`]): patch embedding with bias, a position embedding
//!   for the patches only (no class token), no layer norm before the blocks, pre-norm residual
//!   blocks, a final layer norm, then the attention-pooling ("MAP") head: one learned probe
//!   attends over all patch features (multi-head attention with biases), followed by
//!   `x + mlp(ln(x))`. No projection: the embedding is as wide as the tower.
//! - Text tower ([`SiglipTextTransformer`]): token + position embedding over a fixed 64
//!   positions, bidirectional (no causal mask) residual blocks, a final layer norm, the features
//!   at the **last position** (whatever token sits there: SigLIP pads every text to 64), then a
//!   linear head with bias.
//! - Every layer norm has epsilon 1e-6; the MLP activation is the tanh-approximated GELU
//!   ([`Activation::GeluTanh`]) in transformers; the timm image tower of the open_clip
//!   checkpoints is built by timm with the exact GELU (`nn.GELU()`), which is what open_clip
//!   computes for them, so that naming defaults to [`Activation::Gelu`] for the image tower.
//! - Scores are `exp(logit_scale) · cos + logit_bias`, turned into probabilities by a sigmoid
//!   per (image, text) pair ([`crate::ScoreFunction::Sigmoid`]).
//!
//! Two checkpoint namings load: transformers' `SiglipModel` (`model.safetensors` of
//! `google/siglip-*` and the fixed-resolution `google/siglip2-*` repos, which use the same
//! `SiglipModel` class) and open_clip's (`open_clip_model.safetensors` of `timm/ViT-B-16-SigLIP2`
//! etc., the image tower under `visual.trunk.*` in timm's names, the text tower under `text.`).
//! Both are read through one set of internal names (those of the CLIP code: `visual.conv1.weight`,
//! `visual.transformer.resblocks.N.attn.in_proj_weight`, …, plus `visual.conv1.bias`,
//! `visual.map_head.*`, `text_head.*` and `logit_bias`); [`crate::Weights`] maps them.
//!
//! The residual blocks are this crate's CLIP blocks (packed linear layers, fused attention),
//! with epsilon 1e-6. candle-transformers' `siglip` module computes the same functions as
//! transformers, but it was not reused: its linear layers go through candle's matmul, which
//! repacks both operands on every call (candle's CLIP ran ViT-B/32 at 7.1 img/s against 43.8 for
//! this crate's packed blocks on the same machine), it only reads transformers' names, and it
//! builds its config from a complete `config.json` (the hub's SigLIP configs leave defaults out).
//!
//! Head counts are not visible in the tensors: they come from `config.json`
//! (`num_attention_heads`, transformers' default 12 when absent) or `open_clip_config.json`
//! (`text_cfg.heads`); for an image tower without a count the rule of every released SigLIP is
//! used: width ≥ 1152 ⇒ 16 heads (So400m: 16 of 72; giant-opt 1536: 16 of 96), else
//! `width / 64`, and the model says so in [`crate::ClipModel::notes`].

use std::path::Path;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde_json::Value;

use crate::config::{Activation, ClipConfig, HEAD_WIDTH, TextConfig, VisionConfig};
use crate::cpu;
use crate::error::lower;
use crate::error::{Error, Result as ClipResult};
use crate::nn::layers::{Linear, Transformer, TransformerDims, layer_norm_eps};
use crate::nn::{ImageTower, check_pixels};
use crate::weights::{Naming, Source, Weights};

/// Epsilon of every SigLIP layer norm.
pub const SIGLIP_LN_EPS: f64 = 1e-6;

/// Image towers at least this wide get 16 heads when no config file gives the count.
pub const SIGLIP_WIDE: usize = 1152;

/// A SigLIP image tower (fixed resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiglipVisionConfig {
    /// Input side in pixels (square).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Token width (also the embedding width).
    pub width: usize,
    /// Residual blocks.
    pub layers: usize,
    /// Attention heads (blocks and pooling head).
    pub heads: usize,
    /// Hidden width of each MLP (blocks and pooling head).
    pub mlp_width: usize,
    /// MLP activation of the image tower.
    pub activation: Activation,
}

impl SiglipVisionConfig {
    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }
}

/// The image-tower head count without a config file (see the module docs).
pub fn default_siglip_vision_heads(width: usize) -> Option<usize> {
    if width >= SIGLIP_WIDE && width.is_multiple_of(16) {
        Some(16)
    } else if width > 0 && width.is_multiple_of(HEAD_WIDTH) {
        Some(width / HEAD_WIDTH)
    } else {
        None
    }
}

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

/// Values a SigLIP config file gives (heads, activations) and sizes to check.
#[derive(Debug, Clone, Default)]
struct SiglipHints {
    source: String,
    vision_heads: Option<usize>,
    /// open_clip's `vision_cfg.head_width` (the heads follow once the width is known).
    vision_head_width: Option<usize>,
    text_heads: Option<usize>,
    vision_act: Option<Activation>,
    text_act: Option<Activation>,
    checks: Vec<(&'static str, usize)>,
}

fn activation_named(name: &str) -> std::result::Result<Activation, String> {
    match name {
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
        "gelu" => Ok(Activation::Gelu),
        "quick_gelu" => Ok(Activation::QuickGelu),
        other => Err(format!("unsupported hidden_act `{other}`")),
    }
}

impl SiglipHints {
    fn from_file(path: &Path) -> ClipResult<Self> {
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = safe_file::read_to_string(path, 16 << 20)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Self::from_json(&v, &path.display().to_string()).map_err(bad)
    }

    fn from_json(v: &Value, source: &str) -> std::result::Result<Self, String> {
        let mut h = SiglipHints {
            source: source.to_string(),
            ..Self::default()
        };
        let uint = |v: &Value, key: &str| -> std::result::Result<Option<usize>, String> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| format!("`{key}` is {x}, expected a non-negative integer")),
            }
        };
        if let Some(vision) = v.get("vision_config") {
            // transformers SiglipConfig; absent values take transformers' defaults.
            let text = v.get("text_config").unwrap_or(&Value::Null);
            if let Some(t) = v.get("model_type").and_then(Value::as_str)
                && t != "siglip"
            {
                return Err(format!(
                    "model_type `{t}`: not a fixed-resolution SigLIP (`siglip`) config"
                ));
            }
            let act = |c: &Value| -> std::result::Result<Activation, String> {
                match c.get("hidden_act").and_then(Value::as_str) {
                    Some(a) => activation_named(a),
                    None => Ok(Activation::GeluTanh),
                }
            };
            h.vision_act = Some(act(vision)?);
            h.text_act = Some(act(text)?);
            h.vision_heads = Some(uint(vision, "num_attention_heads")?.unwrap_or(12));
            h.text_heads = Some(uint(text, "num_attention_heads")?.unwrap_or(12));
            for (field, c, key) in [
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
                ("embed_dim", text, "projection_size"),
            ] {
                if let Some(n) = uint(c, key)? {
                    h.checks.push((field, n));
                }
            }
            for (c, key) in [(vision, "layer_norm_eps"), (text, "layer_norm_eps")] {
                if let Some(eps) = c.get(key).and_then(Value::as_f64)
                    && (eps - SIGLIP_LN_EPS).abs() > 1e-12
                {
                    return Err(format!("layer_norm_eps {eps} (only 1e-6 is supported)"));
                }
            }
            return Ok(h);
        }
        // open_clip: `model_cfg` (hub files) or the bare model config.
        let m = v.get("model_cfg").unwrap_or(v);
        let vision = m
            .get("vision_cfg")
            .ok_or("no `vision_cfg` (open_clip) or `vision_config` (transformers)")?;
        let text = m.get("text_cfg").unwrap_or(&Value::Null);
        if let Some(pool) = vision.get("timm_pool").and_then(Value::as_str)
            && pool != "map"
        {
            return Err(format!(
                "timm_pool `{pool}`: only the MAP head (`map`) is supported"
            ));
        }
        if let Some(pool) = text.get("pool_type").and_then(Value::as_str)
            && pool != "last"
        {
            return Err(format!("text pool_type `{pool}`: SigLIP pools at `last`"));
        }
        h.text_heads = uint(text, "heads")?;
        // open_clip ignores `head_width` for timm towers (timm's model name fixes the heads);
        // the hub's SigLIP configs leave it out, so the rule applies, but it is honoured here.
        h.vision_head_width = uint(vision, "head_width")?;
        h.text_act = Some(
            match text
                .get("act_kwargs")
                .and_then(|a| a.get("approximate"))
                .and_then(Value::as_str)
            {
                Some("tanh") => Activation::GeluTanh,
                Some("none") | None => Activation::Gelu,
                Some(other) => return Err(format!("text act_kwargs.approximate `{other}`")),
            },
        );
        // timm builds its SigLIP image towers with `nn.GELU()` (exact) unless told otherwise.
        h.vision_act = Some(Activation::Gelu);
        if let Some(eps) = text
            .get("norm_kwargs")
            .and_then(|n| n.get("eps"))
            .and_then(Value::as_f64)
            && (eps - SIGLIP_LN_EPS).abs() > 1e-12
        {
            return Err(format!(
                "text norm_kwargs.eps {eps} (only 1e-6 is supported)"
            ));
        }
        for (field, c, key) in [
            ("embed_dim", m, "embed_dim"),
            ("vision.image_size", vision, "image_size"),
            ("text.width", text, "width"),
            ("text.layers", text, "layers"),
            ("text.context_length", text, "context_length"),
            ("text.vocab_size", text, "vocab_size"),
        ] {
            if let Some(n) = uint(c, key)? {
                h.checks.push((field, n));
            }
        }
        Ok(h)
    }

    fn check(&self, cfg: &ClipConfig, v: &SiglipVisionConfig) -> ClipResult<()> {
        for &(field, value) in &self.checks {
            let actual = match field {
                "embed_dim" => cfg.embed_dim,
                "vision.image_size" => v.image_size,
                "vision.patch_size" => v.patch_size,
                "vision.width" => v.width,
                "vision.layers" => v.layers,
                "vision.mlp_width" => v.mlp_width,
                "text.width" => cfg.text.width,
                "text.layers" => cfg.text.layers,
                "text.context_length" => cfg.text.context_length,
                "text.vocab_size" => cfg.text.vocab_size,
                "text.mlp_width" => cfg.text.mlp_width,
                _ => continue,
            };
            if actual != value {
                return Err(Error::ConfigMismatch {
                    source_name: self.source.clone(),
                    field: field.to_string(),
                    config: value.to_string(),
                    weights: actual.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Reads a SigLIP architecture from the tensor shapes, heads and activations from the config
/// file when given. Returns the config and notes on what was assumed.
pub(crate) fn infer(
    weights: &Weights,
    config_file: Option<&Path>,
) -> ClipResult<(ClipConfig, Vec<String>)> {
    let hints = config_file.map(SiglipHints::from_file).transpose()?;
    let h = hints.unwrap_or_default();
    let mut notes = Vec::new();
    let dims = |name: &str, rank: usize| -> ClipResult<Vec<usize>> {
        let s = weights.require_shape(name)?;
        if s.len() != rank {
            return Err(Error::Architecture(format!(
                "`{}` has shape {s:?}, expected a tensor of rank {rank}",
                weights.file_name(name)
            )));
        }
        Ok(s)
    };
    let conv = dims("visual.conv1.weight", 4)?;
    let (width, patch) = (conv[0], conv[2]);
    if conv[1] != 3 || conv[3] != patch {
        return Err(Error::ShapeMismatch {
            name: weights.file_name("visual.conv1.weight"),
            expected: vec![width, 3, patch, patch],
            found: conv,
        });
    }
    let pos = dims("visual.positional_embedding", 2)?;
    let grid = (1..=pos[0]).find(|g| g * g >= pos[0]).unwrap_or(0);
    if grid * grid != pos[0] || pos[1] != width {
        return Err(Error::Architecture(format!(
            "`{}` has shape {pos:?}: expected [grid², {width}] for a square patch grid without a \
             class token",
            weights.file_name("visual.positional_embedding")
        )));
    }
    let layers = weights.block_count("visual.transformer.resblocks");
    let mlp_width = if layers > 0 {
        dims("visual.transformer.resblocks.0.mlp.c_fc.weight", 2)?[0]
    } else {
        dims("visual.map_head.mlp.c_fc.weight", 2)?[0]
    };
    let vision_heads = match (h.vision_heads, h.vision_head_width) {
        (Some(n), _) => n,
        (None, Some(hw)) if hw > 0 && width.is_multiple_of(hw) => width / hw,
        (None, Some(hw)) => {
            return Err(Error::ConfigMismatch {
                source_name: h.source.clone(),
                field: "vision.head_width".into(),
                config: hw.to_string(),
                weights: format!("a divisor of the width {width}"),
            });
        }
        (None, None) => {
            let n = default_siglip_vision_heads(width).ok_or_else(|| {
                Error::Architecture(format!(
                    "the image tower width {width} fits no head-count rule; put the model's \
                     config.json beside the weights"
                ))
            })?;
            notes.push(format!(
                "image tower heads not given by a config file: {n} heads of {} by the SigLIP rule \
                 (width ≥ {SIGLIP_WIDE} ⇒ 16 heads, else width / 64)",
                width / n
            ));
            n
        }
    };
    if vision_heads == 0 || !width.is_multiple_of(vision_heads) {
        return Err(Error::ConfigMismatch {
            source_name: h.source.clone(),
            field: "vision.heads".into(),
            config: vision_heads.to_string(),
            weights: format!("a divisor of the width {width}"),
        });
    }
    let vision = SiglipVisionConfig {
        image_size: grid * patch,
        patch_size: patch,
        width,
        layers,
        heads: vision_heads,
        mlp_width,
        activation: h.vision_act.unwrap_or(match weights.naming() {
            // timm builds the open_clip image towers with `nn.GELU()`.
            Naming::OpenClipTimm => Activation::Gelu,
            _ => Activation::GeluTanh,
        }),
    };

    let tok = dims("token_embedding.weight", 2)?;
    let (vocab_size, twidth) = (tok[0], tok[1]);
    let tpos = dims("positional_embedding", 2)?;
    if tpos[1] != twidth {
        return Err(Error::ShapeMismatch {
            name: weights.file_name("positional_embedding"),
            expected: vec![tpos[0], twidth],
            found: tpos,
        });
    }
    let tlayers = weights.block_count("transformer.resblocks");
    let tmlp = if tlayers > 0 {
        dims("transformer.resblocks.0.mlp.c_fc.weight", 2)?[0]
    } else {
        4 * twidth
    };
    let theads = match h.text_heads {
        Some(n) => n,
        None if twidth > 0 && twidth.is_multiple_of(HEAD_WIDTH) => {
            notes.push(format!(
                "text tower heads not given by a config file: width / 64 = {}",
                twidth / HEAD_WIDTH
            ));
            twidth / HEAD_WIDTH
        }
        None => {
            return Err(Error::Architecture(format!(
                "the text width {twidth} is not a multiple of 64; put the model's config file \
                 beside the weights"
            )));
        }
    };
    if theads == 0 || !twidth.is_multiple_of(theads) {
        return Err(Error::ConfigMismatch {
            source_name: h.source.clone(),
            field: "text.heads".into(),
            config: theads.to_string(),
            weights: format!("a divisor of the width {twidth}"),
        });
    }
    let head = dims("text_head.weight", 2)?;
    let embed_dim = head[0];
    if head[1] != twidth || embed_dim != width {
        return Err(Error::ShapeMismatch {
            name: weights.file_name("text_head.weight"),
            expected: vec![width, twidth],
            found: head,
        });
    }
    if config_file.is_none() {
        notes.push(
            "no config file: activations assumed as the naming's reference builds them".into(),
        );
    }
    let cfg = ClipConfig {
        embed_dim,
        vision: VisionConfig::Siglip(vision),
        text: TextConfig {
            context_length: tpos[0],
            vocab_size,
            width: twidth,
            layers: tlayers,
            heads: theads,
            mlp_width: tmlp,
        },
        activation: h.text_act.unwrap_or(Activation::GeluTanh),
    };
    h.check(&cfg, &vision)?;
    Ok((cfg, notes))
}

/// Tensor names with their shapes.
type Shapes = Vec<(String, Vec<usize>)>;

fn push_linear(out: &mut Shapes, p: &str, o: usize, i: usize) {
    out.push((format!("{p}.weight"), vec![o, i]));
    out.push((format!("{p}.bias"), vec![o]));
}

fn push_blocks(out: &mut Shapes, prefix: &str, w: usize, mlp: usize, layers: usize) {
    for i in 0..layers {
        let p = format!("{prefix}transformer.resblocks.{i}");
        out.push((format!("{p}.ln_1.weight"), vec![w]));
        out.push((format!("{p}.ln_1.bias"), vec![w]));
        out.push((format!("{p}.attn.in_proj_weight"), vec![3 * w, w]));
        out.push((format!("{p}.attn.in_proj_bias"), vec![3 * w]));
        push_linear(out, &format!("{p}.attn.out_proj"), w, w);
        out.push((format!("{p}.ln_2.weight"), vec![w]));
        out.push((format!("{p}.ln_2.bias"), vec![w]));
        push_linear(out, &format!("{p}.mlp.c_fc"), mlp, w);
        push_linear(out, &format!("{p}.mlp.c_proj"), w, mlp);
    }
}

/// Every tensor of a SigLIP architecture with its shape, by internal name (see the module docs):
/// handy to build models in memory ([`crate::ClipModel::from_tensors`]).
pub(crate) fn tensor_shapes(cfg: &ClipConfig, v: &SiglipVisionConfig) -> Shapes {
    let mut out = Shapes::new();
    let (w, p) = (v.width, v.patch_size);
    out.push(("visual.conv1.weight".into(), vec![w, 3, p, p]));
    out.push(("visual.conv1.bias".into(), vec![w]));
    out.push((
        "visual.positional_embedding".into(),
        vec![v.grid_size() * v.grid_size(), w],
    ));
    push_blocks(&mut out, "visual.", w, v.mlp_width, v.layers);
    out.push(("visual.ln_post.weight".into(), vec![w]));
    out.push(("visual.ln_post.bias".into(), vec![w]));
    out.push(("visual.map_head.probe".into(), vec![1, 1, w]));
    out.push(("visual.map_head.in_proj_weight".into(), vec![3 * w, w]));
    out.push(("visual.map_head.in_proj_bias".into(), vec![3 * w]));
    push_linear(&mut out, "visual.map_head.out_proj", w, w);
    out.push(("visual.map_head.ln.weight".into(), vec![w]));
    out.push(("visual.map_head.ln.bias".into(), vec![w]));
    push_linear(&mut out, "visual.map_head.mlp.c_fc", v.mlp_width, w);
    push_linear(&mut out, "visual.map_head.mlp.c_proj", w, v.mlp_width);
    let t = &cfg.text;
    out.push(("token_embedding.weight".into(), vec![t.vocab_size, t.width]));
    out.push((
        "positional_embedding".into(),
        vec![t.context_length, t.width],
    ));
    push_blocks(&mut out, "", t.width, t.mlp_width, t.layers);
    out.push(("ln_final.weight".into(), vec![t.width]));
    out.push(("ln_final.bias".into(), vec![t.width]));
    push_linear(&mut out, "text_head", cfg.embed_dim, t.width);
    out.push(("logit_scale".into(), vec![1]));
    out.push(("logit_bias".into(), vec![1]));
    out
}

fn dense(vb: VarBuilder, out: usize, inp: usize) -> Result<Linear> {
    Linear::new(vb.get((out, inp), "weight")?, vb.get(out, "bias")?)
}

/// The attention-pooling head: a learned probe attends over the patch features, then
/// `x + mlp(ln(x))`.
#[derive(Debug, Clone)]
struct MapHead {
    /// The probe's query, `q(probe)`: `[width]` (the same for every image).
    query: Tensor,
    /// Keys and values: rows `width..3·width` of the attention's input projection.
    kv: Linear,
    out_proj: Linear,
    ln: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
    heads: usize,
}

impl MapHead {
    fn new(vb: VarBuilder, v: &SiglipVisionConfig) -> Result<Self> {
        let w = v.width;
        let probe = vb.get((1, 1, w), "probe")?.reshape((1, w))?;
        let in_w = vb.get((3 * w, w), "in_proj_weight")?;
        let in_b = vb.get(3 * w, "in_proj_bias")?;
        // q(probe) = probe Wqᵀ + bq, computed once.
        let q_w = in_w.narrow(0, 0, w)?;
        let q_b = in_b.narrow(0, 0, w)?;
        let query = probe.matmul(&q_w.t()?)?.broadcast_add(&q_b)?.reshape(w)?;
        Ok(Self {
            query,
            kv: Linear::new(
                in_w.narrow(0, w, 2 * w)?.contiguous()?,
                in_b.narrow(0, w, 2 * w)?.contiguous()?,
            )?,
            out_proj: dense(vb.pp("out_proj"), w, w)?,
            ln: layer_norm_eps(w, SIGLIP_LN_EPS, vb.pp("ln"))?,
            c_fc: dense(vb.pp("mlp.c_fc"), v.mlp_width, w)?,
            c_proj: dense(vb.pp("mlp.c_proj"), w, v.mlp_width)?,
            activation: v.activation,
            heads: v.heads,
        })
    }

    /// `x`: `[batch, tokens, width]` → `[batch, width]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, w) = x.dims3()?;
        let (h, d) = (self.heads, w / self.heads);
        let kv = self.kv.forward_rows(&x.reshape((b * t, w))?)?;
        // [b, t, 2, h, d] → k, v: [b, h, t, d]
        let kv = kv.reshape((b, t, 2, h, d))?.permute((2, 0, 3, 1, 4))?;
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let scale = 1.0 / (d as f64).sqrt();
        let q = (self.query.reshape((1, h, 1, d))? * scale)?
            .to_dtype(k.dtype())?
            .broadcast_as((b, h, 1, d))?
            .contiguous()?;
        let scores = q.matmul(&k.transpose(2, 3)?.contiguous()?)?; // [b, h, 1, t]
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let pooled = probs.matmul(&v)?.reshape((b, w))?; // heads in order: [b, h·d]
        let y = self.out_proj.forward_rows(&pooled)?;
        let f = self.c_fc.forward_rows(&self.ln.forward(&y)?)?;
        let f = cpu::apply_act(&f, self.activation.into())?;
        y + self.c_proj.forward_rows(&f)?
    }
}

/// The SigLIP image tower (see the module docs).
#[derive(Debug, Clone)]
pub struct SiglipVisionTransformer {
    cfg: SiglipVisionConfig,
    /// `conv1` flattened to `[width, 3 · patch²]` with its bias: a stride-`patch` convolution
    /// over non-overlapping patches as one matrix product.
    patch_embed: Linear,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_post: LayerNorm,
    head: MapHead,
}

impl SiglipVisionTransformer {
    /// Builds the tower from `vb` pointed at its prefix (`visual`).
    pub fn new(vb: VarBuilder, cfg: &SiglipVisionConfig) -> Result<Self> {
        let (w, p) = (cfg.width, cfg.patch_size);
        let conv = vb.get((w, 3, p, p), "conv1.weight")?;
        let bias = vb.get(w, "conv1.bias")?;
        let patches = cfg.grid_size() * cfg.grid_size();
        Ok(Self {
            cfg: *cfg,
            patch_embed: Linear::new(conv.reshape((w, 3 * p * p))?, bias)?,
            positional_embedding: vb.get((patches, w), "positional_embedding")?,
            transformer: Transformer::with_eps(
                vb.pp("transformer"),
                &TransformerDims {
                    width: w,
                    layers: cfg.layers,
                    heads: cfg.heads,
                    mlp_width: cfg.mlp_width,
                    activation: cfg.activation,
                },
                SIGLIP_LN_EPS,
            )?,
            ln_post: layer_norm_eps(w, SIGLIP_LN_EPS, vb.pp("ln_post"))?,
            head: MapHead::new(vb.pp("map_head"), cfg)?,
        })
    }

    /// The tower's architecture.
    pub fn config(&self) -> &SiglipVisionConfig {
        &self.cfg
    }

    /// `pixels`: `[batch, 3, image_size, image_size]` in the model dtype → `[batch, width]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let b = pixels.dim(0)?;
        let (g, p, w) = (self.cfg.grid_size(), self.cfg.patch_size, self.cfg.width);
        let patches = pixels
            .reshape((b, 3, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, 3 * p * p))?;
        let x = self
            .patch_embed
            .forward_rows(&patches)?
            .reshape((b, g * g, w))?
            .broadcast_add(&self.positional_embedding)?;
        let x = self.transformer.forward(&x, None)?;
        let x = self.ln_post.forward(&x)?;
        self.head.forward(&x)
    }
}

impl ImageTower for SiglipVisionTransformer {
    fn image_size(&self) -> usize {
        self.cfg.image_size
    }

    /// SigLIP has no image projection: the embedding is the pooled width.
    fn output_dim(&self) -> usize {
        self.cfg.width
    }

    fn encode(&self, pixels: &Tensor) -> ClipResult<Tensor> {
        check_pixels(pixels, self.cfg.image_size)?;
        self.forward(pixels).map_err(lower)
    }
}

/// The SigLIP text tower (see the module docs).
#[derive(Debug, Clone)]
pub struct SiglipTextTransformer {
    cfg: TextConfig,
    token_embedding: Embedding,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    head: Linear,
}

impl SiglipTextTransformer {
    /// Builds the tower from `vb` pointed at the internal root (text names have no prefix).
    pub fn new(
        vb: VarBuilder,
        cfg: &TextConfig,
        embed_dim: usize,
        activation: Activation,
    ) -> Result<Self> {
        let w = cfg.width;
        let emb = vb.get((cfg.vocab_size, w), "token_embedding.weight")?;
        Ok(Self {
            cfg: *cfg,
            token_embedding: Embedding::new(emb, w),
            positional_embedding: vb.get((cfg.context_length, w), "positional_embedding")?,
            transformer: Transformer::with_eps(
                vb.pp("transformer"),
                &TransformerDims {
                    width: w,
                    layers: cfg.layers,
                    heads: cfg.heads,
                    mlp_width: cfg.mlp_width,
                    activation,
                },
                SIGLIP_LN_EPS,
            )?,
            ln_final: layer_norm_eps(w, SIGLIP_LN_EPS, vb.pp("ln_final"))?,
            head: dense(vb.pp("text_head"), embed_dim, w)?,
        })
    }

    /// The tower's architecture.
    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// `ids`: `[batch, len]` (`u32`), `len <= context_length` → `[batch, embed_dim]`, read at
    /// the last position. SigLIP was trained on rows padded to the full context, so callers
    /// pass `context_length` tokens (the tokenizer pads to 64).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let x = self.token_embedding.forward(ids)?;
        let x = x.broadcast_add(&self.positional_embedding.narrow(0, 0, len)?)?;
        let x = self.transformer.forward(&x, None)?;
        let last = x.narrow(1, len - 1, 1)?.reshape((b, self.cfg.width))?;
        let pooled = self.ln_final.forward(&last)?;
        self.head.forward_rows(&pooled)
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

    #[test]
    fn head_rule_fits_released_siglips() {
        // B 768 → 12, L 1024 → 16, So400m 1152 → 16 (72 each), giant-opt 1536 → 16.
        for (w, h) in [(768, 12), (1024, 16), (1152, 16), (1536, 16)] {
            assert_eq!(default_siglip_vision_heads(w), Some(h), "{w}");
        }
        assert_eq!(default_siglip_vision_heads(100), None);
    }
}
