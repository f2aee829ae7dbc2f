//! Convolution for the ModifiedResNet tower: a square-kernel convolution with bias (batch norm
//! folded in by the caller), an optional residual and an activation, behind one entry point,
//! [`Conv2d::forward`], on a [`FeatureMap`].
//!
//! - f32 weights on the CPU: maps are channels-last ([`Nhwc`]), so every output pixel is one row
//!   of a matrix product. Each band of output pixels is one [`im2col`] and one product: through
//!   the packed kernels ([`PackedMatrix`], weights packed once at load) where the CPU has them,
//!   with bias, residual and activation applied in the kernel's store; else (other CPUs,
//!   `CLIP_MODEL_UNPACKED`) through `gemm`, then one pass for bias and activation.
//! - Otherwise (other devices and dtypes, `CLIP_MODEL_UNFUSED`): candle's `conv2d` on NCHW
//!   tensors (a 1×1 convolution as one matrix product; bf16 on the CPU through f32).

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, bail};
use rayon::prelude::*;

use super::elementwise::apply_act;
use super::epilogue::{Act, Epilogue};
use super::packed::{Kernel, PackedMatrix, kernel_for};
use super::tensor::fused;
use crate::error::raise;

/// Target size of one band's column matrix (bytes): small enough to stay in L2/L3, large enough
/// that each product has many rows.
const BAND_BYTES: usize = 2 << 20;

/// Smallest number of output pixels per band (keeps the matrix products tall on small maps).
const MIN_BAND_PIXELS: usize = 512;

/// Geometry of a convolution: a `kernel × kernel` window, `stride`, zero `padding` on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvSpec {
    /// Output height and width for an `h × w` input.
    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let out = |x: usize| (x + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1;
        (out(h), out(w))
    }

    /// A 1×1 convolution with stride 1: a product on the map as it lies, no im2col.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }
}

/// A feature map in the layout its convolutions run in.
#[derive(Debug, Clone)]
pub(crate) enum FeatureMap {
    /// `(batch, channels, h, w)`, any device and dtype.
    Nchw(Tensor),
    /// Channels last, f32 on the CPU.
    Nhwc(Nhwc),
}

impl FeatureMap {
    /// `s × s` average pooling with stride `s` (floor mode), as `avg_pool2d(s)`.
    pub(crate) fn avg_pool(&self, s: usize) -> Result<Self> {
        Ok(match self {
            FeatureMap::Nchw(t) => FeatureMap::Nchw(t.avg_pool2d(s)?),
            FeatureMap::Nhwc(m) => FeatureMap::Nhwc(m.avg_pool(s)?),
        })
    }

    /// As an NCHW tensor.
    pub(crate) fn to_nchw(&self) -> Result<Tensor> {
        match self {
            FeatureMap::Nchw(t) => Ok(t.clone()),
            FeatureMap::Nhwc(m) => m.to_nchw(),
        }
    }

    /// As channels-last values (converted from NCHW when needed).
    fn to_nhwc(&self) -> Result<Cow<'_, Nhwc>> {
        match self {
            FeatureMap::Nchw(t) => Ok(Cow::Owned(Nhwc::from_nchw(t)?)),
            FeatureMap::Nhwc(m) => Ok(Cow::Borrowed(m)),
        }
    }

    /// As `(batch, h·w, channels)` tokens.
    pub(crate) fn into_tokens(self) -> Result<Tensor> {
        match self {
            FeatureMap::Nchw(t) => {
                let (b, c, h, w) = t.dims4()?;
                t.reshape((b, c, h * w))?.transpose(1, 2)
            }
            FeatureMap::Nhwc(m) => m.into_tokens(),
        }
    }
}

/// A feature map in NHWC layout (channels last): the layout of the CPU path, where every pixel's
/// channels are one row of a matrix product.
#[derive(Debug, Clone)]
pub(crate) struct Nhwc {
    pub data: Vec<f32>,
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Nhwc {
    /// From an NCHW tensor (any dtype, converted to f32).
    pub(crate) fn from_nchw(t: &Tensor) -> Result<Self> {
        let (b, c, h, w) = t.dims4()?;
        let data = t
            .to_dtype(candle_core::DType::F32)?
            .permute((0, 2, 3, 1))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self { data, b, h, w, c })
    }

