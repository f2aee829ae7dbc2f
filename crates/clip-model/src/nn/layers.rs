//! Building blocks shared by both towers: layer norm, multi-head attention, MLP, residual blocks.
//!
//! Layer code returns `candle_core::Result`; the public API converts to [`crate::Error`].
//! `vb.pp("…")` paths are the open_clip checkpoint names.

use std::sync::Arc;

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::config::Activation;
use crate::cpu::{self, Act, Epilogue, PackedMatrix};
use crate::error::raise;

/// Layer-norm epsilon of every CLIP layer norm (PyTorch's default).
pub(crate) const LN_EPS: f64 = 1e-5;

pub(crate) fn layer_norm(width: usize, vb: VarBuilder) -> Result<LayerNorm> {
    layer_norm_eps(width, LN_EPS, vb)
}

/// A layer norm with another epsilon (SigLIP's are 1e-6).
pub(crate) fn layer_norm_eps(width: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(width, "weight")?;
    let bias = vb.get(width, "bias")?;
    Ok(LayerNorm::new(weight, bias, eps))
}

fn linear(inp: usize, out: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out, inp), "weight")?;
    let bias = vb.get(out, "bias")?;
    Linear::new(weight, bias)
}

/// A linear layer `y = x Wᵀ + b`: packed once for the CPU kernels ([`PackedMatrix`]) where they
/// run (f32 weights on an x86-64 CPU with AVX2 + FMA or AVX-512), candle tensors otherwise.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    Plain(candle_nn::Linear),
    Packed(Arc<PackedMatrix>),
}

impl Linear {
    /// The layer of `weight` (`[out, in]`) and `bias` (`[out]`), packed where the kernels run.
    pub(crate) fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        let Some(kernel) = cpu::kernel_for(&weight) else {
            return Ok(Self::plain(weight, bias));
        };
        let (n, k) = weight.dims2()?;
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let b = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let packed = PackedMatrix::for_weights(&w, &b, n, k, kernel).map_err(raise)?;
        Ok(Linear::Packed(Arc::new(packed)))
    }

    /// The layer kept as candle tensors whatever the CPU (for layers off the hot path).
    pub(crate) fn plain(weight: Tensor, bias: Tensor) -> Self {
        Linear::Plain(candle_nn::Linear::new(weight, Some(bias)))
    }

    /// The layer as candle's `Linear` (unpacked again for packed weights: only the plain path,
    /// taken for inputs the fused kernels do not handle, needs it).
    fn to_candle(&self) -> Result<candle_nn::Linear> {
        match self {
            Linear::Plain(l) => Ok(l.clone()),
            Linear::Packed(p) => {
                let device = candle_core::Device::Cpu;
                let (n, k) = (p.out_features(), p.in_features());
                let w = Tensor::from_vec(p.unpack(), (n, k), &device)?;
                let b = Tensor::from_slice(p.bias(), n, &device)?;
                Ok(candle_nn::Linear::new(w, Some(b)))
            }
        }
    }

    /// `x Wᵀ + b` for `x` of any rank (`[…, in]`), with candle's matmul.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.to_candle()?.forward(x)
    }

    /// `x Wᵀ + b` for `x`: `[rows, in]`, through the packed kernels where they apply.
    pub(crate) fn forward_rows(&self, x: &Tensor) -> Result<Tensor> {
        linear_in_place(x, self, Act::Identity, None)
    }
}

