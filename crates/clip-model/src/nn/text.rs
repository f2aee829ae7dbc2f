//! The causal text transformer (open_clip's text tower, OpenAI's `transformer` + `ln_final`).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::config::{Activation, TextConfig};
use crate::nn::layers::{Transformer, TransformerDims, layer_norm};

/// The text tower: token + positional embedding, causal residual blocks, `ln_final`, the features
/// at each row's end-of-text position, projection `text_projection`.
#[derive(Debug, Clone)]
pub struct TextTransformer {
    cfg: TextConfig,
    token_embedding: Embedding,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
}

impl TextTransformer {
    /// Builds the tower from `vb` pointed at the checkpoint root (the text tower has no prefix).
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
            ln_final: layer_norm(w, vb.pp("ln_final"))?,
            text_projection: vb.get((w, embed_dim), "text_projection")?,
        })
    }

    /// The tower's architecture.
    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// `ids`: `[batch, len]` (`u32`), `eot[i]` the end-of-text position of row `i`; every
    /// `eot[i] < len <= context_length` (checked by the caller) → `[batch, embed_dim]`.
    ///
    /// All `len` positions run. Attention is causal, so the features at position `e` depend only
    /// on tokens `0..=e`: callers may cut the rows to `max(eot) + 1` tokens and get the same result.
    pub fn forward(&self, ids: &Tensor, eot: &[usize]) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let x = self.token_embedding.forward(ids)?;
        let x = x.broadcast_add(&self.positional_embedding.narrow(0, 0, len)?)?;
        let mask = causal_mask(len, x.dtype(), x.device())?;
        let x = self.transformer.forward(&x, Some(&mask))?;
        let x = self.ln_final.forward(&x)?;
        let rows: Vec<u32> = eot
            .iter()
            .enumerate()
            .map(|(i, &e)| (i * len + e) as u32)
            .collect();
        let rows = Tensor::new(rows, x.device())?;
        let pooled = x
            .reshape((b * len, self.cfg.width))?
            .index_select(&rows, 0)?;
        pooled.matmul(&self.text_projection)
    }
}

impl TextTransformer {
    /// [`TextTransformer::forward`] with each row run only up to its own end-of-text token:
    /// the rows are packed one after another (no padding computed), which gives the same
    /// result because attention is causal. Falls back to `forward` where the fused CPU kernels
    /// do not apply. Same contract as `forward`.
    pub fn forward_to_eot(&self, ids: &Tensor, eot: &[usize]) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        if eot.len() != b || eot.iter().any(|&e| e >= len) {
            candle_core::bail!("end-of-text positions {eot:?} do not fit token rows {b} x {len}");
        }
        let mut offsets = Vec::with_capacity(b + 1);
        let mut keep = Vec::new();
        offsets.push(0usize);
        for (i, &e) in eot.iter().enumerate() {
            keep.extend((0..=e).map(|j| (i * len + j) as u32));
            offsets.push(keep.len());
        }
        let positions: Vec<u32> = eot.iter().flat_map(|&e| 0..=e as u32).collect();
        let n = keep.len();
        let device = ids.device();
        let flat = ids
            .flatten_all()?
            .index_select(&Tensor::new(keep, device)?, 0)?;
        let x = self.token_embedding.forward(&flat)?;
        let pos = self
            .positional_embedding
            .index_select(&Tensor::new(positions, device)?, 0)?;
        let x = (x + pos)?;
        let Some(x) = self.transformer.forward_packed_causal(&x, &offsets)? else {
            return self.forward(ids, eot);
        };
        let last: Vec<u32> = offsets[1..].iter().map(|&o| (o - 1) as u32).collect();
        debug_assert_eq!(x.dim(0)?, n);
        let pooled = x.index_select(&Tensor::new(last, device)?, 0)?;
        self.ln_final
            .forward(&pooled)?
            .matmul(&self.text_projection)
    }
}

/// Additive causal mask: 0 on and below the diagonal, −∞ above.
fn causal_mask(len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (len, len), device)?.to_dtype(dtype)
}
