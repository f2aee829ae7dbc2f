//! The BERT text tower of Chinese-CLIP (RoBERTa-wwm-ext base / large, RBT3).
//!
//! cn_clip's `CLIP.encode_text`: `bert(ids, attention_mask = ids != [PAD])`, the last hidden state
//! at position 0 (`[CLS]`, no pooler), times `text_projection` (no bias). BERT is post-norm:
//! embeddings (word + position + token type) → layer norm, then per layer
//! `x = LN(x + attn(x))`, `x = LN(x + W₂ gelu(W₁ x))`, exact (erf) GELU, layer-norm ε 1e-12.
//!
//! Padding: masked keys get −10000 in cn_clip (transformers: the dtype's minimum); after the
//! softmax their weight is exactly 0 in f32 either way, so the fast path runs each row only over its
//! own tokens (rows packed one after another, no padding computed) and gives the same result.
//! Rows whose padding is not a suffix, other devices and other dtypes take the padded path with
//! the additive mask.
//!
//! Why not candle-transformers' `bert` / `chinese_clip` (0.11.1, read, not benchmarked here): its
//! Chinese-CLIP text model computes the same layer arithmetic (erf GELU, ε 1e-12, the dtype
//! minimum on masked keys), but attends to padding unless the caller passes a mask, loads only
//! transformers' naming and only ViT image towers (no RN50), and runs candle's `Linear` over the
//! padded `[batch, 52]` block, repacking both operands of every product on each call (on the
//! build machine candle's own CLIP ran the ViT-B/32 text tower at 7.6 prompts/s where this crate's
//! packed kernels run 54.7, README and docs/findings).
//! This tower reuses those packed kernels and the fused bias / GELU / residual stores of the CLIP
//! towers, runs each row over its own tokens only, and computes only the `[CLS]` rows after the
//! last attention; reusing candle-transformers' layers would have meant a second, slower path for
//! the same arithmetic.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::config::chinese_clip::{BERT_LN_EPS, BertConfig};
use crate::cpu::{self, Act};
use crate::nn::layers::{Linear, layer_norm_eps, linear_in_place};

fn layer_norm(width: usize, vb: VarBuilder) -> Result<LayerNorm> {
    layer_norm_eps(width, BERT_LN_EPS, vb)
}

fn dense(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(vb.get((out, inp), "weight")?, vb.get(out, "bias")?)
}

/// One post-norm encoder layer.
#[derive(Debug, Clone)]
struct BertLayer {
    /// query, key and value stacked: `[3 × width, width]`.
    qkv: Linear,
    out: Linear,
    ln_attn: LayerNorm,
    up: Linear,
    down: Linear,
    ln_out: LayerNorm,
    heads: usize,
}

