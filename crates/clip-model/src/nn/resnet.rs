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
//! Each folded convolution is a [`Conv2d`] of the CPU layer, which picks its path once at load:
//! with f32 weights on the CPU the trunk runs channels-last (an im2col + one product per band of
//! output pixels, through the packed kernels on x86-64 CPUs with AVX2 + FMA or AVX-512);
//! elsewhere candle's convolutions run. Feature maps are returned NCHW either way.
//!
//! The checkpoint names are open_clip's / OpenAI's (`visual.conv1.weight`, `visual.layer3.4.bn2.running_var`,
//! `visual.attnpool.q_proj.weight`, …); [`ModifiedResNet::new`] takes a `VarBuilder` already pointed at the
//! tower (`vb.pp("visual")`). The architecture, [`ResNetConfig`], is in [`crate::config`].

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::ResNetConfig;
use crate::cpu::Act;
use crate::cpu::conv::{Conv2d, ConvSpec, FeatureMap, Nhwc};
use crate::error::{Error, Result, lower, raise};
use crate::nn::layers::Linear;
use crate::nn::{ImageTower, check_pixels};
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

/// A bias-free convolution followed by inference-mode batch norm, folded into one convolution with
/// bias ([`Conv2d`], which picks its own path: packed CPU kernels, `gemm`, or candle).
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
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
        };
        Ok(Self {
            conv: Conv2d::new(&weight, &bias, spec)?,
        })
    }

    /// `relu?(conv(x) + bias (+ residual))`.
    fn run(
        &self,
        x: &FeatureMap,
        relu: bool,
        residual: Option<&FeatureMap>,
    ) -> candle_core::Result<FeatureMap> {
        let act = if relu { Act::Relu } else { Act::Identity };
        self.conv.forward(x, act, residual)
    }
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

    fn forward(&self, x: &FeatureMap) -> candle_core::Result<FeatureMap> {
        let mut out = self.conv1.run(x, true, None)?;
        out = self.conv2.run(&out, true, None)?;
        if self.stride > 1 {
            out = out.avg_pool(self.stride)?;
        }
        let shortcut = match &self.downsample {
            Some(ds) if self.stride > 1 => Some(ds.run(&x.avg_pool(self.stride)?, false, None)?),
            Some(ds) => Some(ds.run(x, false, None)?),
            None => None,
        };
        self.conv3
            .run(&out, true, Some(shortcut.as_ref().unwrap_or(x)))
    }

    fn convs(&self) -> impl Iterator<Item = &ConvBn> {
        [&self.conv1, &self.conv2, &self.conv3]
            .into_iter()
            .chain(&self.downsample)
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
    /// Every convolution runs on the CPU (f32): the trunk runs channels-last.
    nhwc: bool,
    /// The model dtype (of the NCHW path).
    dtype: DType,
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
        let nhwc = stem
            .iter()
            .chain(stages.iter().flatten().flat_map(Bottleneck::convs))
            .all(|c| c.conv.runs_nhwc());
        Ok(Self {
            stem,
            stages,
            attnpool,
            cfg: *cfg,
            nhwc,
            dtype: vb.dtype(),
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
        check_pixels(pixels, self.cfg.image_size)
    }
}

impl ModifiedResNet {
    /// The feature maps before attention pooling: the stem's output (after its average pool) and the
    /// output of each of the four stages, as open_clip's `forward_intermediates` returns them (NCHW).
    pub fn feature_maps(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        self.check_input(pixels)?;
        let mut maps = Vec::with_capacity(5);
        let mut x = self.stem(pixels)?;
        maps.push(x.to_nchw()?);
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x)?;
            }
            maps.push(x.to_nchw()?);
        }
        Ok(maps)
    }

    /// The stem on `pixels` (NCHW), in the layout the convolutions run in: channels-last f32
    /// when they all run on the CPU, the model dtype's NCHW tensors otherwise.
    fn stem(&self, pixels: &Tensor) -> candle_core::Result<FeatureMap> {
        let mut x = if self.nhwc && pixels.device().is_cpu() {
            FeatureMap::Nhwc(Nhwc::from_nchw(pixels)?)
        } else {
            FeatureMap::Nchw(pixels.to_dtype(self.dtype)?.contiguous()?)
        };
        for conv in &self.stem {
            x = conv.run(&x, true, None)?;
        }
        x.avg_pool(2)
    }
}

impl Module for ModifiedResNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.stem(x)?;
        for stage in &self.stages {
            for block in stage {
                h = block.forward(&h)?;
            }
        }
        self.attnpool.forward_tokens(&h.into_tokens()?)
    }
}

impl ImageTower for ModifiedResNet {
    fn image_size(&self) -> usize {
        self.cfg.image_size
    }

    fn output_dim(&self) -> usize {
        self.cfg.output_dim
    }

    fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        ModifiedResNet::encode(self, pixels)
    }
}
