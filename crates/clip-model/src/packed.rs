//! Prepacked-weight matrix products for the CPU: `y = act(x Wᵀ + b + r)`, for the linear layers
//! and patch embedding of the transformers, the per-head products of attention and (through
//! [`crate::ops_conv::PackedConv`]) the ResNet convolutions.
//!
//! candle's CPU matmul hands every call to the `gemm` crate, which packs both operands again on
//! every call: for a weight matrix that never changes that is a full extra read and write of the
//! weights per layer and batch (batch 1 of ViT-B/32 streams ~350 MB of weights per image through
//! the packing code), plus a transposed copy where few rows are multiplied. Here each weight is
//! packed once, at load, into the layout the micro-kernel reads (column panels of [`NR`] outputs,
//! `k`-major, zero-padded), so a product reads the weights once and the activations in place.
//! Bias, activation and residual are applied to each output tile in registers (AVX-512; erf-GELU
//! and the AVX2 kernel: while the tile is still in L1).
//!
//! Blocking (per thread): `k` in blocks of at most [`KC`] (a `KC × NR` weight block, ≤ 96 KiB,
//! stays in L2 while a block of [`MC`] rows streams past it), and a register tile of up to
//! 12 rows × 32 columns (AVX-512) or 6 × 16 (AVX2 + FMA). Threads split the column panels (and,
//! with few panels, the rows); each writes disjoint tiles of `y`.
//!
//! Runtime dispatch: AVX-512F, else AVX2 + FMA; on other CPUs [`Kernel::detect`] gives `None` and
//! the caller keeps the unpacked weights and candle's matmul. Switches for A/B runs (read once per
//! process): `CLIP_MODEL_UNPACKED=1` (candle's matmul / `gemm`), `CLIP_MODEL_KERNEL=avx2`.

// Off x86-64 no kernel is ever chosen and most of this module is unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use rayon::prelude::*;

use crate::config::Activation;

/// Output columns per packed panel.
pub(crate) const NR: usize = 32;
/// Largest depth of one `k` block (`k` is cut into near-equal blocks of at most this).
const KC: usize = 768;
/// Rows of one row block.
const MC: usize = 96;
/// Floats per cache line (panel storage is aligned to it).
const LINE: usize = 16;

/// The micro-kernel family used on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// 12 × 32 register tile, AVX-512F.
    Avx512,
    /// 6 × 16 register tile, AVX2 + FMA.
    Avx2,
}

impl Kernel {
    /// The best kernel this CPU runs, if any.
    pub(crate) fn detect() -> Option<Kernel> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .find(|k| k.supported())
    }

    /// The kernel to use: [`Kernel::detect`]'s, unless `CLIP_MODEL_KERNEL=avx2` asks for the
    /// AVX2 kernels on an AVX-512 CPU (to measure what AVX2-only CPUs get).
    pub(crate) fn chosen() -> Option<Kernel> {
        static FORCED: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| {
            let v = std::env::var("CLIP_MODEL_KERNEL").ok()?;
            v.eq_ignore_ascii_case("avx2")
                .then_some(Kernel::Avx2)
                .filter(|k| k.supported())
        });
        forced.or_else(Kernel::detect)
    }

    /// Whether this CPU can run `self`.
    pub(crate) fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Kernel::Avx512 => has!("avx512f"),
                Kernel::Avx2 => has!("avx2") && has!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Largest row count of one register tile.
    fn max_rows(self) -> usize {
        match self {
            Kernel::Avx512 => 12,
            Kernel::Avx2 => 6,
        }
    }
}

/// The packed kernels to use for weights like `w`, if any: f32 on the CPU, with the fused path on.
/// Off with `CLIP_MODEL_UNFUSED` (the whole plain candle path) or `CLIP_MODEL_UNPACKED` (candle's
/// matmul / `gemm` inside the fused blocks), either set to anything but `0`; `CLIP_MODEL_KERNEL=avx2`
/// picks the AVX2 kernels on an AVX-512 CPU.
pub(crate) fn kernel_for(w: &candle_core::Tensor) -> Option<Kernel> {
    if !crate::ops::fused(w) {
        return None;
    }
    packing_kernel()
}

/// The packed kernels to use, if any, whatever the tensor (see [`kernel_for`]); `None` with
/// `CLIP_MODEL_UNPACKED` set.
pub(crate) fn packing_kernel() -> Option<Kernel> {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let off =
        *OFF.get_or_init(|| std::env::var_os("CLIP_MODEL_UNPACKED").is_some_and(|v| v != "0"));
    if off { None } else { Kernel::chosen() }
}