    /// As an NCHW tensor on the CPU.
    pub(crate) fn to_nchw(&self) -> Result<Tensor> {
        Tensor::from_slice(&self.data, (self.b, self.h, self.w, self.c), &Device::Cpu)?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }

    /// As `(batch, h·w, c)` tokens.
    pub(crate) fn into_tokens(self) -> Result<Tensor> {
        let (b, n, c) = (self.b, self.h * self.w, self.c);
        Tensor::from_vec(self.data, (b, n, c), &Device::Cpu)
    }

    /// `s × s` average pooling with stride `s` (floor mode), as `avg_pool2d(s)`; an error, as
    /// there, when the map is smaller than the window.
    pub(crate) fn avg_pool(&self, s: usize) -> Result<Self> {
        let (b, h, w, c) = (self.b, self.h, self.w, self.c);
        if s == 0 || h < s || w < s {
            bail!("average pool: window {s} does not fit a {h}×{w} map");
        }
        let (ho, wo) = (h / s, w / s);
        let mut data = vec![0f32; b * ho * wo * c];
        let inv = 1.0 / (s * s) as f32;
        data.par_chunks_mut(wo * c)
            .enumerate()
            .for_each(|(row, out)| {
                let (bi, oy) = (row / ho, row % ho);
                for (ox, px) in out.chunks_exact_mut(c).enumerate() {
                    for dy in 0..s {
                        for dx in 0..s {
                            let at = ((bi * h + oy * s + dy) * w + ox * s + dx) * c;
                            px.iter_mut()
                                .zip(&self.data[at..at + c])
                                .for_each(|(o, v)| *o += v);
                        }
                    }
                    px.iter_mut().for_each(|o| *o *= inv);
                }
            });
        Ok(Self {
            data,
            b,
            h: ho,
            w: wo,
            c,
        })
    }
}

/// How a [`Conv2d`] holds its weights.
#[derive(Debug)]
enum ConvWeights {
    /// Packed once for the CPU kernels: `O` rows over `(dy, dx, c)`, the order in which
    /// [`im2col`] lays out each output pixel's patch.
    Packed(PackedMatrix),
    /// For `gemm` on the CPU: the weight as `O` rows over `(dy, dx, c)`, and the bias.
    Gemm { weight: Vec<f32>, bias: Vec<f32> },
    /// candle tensors: weight `(O, C, k, k)`, bias `(1, O, 1, 1)`.
    Tensors { weight: Tensor, bias: Tensor },
}

/// Which of the paths a [`Conv2d`] takes (chosen once, when the weights are loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Packed(Kernel),
    Gemm,
    Tensors,
}

/// A square convolution with bias: `act(conv(x) + bias (+ residual))`.
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    weights: Arc<ConvWeights>,
    c_in: usize,
    c_out: usize,
    spec: ConvSpec,
}

impl Conv2d {
    /// The convolution of `weight` `(O, C, k, k)` and `bias` `(O)` (same dtype and device):
    /// packed for the CPU kernels where they run, laid out for `gemm` for other f32 CPU
    /// weights, kept as tensors otherwise.
    pub(crate) fn new(weight: &Tensor, bias: &Tensor, spec: ConvSpec) -> Result<Self> {
        let path = match kernel_for(weight) {
            Some(kernel) => Path::Packed(kernel),
            None if fused(weight) => Path::Gemm,
            None => Path::Tensors,
        };
        Self::on_path(weight, bias, spec, path)
    }

