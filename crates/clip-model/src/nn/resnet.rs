//! CLIP's ModifiedResNet image tower (RN50, RN101, RN50x4, RN50x16, RN50x64).
//!
//! The architecture of OpenAI's release (and open_clip's `ModifiedResNet`):
//!
//! * a stem of three 3×3 convolutions (the first with stride 2), each followed by batch norm and ReLU, then a
//!   2×2 average pool;
//! * four stages of bottleneck blocks (1×1 → 3×3 → 1×1 convolutions, expansion 4). Strided blocks
//!   anti-alias: an average pool of the stride's size runs before the last 1×1 convolution, and the shortcut is
//!   `downsample.-1` (average pool) → `downsample.0` (1×1 convolution) → `downsample.1` (batch norm);
//! * attention pooling: the feature map is flattened, its mean is prepended as an extra token, a learned
//!   positional embedding is added, and one multi-head attention (separate `q/k/v_proj`, output `c_proj`)
//!   runs with the mean token as the query; its output is the image embedding.
//!
//! Batch norm runs in inference mode with the stored running statistics (eps 1e-5) and is folded into the
//! preceding convolution when the weights are loaded, so each weight is held once, already fused.
//! With f32 weights on an x86-64 CPU that has AVX2 + FMA or AVX-512, each folded convolution is also
//! packed once for the crate's own matrix kernels and the trunk runs channels-last
//! (an NHWC im2col + packed product per convolution); feature maps are returned NCHW either way.
//!
//! The checkpoint names are open_clip's / OpenAI's (`visual.conv1.weight`, `visual.layer3.4.bn2.running_var`,
//! `visual.attnpool.q_proj.weight`, …); [`ModifiedResNet::new`] takes a `VarBuilder` already pointed at the
//! tower (`vb.pp("visual")`). The architecture, [`ResNetConfig`], is in [`crate::config`].

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::ResNetConfig;
use crate::cpu;
use crate::cpu::conv::{ConvSpec, Nhwc, PackedConv, conv_bias_act};
use crate::error::{Error, Result, lower, raise};
use crate::nn::layers::Linear;
use crate::weights::{Weights, join_name};

/// Batch-norm epsilon of every BN layer in the tower (PyTorch's default, used by OpenAI's models).
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// Bottleneck expansion: a stage with `planes` inner channels outputs `4 * planes`.
const EXPANSION: usize = 4;

/// Loads `name` under `vb` as f32, with typed errors (missing tensor, wrong shape) whatever the backend.
fn get_f32(vb: &VarBuilder, shape: &[usize], name: &str) -> candle_core::Result<Tensor> {
    let full = join_name(&vb.prefix(), name);
    if !vb.contains_tensor(name) {
        return Err(raise(Error::MissingTensor {
            name: full,
            path: None,
        }));
    }
    let t = vb.get_unchecked_dtype(name, DType::F32)?;
    if t.dims() != shape {
        return Err(raise(Error::ShapeMismatch {
            name: full,
            expected: shape.to_vec(),
            found: t.dims().to_vec(),
        }));
    }
    Ok(t)
}

/// A bias-free convolution followed by inference-mode batch norm, folded into one convolution with bias.
#[derive(Debug, Clone)]
struct ConvBn {
    weights: ConvWeights,
    dtype: DType,
    kernel: usize,
    padding: usize,
    stride: usize,
}

/// The folded weights: as tensors, or packed once for the NHWC CPU path (then only there).
#[derive(Debug, Clone)]
enum ConvWeights {
    Plain(PlainConv),
    Packed(Arc<PackedConv>),
}

