//! Fused CPU kernels for the transformer blocks, as candle custom ops.
//!
//! candle runs each elementwise step as its own pass over a freshly allocated tensor, and
//! multi-head attention as permutes, copies and many small matrix products. On the CPU the
//! blocks here do the same arithmetic in fewer passes and allocations:
//!
//! - [`attention`]: softmax(q kᵀ / √d [+ causal mask]) v for every (batch, head), read straight
//!   from the packed `[batch, tokens, 3 × width]` output of the input projection and written as
//!   `[batch, tokens, width]` (heads side by side), so no q/k/v copies and no transposes; each
//!   head's `q kᵀ` and `P v` run as small products through [`crate::packed`]'s kernels where the
//!   CPU has them (a portable per-query loop otherwise);
//! - [`bias_act_`]: `x += bias` then QuickGELU / GELU in place (the MLP's hidden layer);
//! - [`bias_residual_`]: `x += bias + residual` in place (the end of each residual branch);
//! - [`bias_`]: `x += bias` in place.
//!
//! Each returns `Ok(None)` / does nothing special where it does not apply (other devices or
//! dtypes): callers then take the plain candle path, so CUDA / Metal / f16 keep working.
//! Work is split over rows (or (batch, head) pairs) with rayon, the pool candle's matmul uses.

use candle_core::{
    CpuStorage, CustomOp1, DType, InplaceOp2, InplaceOp3, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

use crate::config::Activation;
use crate::packed::{Epilogue, Kernel, PackedLinear, packing_kernel, softmax_rows};

/// Whether the fused kernels apply to `x` (contiguous f32 on the CPU, and the environment
/// variable `CLIP_MODEL_UNFUSED` unset: setting it to anything but `0` selects the plain candle
/// path, for A/B timing and debugging).
pub(crate) fn fused(x: &Tensor) -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let disabled =
        *DISABLED.get_or_init(|| std::env::var_os("CLIP_MODEL_UNFUSED").is_some_and(|v| v != "0"));
    !disabled && x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()
}

/// Runs `f` on the values of `t`, a contiguous f32 CPU tensor (an error naming `what` otherwise).
pub(crate) fn with_f32<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(CpuStorage::F32(v)) = &*storage else {
        bail!("{what}: expected an f32 CPU tensor")
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => f(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: expected f32 storage")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: expected f32 storage")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// Rows per rayon task for row-wise passes (keeps tasks near 64 KiB of data).
fn rows_per_task(width: usize) -> usize {
    (16 * 1024 / width.max(1)).max(1)
}

#[inline(always)]
pub(crate) fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + (-1.702 * x).exp())
}

/// erf-based GELU, `0.5 x (1 + erf(x / √2))`, as candle's `gelu_erf` computes it.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    (candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * x
}

