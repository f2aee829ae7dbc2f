//! The Vision Transformer image tower (open_clip's `VisionTransformer`, OpenAI's `visual`).

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::config::{Activation, VitConfig};
use crate::error::lower;
use crate::nn::layers::{Linear, Transformer, TransformerDims, layer_norm};
use crate::nn::{ImageTower, check_pixels};

/// The ViT image tower: patch embedding (`conv1`, no bias), class token, positional embedding,
/// `ln_pre`, residual blocks, `ln_post` on the class token, projection `proj`.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    cfg: VitConfig,
    /// `conv1.weight` flattened to `[width, 3 * patch * patch]` (with a zero bias): a
    /// stride-`patch` convolution with a `patch`-sized kernel is a matrix product over
    /// non-overlapping patches, packed once like the blocks' linear layers.
    patch_embed: Linear,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    embed_dim: usize,
}

impl VisionTransformer {
    /// Builds the tower from `vb` pointed at its prefix (`visual`).
    pub fn new(
        vb: VarBuilder,
        cfg: &VitConfig,
        embed_dim: usize,
        activation: Activation,
    ) -> Result<Self> {
        let (w, p) = (cfg.width, cfg.patch_size);
        let tokens = cfg.grid_size() * cfg.grid_size() + 1;
        let conv = vb.get((w, 3, p, p), "conv1.weight")?;
        let zero = Tensor::zeros(w, conv.dtype(), conv.device())?;
        Ok(Self {
            cfg: *cfg,
            patch_embed: Linear::new(conv.reshape((w, 3 * p * p))?, zero)?,
            class_embedding: vb.get(w, "class_embedding")?,
            positional_embedding: vb.get((tokens, w), "positional_embedding")?,
            ln_pre: layer_norm(w, vb.pp("ln_pre"))?,
            transformer: Transformer::new(
                vb.pp("transformer"),
                &TransformerDims {
                    width: w,
                    layers: cfg.layers,
                    heads: cfg.heads,
                    mlp_width: cfg.mlp_width,
                    activation,
                },
            )?,
            ln_post: layer_norm(w, vb.pp("ln_post"))?,
            proj: vb.get((w, embed_dim), "proj")?,
            embed_dim,
        })
    }

    /// The tower's architecture.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// `pixels`: `[batch, 3, image_size, image_size]` in the model dtype → `[batch, embed_dim]`,
    /// unchecked and with candle's error type, for layer code; [`ImageTower::encode`] is the
    /// checked API.
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
            .reshape((b, g * g, w))?;
        let cls = self.class_embedding.reshape((1, 1, w))?.repeat((b, 1, 1))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let x = self.ln_pre.forward(&x)?;
        let x = self.transformer.forward(&x, None)?;
        let pooled = self.ln_post.forward(&x.i((.., 0))?.contiguous()?)?;
        pooled.matmul(&self.proj)
    }
}

impl ImageTower for VisionTransformer {
    fn image_size(&self) -> usize {
        self.cfg.image_size
    }

    fn output_dim(&self) -> usize {
        self.embed_dim
    }

    fn encode(&self, pixels: &Tensor) -> crate::Result<Tensor> {
        check_pixels(pixels, self.cfg.image_size)?;
        self.forward(pixels).map_err(lower)
    }
}