#[derive(Debug, Clone)]
struct PlainConv {
    weight: Tensor,
    /// Shape `(1, out, 1, 1)`.
    bias: Tensor,
    /// Shape `(out)`, for the fused CPU kernel.
    bias_flat: Tensor,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        conv: VarBuilder,
        bn: VarBuilder,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> candle_core::Result<Self> {
        let dtype = conv.dtype();
        let w = get_f32(&conv, &[c_out, c_in, kernel, kernel], "weight")?;
        let gamma = get_f32(&bn, &[c_out], "weight")?;
        let beta = get_f32(&bn, &[c_out], "bias")?;
        let mean = get_f32(&bn, &[c_out], "running_mean")?;
        let var = get_f32(&bn, &[c_out], "running_var")?;
        // y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta = conv_{w * s}(x) + (beta - mean * s)
        let scale = (gamma / (var + BATCH_NORM_EPS)?.sqrt()?)?;
        let bias = (beta - (mean * &scale)?)?;
        let weight = w
            .broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?
            .to_dtype(dtype)?;
        let bias = bias.to_dtype(dtype)?;
        let spec = ConvSpec {
            kernel,
            stride,
            padding,
            relu: false,
        };
        let weights = match cpu::kernel_for(&weight) {
            Some(k) => ConvWeights::Packed(Arc::new(PackedConv::new(&weight, &bias, spec, k)?)),
            None => ConvWeights::Plain(PlainConv {
                bias: bias.reshape((1, c_out, 1, 1))?,
                bias_flat: bias,
                weight,
            }),
        };
        Ok(Self {
            weights,
            dtype,
            kernel,
            padding,
            stride,
        })
    }

    /// The weights as tensors (unpacked again for packed weights: only the NCHW path, taken for
    /// inputs the NHWC path does not get, needs them).
    fn plain(&self) -> candle_core::Result<PlainConv> {
        match &self.weights {
            ConvWeights::Plain(p) => Ok(p.clone()),
            ConvWeights::Packed(p) => {
                let (weight, bias) = p.unpack()?;
                Ok(PlainConv {
                    bias: bias.reshape((1, bias.dim(0)?, 1, 1))?,
                    bias_flat: bias,
                    weight,
                })
            }
        }
    }

    fn is_packed(&self) -> bool {
        matches!(self.weights, ConvWeights::Packed(_))
    }

    /// `relu?(conv(x) + bias (+ residual))` on NHWC maps: the packed kernels, or the NCHW path
    /// on converted maps for plain weights.
    fn run_nhwc(&self, x: &Nhwc, relu: bool, residual: Option<&Nhwc>) -> candle_core::Result<Nhwc> {
        if let ConvWeights::Packed(p) = &self.weights {
            return p.forward(x, relu, residual);
        }
        let r = residual.map(Nhwc::to_nchw).transpose()?;
        Nhwc::from_nchw(&self.run(&x.to_nchw()?, relu, r.as_ref())?)
    }
}

impl ConvBn {
    /// `relu?(conv(x) + bias (+ residual))`: one fused CPU kernel for contiguous f32 input, candle ops
    /// otherwise.
    fn run(
        &self,
        x: &Tensor,
        relu: bool,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        if cpu::fused(x) && residual.is_none_or(cpu::fused) {
            let spec = ConvSpec {
                kernel: self.kernel,
                stride: self.stride,
                padding: self.padding,
                relu,
            };
            let p = self.plain()?;
            return conv_bias_act(x, &p.weight, &p.bias_flat, residual, spec);
        }
        let mut y = self.forward(x)?;
        if let Some(r) = residual {
            y = (y + r)?;
        }
        if relu { y.relu() } else { Ok(y) }
    }
}

impl Module for ConvBn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let PlainConv { weight, bias, .. } = self.plain()?;
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        let y = if kh == 1 && kw == 1 && self.stride == 1 && self.padding == 0 {
            // A 1x1 convolution is one matrix product per image, on the NCHW data as it lies
            // (candle's conv path copies the input and output element by element).
            let (b, _, h, w) = x.dims4()?;
            let x = x.contiguous()?.reshape((b, c_in, h * w))?;
            let k = weight.reshape((c_out, c_in))?;
            let y = if b == 1 {
                k.matmul(&x.squeeze(0)?)?.unsqueeze(0)?
            } else {
                k.broadcast_left(b)?.matmul(&x)?
            };
            y.reshape((b, c_out, h, w))?
        } else if kh == 3
            && kw == 3
            && self.stride == 1
            && self.padding == 1
            && x.device().is_cpu()
            && x.dim(2)? * x.dim(3)? <= IM2COL_MAX_PIXELS
        {
            conv3x3_im2col(x, &weight)?
        } else if x.dtype() == DType::BF16 && x.device().is_cpu() {
            // candle's CPU conv2d has no bf16 kernel: convolve in f32, round back to bf16.
            x.to_dtype(DType::F32)?
                .conv2d(
                    &weight.to_dtype(DType::F32)?,
                    self.padding,
                    self.stride,
                    1,
                    1,
                )?
                .to_dtype(DType::BF16)?
        } else {
            x.conv2d(&weight, self.padding, self.stride, 1, 1)?
        };
        y.broadcast_add(&bias)
    }
}