    fn on_path(weight: &Tensor, bias: &Tensor, spec: ConvSpec, path: Path) -> Result<Self> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        if kh != spec.kernel || kw != spec.kernel || spec.stride == 0 {
            bail!("conv: weight {:?} does not fit {spec:?}", weight.dims());
        }
        if bias.dims() != [c_out] {
            bail!(
                "conv: bias {:?} does not fit weight {:?}",
                bias.dims(),
                weight.dims()
            );
        }
        let rows = || -> Result<(Vec<f32>, Vec<f32>)> {
            let w = weight
                .to_dtype(DType::F32)?
                .permute((0, 2, 3, 1))?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ok((w, bias.to_dtype(DType::F32)?.to_vec1::<f32>()?))
        };
        let kdim = spec.kernel * spec.kernel * c_in;
        let weights = match path {
            Path::Packed(kernel) => {
                let (w, b) = rows()?;
                ConvWeights::Packed(
                    PackedMatrix::for_weights(&w, &b, c_out, kdim, kernel).map_err(raise)?,
                )
            }
            Path::Gemm => {
                let (weight, bias) = rows()?;
                ConvWeights::Gemm { weight, bias }
            }
            Path::Tensors => ConvWeights::Tensors {
                weight: weight.clone(),
                bias: bias.reshape((1, c_out, 1, 1))?,
            },
        };
        Ok(Self {
            weights: Arc::new(weights),
            c_in,
            c_out,
            spec,
        })
    }

    /// Whether this convolution runs on channels-last maps (f32 weights on the CPU).
    pub(crate) fn runs_nhwc(&self) -> bool {
        !matches!(*self.weights, ConvWeights::Tensors { .. })
    }

    /// `act(conv(x) + bias (+ residual))`, in `x`'s layout (`residual` converted to it if
    /// needed). The one entry point: channels-last maps take the CPU paths, NCHW tensors candle's.
    pub(crate) fn forward(
        &self,
        x: &FeatureMap,
        act: Act,
        residual: Option<&FeatureMap>,
    ) -> Result<FeatureMap> {
        match x {
            FeatureMap::Nhwc(m) if self.runs_nhwc() => {
                let r = residual.map(FeatureMap::to_nhwc).transpose()?;
                Ok(FeatureMap::Nhwc(self.forward_nhwc(m, act, r.as_deref())?))
            }
            FeatureMap::Nhwc(m) => {
                let r = residual.map(FeatureMap::to_nchw).transpose()?;
                let y = self.forward_nchw(&m.to_nchw()?, act, r.as_ref())?;
                Ok(FeatureMap::Nhwc(Nhwc::from_nchw(&y)?))
            }
            FeatureMap::Nchw(t) => {
                let r = residual.map(FeatureMap::to_nchw).transpose()?;
                Ok(FeatureMap::Nchw(self.forward_nchw(t, act, r.as_ref())?))
            }
        }
    }

    /// The weight `(O, C, k, k)` and bias `(1, O, 1, 1)` as tensors (rebuilt on the CPU, in
    /// f32, for CPU weights: only the NCHW path, taken for inputs the NHWC path does not get,
    /// needs them).
    fn tensors(&self) -> Result<(Tensor, Tensor)> {
        let (w, b) = match &*self.weights {
            ConvWeights::Tensors { weight, bias } => return Ok((weight.clone(), bias.clone())),
            ConvWeights::Packed(p) => (p.unpack(), p.bias().to_vec()),
            ConvWeights::Gemm { weight, bias } => (weight.clone(), bias.clone()),
        };
        let (o, c, k) = (self.c_out, self.c_in, self.spec.kernel);
        let w = Tensor::from_vec(w, (o, k, k, c), &Device::Cpu)?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        Ok((w, Tensor::from_vec(b, (1, o, 1, 1), &Device::Cpu)?))
    }

    /// The candle path on NCHW tensors.
    fn forward_nchw(&self, x: &Tensor, act: Act, residual: Option<&Tensor>) -> Result<Tensor> {
        let (weight, bias) = self.tensors()?;
        let ConvSpec {
            stride, padding, ..
        } = self.spec;
        let y = if self.spec.is_pointwise() {
            // One matrix product per image, on the NCHW data as it lies (candle's conv path
            // copies the input and output element by element).
            let (b, _, h, w) = x.dims4()?;
            let x = x.contiguous()?.reshape((b, self.c_in, h * w))?;
            let k = weight.reshape((self.c_out, self.c_in))?;
            let y = if b == 1 {
                k.matmul(&x.squeeze(0)?)?.unsqueeze(0)?
            } else {
                k.broadcast_left(b)?.matmul(&x)?
            };
            y.reshape((b, self.c_out, h, w))?
        } else if x.dtype() == DType::BF16 && x.device().is_cpu() {
            // candle's CPU conv2d has no bf16 kernel: convolve in f32, round back to bf16.
            x.to_dtype(DType::F32)?
                .conv2d(&weight.to_dtype(DType::F32)?, padding, stride, 1, 1)?
                .to_dtype(DType::BF16)?
        } else {
            x.conv2d(&weight, padding, stride, 1, 1)?
        };
        let mut y = y.broadcast_add(&bias)?;
        if let Some(r) = residual {
            y = (y + r)?;
        }
        apply_act(&y, act)
    }

    /// The CPU path on channels-last maps: im2col by bands of output pixels, each one product.
    fn forward_nhwc(&self, x: &Nhwc, act: Act, residual: Option<&Nhwc>) -> Result<Nhwc> {
        if x.c != self.c_in {
            bail!("conv: input has {} channels, weight {}", x.c, self.c_in);
        }
        let o = self.c_out;
        let (ho, wo) = self.spec.out_size(x.h, x.w);
        let m = x.b * ho * wo;
        if let Some(r) = residual
            && (r.b, r.h, r.w, r.c) != (x.b, ho, wo, o)
        {
            bail!(
                "conv: residual {:?}, expected {:?}",
                (r.b, r.h, r.w, r.c),
                (x.b, ho, wo, o)
            );
        }
        let data = if m == 0 {
            Vec::new()
        } else {
            match &*self.weights {
                ConvWeights::Packed(p) => self.packed_product(p, x, (ho, wo), act, residual)?,
                ConvWeights::Gemm { weight, bias } => {
                    self.gemm_product(weight, bias, x, (ho, wo), act, residual)?
                }
                ConvWeights::Tensors { .. } => bail!("conv: NHWC input for tensor weights"),
            }
        };
        Ok(Nhwc {
            data,
            b: x.b,
            h: ho,
            w: wo,
            c: o,
        })
    }

    /// Output pixels per band, and the patch length `k·k·C`.
    fn bands(&self, m: usize) -> (usize, usize) {
        let kdim = self.spec.kernel * self.spec.kernel * self.c_in;
        let band = (BAND_BYTES / (kdim * 4)).max(MIN_BAND_PIXELS).min(m);
        (band, kdim)
    }

    /// `m × o` outputs through the packed kernels, epilogue in the kernels' stores.
    fn packed_product(
        &self,
        lin: &PackedMatrix,
        x: &Nhwc,
        (ho, wo): (usize, usize),
        act: Act,
        residual: Option<&Nhwc>,
    ) -> Result<Vec<f32>> {
        let o = self.c_out;
        let m = x.b * ho * wo;
        let epilogue = |rows: std::ops::Range<usize>| Epilogue {
            residual: residual.map(|r| &r.data[rows.start * o..rows.end * o]),
            act,
        };
        let mut out: Vec<f32> = Vec::with_capacity(m * o);
        let y = &mut out.spare_capacity_mut()[..m * o];
        if self.spec.is_pointwise() {
            lin.forward_into(&x.data, m, y, epilogue(0..m), true)
                .map_err(raise)?;
        } else {
            let (band, kdim) = self.bands(m);
            let bands = m.div_ceil(band);
            let threads = rayon::current_num_threads().max(1);
            if bands >= 2 * threads {
                // Enough bands to keep every thread busy: one band per task, each with its own
                // patch buffer and a single-threaded product.
                y.par_chunks_mut(band * o).enumerate().try_for_each_init(
                    Vec::new,
                    |cols, (i, yb)| {
                        let rows = i * band..(i * band + band).min(m);
                        cols.resize(rows.len() * kdim, 0.0);
                        im2col(x, cols, rows.clone(), (ho, wo), self.spec);
                        let e = epilogue(rows.clone());
                        lin.forward_into(cols, rows.len(), yb, e, false)
                            .map_err(raise)
                    },
                )?;
            } else {
                let mut cols = vec![0f32; band * kdim];
                for (i, yb) in y.chunks_mut(band * o).enumerate() {
                    let rows = i * band..(i * band + band).min(m);
                    let cols = &mut cols[..rows.len() * kdim];
                    im2col(x, cols, rows.clone(), (ho, wo), self.spec);
                    let e = epilogue(rows.clone());
                    lin.forward_into(cols, rows.len(), yb, e, true)
                        .map_err(raise)?;
                }
            }
        }
        // SAFETY: every `forward_into` above succeeded, and together they wrote all m × o values.
        unsafe { out.set_len(m * o) };
        Ok(out)
    }

    /// `m × o` outputs through `gemm` (the residual, if any, is the product's starting value),
    /// then bias and activation in one pass.
    fn gemm_product(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &Nhwc,
        (ho, wo): (usize, usize),
        act: Act,
        residual: Option<&Nhwc>,
    ) -> Result<Vec<f32>> {
        let o = self.c_out;
        let m = x.b * ho * wo;
        let mut out = match residual {
            Some(r) => r.data.clone(),
            None => vec![0f32; m * o],
        };
        let threads = rayon::current_num_threads();
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let (band, kdim) = self.bands(m);
        let mut cols = Vec::new();
        for (i, yb) in out.chunks_mut(band * o).enumerate() {
            let rows = i * band..(i * band + band).min(m);
            let patches: &[f32] = if self.spec.is_pointwise() {
                &x.data[rows.start * kdim..rows.end * kdim]
            } else {
                // The patches in parallel, a few dozen output pixels per task (the product below
                // is parallel on its own).
                const PIXELS_PER_TASK: usize = 64;
                cols.resize(rows.len() * kdim, 0.0);
                cols.par_chunks_mut(PIXELS_PER_TASK * kdim)
                    .enumerate()
                    .for_each(|(t, part)| {
                        let start = rows.start + t * PIXELS_PER_TASK;
                        let part_rows = start..start + part.len() / kdim;
                        im2col(x, part, part_rows, (ho, wo), self.spec);
                    });
                &cols
            };
            // Computed as `yᵀ = W · patchesᵀ` (`o × rows`): gemm's kernels run along the rows of
            // the left operand, and `o` is the long side on the small maps of the later stages.
            // SAFETY: dst is `o × rows.len()` with row stride 1 and column stride o (yb, pixels
            // `o` apart); lhs the `o × kdim` row-major weight; rhs `kdim × rows.len()` read from
            // the `rows.len() × kdim` row-major patches (row stride 1, column stride kdim); all
            // slices hold those values and do not alias.
            unsafe {
                gemm::gemm(
                    o,
                    rows.len(),
                    kdim,
                    yb.as_mut_ptr(),
                    o as isize,
                    1,
                    residual.is_some(),
                    weight.as_ptr(),
                    1,
                    kdim as isize,
                    patches.as_ptr(),
                    kdim as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
        out.par_chunks_mut(o * 64).for_each(|rows| {
            for row in rows.chunks_exact_mut(o) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = act.apply(*v + b);
                }
            }
        });
        Ok(out)
    }
}