/// The activation of an [`Epilogue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// None.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// A transformer activation.
    Model(Activation),
}

/// What is applied after the product: `y = act(x Wᵀ + b + r)`, `r` (if any) shaped like `y`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// Added after the bias.
    pub residual: Option<&'a [f32]>,
    /// Applied last.
    pub act: Act,
}

impl<'a> Epilogue<'a> {
    /// `y = x Wᵀ + b`.
    pub(crate) const BIAS: Epilogue<'static> = Epilogue {
        residual: None,
        act: Act::Identity,
    };

    /// `y = act(x Wᵀ + b)`.
    pub(crate) fn act(act: Act) -> Self {
        Epilogue {
            residual: None,
            act,
        }
    }

    /// `y = x Wᵀ + b + r`.
    pub(crate) fn residual(r: &'a [f32]) -> Self {
        Epilogue {
            residual: Some(r),
            act: Act::Identity,
        }
    }
}

/// A weight matrix `W` (`n` outputs × `k` inputs, row-major as stored in checkpoints) packed for
/// `x Wᵀ`, with its bias.
#[derive(Clone)]
pub(crate) struct PackedLinear {
    n: usize,
    k: usize,
    /// `ceil(n / NR)` panels of `k × NR` floats, starting at `start` (cache-line aligned).
    buf: Vec<f32>,
    start: usize,
    bias: Vec<f32>,
    kernel: Kernel,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl PackedLinear {
    /// Packs `weight` (`n × k`, row-major) and `bias` (`n`) for `kernel`.
    pub(crate) fn new(
        weight: &[f32],
        bias: &[f32],
        n: usize,
        k: usize,
        kernel: Kernel,
    ) -> Result<Self, String> {
        if n == 0 || k == 0 || weight.len() != n * k || bias.len() != n {
            return Err(format!(
                "cannot pack a {n}×{k} weight from {} values and a bias of {}",
                weight.len(),
                bias.len()
            ));
        }
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        let mut buf = vec![0f32; len + LINE];
        let start = buf.as_ptr().align_offset(LINE * 4).min(LINE);
        let packed = &mut buf[start..start + len];
        for (j, row) in weight.chunks_exact(k).enumerate() {
            let panel = &mut packed[(j / NR) * k * NR..][..k * NR];
            for (p, &v) in row.iter().enumerate() {
                panel[p * NR + j % NR] = v;
            }
        }
        Ok(Self {
            n,
            k,
            buf,
            start,
            bias: bias.to_vec(),
            kernel,
        })
    }

    /// Output features.
    pub(crate) fn out_features(&self) -> usize {
        self.n
    }

    /// Input features.
    pub(crate) fn in_features(&self) -> usize {
        self.k
    }

    /// The bias.
    pub(crate) fn bias(&self) -> &[f32] {
        &self.bias
    }

    fn panels(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.n.div_ceil(NR) * self.k * NR]
    }

