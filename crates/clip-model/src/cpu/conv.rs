//! CPU convolution for the ModifiedResNet tower: a square-kernel convolution with bias folded in,
//! an optional residual and an optional ReLU.
//!
//! - [`PackedConv`] (x86-64 with AVX2 + FMA or AVX-512): NHWC feature maps ([`Nhwc`]), weights
//!   packed once at load for [`super::packed`]'s kernels; each band of output pixels is one
//!   im2col + product with bias, residual and ReLU applied in the kernel's store.
//! - [`conv_bias_act`] (other CPUs, or `CLIP_MODEL_UNPACKED`): NCHW, band-wise im2col + one `gemm`
//!   call per band writing straight into the output, then bias/residual/ReLU in one pass.
//!
//! Only f32, contiguous, CPU tensors; the caller falls back to candle's `conv2d` otherwise.

use candle_core::{Device, Result, Tensor, bail};
use rayon::prelude::*;

use super::epilogue::{Act, Epilogue};
use super::packed::{Kernel, PackedMatrix};
use super::tensor::with_f32;
use crate::error::raise;

/// Target size of one band's column matrix (bytes): small enough to stay in L2/L3, large enough
/// that each `gemm` call has a wide right-hand side.
const BAND_BYTES: usize = 2 << 20;

/// Smallest number of output pixels per band (keeps the matrix products wide on small maps).
const MIN_BAND_PIXELS: usize = 512;

/// Convolution parameters of [`conv_bias_act`] and [`PackedConv`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSpec {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub relu: bool,
}

/// `relu?(conv(x, weight) + bias (+ residual))` for `x` (B, C, H, W), `weight` (O, C, k, k),
/// `bias` (O) and `residual` (B, O, H', W'); all contiguous f32 on the CPU.
pub(crate) fn conv_bias_act(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    spec: ConvSpec,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (o, c_w, kh, kw) = weight.dims4()?;
    let k = spec.kernel;
    if c_w != c || kh != k || kw != k || spec.stride == 0 {
        bail!(
            "conv_bias_act: weight {:?} does not fit input {:?}",
            weight.dims(),
            x.dims()
        );
    }
    let ho = (h + 2 * spec.padding).saturating_sub(k) / spec.stride + 1;
    let wo = (w + 2 * spec.padding).saturating_sub(k) / spec.stride + 1;
    let hw_out = ho * wo;
    let kdim = c * k * k;
    let mut out = vec![0f32; b * o * hw_out];
    if let Some(r) = residual {
        if r.dims() != [b, o, ho, wo] {
            bail!(
                "conv_bias_act: residual {:?}, expected {:?}",
                r.dims(),
                [b, o, ho, wo]
            );
        }
        with_f32(r, "residual", |r| {
            out.copy_from_slice(r);
            Ok(())
        })?;
    }
    let direct = k == 1 && spec.stride == 1 && spec.padding == 0;
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    with_f32(x, "input", |xs| {
        with_f32(weight, "weight", |ws| {
            let band_rows = if direct {
                ho
            } else {
                let by_bytes = BAND_BYTES / (kdim * wo * 4).max(1);
                let by_pixels = MIN_BAND_PIXELS.div_ceil(wo.max(1));
                by_bytes.max(by_pixels).clamp(1, ho)
            };
            let mut cols = if direct {
                Vec::new()
            } else {
                vec![0f32; kdim * band_rows * wo]
            };
            for img in 0..b {
                let xi = &xs[img * c * h * w..(img + 1) * c * h * w];
                let oi = &mut out[img * o * hw_out..(img + 1) * o * hw_out];
                let mut r0 = 0;
                while r0 < ho {
                    let rows = band_rows.min(ho - r0);
                    let n = rows * wo;
                    let rhs: &[f32] = if direct {
                        xi
                    } else {
                        im2col_band(xi, &mut cols[..kdim * n], (c, h, w), wo, r0, rows, spec);
                        &cols[..kdim * n]
                    };
                    // SAFETY: dst covers rows 0..o with row stride hw_out starting at column
                    // r0 * wo, n columns each (r0 * wo + n <= hw_out); lhs is (o, kdim) row-major,
                    // rhs is (kdim, n) row-major; all slices are long enough and do not alias.
                    unsafe {
                        gemm::gemm(
                            o,
                            n,
                            kdim,
                            oi.as_mut_ptr().add(r0 * wo),
                            1,
                            hw_out as isize,
                            residual.is_some(),
                            ws.as_ptr(),
                            1,
                            kdim as isize,
                            rhs.as_ptr(),
                            1,
                            n as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            par,
                        );
                    }
                    r0 += rows;
                }
            }
            Ok(())
        })
    })?;
    with_f32(bias, "bias", |bs| {
        if bs.len() != o {
            bail!("conv_bias_act: bias has {} values, expected {o}", bs.len());
        }
        out.par_chunks_mut(hw_out).enumerate().for_each(|(i, row)| {
            let bv = bs[i % o];
            if spec.relu {
                row.iter_mut().for_each(|v| *v = (*v + bv).max(0.0));
            } else {
                row.iter_mut().for_each(|v| *v += bv);
            }
        });
        Ok(())
    })?;
    Tensor::from_vec(out, (b, o, ho, wo), &Device::Cpu)
}

