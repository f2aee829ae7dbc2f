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

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

pub use crate::config::siglip::{
    SIGLIP_LN_EPS, SIGLIP_WIDE, SiglipVisionConfig, default_siglip_vision_heads,
};
use crate::config::{Activation, TextConfig};
use crate::cpu;
use crate::error::Result as ClipResult;
use crate::error::lower;
use crate::nn::layers::{Linear, Transformer, TransformerDims, layer_norm_eps};
use crate::nn::{ImageTower, check_pixels};

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