/// Largest feature map (pixels) for which a 3×3 convolution runs as one im2col matrix product on the
/// CPU; above it candle's tiled convolution is used (building the 9× larger column matrix costs more
/// than it saves there). Measured on a 2-core AVX2 machine: 1.1–2× faster at 56², 28² and 14².
const IM2COL_MAX_PIXELS: usize = 56 * 56;

/// 3×3 convolution, stride 1, padding 1, as `weight (O, 9C) · columns (9C, HW)` per image.
fn conv3x3_im2col(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let c_out = weight.dim(0)?;
    let xp = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let mut taps = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            taps.push(xp.narrow(2, dy, h)?.narrow(3, dx, w)?);
        }
    }
    // (B, C, 9, H, W): column index c * 9 + (dy * 3 + dx), the order of the (O, C, 3, 3) kernel.
    let cols = Tensor::stack(&taps, 2)?.reshape((b, c * 9, h * w))?;
    let k = weight.reshape((c_out, c * 9))?;
    let y = if b == 1 {
        k.matmul(&cols.squeeze(0)?)?.unsqueeze(0)?
    } else {
        k.broadcast_left(b)?.matmul(&cols)?
    };
    y.reshape((b, c_out, h, w))
}

/// A bottleneck block with anti-aliased striding.
#[derive(Debug, Clone)]
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    stride: usize,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(
        vb: VarBuilder,
        inplanes: usize,
        planes: usize,
        stride: usize,
    ) -> candle_core::Result<Self> {
        let out = planes * EXPANSION;
        let conv1 = ConvBn::new(vb.pp("conv1"), vb.pp("bn1"), inplanes, planes, 1, 0, 1)?;
        let conv2 = ConvBn::new(vb.pp("conv2"), vb.pp("bn2"), planes, planes, 3, 1, 1)?;
        let conv3 = ConvBn::new(vb.pp("conv3"), vb.pp("bn3"), planes, out, 1, 0, 1)?;
        let downsample = if stride > 1 || inplanes != out {
            let ds = vb.pp("downsample");
            Some(ConvBn::new(ds.pp("0"), ds.pp("1"), inplanes, out, 1, 0, 1)?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            conv3,
            stride,
            downsample,
        })
    }
}

impl Module for Bottleneck {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = self.conv1.run(x, true, None)?;
        out = self.conv2.run(&out, true, None)?;
        if self.stride > 1 {
            out = out.avg_pool2d(self.stride)?;
        }
        let identity = match &self.downsample {
            Some(ds) if self.stride > 1 => ds.run(&x.avg_pool2d(self.stride)?, false, None)?,
            Some(ds) => ds.run(x, false, None)?,
            None => x.clone(),
        };
        self.conv3.run(&out, true, Some(&identity))
    }
}

impl Bottleneck {
    /// [`Module::forward`] on NHWC maps.
    fn forward_nhwc(&self, x: &Nhwc) -> candle_core::Result<Nhwc> {
        let mut out = self.conv1.run_nhwc(x, true, None)?;
        out = self.conv2.run_nhwc(&out, true, None)?;
        if self.stride > 1 {
            out = out.avg_pool(self.stride)?;
        }
        let shortcut = match &self.downsample {
            Some(ds) if self.stride > 1 => {
                Some(ds.run_nhwc(&x.avg_pool(self.stride)?, false, None)?)
            }
            Some(ds) => Some(ds.run_nhwc(x, false, None)?),
            None => None,
        };
        self.conv3
            .run_nhwc(&out, true, Some(shortcut.as_ref().unwrap_or(x)))
    }

    fn is_packed(&self) -> bool {
        [&self.conv1, &self.conv2, &self.conv3]
            .into_iter()
            .chain(&self.downsample)
            .all(ConvBn::is_packed)
    }
}

/// Attention pooling over the final feature map; returns the mean token's output.
#[derive(Debug, Clone)]
struct AttentionPool2d {
    positional_embedding: Tensor,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    c_proj: Linear,
    heads: usize,
}