/// Fills `cols` (C·k·k, rows·wo) with the input patches of output rows `r0..r0 + rows`.
fn im2col_band(
    x: &[f32],
    cols: &mut [f32],
    (_c, h, w): (usize, usize, usize),
    wo: usize,
    r0: usize,
    rows: usize,
    spec: ConvSpec,
) {
    let k = spec.kernel;
    let n = rows * wo;
    let (s, p) = (spec.stride, spec.padding);
    cols.par_chunks_mut(n).enumerate().for_each(|(row, dst)| {
        let ci = row / (k * k);
        let dy = (row / k) % k;
        let dx = row % k;
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for (ry, d) in dst.chunks_exact_mut(wo).enumerate() {
            let iy = ((r0 + ry) * s + dy) as isize - p as isize;
            if iy < 0 || iy >= h as isize {
                d.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            if s == 1 {
                // Output x reads input x + dx - p: a shifted copy with zeros at the edges.
                let shift = dx as isize - p as isize;
                let lo = (-shift).max(0) as usize; // first output column inside the input
                let hi = ((w as isize - shift).min(wo as isize)).max(lo as isize) as usize;
                d[..lo.min(wo)].fill(0.0);
                if hi > lo {
                    let a = (lo as isize + shift) as usize;
                    d[lo..hi].copy_from_slice(&src[a..a + hi - lo]);
                }
                d[hi.max(lo).min(wo)..].fill(0.0);
            } else {
                for (ox, v) in d.iter_mut().enumerate() {
                    let ix = (ox * s + dx) as isize - p as isize;
                    *v = if ix < 0 || ix >= w as isize {
                        0.0
                    } else {
                        src[ix as usize]
                    };
                }
            }
        }
    });
}

/// A feature map in NHWC layout (channels last): the ResNet's layout on the packed path, where
/// every pixel's channels are one row of a matrix product.
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

/// A square convolution with bias (batch norm folded in), packed once for NHWC input: the weight
/// `(O, C, k, k)` is stored as `O` rows over `(dy, dx, c)`, the order in which [`im2col_nhwc`]
/// lays out each output pixel's patch, so a convolution is one product per band of output pixels.
#[derive(Debug, Clone)]
pub(crate) struct PackedConv {
    lin: PackedMatrix,
    c: usize,
    spec: ConvSpec,
}

impl PackedConv {
    /// Packs `weight` (O, C, k, k) and `bias` (O) for `kernel`; `spec.relu` is ignored here (the
    /// activation is chosen per call).
    pub(crate) fn new(
        weight: &Tensor,
        bias: &Tensor,
        spec: ConvSpec,
        kernel: Kernel,
    ) -> Result<Self> {
        let (o, c, kh, kw) = weight.dims4()?;
        if kh != spec.kernel || kw != spec.kernel || spec.stride == 0 {
            bail!(
                "packed conv: weight {:?} does not fit {spec:?}",
                weight.dims()
            );
        }
        let w = weight
            .to_dtype(candle_core::DType::F32)?
            .permute((0, 2, 3, 1))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let k = spec.kernel * spec.kernel * c;
        let lin = PackedMatrix::new(&w, &b, o, k, kernel).map_err(raise)?;
        Ok(Self { lin, c, spec })
    }

    /// The weight `(O, C, k, k)` and bias `(O)` back as tensors, for the plain candle path.
    pub(crate) fn unpack(&self) -> Result<(Tensor, Tensor)> {
        let (o, c, k) = (self.lin.out_features(), self.c, self.spec.kernel);
        let w = Tensor::from_vec(self.lin.unpack(), (o, k, k, c), &Device::Cpu)?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let b = Tensor::from_slice(self.lin.bias(), o, &Device::Cpu)?;
        Ok((w, b))
    }

    /// `relu?(conv(x) + bias (+ residual))`, all NHWC.
    pub(crate) fn forward(&self, x: &Nhwc, relu: bool, residual: Option<&Nhwc>) -> Result<Nhwc> {
        let ConvSpec {
            kernel: k,
            stride: s,
            padding: p,
            ..
        } = self.spec;
        if x.c != self.c {
            bail!("packed conv: input has {} channels, weight {}", x.c, self.c);
        }
        let o = self.lin.out_features();
        let ho = (x.h + 2 * p).saturating_sub(k) / s + 1;
        let wo = (x.w + 2 * p).saturating_sub(k) / s + 1;
        let m = x.b * ho * wo;
        if let Some(r) = residual
            && (r.b, r.h, r.w, r.c) != (x.b, ho, wo, o)
        {
            bail!(
                "packed conv: residual {:?}, expected {:?}",
                (r.b, r.h, r.w, r.c),
                (x.b, ho, wo, o)
            );
        }
        let act = if relu { Act::Relu } else { Act::Identity };
        let epilogue = |rows: std::ops::Range<usize>| Epilogue {
            residual: residual.map(|r| &r.data[rows.start * o..rows.end * o]),
            act,
        };
        let mut out: Vec<f32> = Vec::with_capacity(m * o);
        if m == 0 {
            return Ok(Nhwc {
                data: out,
                b: x.b,
                h: ho,
                w: wo,
                c: o,
            });
        }
        let y = &mut out.spare_capacity_mut()[..m * o];
        let msg = raise;
        if k == 1 && s == 1 && p == 0 {
            self.lin
                .forward_into(&x.data, m, y, epilogue(0..m), true)
                .map_err(msg)?;
        } else {
            let kdim = k * k * x.c;
            let band = (BAND_BYTES / (kdim * 4)).max(MIN_BAND_PIXELS).min(m);
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
                        im2col_nhwc(x, cols, rows.clone(), (ho, wo), self.spec);
                        let e = epilogue(rows.clone());
                        self.lin
                            .forward_into(cols, rows.len(), yb, e, false)
                            .map_err(msg)
                    },
                )?;
            } else {
                let mut cols = vec![0f32; band * kdim];
                for (i, yb) in y.chunks_mut(band * o).enumerate() {
                    let rows = i * band..(i * band + band).min(m);
                    let cols = &mut cols[..rows.len() * kdim];
                    im2col_nhwc(x, cols, rows.clone(), (ho, wo), self.spec);
                    let e = epilogue(rows.clone());
                    self.lin
                        .forward_into(cols, rows.len(), yb, e, true)
                        .map_err(msg)?;
                }
            }
        }
        // SAFETY: every `forward_into` above succeeded, and together they wrote all m × o values.
        unsafe { out.set_len(m * o) };
        Ok(Nhwc {
            data: out,
            b: x.b,
            h: ho,
            w: wo,
            c: o,
        })
    }
}