impl From<Activation> for Act {
    fn from(a: Activation) -> Self {
        match a {
            Activation::QuickGelu => Act::QuickGelu,
            Activation::Gelu => Act::Gelu,
            Activation::GeluTanh => Act::GeluTanh,
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
            in_proj: Linear::new(w, b)?,
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
        self.c_proj
            .forward(&cpu::apply_act(&x, self.activation.into())?)
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
    fn new(vb: VarBuilder, dims: &TransformerDims, eps: f64) -> Result<Self> {
        Ok(Self {
            ln_1: layer_norm_eps(dims.width, eps, vb.pp("ln_1"))?,
            attn: Attention::new(vb.pp("attn"), dims.width, dims.heads)?,
            ln_2: layer_norm_eps(dims.width, eps, vb.pp("ln_2"))?,
            mlp: Mlp::new(vb.pp("mlp"), dims.width, dims.mlp_width, dims.activation)?,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, mask)?)?;
        &x + self.mlp.forward(&self.ln_2.forward(&x)?)?
    }

    /// The same block through the fused CPU kernels of [`mod@crate::cpu::attention`]: whole-batch `[B·T, D]`
    /// matmuls, bias / activation / residual applied in place, attention straight from the packed
    /// projection. `Ok(None)` where they do not apply (other devices and dtypes).
    fn forward_fused(&self, x: &Tensor, causal: bool) -> Result<Option<Tensor>> {
        if !cpu::fused(x) {
            return Ok(None);
        }
        let (b, t, w) = x.dims3()?;
        let heads = self.attn.heads;
        let z = self.forward_rows(&x.reshape((b * t, w))?, |qkv| {
            cpu::attention(&qkv.reshape((b, t, 3 * w))?, heads, causal)
        })?;
        z.map(|z| z.reshape((b, t, w))).transpose()
    }

    /// The fused block on a `[rows, width]` matrix; `attend` maps the packed q/k/v projection
    /// `[rows, 3 × width]` to the attention output (`None`: not applicable).
    fn forward_rows(
        &self,
        rows: &Tensor,
        attend: impl FnOnce(&Tensor) -> Result<Option<Tensor>>,
    ) -> Result<Option<Tensor>> {
        let (n, w) = rows.dims2()?;
        let h = self.ln_1.forward(rows)?;
        let qkv = linear_in_place(&h, &self.attn.in_proj, Act::Identity, None)?;
        let Some(a) = attend(&qkv)? else {
            return Ok(None);
        };
        let y = linear_in_place(
            &a.reshape((n, w))?,
            &self.attn.out_proj,
            Act::Identity,
            Some(rows),
        )?;
        let h = self.ln_2.forward(&y)?;
        let act = self.mlp.activation.into();
        let f = linear_in_place(&h, &self.mlp.c_fc, act, None)?;
        let z = linear_in_place(&f, &self.mlp.c_proj, Act::Identity, Some(&y))?;
        Ok(Some(z))
    }
}

/// Row count up to which [`linear_in_place`] multiplies in transposed form.
const SMALL_ROWS: usize = 128;

/// `act(x Wᵀ + b (+ residual))` on a `[rows, in]` matrix: in one pass through the packed
/// kernels where they apply, else candle's product followed by [`cpu::bias_epilogue`] (in place
/// where the fused kernels apply, candle ops otherwise).
pub(crate) fn linear_in_place(
    x: &Tensor,
    linear: &Linear,
    act: Act,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    if let Linear::Packed(p) = linear
        && cpu::fused(x)
        && residual.is_none_or(cpu::fused)
    {
        let (m, _) = x.dims2()?;
        let y = cpu::with_f32(x, "linear input", |xs| {
            let run = |residual: Option<&[f32]>| {
                p.forward(xs, m, Epilogue { residual, act }).map_err(raise)
            };
            match residual {
                None => run(None),
                Some(r) => cpu::with_f32(r, "residual", |rs| run(Some(rs))),
            }
        })?;
        return Tensor::from_vec(y, (m, p.out_features()), x.device());
    }
    let lin = linear.to_candle()?;
    // With few rows (batch 1–2 of images, short text batches) gemm's kernels run along the
    // rows of the left operand, so `(W xᵀ)ᵀ` puts the long weight dimension there; measured on
    // a 2-core AVX-512 machine: ViT-B/32 batch 1 140 → 71 ms, break-even near 200 rows.
    let y = if x.dim(0)? <= SMALL_ROWS {
        lin.weight().matmul(&x.t()?)?.t()?.contiguous()?
    } else {
        x.matmul(&lin.weight().t()?)?
    };
    let Some(bias) = lin.bias() else {
        return Err(candle_core::Error::Msg("linear layer without bias".into()));
    };
    cpu::bias_epilogue(y, bias, act, residual)
}

/// Whether `mask` is the additive causal mask (0 on and below the diagonal, −∞ above); `None`
/// for a mask of another kind.
fn causal_flag(mask: Option<&Tensor>) -> Result<Option<bool>> {
    let Some(m) = mask else {
        return Ok(Some(false));
    };
    let (r, c) = m.dims2()?;
    if r != c || m.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    let v = m.flatten_all()?.to_vec1::<f32>()?;
    let causal = v.iter().enumerate().all(|(k, &x)| {
        let (i, j) = (k / c, k % c);
        if j > i {
            x == f32::NEG_INFINITY
        } else {
            x == 0.0
        }
    });
    Ok(causal.then_some(true))
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
        Self::with_eps(vb, dims, LN_EPS)
    }

    /// [`Transformer::new`] with layer norms of epsilon `eps`.
    pub(crate) fn with_eps(vb: VarBuilder, dims: &TransformerDims, eps: f64) -> Result<Self> {
        let vb = vb.pp("resblocks");
        let resblocks = (0..dims.layers)
            .map(|i| ResidualBlock::new(vb.pp(i), dims, eps))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { resblocks })
    }

    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let causal = causal_flag(mask)?;
        let mut x = x.clone();
        for block in &self.resblocks {
            let fused = match causal {
                Some(c) => block.forward_fused(&x, c)?,
                None => None,
            };
            x = match fused {
                Some(y) => y,
                None => block.forward(&x, mask)?,
            };
        }
        Ok(x)
    }

    /// Causal blocks on sequences of different lengths packed row after row (`x`:
    /// `[rows, width]`, sequence `i` = rows `offsets[i]..offsets[i + 1]`), so no padding is
    /// computed. `Ok(None)` where the fused CPU kernels do not apply.
    pub(crate) fn forward_packed_causal(
        &self,
        x: &Tensor,
        offsets: &[usize],
    ) -> Result<Option<Tensor>> {
        if !cpu::fused(x) {
            return Ok(None);
        }
        let mut x = x.clone();
        for block in &self.resblocks {
            let heads = block.attn.heads;
            match block.forward_rows(&x, |qkv| cpu::packed_causal_attention(qkv, heads, offsets))? {
                Some(y) => x = y,
                None => return Ok(None),
            }
        }
        Ok(Some(x))
    }
}

/// `x / ‖x‖₂` along the last dimension.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm)
}