impl BertLayer {
    fn new(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let (w, m) = (cfg.width, cfg.mlp_width);
        let a = vb.pp("attention");
        let s = a.pp("self");
        let get = |n: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                s.get((w, w), &format!("{n}.weight"))?,
                s.get(w, &format!("{n}.bias"))?,
            ))
        };
        let (qw, qb) = get("query")?;
        let (kw, kb) = get("key")?;
        let (vw, vbias) = get("value")?;
        let qkv = Linear::new(
            Tensor::cat(&[&qw, &kw, &vw], 0)?,
            Tensor::cat(&[&qb, &kb, &vbias], 0)?,
        )?;
        Ok(Self {
            qkv,
            out: dense(w, w, a.pp("output").pp("dense"))?,
            ln_attn: layer_norm(w, a.pp("output").pp("LayerNorm"))?,
            up: dense(w, m, vb.pp("intermediate").pp("dense"))?,
            down: dense(m, w, vb.pp("output").pp("dense"))?,
            ln_out: layer_norm(w, vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.heads,
        })
    }

    /// The feed-forward half on `[rows, width]` (after the attention's residual + layer norm).
    fn feed_forward(&self, y: &Tensor) -> Result<Tensor> {
        let f = linear_in_place(y, &self.up, Act::Gelu, None)?;
        let z = linear_in_place(&f, &self.down, Act::Identity, Some(y))?;
        self.ln_out.forward(&z)
    }

    /// Packed rows `[n, width]`, sequence `i` = rows `offsets[i]..offsets[i + 1]` (each attends
    /// to itself only). With `keep = Some(rows)`, only those rows are computed after the attention.
    fn forward_packed(
        &self,
        x: &Tensor,
        offsets: &[usize],
        keep: Option<&Tensor>,
    ) -> Result<Tensor> {
        let w = x.dim(1)?;
        let qkv = linear_in_place(x, &self.qkv, Act::Identity, None)?;
        let mut parts = Vec::with_capacity(offsets.len().saturating_sub(1));
        for win in offsets.windows(2) {
            let (a, b) = (win[0], win[1]);
            let seq = qkv.narrow(0, a, b - a)?.unsqueeze(0)?;
            let Some(att) = cpu::attention(&seq, self.heads, false)? else {
                candle_core::bail!("the fused attention does not apply to this input");
            };
            parts.push(att.squeeze(0)?);
        }
        let att = Tensor::cat(&parts, 0)?;
        let (att, residual) = match keep {
            Some(rows) => (
                att.index_select(rows, 0)?.contiguous()?,
                x.index_select(rows, 0)?.contiguous()?,
            ),
            None => (att, x.clone()),
        };
        debug_assert_eq!(att.dim(1)?, w);
        let y = linear_in_place(&att, &self.out, Act::Identity, Some(&residual))?;
        let y = self.ln_attn.forward(&y)?;
        self.feed_forward(&y)
    }

    /// Padded `[batch, len, width]` with an additive key mask `[batch, 1, 1, len]`.
    fn forward_masked(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, w) = x.dims3()?;
        let h = self.heads;
        let d = w / h;
        let rows = x.reshape((b * t, w))?;
        let qkv = self
            .qkv
            .forward_rows(&rows)?
            .reshape((b, t, 3, h, d))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let att = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * t, w))?
            .contiguous()?;
        let y = (self.out.forward_rows(&att)? + &rows)?;
        let y = self.ln_attn.forward(&y)?;
        let f = cpu::apply_act(&self.up.forward_rows(&y)?, Act::Gelu)?;
        let z = (self.down.forward_rows(&f)? + &y)?;
        self.ln_out.forward(&z)?.reshape((b, t, w))
    }
}

/// Chinese-CLIP's text tower: a BERT encoder, the `[CLS]` features, `text_projection`.
///
/// Built by [`BertTextTower::new`] from a `VarBuilder` at the checkpoint root, in cn_clip's names
/// (`bert.embeddings.word_embeddings.weight`, `bert.encoder.layer.N.attention.self.query.weight`,
/// …, `text_projection` `[width, embed_dim]`); see [`BertConfig::tensor_shapes`].
#[derive(Debug, Clone)]
pub struct BertTextTower {
    cfg: BertConfig,
    word: Embedding,
    position: Tensor,
    token_type: Tensor,
    ln_embed: LayerNorm,
    layers: Vec<BertLayer>,
    projection: Tensor,
}

impl BertTextTower {
    /// Builds the tower from `vb` pointed at the checkpoint root.
    pub fn new(vb: VarBuilder, cfg: &BertConfig, embed_dim: usize) -> Result<Self> {
        let w = cfg.width;
        let bert = vb.pp("bert");
        let e = bert.pp("embeddings");
        let layers = (0..cfg.layers)
            .map(|i| BertLayer::new(bert.pp("encoder").pp("layer").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: *cfg,
            word: Embedding::new(e.get((cfg.vocab_size, w), "word_embeddings.weight")?, w),
            position: e.get(
                (cfg.max_position_embeddings, w),
                "position_embeddings.weight",
            )?,
            token_type: e.get((cfg.type_vocab_size, w), "token_type_embeddings.weight")?,
            ln_embed: layer_norm(w, e.pp("LayerNorm"))?,
            layers,
            projection: vb.get((w, embed_dim), "text_projection")?,
        })
    }