/// Fills `cols` (`rows.len()` × k·k·C) with the patches of output pixels `rows` (numbered over
/// batch × ho × wo), each in `(dy, dx, c)` order with zeros outside the input.
fn im2col_nhwc(
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
    use super::*;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = dev_support::Rng::new(seed);
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.uniform()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// A convolution under test: (input, weight, bias, residual, spec) → output, all NCHW.
    type Conv<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor, Option<&Tensor>, ConvSpec) -> Tensor;

    /// `conv` against candle's `conv2d` + bias (+ residual) (+ ReLU) on random data.
    #[allow(clippy::too_many_arguments)]
    fn check_with(
        name: &str,
        conv: Conv,
        b: usize,
        c: usize,
        o: usize,
        hw: (usize, usize),
        spec: ConvSpec,
        res: bool,
    ) {
        let x = rand(&[b, c, hw.0, hw.1], 1);
        let wt = rand(&[o, c, spec.kernel, spec.kernel], 2);
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
        if spec.relu {
            want = want.relu().unwrap();
        }
        let got = conv(&x, &wt, &bias, residual.as_ref(), spec);
        assert_eq!(got.dims(), want.dims());
        let d = super::super::tensor::max_abs_diff(&got, &want);
        let scale = (c * spec.kernel * spec.kernel) as f32;
        println!("{name} {b}x{c}->{o} {hw:?} {spec:?} residual {res}: max abs {d:.3e}");
        // f32 sums of `scale` products of values in [-1, 1], accumulated in a different order.
        assert!(d <= 1e-6 * scale.max(16.0), "max abs {d}");
    }

    fn check(b: usize, c: usize, o: usize, hw: (usize, usize), spec: ConvSpec, res: bool) {
        let conv: Conv = &|x, w, bias, r, spec| conv_bias_act(x, w, bias, r, spec).unwrap();
        check_with("nchw", conv, b, c, o, hw, spec, res);
    }

    #[test]
    fn conv3x3_matches_candle_conv2d() {
        let s = |stride, relu| ConvSpec {
            kernel: 3,
            stride,
            padding: 1,
            relu,
        };
        // 64x64 with few channels: several bands per image, edges, and maps above 56².
        check(1, 4, 8, (64, 64), s(1, true), false);
        check(2, 16, 12, (13, 9), s(1, false), true);
        check(1, 3, 8, (33, 30), s(2, true), false);
        check(1, 96, 32, (70, 70), s(1, true), false);
    }

    /// [`PackedConv`] on NHWC maps against candle's `conv2d` on the same NCHW data, with every
    /// kernel this CPU runs; the weights must also come back unchanged for the plain path.
    fn check_packed(b: usize, c: usize, o: usize, hw: (usize, usize), spec: ConvSpec, res: bool) {
        for kernel in super::super::packed::tests::kernels("packed_conv_matches_candle_conv2d") {
            let conv: Conv = &|x, w, bias, r, spec| {
                let packed = PackedConv::new(w, bias, spec, kernel).unwrap();
                let (w2, b2) = packed.unpack().unwrap();
                assert_eq!(super::super::tensor::max_abs_diff(&w2, w), 0.0);
                assert_eq!(super::super::tensor::max_abs_diff(&b2, bias), 0.0);
                let r = r.map(|r| Nhwc::from_nchw(r).unwrap());
                packed
                    .forward(&Nhwc::from_nchw(x).unwrap(), spec.relu, r.as_ref())
                    .unwrap()
                    .to_nchw()
                    .unwrap()
            };
            check_with(&format!("packed {kernel:?}"), conv, b, c, o, hw, spec, res);
        }
    }

    #[test]
    fn packed_conv_matches_candle_conv2d() {
        let s = |kernel, stride, relu| ConvSpec {
            kernel,
            stride,
            padding: kernel / 2,
            relu,
        };
        // The stem (3 channels, stride 2), 3×3 maps in one band and in many (parallel bands),
        // 1×1 with residual + ReLU (the end of each bottleneck), odd sizes and channel counts.
        check_packed(1, 3, 16, (33, 30), s(3, 2, true), false);
        check_packed(2, 16, 12, (13, 9), s(3, 1, false), true);
        check_packed(1, 96, 32, (70, 70), s(3, 1, true), false);
        check_packed(2, 24, 40, (7, 9), s(1, 1, true), true);
        check_packed(3, 8, 70, (5, 5), s(1, 1, false), false);
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
            let d = super::super::tensor::max_abs_diff(&got, &want);
            assert!(d < 1e-6, "pool {s} {hw:?}: max abs {d}");
        }
        // Smaller than the window: an error, as candle's avg_pool2d gives.
        let tiny = Nhwc::from_nchw(&rand(&[1, 2, 1, 3], 8)).unwrap();
        assert!(tiny.avg_pool(2).is_err());
    }

    #[test]
    fn conv1x1_matches_candle_conv2d() {
        let s = |relu| ConvSpec {
            kernel: 1,
            stride: 1,
            padding: 0,
            relu,
        };
        check(1, 24, 40, (7, 9), s(true), true);
        check(3, 8, 16, (5, 5), s(false), false);
    }
}
