//! SigLIP's architecture: [`SiglipVisionConfig`], the head-count rule, the config files
//! (`config.json`, `open_clip_config.json`) and the inference from tensor shapes; the towers are
//! in [`crate::siglip`].

use std::path::Path;

use serde_json::Value;

use crate::config::{Activation, ClipConfig, HEAD_WIDTH, TextConfig, VisionConfig};
use crate::error::{Error, Result as ClipResult};
use crate::weights::{Naming, Weights};

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
        let v = super::json::read_json(path)?;
        Self::from_json(&v, &path.display().to_string()).map_err(bad)
    }

    fn from_json(v: &Value, source: &str) -> std::result::Result<Self, String> {
        let mut h = SiglipHints {
            source: source.to_string(),
            ..Self::default()
        };
        let uint = super::json::uint;
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
            super::json::push_checks(
                &mut h.checks,
                &[
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
                ],
            )?;
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
        super::json::push_checks(
            &mut h.checks,
            &[
                ("embed_dim", m, "embed_dim"),
                ("vision.image_size", vision, "image_size"),
                ("text.width", text, "width"),
                ("text.layers", text, "layers"),
                ("text.context_length", text, "context_length"),
                ("text.vocab_size", text, "vocab_size"),
            ],
        )?;
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
    let dims = |name: &str, rank: usize| weights.require_rank(name, rank);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_rule_fits_released_siglips() {
        // B 768 → 12, L 1024 → 16, So400m 1152 → 16 (72 each), giant-opt 1536 → 16.
        for (w, h) in [(768, 12), (1024, 16), (1152, 16), (1536, 16)] {
            assert_eq!(default_siglip_vision_heads(w), Some(h), "{w}");
        }
        assert_eq!(default_siglip_vision_heads(100), None);
    }
}