    /// The weight back in checkpoint layout (`n × k`, row-major), for the plain candle path.
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let panels = self.panels();
        let mut w = vec![0f32; n * k];
        for (j, row) in w.chunks_exact_mut(k).enumerate() {
            let panel = &panels[(j / NR) * k * NR..][..k * NR];
            for (p, v) in row.iter_mut().enumerate() {
                *v = panel[p * NR + j % NR];
            }
        }
        w
    }

    /// `x Wᵀ + b` then `epilogue`, for `x` with `m` rows of `k` values; returns `m × n` values.
    /// Large products are split over the rayon pool.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        m: usize,
        epilogue: Epilogue,
    ) -> Result<Vec<f32>, String> {
        self.forward_on(x, m, epilogue, true)
    }

    /// [`Self::forward`] on the calling thread only (for callers that are already one of many
    /// parallel tasks).
    pub(crate) fn forward_serial(
        &self,
        x: &[f32],
        m: usize,
        epilogue: Epilogue,
    ) -> Result<Vec<f32>, String> {
        self.forward_on(x, m, epilogue, false)
    }

    fn forward_on(
        &self,
        x: &[f32],
        m: usize,
        epilogue: Epilogue,
        parallel: bool,
    ) -> Result<Vec<f32>, String> {
        let mut y: Vec<f32> = Vec::with_capacity(m * self.n);
        self.forward_into(
            x,
            m,
            &mut y.spare_capacity_mut()[..m * self.n],
            epilogue,
            parallel,
        )?;
        // SAFETY: `forward_into` succeeded, so it set all m × n values.
        unsafe { y.set_len(m * self.n) };
        Ok(y)
    }

    /// [`Self::forward`] into `y` (`m × n` values, all of which are written on success).
    pub(crate) fn forward_into(
        &self,
        x: &[f32],
        m: usize,
        y: &mut [std::mem::MaybeUninit<f32>],
        epilogue: Epilogue,
        parallel: bool,
    ) -> Result<(), String> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k {
            return Err(format!(
                "input of {} values is not {m} rows of {k}",
                x.len()
            ));
        }
        if y.len() != m * n {
            return Err(format!("output of {} values, expected {m}×{n}", y.len()));
        }
        if let Some(r) = epilogue.residual
            && r.len() != m * n
        {
            return Err(format!("residual of {} values, expected {m}×{n}", r.len()));
        }
        if !self.kernel.supported() {
            return Err(format!(
                "{:?} kernels are not supported on this CPU",
                self.kernel
            ));
        }
        if m == 0 {
            return Ok(());
        }
        let panels = n.div_ceil(NR);
        let threads = rayon::current_num_threads().max(1);
        // Tiny products are not worth waking the pool.
        let work = m * n * k;
        let (panel_groups, row_groups) = if !parallel || threads == 1 || work < 1 << 18 {
            (1, 1)
        } else {
            let pg = panels.min(threads);
            (
                pg,
                threads.div_ceil(pg).min(m.div_ceil(self.kernel.max_rows())),
            )
        };
        let out = SendPtr(y.as_mut_ptr().cast::<f32>());
        let task = |t: usize| {
            let (pg, rg) = (t % panel_groups, t / panel_groups);
            let p = split(panels, panel_groups, pg);
            let r = split(m, row_groups, rg);
            // SAFETY: tasks cover disjoint (row range × panel range) tiles of `y`, which has
            // m × n values; `x` and the residual have the lengths checked above. Every tile is
            // stored whole by its first `k` block (columns beyond `n` masked off) before any
            // value is read back, so all of `y` is initialised on return.
            unsafe { self.block(x, r, p, out, epilogue) };
        };
        if panel_groups * row_groups == 1 {
            task(0);
        } else {
            (0..panel_groups * row_groups)
                .into_par_iter()
                .for_each(task);
        }
        Ok(())
    }

    /// Rows `rows` × panels `panels` of the product, written through `y`.
    ///
    /// # Safety
    /// `y` points to `m × n` floats of which no other thread touches this tile; `x` has `m × k`
    /// values and a residual `m × n`, with `rows.end <= m` and `panels.end <= ceil(n / NR)`.
    unsafe fn block(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        y: SendPtr,
        epilogue: Epilogue,
    ) {
        // Off x86-64 no kernel is `supported()`, so `forward_into` never gets here.
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (x, rows, panels, y, epilogue);
        #[cfg(target_arch = "x86_64")]
        {
            let (n, k) = (self.n, self.k);
            let packed = self.panels();
            let max_rows = self.kernel.max_rows();
            let k_blocks = k.div_ceil(KC);
            for kb in 0..k_blocks {
                let kr = split(k, k_blocks, kb);
                let (k0, kc) = (kr.start, kr.len());
                let first = kb == 0;
                let last = kb + 1 == k_blocks;
                let mut r0 = rows.start;
                while r0 < rows.end {
                    let r1 = (r0 + MC).min(rows.end);
                    let tiles = (r1 - r0).div_ceil(max_rows);
                    for p in panels.clone() {
                        let cols = NR.min(n - p * NR);
                        let b = &packed[p * k * NR + k0 * NR..][..kc * NR];
                        for t in 0..tiles {
                            let tr = split(r1 - r0, tiles, t);
                            let (i0, mr) = (r0 + tr.start, tr.len());
                            let a = &x[i0 * k + k0..];
                            // SAFETY: the tile (rows i0..i0 + mr, columns p·NR..p·NR + cols) lies
                            // inside y and inside this task's share, and the kernels address only
                            // those `cols` columns of y, the bias and the residual; `a` holds rows
                            // i0.. of x from column k0, each row `k` apart, `b` kc × NR packed values.
                            unsafe {
                                let c = y.0.add(i0 * n + p * NR);
                                match self.kernel {
                                    Kernel::Avx512 => {
                                        // Bias, residual and activation go into the kernel's last
                                        // store, except the GELUs, left to `finish`.
                                        let in_kernel = last
                                            && !matches!(
                                                epilogue.act,
                                                Act::Model(Activation::Gelu | Activation::GeluTanh)
                                            );
                                        let tail = in_kernel.then(|| Tail {
                                            bias: &self.bias[p * NR..],
                                            residual: epilogue
                                                .residual
                                                .map(|r| &r[i0 * n + p * NR..]),
                                            act: epilogue.act,
                                        });
                                        x86::tile_avx512(mr, kc, a, k, b, c, n, cols, !first, tail);
                                        if last && !in_kernel {
                                            self.finish(c, i0, mr, p * NR, cols, epilogue);
                                        }
                                    }
                                    Kernel::Avx2 => {
                                        x86::tile_avx2(mr, kc, a, k, b, c, n, cols, !first);
                                        if last {
                                            self.finish(c, i0, mr, p * NR, cols, epilogue);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    r0 = r1;
                }
            }
        }
    }

    /// Applies bias and `epilogue` to one finished tile.
    #[cfg(target_arch = "x86_64")]
    ///
    /// # Safety
    /// `c` points at element (i0, j0) of `y` (row stride `n`); rows `i0..i0 + mr` and columns
    /// `j0..j0 + cols` are inside `y` and owned by the caller.
    unsafe fn finish(
        &self,
        c: *mut f32,
        i0: usize,
        mr: usize,
        j0: usize,
        cols: usize,
        epilogue: Epilogue,
    ) {
        let n = self.n;
        let bias = &self.bias[j0..j0 + cols];
        for i in 0..mr {
            // SAFETY: see the function contract.
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * n), cols) };
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            if let Some(r) = epilogue.residual {
                let r = &r[(i0 + i) * n + j0..][..cols];
                row.iter_mut().zip(r).for_each(|(v, r)| *v += r);
            }
            match epilogue.act {
                Act::Identity => {}
                Act::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
                Act::Model(Activation::QuickGelu) => {
                    row.iter_mut().for_each(|v| *v = crate::ops::quick_gelu(*v))
                }
                Act::Model(Activation::Gelu) => {
                    row.iter_mut().for_each(|v| *v = crate::ops::gelu_erf(*v))
                }
                Act::Model(Activation::GeluTanh) => {
                    row.iter_mut().for_each(|v| *v = crate::ops::gelu_tanh(*v))
                }
            }
        }
    }
}

/// Row-wise softmax of `scale · s` for `s` holding `t × t` scores; with `causal`, row `i` only
/// over columns `0..=i` (the rest set to 0).
pub(crate) fn softmax_rows(s: &mut [f32], t: usize, scale: f32, causal: bool) {
    for (i, row) in s.chunks_exact_mut(t).enumerate() {
        let n = if causal { i + 1 } else { t };
        let (live, masked) = row.split_at_mut(n);
        masked.fill(0.0);
        #[cfg(target_arch = "x86_64")]
        if Kernel::chosen() == Some(Kernel::Avx512) {
            // SAFETY: AVX-512F was detected (`chosen` only returns kernels the CPU runs).
            unsafe { x86::softmax_avx512(live, scale) };
            continue;
        }
        softmax_scalar(live, scale);
    }
}

/// `row = softmax(scale · row)`, one value at a time.
fn softmax_scalar(live: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in live.iter_mut() {
        *v *= scale;
        max = max.max(*v);
    }
    let mut sum = 0f32;
    for v in live.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|v| *v *= inv);
}

/// What the AVX-512 kernel applies before its last store: the bias (from the tile's first
/// column), the residual (from the tile's first element, rows `ldc` apart like the output), then
/// the activation (not erf-GELU).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
struct Tail<'a> {
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    act: Act,
}