    /// The tower's architecture.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// `ids`: `rows` rows of `len` token ids (checked by the caller: `len <= max_position_embeddings`,
    /// ids inside the vocabulary), `[PAD]` = 0 masked as in cn_clip; `token_types` the same layout
    /// (all 0 when `None`, as cn_clip) → `[rows, embed_dim]`.
    ///
    /// `padded = true` runs every row over all `len` positions with the mask (cn_clip's computation
    /// verbatim); otherwise rows whose padding is a suffix run over their own tokens only.
    pub fn forward(
        &self,
        ids: &[u32],
        token_types: Option<&[u32]>,
        rows: usize,
        len: usize,
        device: &Device,
        padded: bool,
    ) -> Result<Tensor> {
        if ids.len() != rows * len || token_types.is_some_and(|t| t.len() != ids.len()) {
            candle_core::bail!("{} token ids do not make {rows} rows of {len}", ids.len());
        }
        if len > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "rows of {len} tokens are longer than the position embedding ({})",
                self.cfg.max_position_embeddings
            );
        }
        // Per row: the length up to the last non-padding token, and whether all padding is after it.
        let mut lengths = Vec::with_capacity(rows);
        let mut suffix_padding = true;
        for row in ids.chunks(len) {
            let n = row.iter().rposition(|&t| t != 0).map_or(0, |p| p + 1);
            suffix_padding &= n > 0 && row[..n].iter().all(|&t| t != 0);
            lengths.push(n);
        }
        if padded || !suffix_padding || !device.is_cpu() || !cpu::fused(&self.position) {
            return self.forward_padded(ids, token_types, rows, len, device);
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut keep = Vec::new();
        let mut positions = Vec::new();
        offsets.push(0usize);
        for (i, &n) in lengths.iter().enumerate() {
            keep.extend((0..n).map(|j| (i * len + j) as u32));
            positions.extend(0..n as u32);
            offsets.push(keep.len());
        }
        let keep = Tensor::new(keep, device)?;
        let flat = Tensor::from_slice(ids, ids.len(), device)?.index_select(&keep, 0)?;
        let types = match token_types {
            Some(t) => Tensor::from_slice(t, t.len(), device)?.index_select(&keep, 0)?,
            None => Tensor::zeros(flat.dim(0)?, DType::U32, device)?,
        };
        let positions = Tensor::new(positions, device)?;
        let x = (self.word.forward(&flat)?
            + self.position.index_select(&positions, 0)?
            + self.token_type.index_select(&types, 0)?)?;
        let mut x = self.ln_embed.forward(&x)?;
        let cls: Vec<u32> = offsets[..rows].iter().map(|&o| o as u32).collect();
        let cls = Tensor::new(cls, device)?;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            // After the last attention only the [CLS] rows are needed.
            let keep = (i == last).then_some(&cls);
            x = layer.forward_packed(&x, &offsets, keep)?;
        }
        if self.layers.is_empty() {
            x = x.index_select(&cls, 0)?;
        }
        x.matmul(&self.projection)
    }

    fn forward_padded(
        &self,
        ids: &[u32],
        token_types: Option<&[u32]>,
        rows: usize,
        len: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let dtype = self.position.dtype();
        let t = Tensor::from_slice(ids, (rows, len), device)?;
        let types = match token_types {
            Some(tt) => Tensor::from_slice(tt, (rows, len), device)?,
            None => Tensor::zeros((rows, len), DType::U32, device)?,
        };
        let x = self
            .word
            .forward(&t)?
            .broadcast_add(&self.position.narrow(0, 0, len)?)?
            .add(&Embedding::new(self.token_type.clone(), self.cfg.width).forward(&types)?)?;
        let mut x = self.ln_embed.forward(&x)?;
        // cn_clip: (1 - mask) * -10000 on the keys.
        let mask: Vec<f32> = ids
            .iter()
            .map(|&id| if id == 0 { -10000.0 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (rows, 1, 1, len), device)?.to_dtype(dtype)?;
        for layer in &self.layers {
            x = layer.forward_masked(&x, &mask)?;
        }
        x.i((.., 0))?.contiguous()?.matmul(&self.projection)
    }
}
