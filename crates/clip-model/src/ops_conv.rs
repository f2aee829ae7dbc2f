//! CPU convolution for the ModifiedResNet tower: a square-kernel convolution with bias folded in, as
//! band-wise im2col + one `gemm` call per band writing straight into the NCHW output, then bias, an
//! optional residual and an optional ReLU applied in place in one pass.
//!
//! Only f32, contiguous, CPU tensors; the caller falls back to candle's `conv2d` otherwise.

use candle_core::{Device, Result, Tensor, bail};
use rayon::prelude::*;

use crate::ops::with_f32;

/// Target size of one band's column matrix (bytes): small enough to stay in L2/L3, large enough
/// that each `gemm` call has a wide right-hand side.
const BAND_BYTES: usize = 2 << 20;

/// Smallest number of output pixels per band (keeps the matrix products wide on small maps).
const MIN_BAND_PIXELS: usize = 512;

/// Convolution parameters of [`conv_bias_act`].
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn check(b: usize, c: usize, o: usize, hw: (usize, usize), spec: ConvSpec, res: bool) {
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
        let got = conv_bias_act(&x, &wt, &bias, residual.as_ref(), spec).unwrap();
        assert_eq!(got.dims(), want.dims());
        let d = (got - &want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = (c * spec.kernel * spec.kernel) as f32;
        println!("{b}x{c}->{o} {hw:?} {spec:?} residual {res}: max abs {d:.3e}");
        // f32 sums of `scale` products of values in [-1, 1], accumulated in a different order.
        assert!(d <= 1e-6 * scale.max(16.0), "max abs {d}");
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