/// Part `i` of `0..len` cut into `parts` near-equal ranges.
fn split(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only written through in disjoint tiles (see `PackedLinear::block`).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Act, NR, Tail};
    use crate::config::Activation;

    /// One register tile: `c[0..mr][0..cols] (+)= a[0..mr][0..kc] · b[0..kc][0..NR]`, with `a`
    /// rows `lda` apart, `b` packed (`NR` per step), `c` rows `ldc` apart, then `tail`. `mr` ≤ 12.
    ///
    /// # Safety
    /// AVX-512F available; the slices and `c` cover the stated ranges.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_avx512(
        mr: usize,
        kc: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
        tail: Option<Tail>,
    ) {
        macro_rules! go {
            ($($r:literal)*) => {
                match mr {
                    $($r => unsafe { kernel_avx512::<$r>(kc, a, lda, b, c, ldc, cols, accumulate, tail) },)*
                    _ => unreachable!("tile of {mr} rows"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_avx512<const MR: usize>(
        kc: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
        tail: Option<Tail>,
    ) {
        debug_assert!(a.len() >= (MR - 1) * lda + kc && b.len() >= kc * NR);
        let m0: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            (1u16 << cols) - 1
        };
        // Columns 16..32 of `c`, the bias and the residual exist only when `cols > 16`: the upper
        // half is computed in registers regardless (the packed panel is zero-padded) but never
        // addressed in memory otherwise.
        let hi_live = cols > 16;
        let m1: __mmask16 = if cols >= 32 {
            0xffff
        } else if hi_live {
            (1u16 << (cols - 16)) - 1
        } else {
            0
        };
        let ap = a.as_ptr();
        let bp = b.as_ptr();
        let mut lo = [_mm512_setzero_ps(); MR];
        let mut hi = [_mm512_setzero_ps(); MR];
        // SAFETY (all pointer arithmetic below): `a` and `b` hold what is read (debug-asserted);
        // `c` (rows `ldc` apart), the bias and the residual are valid for `cols` values per row,
        // and only masked accesses within those are made.
        unsafe {
            if accumulate {
                for i in 0..MR {
                    lo[i] = _mm512_maskz_loadu_ps(m0, c.add(i * ldc));
                    if hi_live {
                        hi[i] = _mm512_maskz_loadu_ps(m1, c.add(i * ldc + 16));
                    }
                }
            }
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(bp.add(p * NR));
                let b1 = _mm512_loadu_ps(bp.add(p * NR + 16));
                for i in 0..MR {
                    let x = _mm512_set1_ps(*ap.add(i * lda + p));
                    lo[i] = _mm512_fmadd_ps(x, b0, lo[i]);
                    hi[i] = _mm512_fmadd_ps(x, b1, hi[i]);
                }
            }
            if let Some(tail) = tail {
                let b0 = _mm512_maskz_loadu_ps(m0, tail.bias.as_ptr());
                let b1 = if hi_live {
                    _mm512_maskz_loadu_ps(m1, tail.bias.as_ptr().add(16))
                } else {
                    _mm512_setzero_ps()
                };
                for i in 0..MR {
                    lo[i] = _mm512_add_ps(lo[i], b0);
                    hi[i] = _mm512_add_ps(hi[i], b1);
                }
                if let Some(r) = tail.residual {
                    for i in 0..MR {
                        let rp = r.as_ptr().add(i * ldc);
                        lo[i] = _mm512_add_ps(lo[i], _mm512_maskz_loadu_ps(m0, rp));
                        if hi_live {
                            hi[i] = _mm512_add_ps(hi[i], _mm512_maskz_loadu_ps(m1, rp.add(16)));
                        }
                    }
                }
                match tail.act {
                    Act::Relu => {
                        let zero = _mm512_setzero_ps();
                        for i in 0..MR {
                            lo[i] = _mm512_max_ps(lo[i], zero);
                            hi[i] = _mm512_max_ps(hi[i], zero);
                        }
                    }
                    Act::Model(Activation::QuickGelu) => {
                        for i in 0..MR {
                            lo[i] = quick_gelu_avx512(lo[i]);
                            hi[i] = quick_gelu_avx512(hi[i]);
                        }
                    }
                    Act::Identity | Act::Model(Activation::Gelu | Activation::GeluTanh) => {}
                }
            }
            for i in 0..MR {
                _mm512_mask_storeu_ps(c.add(i * ldc), m0, lo[i]);
                if hi_live {
                    _mm512_mask_storeu_ps(c.add(i * ldc + 16), m1, hi[i]);
                }
            }
        }
    }

    /// The AVX2 counterpart of [`tile_avx512`]: the 32-column panel as two 16-column halves,
    /// up to 6 rows each (`mr` ≤ 6).
    ///
    /// # Safety
    /// AVX2 and FMA available; ranges as for [`tile_avx512`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_avx2(
        mr: usize,
        kc: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        for half in 0..2 {
            let h_cols = cols.saturating_sub(half * 16).min(16);
            if h_cols == 0 {
                break;
            }
            macro_rules! go {
                ($($r:literal)*) => {
                    match mr {
                        $($r => unsafe {
                            kernel_avx2::<$r>(kc, a, lda, &b[half * 16..], c.add(half * 16), ldc, h_cols, accumulate)
                        },)*
                        _ => unreachable!("tile of {mr} rows"),
                    }
                };
            }
            go!(1 2 3 4 5 6)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel_avx2<const MR: usize>(
        kc: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let ap = a.as_ptr();
        let bp = b.as_ptr();
        let mut lo = [_mm256_setzero_ps(); MR];
        let mut hi = [_mm256_setzero_ps(); MR];
        let mut tmp = [0f32; 16];
        // SAFETY (all pointer arithmetic below): in bounds by the caller's contract; partial
        // tiles go through `tmp`.
        unsafe {
            if accumulate {
                for i in 0..MR {
                    if cols == 16 {
                        lo[i] = _mm256_loadu_ps(c.add(i * ldc));
                        hi[i] = _mm256_loadu_ps(c.add(i * ldc + 8));
                    } else {
                        tmp = [0f32; 16];
                        std::ptr::copy_nonoverlapping(c.add(i * ldc), tmp.as_mut_ptr(), cols);
                        lo[i] = _mm256_loadu_ps(tmp.as_ptr());
                        hi[i] = _mm256_loadu_ps(tmp.as_ptr().add(8));
                    }
                }
            }
            for p in 0..kc {
                let b0 = _mm256_loadu_ps(bp.add(p * NR));
                let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
                for i in 0..MR {
                    let x = _mm256_broadcast_ss(&*ap.add(i * lda + p));
                    lo[i] = _mm256_fmadd_ps(x, b0, lo[i]);
                    hi[i] = _mm256_fmadd_ps(x, b1, hi[i]);
                }
            }
            for i in 0..MR {
                if cols == 16 {
                    _mm256_storeu_ps(c.add(i * ldc), lo[i]);
                    _mm256_storeu_ps(c.add(i * ldc + 8), hi[i]);
                } else {
                    _mm256_storeu_ps(tmp.as_mut_ptr(), lo[i]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), hi[i]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), c.add(i * ldc), cols);
                }
            }
        }
    }

    /// `e^x` for 16 lanes: `x = n ln 2 + r`, a degree-6 polynomial for `e^r` on
    /// `|r| ≤ ln 2 / 2`, scaled by `2^n`; relative error below 2e-7, `-inf → 0`, overflow → `inf`, NaN → NaN.
    #[target_feature(enable = "avx512f")]
    fn exp_avx512(x: __m512) -> __m512 {
        // The constant first: max/min return their second operand when either is NaN, so NaN
        // stays NaN.
        let x = _mm512_max_ps(_mm512_set1_ps(-104.0), x);
        let x = _mm512_min_ps(_mm512_set1_ps(89.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        // ln 2 split in a high part exact in f32 and a low correction (Cody–Waite).
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// In place: `row = softmax(scale · row)`, 16 lanes at a time.
    ///
    /// # Safety
    /// AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_avx512(row: &mut [f32], scale: f32) {
        let len = row.len();
        let mask = |j: usize| -> __mmask16 {
            if len - j >= 16 {
                0xffff
            } else {
                (1u16 << (len - j)) - 1
            }
        };
        let p = row.as_mut_ptr();
        let vscale = _mm512_set1_ps(scale);
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        // SAFETY (all loads and stores): lanes at or beyond `len` are masked off.
        unsafe {
            for j in (0..len).step_by(16) {
                let m = mask(j);
                let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(j)), vscale);
                _mm512_mask_storeu_ps(p.add(j), m, v);
                vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
            }
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
            let mut vsum = _mm512_setzero_ps();
            for j in (0..len).step_by(16) {
                let m = mask(j);
                let e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(j)), max));
                let e = _mm512_maskz_mov_ps(m, e);
                _mm512_mask_storeu_ps(p.add(j), m, e);
                vsum = _mm512_add_ps(vsum, e);
            }
            let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(vsum));
            for j in (0..len).step_by(16) {
                let m = mask(j);
                let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(j)), inv);
                _mm512_mask_storeu_ps(p.add(j), m, v);
            }
        }
    }

    /// `x / (1 + e^(-1.702 x))`, QuickGELU, on 16 lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn quick_gelu_avx512(x: __m512) -> __m512 {
        let e = exp_avx512(_mm512_mul_ps(x, _mm512_set1_ps(-1.702)));
        _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
    }

    #[cfg(test)]
    pub(super) fn exp16(x: [f32; 16]) -> Option<[f32; 16]> {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return None;
        }
        let mut out = [0f32; 16];
        // SAFETY: AVX-512F was detected just above.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp_avx512(_mm512_loadu_ps(x.as_ptr()))) };
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = dev_support::Rng::new(seed);
        (0..len).map(|_| rng.uniform()).collect()
    }

    /// `act(x Wᵀ + b) (+ r)` in f64, straight from the definition.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        m: usize,
        n: usize,
        k: usize,
        epilogue: Epilogue,
    ) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = b[j] as f64;
                for p in 0..k {
                    s += x[i * k + p] as f64 * w[j * k + p] as f64;
                }
                let s = s as f32;
                let s = s + epilogue.residual.map_or(0.0, |r| r[i * n + j]);
                y[i * n + j] = match epilogue.act {
                    Act::Identity => s,
                    Act::Relu => s.max(0.0),
                    Act::Model(Activation::QuickGelu) => {
                        (s as f64 / (1.0 + (-1.702 * s as f64).exp())) as f32
                    }
                    Act::Model(Activation::Gelu) => crate::ops::gelu_erf(s),
                    Act::Model(Activation::GeluTanh) => {
                        (0.5 * s as f64
                            * (1.0
                                + ((2.0 / std::f64::consts::PI).sqrt()
                                    * (s as f64 + 0.044715 * (s as f64).powi(3)))
                                .tanh())) as f32
                    }
                };
            }
        }
        y
    }

    fn kernels() -> Vec<Kernel> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.supported())
            .collect()
    }

    #[test]
    fn pack_unpack_round_trip() {
        for (n, k) in [(1, 1), (33, 7), (64, 300), (70, 5)] {
            let w = values(n * k, 3);
            let p = PackedLinear::new(&w, &vec![0.0; n], n, k, Kernel::Avx2).unwrap();
            assert_eq!(p.unpack(), w, "{n}×{k}");
        }
    }

    #[test]
    fn products_match_the_definition() {
        if kernels().is_empty() {
            eprintln!("SKIP: neither AVX-512F nor AVX2+FMA on this CPU");
            return;
        }
        // Shapes cover partial panels (n % 32), one to three k blocks, one to many row
        // tiles, and sizes that take the threaded path.
        let shapes = [
            (1, 1, 1),
            (3, 17, 5),
            (13, 32, 256),
            (50, 96, 300),
            (97, 40, 513),
            (20, 64, 1700),
            (200, 130, 64),
            (7, 2304, 768),
        ];
        for kernel in kernels() {
            for &(m, n, k) in &shapes {
                let x = values(m * k, 1);
                let w = values(n * k, 2);
                let b = values(n, 4);
                let r = values(m * n, 5);
                let packed = PackedLinear::new(&w, &b, n, k, kernel).unwrap();
                for epilogue in [
                    Epilogue::BIAS,
                    Epilogue::residual(&r),
                    Epilogue::act(Act::Model(Activation::QuickGelu)),
                    Epilogue::act(Act::Model(Activation::Gelu)),
                    Epilogue::act(Act::Model(Activation::GeluTanh)),
                    Epilogue::act(Act::Relu),
                    Epilogue {
                        residual: Some(&r),
                        act: Act::Relu,
                    },
                ] {
                    let got = packed.forward(&x, m, epilogue).unwrap();
                    let want = reference(&x, &w, &b, m, n, k, epilogue);
                    // f32 accumulation of k products of values in [-1, 1): error grows like
                    // √k · 2⁻²⁴ · |terms|; 1e-5 · √k (≈ 3e-4 at k = 768) is a loose bound
                    // that still catches any wrong or missing term (each is ~0.3 on average).
                    let tol = 1e-5 * (k as f32).sqrt().max(1.0);
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst <= tol && got.iter().all(|v| v.is_finite()),
                        "{kernel:?} {m}×{n}×{k} {epilogue:?}: max abs diff {worst} > {tol}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_paths_match_the_definition() {
        for len in [1, 5, 16, 50, 77] {
            let row: Vec<f32> = values(len, 9).iter().map(|v| v * 8.0).collect();
            let scale = 0.125f32;
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
            let e: Vec<f64> = row
                .iter()
                .map(|&v| ((v as f64 - max) * scale as f64).exp())
                .collect();
            let sum: f64 = e.iter().sum();
            let mut scalar = row.clone();
            softmax_scalar(&mut scalar, scale);
            let mut any = row.clone();
            softmax_rows(&mut any, len, scale, false);
            for (name, got) in [("scalar", &scalar), ("dispatched", &any)] {
                let worst = got
                    .iter()
                    .zip(&e)
                    .map(|(g, e)| (*g as f64 - e / sum).abs())
                    .fold(0f64, f64::max);
                // Probabilities ≤ 1: a few f32 ulps of 1.
                assert!(
                    worst < 1e-6,
                    "{name} softmax of {len}: max abs diff {worst}"
                );
            }
        }
        // A NaN score poisons its row on every path (as in candle and PyTorch), never silently
        // drops out of the softmax.
        let mut poisoned = values(20, 4);
        poisoned[3] = f32::NAN;
        softmax_rows(&mut poisoned, 20, 1.0, false);
        assert!(poisoned.iter().all(|v| v.is_nan()), "{poisoned:?}");
        let mut causal = values(9, 3);
        softmax_rows(&mut causal, 3, 1.0, true);
        assert_eq!(&causal[1..3], &[0.0, 0.0], "row 0 sees only column 0");
        assert_eq!(causal[0], 1.0);
        assert_eq!(causal[5], 0.0, "row 1 sees columns 0..=1");
    }

    /// With more threads than column panels the rows are split too: every tile must still be
    /// written exactly once.
    #[test]
    fn row_split_across_threads_matches_the_definition() {
        let Some(kernel) = Kernel::detect() else {
            eprintln!("SKIP: no packed kernels on this CPU");
            return;
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .unwrap();
        for (m, n, k) in [(150, 32, 120), (97, 20, 300)] {
            let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
            let packed = PackedLinear::new(&w, &b, n, k, kernel).unwrap();
            let got = pool.install(|| packed.forward(&x, m, Epilogue::BIAS).unwrap());
            let want = reference(&x, &w, &b, m, n, k, Epilogue::BIAS);
            let worst = dev_support::max_abs_diff(&got, &want).unwrap();
            assert!(worst <= 1e-5 * (k as f32).sqrt(), "{m}×{n}×{k}: {worst}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(PackedLinear::new(&[0.0; 6], &[0.0; 2], 2, 2, Kernel::Avx2).is_err());
        assert!(PackedLinear::new(&[0.0; 4], &[0.0; 3], 2, 2, Kernel::Avx2).is_err());
        let p = PackedLinear::new(&[0.0; 4], &[0.0; 2], 2, 2, Kernel::Avx2).unwrap();
        if Kernel::Avx2.supported() {
            assert!(p.forward(&[0.0; 5], 2, Epilogue::BIAS).is_err());
            assert!(
                p.forward(&[0.0; 4], 2, Epilogue::residual(&[0.0; 3]))
                    .is_err()
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_is_accurate() {
        let mut xs = [0f32; 16];
        let mut worst = 0f64;
        for start in (-870..880).step_by(16) {
            for (i, v) in xs.iter_mut().enumerate() {
                *v = (start + i as i32) as f32 * 0.1;
            }
            let Some(got) = x86::exp16(xs) else {
                eprintln!("SKIP: no AVX-512F on this CPU");
                return;
            };
            for (x, g) in xs.iter().zip(got) {
                let want = (*x as f64).exp();
                let rel = ((g as f64 - want) / want).abs();
                if want > 1e-37 && want < 1e38 {
                    worst = worst.max(rel);
                }
            }
        }
        // A handful of f32 ulps (2⁻²³ ≈ 1.2e-7 each).
        assert!(worst < 5e-7, "worst relative error {worst}");
        let edge = x86::exp16([f32::NEG_INFINITY; 16]).unwrap();
        assert!(edge.iter().all(|&v| v == 0.0));
        let mut odd = [0f32; 16];
        odd[..4].copy_from_slice(&[f32::NAN, f32::INFINITY, 200.0, -200.0]);
        let got = x86::exp16(odd).unwrap();
        assert!(got[0].is_nan(), "NaN must stay NaN, got {}", got[0]);
        assert_eq!(&got[1..4], &[f32::INFINITY, f32::INFINITY, 0.0]);
    }
}