impl AttentionPool2d {
    fn new(vb: VarBuilder, cfg: &ResNetConfig) -> candle_core::Result<Self> {
        let embed = cfg.embed_dim();
        let grid = cfg.grid_size();
        let dtype = vb.dtype();
        let linear = |name: &str, out: usize| -> candle_core::Result<Linear> {
            let v = vb.pp(name);
            let w = get_f32(&v, &[out, embed], "weight")?.to_dtype(dtype)?;
            let b = get_f32(&v, &[out], "bias")?.to_dtype(dtype)?;
            Ok(Linear::plain(w, b))
        };
        let positional_embedding =
            get_f32(&vb, &[grid * grid + 1, embed], "positional_embedding")?.to_dtype(dtype)?;
        if cfg.heads == 0 || !embed.is_multiple_of(cfg.heads) {
            return Err(raise(Error::Architecture(format!(
                "pool width {embed} cannot be split into {} heads",
                cfg.heads
            ))));
        }
        Ok(Self {
            positional_embedding,
            q_proj: linear("q_proj", embed)?,
            k_proj: linear("k_proj", embed)?,
            v_proj: linear("v_proj", embed)?,
            c_proj: linear("c_proj", cfg.output_dim)?,
            heads: cfg.heads,
        })
    }
}

impl Module for AttentionPool2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        // (B, C, H, W) -> (B, HW, C).
        self.forward_tokens(&x.reshape((b, c, h * w))?.transpose(1, 2)?)
    }
}

impl AttentionPool2d {
    /// The pool on the final map as `(B, HW, C)` tokens.
    fn forward_tokens(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, hw, c) = x.dims3()?;
        let head_dim = c / self.heads;
        // Mean token first, plus positions.
        let mean = x.mean_keepdim(1)?;
        let x = Tensor::cat(&[&mean, x], 1)?
            .broadcast_add(&self.positional_embedding)?
            .contiguous()?;
        let t = hw + 1;
        // Only the mean token's output is used, so it is the only query.
        let q = self
            .q_proj
            .forward(&x.narrow(1, 0, 1)?)?
            .reshape((b, 1, self.heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let k = split(self.k_proj.forward(&x)?)?;
        let v = split(self.v_proj.forward(&x)?)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let att = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * scale)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let o = att.matmul(&v)?.transpose(1, 2)?.reshape((b, c))?;
        self.c_proj.forward(&o)
    }
}

/// CLIP's ModifiedResNet image tower with attention pooling.
#[derive(Debug, Clone)]
pub struct ModifiedResNet {
    stem: [ConvBn; 3],
    stages: Vec<Vec<Bottleneck>>,
    attnpool: AttentionPool2d,
    cfg: ResNetConfig,
    /// Every convolution packed: the trunk runs NHWC through the packed kernels.
    packed: bool,
}

impl ModifiedResNet {
    /// Builds the tower from the weights under `vb` (pointed at the tower, e.g. `vb.pp("visual")`).
    ///
    /// Every batch norm is folded into its convolution here; the file's tensors are read once and not kept.
    /// A missing tensor or a wrong shape is [`Error::MissingTensor`] / [`Error::ShapeMismatch`] naming it.
    pub fn new(vb: VarBuilder, cfg: &ResNetConfig) -> Result<Self> {
        Self::build(vb, cfg).map_err(lower)
    }

