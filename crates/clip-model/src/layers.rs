//! Building blocks shared by both towers: layer norm, multi-head attention, MLP, residual blocks.
//!
//! Layer code returns `candle_core::Result`; the public API converts to [`crate::Error`].
//! `vb.pp("…")` paths are the open_clip checkpoint names.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

use crate::config::Activation;

/// Layer-norm epsilon of every CLIP layer norm (PyTorch's default).
pub(crate) const LN_EPS: f64 = 1e-5;

pub(crate) fn layer_norm(width: usize, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(width, "weight")?;
    let bias = vb.get(width, "bias")?;
    Ok(LayerNorm::new(weight, bias, LN_EPS))
}

fn linear(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out, inp), "weight")?;
    let bias = vb.get(out, "bias")?;
    Ok(Linear::new(weight, Some(bias)))
}

impl Activation {
    pub(crate) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

/// Multi-head self-attention with a packed input projection (`in_proj_weight`, `in_proj_bias`).
#[derive(Debug, Clone)]
struct Attention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn new(vb: VarBuilder, width: usize, heads: usize) -> Result<Self> {
        let w = vb.get((3 * width, width), "in_proj_weight")?;
        let b = vb.get(3 * width, "in_proj_bias")?;
        Ok(Self {
            in_proj: Linear::new(w, Some(b)),
            out_proj: linear(width, width, vb.pp("out_proj"))?,
            heads,
        })
    }

    /// `x`: `[batch, tokens, width]`; `mask`: additive `[tokens, tokens]`.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, w) = x.dims3()?;
        let h = self.heads;
        let d = w / h;
        let qkv = self
            .in_proj
            .forward(x)?
            .reshape((b, t, 3, h, d))?
            .permute((2, 0, 3, 1, 4))?;
        let scale = 1.0 / (d as f64).sqrt();
        let q = (qkv.get(0)?.contiguous()? * scale)?.reshape((b * h, t, d))?;
        let k = qkv.get(1)?.contiguous()?.reshape((b * h, t, d))?;
        let v = qkv.get(2)?.contiguous()?.reshape((b * h, t, d))?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .reshape((b, h, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, w))?;
        self.out_proj.forward(&out)
    }
}

/// `c_fc` → activation → `c_proj`.
#[derive(Debug, Clone)]
struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
}

impl Mlp {
    fn new(vb: VarBuilder, width: usize, hidden: usize, activation: Activation) -> Result<Self> {
        Ok(Self {
            c_fc: linear(width, hidden, vb.pp("c_fc"))?,
            c_proj: linear(hidden, width, vb.pp("c_proj"))?,
            activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.c_fc.forward(x)?;
        self.c_proj.forward(&self.activation.apply(&x)?)
    }
}

/// Pre-norm residual block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Debug, Clone)]
struct ResidualBlock {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl ResidualBlock {
    fn new(vb: VarBuilder, dims: &TransformerDims) -> Result<Self> {
        Ok(Self {
            ln_1: layer_norm(dims.width, vb.pp("ln_1"))?,
            attn: Attention::new(vb.pp("attn"), dims.width, dims.heads)?,
            ln_2: layer_norm(dims.width, vb.pp("ln_2"))?,
            mlp: Mlp::new(vb.pp("mlp"), dims.width, dims.mlp_width, dims.activation)?,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, mask)?)?;
        &x + self.mlp.forward(&self.ln_2.forward(&x)?)?
    }
}

/// Sizes of a stack of residual blocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransformerDims {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub activation: Activation,
}

/// A stack of residual attention blocks (`transformer.resblocks.N`).
#[derive(Debug, Clone)]
pub(crate) struct Transformer {
    resblocks: Vec<ResidualBlock>,
}

impl Transformer {
    pub(crate) fn new(vb: VarBuilder, dims: &TransformerDims) -> Result<Self> {
        let vb = vb.pp("resblocks");
        let resblocks = (0..dims.layers)
            .map(|i| ResidualBlock::new(vb.pp(i), dims))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { resblocks })
    }

    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        for block in &self.resblocks {
            x = block.forward(&x, mask)?;
        }
        Ok(x)
    }
}

/// `x / ‖x‖₂` along the last dimension.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm)
}
