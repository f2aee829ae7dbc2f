//! Element-wise passes after a product: `y = act(y + bias (+ residual))`, in place on the CPU.
//!
//! candle runs each element-wise step as its own pass over a freshly allocated tensor; here bias,
//! residual and activation are one pass over the product, in place, split over rows with rayon.
//! [`bias_epilogue`] is the one entry point: the in-place kernels for contiguous f32 CPU tensors,
//! the same arithmetic as candle ops otherwise (other devices and dtypes, `CLIP_MODEL_UNFUSED`).

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, bail};
use rayon::prelude::*;

use super::epilogue::{Act, gelu_erf, gelu_tanh, quick_gelu};
use super::tensor::{f32_slice, f32_slice_mut, fused};

/// Rows per rayon task for row-wise passes (keeps tasks near 64 KiB of data).
fn rows_per_task(width: usize) -> usize {
    (16 * 1024 / width.max(1)).max(1)
}

/// `x += bias`, then the activation, in place.
struct BiasAct(Act);

impl InplaceOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "clip-bias-act"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let bias = f32_slice(s2, l2, self.name())?;
        let x = f32_slice_mut(s1, l1, self.name())?;
        let w = bias.len();
        if w == 0 || x.len() % w != 0 {
            bail!(
                "{}: {} values do not split into rows of {w}",
                self.name(),
                x.len()
            );
        }
        let act = self.0;
        x.par_chunks_mut(w * rows_per_task(w)).for_each(|rows| {
            for row in rows.chunks_exact_mut(w) {
                // One loop per activation, so each vectorises on its own.
                match act {
                    Act::QuickGelu => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = quick_gelu(*v + b);
                        }
                    }
                    Act::Gelu => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = gelu_erf(*v + b);
                        }
                    }
                    Act::GeluTanh => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = gelu_tanh(*v + b);
                        }
                    }
                    Act::Relu => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = (*v + b).max(0.0);
                        }
                    }
                    Act::Identity => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v += b;
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

/// `x += bias + residual`, in place.
struct BiasResidual;

impl InplaceOp3 for BiasResidual {
    fn name(&self) -> &'static str {
        "clip-bias-residual"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let bias = f32_slice(s2, l2, self.name())?;
        let residual = f32_slice(s3, l3, self.name())?;
        let x = f32_slice_mut(s1, l1, self.name())?;
        let w = bias.len();
        if w == 0 || x.len() % w != 0 || residual.len() != x.len() {
            bail!("{}: shapes do not match", self.name());
        }
        let chunk = w * rows_per_task(w);
        x.par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .for_each(|(rows, res)| {
                for (row, r) in rows.chunks_exact_mut(w).zip(res.chunks_exact(w)) {
                    for ((v, b), r) in row.iter_mut().zip(bias).zip(r) {
                        *v += b + r;
                    }
                }
            });
        Ok(())
    }
}

/// `act(y + bias (+ residual))` for `y` `[rows, width]` and `bias` `[width]`.
///
/// `y` must be a fresh tensor (e.g. a matmul result) that no other tensor shares: on the fused
/// path it is updated in place and returned.
pub(crate) fn bias_epilogue(
    y: Tensor,
    bias: &Tensor,
    act: Act,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    if fused(&y) && fused(bias) && residual.is_none_or(fused) {
        match residual {
            None => y.inplace_op2(bias, &BiasAct(act))?,
            Some(r) => {
                y.inplace_op3(bias, r, &BiasResidual)?;
                if act != Act::Identity {
                    return apply_act(&y, act);
                }
            }
        }
        return Ok(y);
    }
    let y = y.broadcast_add(bias)?;
    let y = match residual {
        Some(r) => (y + r)?,
        None => y,
    };
    apply_act(&y, act)
}

/// The activation as candle ops (any device and dtype).
pub(crate) fn apply_act(x: &Tensor, act: Act) -> Result<Tensor> {
    match act {
        Act::Identity => Ok(x.clone()),
        Act::Relu => x.relu(),
        Act::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        Act::Gelu => x.gelu_erf(),
        // candle's `gelu` is the tanh approximation.
        Act::GeluTanh => x.gelu(),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::super::tensor::max_abs_diff;
    use super::*;

    #[test]
    fn bias_kernels_match_unfused() {
        let x = Tensor::randn(0f32, 2.0, (5, 33), &Device::Cpu).unwrap();
        let r = Tensor::randn(0f32, 1.0, (5, 33), &Device::Cpu).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 33, &Device::Cpu).unwrap();
        // The in-place kernels are what runs here (not the candle fallback).
        assert!(fused(&x) && fused(&bias));
        let xb = x.broadcast_add(&bias).unwrap();
        let run = |act, r| bias_epilogue(x.copy().unwrap(), &bias, act, r).unwrap();

        let want = (&xb * candle_nn::ops::sigmoid(&(&xb * 1.702).unwrap()).unwrap()).unwrap();
        assert!(max_abs_diff(&run(Act::QuickGelu, None), &want) < 1e-5);
        let want = xb.gelu_erf().unwrap();
        assert!(max_abs_diff(&run(Act::Gelu, None), &want) < 1e-5);
        let want = xb.gelu().unwrap();
        assert!(max_abs_diff(&run(Act::GeluTanh, None), &want) < 1e-5);
        let want = (&xb + &r).unwrap();
        assert!(max_abs_diff(&run(Act::Identity, Some(&r)), &want) < 1e-5);
        assert!(max_abs_diff(&run(Act::Relu, Some(&r)), &want.relu().unwrap()) < 1e-5);
        assert!(max_abs_diff(&run(Act::Relu, None), &xb.relu().unwrap()) < 1e-6);
        assert!(max_abs_diff(&run(Act::Identity, None), &xb) < 1e-6);
    }
}