    fn build(vb: VarBuilder, cfg: &ResNetConfig) -> candle_core::Result<Self> {
        let w = cfg.width;
        let stem = [
            ConvBn::new(vb.pp("conv1"), vb.pp("bn1"), 3, w / 2, 3, 1, 2)?,
            ConvBn::new(vb.pp("conv2"), vb.pp("bn2"), w / 2, w / 2, 3, 1, 1)?,
            ConvBn::new(vb.pp("conv3"), vb.pp("bn3"), w / 2, w, 3, 1, 1)?,
        ];
        let mut inplanes = w;
        let mut stages = Vec::with_capacity(4);
        for (i, &blocks) in cfg.layers.iter().enumerate() {
            let planes = w << i;
            let stride = if i == 0 { 1 } else { 2 };
            let vs = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks);
            for j in 0..blocks {
                let s = if j == 0 { stride } else { 1 };
                stage.push(Bottleneck::new(vs.pp(j.to_string()), inplanes, planes, s)?);
                inplanes = planes * EXPANSION;
            }
            stages.push(stage);
        }
        let attnpool = AttentionPool2d::new(vb.pp("attnpool"), cfg)?;
        let packed = stem.iter().all(ConvBn::is_packed)
            && stages.iter().flatten().all(Bottleneck::is_packed);
        Ok(Self {
            stem,
            stages,
            attnpool,
            cfg: *cfg,
            packed,
        })
    }

    /// Loads the image tower of an open_clip / OpenAI safetensors file (names `visual.*`; the text tower,
    /// if present, is not read), memory-mapped, with the architecture inferred from the tensor shapes.
    ///
    /// Errors: the file errors of [`Weights::open`], [`Error::MissingTensor`], [`Error::ShapeMismatch`],
    /// [`Error::Architecture`], [`Error::UnsupportedDtype`].
    pub fn from_file(
        path: impl AsRef<std::path::Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let weights = Weights::open(path)?;
        let cfg = ResNetConfig::infer("visual", |n| weights.shape(n))?;
        let vb = VarBuilder::from_backend(Box::new(weights), dtype, device.clone());
        // The mapping is released when `vb` drops at the end of this call; only the fused
        // weights stay.
        Self::new(vb.pp("visual"), &cfg)
    }

    /// Infers the config from the tensors under `vb` ([`ResNetConfig::infer_from_var_builder`]) and builds
    /// the tower, with this crate's typed errors.
    pub fn from_var_builder(vb: VarBuilder) -> Result<Self> {
        let cfg = ResNetConfig::infer_from_var_builder(&vb)?;
        Self::new(vb, &cfg)
    }

    /// The architecture.
    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    /// Side of the square input image in pixels; preprocessing must resize and crop to it.
    pub fn image_size(&self) -> usize {
        self.cfg.image_size
    }

    /// Dimension of the image embeddings.
    pub fn output_dim(&self) -> usize {
        self.cfg.output_dim
    }

    /// Embeds a batch of preprocessed images `(batch, 3, image_size, image_size)` (CLIP-normalised) into
    /// `(batch, output_dim)` embeddings (not L2-normalised). Checks the input shape first.
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        self.check_input(pixels)?;
        self.forward(pixels).map_err(lower)
    }

    fn check_input(&self, pixels: &Tensor) -> Result<()> {
        let s = self.cfg.image_size;
        match pixels.dims() {
            [b, 3, h, w] if *b > 0 && *h == s && *w == s => Ok(()),
            dims => Err(Error::InvalidInput(format!(
                "pixels must have shape (batch, 3, {s}, {s}) with batch > 0, found {dims:?}"
            ))),
        }
    }
}

impl ModifiedResNet {
    /// The feature maps before attention pooling: the stem's output (after its average pool) and the
    /// output of each of the four stages, as open_clip's `forward_intermediates` returns them (NCHW).
    pub fn feature_maps(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        self.check_input(pixels)?;
        let mut maps = Vec::with_capacity(5);
        if self.packed && pixels.device().is_cpu() {
            let mut x = self.stem_nhwc(pixels).map_err(lower)?;
            maps.push(x.to_nchw().map_err(lower)?);
            for stage in &self.stages {
                for block in stage {
                    x = block.forward_nhwc(&x).map_err(lower)?;
                }
                maps.push(x.to_nchw().map_err(lower)?);
            }
            return Ok(maps);
        }
        let mut x = self.stem_forward(pixels).map_err(lower)?;
        maps.push(x.clone());
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x).map_err(lower)?;
            }
            maps.push(x.clone());
        }
        Ok(maps)
    }

    fn stem_nhwc(&self, x: &Tensor) -> candle_core::Result<Nhwc> {
        let mut x = Nhwc::from_nchw(x)?;
        for conv in &self.stem {
            x = conv.run_nhwc(&x, true, None)?;
        }
        x.avg_pool(2)
    }

    fn stem_forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.to_dtype(self.stem[0].dtype)?;
        let mut x = self.stem[0].run(&x.contiguous()?, true, None)?;
        x = self.stem[1].run(&x, true, None)?;
        x = self.stem[2].run(&x, true, None)?;
        x.avg_pool2d(2)
    }
}

impl Module for ModifiedResNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.packed && x.device().is_cpu() {
            let mut h = self.stem_nhwc(x)?;
            for stage in &self.stages {
                for block in stage {
                    h = block.forward_nhwc(&h)?;
                }
            }
            return self.attnpool.forward_tokens(&h.into_tokens()?);
        }
        let mut x = self.stem_forward(x)?;
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x)?;
            }
        }
        self.attnpool.forward(&x)
    }
}