/// Fills `cols` (`rows.len()` × k·k·C) with the patches of output pixels `rows` (numbered over
/// batch × ho × wo), each in `(dy, dx, c)` order with zeros outside the input.
pub(crate) fn im2col(
    x: &Nhwc,
    cols: &mut [f32],
    rows: std::ops::Range<usize>,
    (ho, wo): (usize, usize),
    spec: ConvSpec,
) {
    let (k, s, p, c) = (spec.kernel, spec.stride, spec.padding, x.c);
    for (r, patch) in rows.zip(cols.chunks_exact_mut(k * k * c)) {
        let (bi, oy, ox) = (r / (ho * wo), (r / wo) % ho, r % wo);
        for dy in 0..k {
            let iy = (oy * s + dy) as isize - p as isize;
            let line = &mut patch[dy * k * c..(dy + 1) * k * c];
            if iy < 0 || iy >= x.h as isize {
                line.fill(0.0);
                continue;
            }
            for dx in 0..k {
                let ix = (ox * s + dx) as isize - p as isize;
                let dst = &mut line[dx * c..(dx + 1) * c];
                if ix < 0 || ix >= x.w as isize {
                    dst.fill(0.0);
                } else {
                    let at = ((bi * x.h + iy as usize) * x.w + ix as usize) * c;
                    dst.copy_from_slice(&x.data[at..at + c]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::packed::tests::kernels;
    use super::super::tensor::max_abs_diff;
    use super::*;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = dev_support::Rng::new(seed);
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.uniform()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// `(batch, in, out, (h, w), kernel, stride, relu, residual)`: the stem (3 channels, stride
    /// 2), 3×3 maps in one band and in many (parallel bands), maps above 56², 1×1 with residual
    /// + ReLU (the end of each bottleneck), odd sizes and channel counts.
    type Case = (
        usize,
        usize,
        usize,
        (usize, usize),
        usize,
        usize,
        bool,
        bool,
    );
    const CASES: [Case; 9] = [
        (1, 3, 16, (33, 30), 3, 2, true, false),
        (1, 4, 8, (64, 64), 3, 1, true, false),
        (2, 16, 12, (13, 9), 3, 1, false, true),
        (1, 3, 8, (33, 30), 3, 2, true, false),
        (1, 96, 32, (70, 70), 3, 1, true, false),
        (2, 24, 40, (7, 9), 1, 1, true, true),
        (3, 8, 70, (5, 5), 1, 1, false, false),
        (1, 24, 40, (7, 9), 1, 1, true, true),
        (3, 8, 16, (5, 5), 1, 1, false, false),
    ];

    /// Every path, on maps in both layouts, against candle's `conv2d` + bias (+ residual)
    /// (+ ReLU) on random data; CPU weights must also come back unchanged as tensors.
    fn check_path(test: &str, path: Path) {
        for (b, c, o, hw, k, stride, relu, res) in CASES {
            let spec = ConvSpec {
                kernel: k,
                stride,
                padding: k / 2,
            };
            let x = rand(&[b, c, hw.0, hw.1], 1);
            let wt = rand(&[o, c, k, k], 2);
            let bias = rand(&[o], 3);
            let mut want = x
                .conv2d(&wt, spec.padding, spec.stride, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let residual = res.then(|| rand(want.dims(), 4));
            if let Some(r) = &residual {
                want = (want + r).unwrap();
            }
            if relu {
                want = want.relu().unwrap();
            }
            let conv = Conv2d::on_path(&wt, &bias, spec, path).unwrap();
            let (w2, b2) = conv.tensors().unwrap();
            assert_eq!(max_abs_diff(&w2, &wt), 0.0);
            assert_eq!(max_abs_diff(&b2.flatten_all().unwrap(), &bias), 0.0);
            let act = if relu { Act::Relu } else { Act::Identity };
            for nhwc in [true, false] {
                let map = |t: &Tensor| {
                    if nhwc {
                        FeatureMap::Nhwc(Nhwc::from_nchw(t).unwrap())
                    } else {
                        FeatureMap::Nchw(t.clone())
                    }
                };
                let r = residual.as_ref().map(map);
                let got = conv.forward(&map(&x), act, r.as_ref()).unwrap();
                assert_eq!(matches!(got, FeatureMap::Nhwc(_)), nhwc, "layout kept");
                let got = got.to_nchw().unwrap();
                assert_eq!(got.dims(), want.dims());
                let d = max_abs_diff(&got, &want);
                let scale = (c * k * k) as f32;
                println!(
                    "{test} {path:?} nhwc {nhwc} {b}x{c}->{o} {hw:?} {spec:?}: max abs {d:.3e}"
                );
                // f32 sums of `scale` products of values in [-1, 1], accumulated in a different
                // order.
                assert!(
                    d <= 1e-6 * scale.max(16.0),
                    "{path:?} {spec:?}: max abs {d}"
                );
            }
        }
    }

    #[test]
    fn packed_conv_matches_candle_conv2d() {
        for kernel in kernels("packed_conv_matches_candle_conv2d") {
            check_path("packed", Path::Packed(kernel));
        }
    }

    #[test]
    fn gemm_conv_matches_candle_conv2d() {
        check_path("gemm", Path::Gemm);
    }

    #[test]
    fn tensor_conv_matches_candle_conv2d() {
        check_path("tensors", Path::Tensors);
    }

    #[test]
    fn nhwc_avg_pool_matches_candle() {
        for (s, hw) in [(2, (8, 6)), (2, (7, 9)), (4, (16, 12))] {
            let x = rand(&[2, 5, hw.0, hw.1], 7);
            let want = x.avg_pool2d(s).unwrap();
            let got = Nhwc::from_nchw(&x)
                .unwrap()
                .avg_pool(s)
                .unwrap()
                .to_nchw()
                .unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-6, "pool {s} {hw:?}: max abs {d}");
        }
        // Smaller than the window: an error, as candle's avg_pool2d gives.
        let tiny = Nhwc::from_nchw(&rand(&[1, 2, 1, 3], 8)).unwrap();
        assert!(tiny.avg_pool(2).is_err());
    }
}