/// tanh-approximated GELU, `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`, as PyTorch's
/// `gelu(approximate="tanh")` and candle's `gelu` compute it.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// `x += bias`, then the activation if any, in place.
struct BiasAct(Option<Activation>);

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
                match act {
                    Some(Activation::QuickGelu) => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = quick_gelu(*v + b);
                        }
                    }
                    Some(Activation::Gelu) => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = gelu_erf(*v + b);
                        }
                    }
                    Some(Activation::GeluTanh) => {
                        for (v, b) in row.iter_mut().zip(bias) {
                            *v = gelu_tanh(*v + b);
                        }
                    }
                    None => {
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

/// `x += bias`, then the activation, in place. `x` must be a fresh tensor (e.g. a matmul result)
/// that no other tensor shares. Returns `false` (nothing done) where the fused path does not apply.
pub(crate) fn bias_act_(x: &Tensor, bias: &Tensor, act: Activation) -> Result<bool> {
    if !fused(x) || !fused(bias) || bias.dtype() != DType::F32 {
        return Ok(false);
    }
    x.inplace_op2(bias, &BiasAct(Some(act)))?;
    Ok(true)
}

/// `x += bias + residual` in place (see [`bias_act_`]).
pub(crate) fn bias_residual_(x: &Tensor, bias: &Tensor, residual: &Tensor) -> Result<bool> {
    if !fused(x) || !fused(bias) || !fused(residual) {
        return Ok(false);
    }
    x.inplace_op3(bias, residual, &BiasResidual)?;
    Ok(true)
}

/// `x += bias` in place (see [`bias_act_`]).
pub(crate) fn bias_(x: &Tensor, bias: &Tensor) -> Result<bool> {
    if !fused(x) || !fused(bias) {
        return Ok(false);
    }
    x.inplace_op2(bias, &BiasAct(None))?;
    Ok(true)
}

/// Multi-head attention on a packed projection.
struct Attention {
    heads: usize,
    causal: bool,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "clip-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(storage, layout, self.name())?;
        let (b, t, w3) = layout.shape().dims3()?;
        let w = w3 / 3;
        let h = self.heads;
        if w3 % 3 != 0 || h == 0 || w % h != 0 {
            bail!("{}: width {w3} is not 3 × heads × head width", self.name());
        }
        let d = w / h;
        let scale = 1.0 / (d as f32).sqrt();
        let causal = self.causal;
        let mut out = vec![0f32; b * t * w];
        let base = OutPtr(out.as_mut_ptr());
        (0..b * h).into_par_iter().try_for_each(|bh| {
            let (bi, hi) = (bh / h, bh % h);
            let x = &qkv[bi * t * w3..(bi + 1) * t * w3];
            // SAFETY: (batch bi, head hi) owns columns hi·d..(hi + 1)·d of rows bi·t..(bi + 1)·t
            // of `out` (b·t rows of w), which no other task writes.
            let rows = unsafe { OutRows::new(base, (bi * t) * w + hi * d, w) };
            head(x, t, w, d, hi, scale, causal, rows)
        })?;
        Ok((CpuStorage::F32(out), Shape::from((b, t, w))))
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only written through `OutRows` of disjoint column blocks (see the callers).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Where one head writes its `[t, d]` output: row `i` at `start + i × stride` of the buffer.
struct OutRows {
    base: OutPtr,
    start: usize,
    stride: usize,
}

impl OutRows {
    /// # Safety
    /// `base` points to a buffer holding row `t - 1` of this head (`start + (t - 1) × stride + d`
    /// values), and no one else touches these rows' `d` columns while it lives.
    unsafe fn new(base: OutPtr, start: usize, stride: usize) -> Self {
        Self {
            base,
            start,
            stride,
        }
    }

    fn row(&mut self, i: usize, d: usize) -> &mut [f32] {
        // SAFETY: by the contract of `new`.
        unsafe { std::slice::from_raw_parts_mut(self.base.0.add(self.start + i * self.stride), d) }
    }
}

/// One head of one sequence: `x` is `[t, 3w]` (q | k | v, heads side by side in each).
#[allow(clippy::too_many_arguments)]
fn head(
    x: &[f32],
    t: usize,
    w: usize,
    d: usize,
    hi: usize,
    scale: f32,
    causal: bool,
    out: OutRows,
) -> Result<()> {
    if t == 0 {
        return Ok(()); // An empty sequence has no rows to write.
    }
    match packing_kernel() {
        Some(kernel) => head_packed(x, t, w, d, hi, scale, causal, kernel, out),
        None => {
            head_generic(x, t, w, d, hi, scale, causal, out);
            Ok(())
        }
    }
}

/// [`head`] as two small matrix products through the packed kernels: `S = q kᵀ` (k packed as
/// the "weight"), the row softmax of `S · scale` (masked when causal), then `O = P v` (vᵀ packed).
#[allow(clippy::too_many_arguments)]
fn head_packed(
    x: &[f32],
    t: usize,
    w: usize,
    d: usize,
    hi: usize,
    scale: f32,
    causal: bool,
    kernel: Kernel,
    mut out: OutRows,
) -> Result<()> {
    let w3 = 3 * w;
    let mut q = Vec::with_capacity(t * d);
    let mut k = Vec::with_capacity(t * d);
    let mut vt = vec![0f32; d * t];
    for j in 0..t {
        let row = &x[j * w3..(j + 1) * w3];
        q.extend_from_slice(&row[hi * d..(hi + 1) * d]);
        k.extend_from_slice(&row[w + hi * d..w + (hi + 1) * d]);
        for (p, &v) in row[2 * w + hi * d..2 * w + (hi + 1) * d].iter().enumerate() {
            vt[p * t + j] = v;
        }
    }
    let msg = candle_core::Error::Msg;
    let kp = PackedLinear::new(&k, &vec![0.0; t], t, d, kernel).map_err(msg)?;
    let mut s = kp.forward_serial(&q, t, Epilogue::BIAS).map_err(msg)?;
    softmax_rows(&mut s, t, scale, causal);
    let vp = PackedLinear::new(&vt, &vec![0.0; d], d, t, kernel).map_err(msg)?;
    let o = vp.forward_serial(&s, t, Epilogue::BIAS).map_err(msg)?;
    for (i, src) in o.chunks_exact(d).enumerate() {
        out.row(i, d).copy_from_slice(src);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn head_generic(
    x: &[f32],
    t: usize,
    w: usize,
    d: usize,
    hi: usize,
    scale: f32,
    causal: bool,
    mut out: OutRows,
) {
    let w3 = 3 * w;
    // Gather this head's k and v as contiguous [t, d] blocks.
    let mut k = vec![0f32; t * d];
    let mut v = vec![0f32; t * d];
    for ti in 0..t {
        let row = &x[ti * w3..(ti + 1) * w3];
        k[ti * d..(ti + 1) * d].copy_from_slice(&row[w + hi * d..w + (hi + 1) * d]);
        v[ti * d..(ti + 1) * d].copy_from_slice(&row[2 * w + hi * d..2 * w + (hi + 1) * d]);
    }
    let mut s = vec![0f32; t];
    for i in 0..t {
        let q = &x[i * w3 + hi * d..i * w3 + (hi + 1) * d];
        let n = if causal { i + 1 } else { t };
        let mut max = f32::NEG_INFINITY;
        for (j, sj) in s[..n].iter_mut().enumerate() {
            *sj = dot(q, &k[j * d..(j + 1) * d]) * scale;
            max = max.max(*sj);
        }
        let mut sum = 0f32;
        for sj in &mut s[..n] {
            *sj = (*sj - max).exp();
            sum += *sj;
        }
        let inv = 1.0 / sum;
        let o = out.row(i, d);
        o.fill(0.0);
        for (j, &p) in s[..n].iter().enumerate() {
            let p = p * inv;
            for (ov, vv) in o.iter_mut().zip(&v[j * d..(j + 1) * d]) {
                *ov += p * vv;
            }
        }
    }
}

/// Dot product with sixteen independent partial sums (vectorises without reassociation, as
/// one AVX-512 register or two AVX2 ones).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ac, ar) = a.split_at(a.len() / L * L);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(L).zip(bc.chunks_exact(L)) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0f32;
    for v in acc {
        s += v;
    }
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Causal attention over sequences of different lengths packed row after row: `qkv` is
/// `[rows, 3 × width]`, sequence `i` the rows `offsets[i]..offsets[i + 1]`.
struct PackedCausalAttention {
    heads: usize,
    offsets: Vec<usize>,
}

impl CustomOp1 for PackedCausalAttention {
    fn name(&self) -> &'static str {
        "clip-packed-causal-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(storage, layout, self.name())?;
        let (n, w3) = layout.shape().dims2()?;
        let w = w3 / 3;
        let h = self.heads;
        let o = &self.offsets;
        if w3 % 3 != 0 || h == 0 || w % h != 0 {
            bail!("{}: width {w3} is not 3 × heads × head width", self.name());
        }
        if o.first() != Some(&0) || o.last() != Some(&n) || o.windows(2).any(|p| p[0] > p[1]) {
            bail!("{}: offsets {o:?} do not split {n} rows", self.name());
        }
        let d = w / h;
        let scale = 1.0 / (d as f32).sqrt();
        let seqs = o.len() - 1;
        let mut out = vec![0f32; n * w];
        let base = OutPtr(out.as_mut_ptr());
        (0..seqs * h).into_par_iter().try_for_each(|sh| {
            let (si, hi) = (sh / h, sh % h);
            let (a, b) = (o[si], o[si + 1]);
            // SAFETY: (sequence si, head hi) owns columns hi·d..(hi + 1)·d of rows a..b of `out`.
            let rows = unsafe { OutRows::new(base, a * w + hi * d, w) };
            head(&qkv[a * w3..b * w3], b - a, w, d, hi, scale, true, rows)
        })?;
        Ok((CpuStorage::F32(out), Shape::from((n, w))))
    }
}

/// Causal attention on sequences packed row after row (see [`attention`]); `offsets` has one
/// more entry than there are sequences, starting at 0 and ending at the row count.
pub(crate) fn packed_causal_attention(
    qkv: &Tensor,
    heads: usize,
    offsets: &[usize],
) -> Result<Option<Tensor>> {
    if !fused(qkv) {
        return Ok(None);
    }
    let op = PackedCausalAttention {
        heads,
        offsets: offsets.to_vec(),
    };
    Ok(Some(qkv.apply_op1_no_bwd(&op)?))
}

/// softmax(q kᵀ / √d [+ causal mask]) v per head, from the packed `[batch, tokens, 3 × width]`
/// input projection to `[batch, tokens, width]`. `Ok(None)` where the fused path does not apply.
pub(crate) fn attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Option<Tensor>> {
    if !fused(qkv) {
        return Ok(None);
    }
    Ok(Some(qkv.apply_op1_no_bwd(&Attention { heads, causal })?))
}

/// Largest absolute difference between two tensors of one shape (NaN when either holds NaN), for
/// tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    dev_support::max_abs_diff(&a, &b).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, IndexOp};

    /// The plain candle computation the fused attention replaces (layers.rs before fusion).
    fn reference(qkv: &Tensor, heads: usize, causal: bool) -> Tensor {
        let (b, t, w3) = qkv.dims3().unwrap();
        let w = w3 / 3;
        let d = w / heads;
        let qkv = qkv
            .reshape((b, t, 3, heads, d))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let q = (qkv.i(0).unwrap().contiguous().unwrap() / (d as f64).sqrt()).unwrap();
        let k = qkv.i(1).unwrap().contiguous().unwrap();
        let v = qkv.i(2).unwrap().contiguous().unwrap();
        let mut s = q.matmul(&k.t().unwrap()).unwrap();
        if causal {
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let m = Tensor::from_vec(m, (t, t), &Device::Cpu).unwrap();
            s = s.broadcast_add(&m).unwrap();
        }
        let p =
            candle_core::Tensor::exp(&s.broadcast_sub(&s.max_keepdim(D::Minus1).unwrap()).unwrap())
                .unwrap();
        let p = p.broadcast_div(&p.sum_keepdim(D::Minus1).unwrap()).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, w))
            .unwrap()
    }

    /// [`attention`] through `head_generic` whatever the CPU.
    fn generic_attention(qkv: &Tensor, heads: usize, causal: bool) -> Tensor {
        let (b, t, w3) = qkv.dims3().unwrap();
        let (w, x) = (w3 / 3, qkv.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let d = w / heads;
        let mut out = vec![0f32; b * t * w];
        let base = OutPtr(out.as_mut_ptr());
        for bi in 0..b {
            for hi in 0..heads {
                // SAFETY: one (batch, head) block at a time, inside `out`.
                let rows = unsafe { OutRows::new(base, bi * t * w + hi * d, w) };
                let xs = &x[bi * t * w3..(bi + 1) * t * w3];
                head_generic(xs, t, w, d, hi, 1.0 / (d as f32).sqrt(), causal, rows);
            }
        }
        Tensor::from_vec(out, (b, t, w), &Device::Cpu).unwrap()
    }

    /// Against the unfused candle ops; both are f32 with different summation orders, so the
    /// bar is a few f32 ulps of values of order 1.
    #[test]
    fn attention_matches_unfused() {
        for (b, t, heads, d, causal) in [
            (2, 7, 3, 8, false),
            (3, 13, 2, 64, true),
            (1, 50, 12, 64, false),
            (2, 77, 2, 80, true),
            (1, 33, 3, 20, false),
        ] {
            let qkv = Tensor::randn(0f32, 1.0, (b, t, 3 * heads * d), &Device::Cpu).unwrap();
            let got = attention(&qkv, heads, causal).unwrap().unwrap();
            let want = reference(&qkv, heads, causal);
            let err = max_abs_diff(&got, &want);
            println!(
                "attention b={b} t={t} heads={heads} d={d} causal={causal}: max |diff| {err:.2e}"
            );
            assert!(err < 1e-5, "max |diff| {err}");
            // The portable per-head loop, taken on CPUs without AVX2 + FMA.
            let generic = generic_attention(&qkv, heads, causal);
            let err = max_abs_diff(&generic, &want);
            assert!(err < 1e-5, "portable kernel: max |diff| {err}");
        }
    }

    /// Each packed sequence against the batched causal kernel run on that sequence alone.
    #[test]
    fn packed_attention_matches_per_sequence() {
        let (heads, d) = (2, 16);
        let w3 = 3 * heads * d;
        let lens = [3usize, 1, 0, 7, 5];
        let n: usize = lens.iter().sum();
        let qkv = Tensor::randn(0f32, 1.0, (n, w3), &Device::Cpu).unwrap();
        let mut offsets = vec![0];
        for l in lens {
            offsets.push(offsets.last().unwrap() + l);
        }
        let got = packed_causal_attention(&qkv, heads, &offsets)
            .unwrap()
            .unwrap();
        for (i, &l) in lens.iter().enumerate() {
            if l == 0 {
                continue; // An empty sequence contributes no rows (and must not fail).
            }
            let one = qkv.narrow(0, offsets[i], l).unwrap().unsqueeze(0).unwrap();
            let want = reference(&one, heads, true).squeeze(0).unwrap();
            let err = max_abs_diff(&got.narrow(0, offsets[i], l).unwrap(), &want);
            assert!(err < 1e-5, "sequence {i}: max |diff| {err}");
        }
        assert!(packed_causal_attention(&qkv, heads, &[0, 3, n + 1]).is_err());
    }

    #[test]
    fn bias_kernels_match_unfused() {
        let x = Tensor::randn(0f32, 2.0, (5, 33), &Device::Cpu).unwrap();
        let r = Tensor::randn(0f32, 1.0, (5, 33), &Device::Cpu).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 33, &Device::Cpu).unwrap();
        let xb = x.broadcast_add(&bias).unwrap();

        let y = x.copy().unwrap();
        assert!(bias_act_(&y, &bias, Activation::QuickGelu).unwrap());
        let want = (&xb * candle_nn::ops::sigmoid(&(&xb * 1.702).unwrap()).unwrap()).unwrap();
        assert!(max_abs_diff(&y, &want) < 1e-5);

        let y = x.copy().unwrap();
        assert!(bias_act_(&y, &bias, Activation::Gelu).unwrap());
        assert!(max_abs_diff(&y, &xb.gelu_erf().unwrap()) < 1e-5);

        let y = x.copy().unwrap();
        assert!(bias_act_(&y, &bias, Activation::GeluTanh).unwrap());
        assert!(max_abs_diff(&y, &xb.gelu().unwrap()) < 1e-5);

        let y = x.copy().unwrap();
        assert!(bias_residual_(&y, &bias, &r).unwrap());
        assert!(max_abs_diff(&y, &(&xb + &r).unwrap()) < 1e-5);

        let y = x.copy().unwrap();
        assert!(bias_(&y, &bias).unwrap());
        assert!(max_abs_diff(&y, &xb) < 1e-6);
    }
}
