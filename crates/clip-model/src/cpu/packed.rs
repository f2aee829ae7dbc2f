//! Prepacked-weight matrix products for the CPU: `y = act(x Wᵀ + b + r)`, for the linear layers
//! and patch embedding of the transformers, the per-head products of attention (`attention.rs`)
//! and the ResNet convolutions (`conv.rs`).
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
//! Blocking (per thread): `k` in blocks of at most `kc` (a `kc × NR` weight block stays in L2
//! while a block of `mc` rows streams past it), and a register tile of up to 12 rows × 32
//! columns (AVX-512) or 6 × 16 (AVX2 + FMA). `kc` and `mc` come from this CPU's L2 size
//! ([`Blocking`]). Threads split the column panels (and, with few panels, the rows); each writes
//! disjoint tiles of `y`.
//!
//! The sweep behind the rule (2-core AMD EPYC Zen 5, L2 1 MiB per core; ViT-B/32 image batch
//! 32, `CLIP_MODEL_BLOCKING=KC,MC CLIP_BENCH_LOOP=ViT-B/32:32:4` and `ViT-B/32-bf16:32:4` of the
//! `encoders` bench, median of the last three encodes, 2026-11-30): f32 19.3–21.6 img/s for
//! every `kc` of 384, 768, 1024, 1536, 3072 and `mc` of 48, 96, 120, 192, the spread of repeated
//! runs of one setting (20.4 and 20.8 for 768, 96); bf16 35.4–38.9 img/s for `kc` ≥ 768 (a
//! repeat of 768, 96 at the end gave 33.3: the machine's own variance), but 31.1 at 384 (192
//! pairs per block: the output tile is stored and reloaded twice as often per product). So this
//! machine does not tell the settings above the floor apart; the rule keeps the measured machine
//! inside that region and scales the working set with other CPUs' L2.
//!
//! Reduced precision, opt-in ([`with_bf16_weights`] around model loading): on a CPU with
//! AVX-512-BF16 (Zen 4/5, Xeons since Cooper Lake) weights are packed as bf16 pairs and each
//! product rounds its input rows to bf16 once, then multiplies with `vdpbf16ps` (bf16 × bf16
//! products, f32 accumulation, f32 bias / residual / activation). Half the weight bytes, twice the
//! multiply-adds per instruction. Without the instructions the f32 kernels run.
//!
//! Runtime dispatch: AVX-512F, else AVX2 + FMA; on other CPUs [`Kernel::detect`] gives `None` and
//! the caller keeps the unpacked weights and candle's matmul. Switches for A/B runs (read once per
//! process): `CLIP_MODEL_UNPACKED=1` (candle's matmul / `gemm`), `CLIP_MODEL_KERNEL=avx2`.

// Off x86-64 no kernel is ever chosen and most of this module is unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use rayon::prelude::*;

use super::NR;
use super::blocking::Blocking;
use super::epilogue::{Act, Epilogue, gelu_erf, gelu_tanh, quick_gelu};
use super::tensor::fused;
#[cfg(target_arch = "x86_64")]
use super::x86::{self, Tail};
use crate::error::{Error, Result};

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

    /// The name of the kernel family, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX-512F",
            Kernel::Avx2 => "AVX2 + FMA",
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
    if !fused(w) {
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

thread_local! {
    static PACK_BF16: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a model's construction) with the weight matrices it packs through
/// [`PackedMatrix::for_weights`] stored in bf16 when `on` and the CPU runs the bf16 kernel
/// ([`bf16_supported`]); f32 otherwise. The setting is per thread and restored afterwards.
pub(crate) fn with_bf16_weights<T>(on: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PACK_BF16.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PACK_BF16.with(|c| c.replace(on)));
    f()
}

/// Whether this CPU runs the bf16 kernel (AVX-512F + AVX-512-BF16).
pub(crate) fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bf16 (round to nearest even; NaN stays NaN), as its 16 bits.
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
fn bf16_value(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Rows of `k` values as rows of `ceil(k / 2)` bf16 pairs (even index low, odd high, a missing
/// last odd value zero).
fn bf16_pairs(x: &[f32], k: usize) -> Vec<u32> {
    let k2 = k.div_ceil(2);
    #[cfg(target_arch = "x86_64")]
    if k.is_multiple_of(32) && bf16_supported() {
        let mut out = vec![0u32; x.len() / 2];
        // Rows in parallel for large inputs (this runs before the product's own threads).
        let chunk = (1 << 16) / k * k;
        let convert = |(src, dst): (&[f32], &mut [u32])| {
            // SAFETY: AVX-512F + AVX-512-BF16 checked above; `src` has 2 × `dst.len()` values.
            unsafe { x86::bf16_pairs_avx512(src, dst) }
        };
        if x.len() > chunk && chunk > 0 {
            x.par_chunks(chunk)
                .zip(out.par_chunks_mut(chunk / 2))
                .for_each(convert);
        } else {
            convert((x, &mut out));
        }
        return out;
    }
    let mut out = Vec::with_capacity(x.len() / k.max(1) * k2);
    for row in x.chunks_exact(k) {
        let mut pairs = row.chunks_exact(2);
        for p in &mut pairs {
            out.push(u32::from(bf16_bits(p[0])) | (u32::from(bf16_bits(p[1])) << 16));
        }
        if let [last] = pairs.remainder() {
            out.push(u32::from(bf16_bits(*last)));
        }
    }
    out
}

/// A weight matrix `W` (`n` outputs × `k` inputs, row-major as stored in checkpoints) packed for
/// `x Wᵀ`, with its bias.
#[derive(Clone)]
pub(crate) struct PackedMatrix {
    n: usize,
    k: usize,
    /// `ceil(n / NR)` panels of `k × NR` floats, starting at `start` (cache-line aligned); empty
    /// for bf16 weights.
    buf: Vec<f32>,
    start: usize,
    /// bf16 weights instead: `ceil(n / NR)` panels of `ceil(k / 2) × NR` pairs.
    bf16: Option<Vec<u32>>,
    bias: Vec<f32>,
    kernel: Kernel,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("kernel", &self.kernel)
            .field("bf16", &self.bf16.is_some())
            .finish_non_exhaustive()
    }
}

impl PackedMatrix {
    /// Packs `weight` (`n × k`, row-major) and `bias` (`n`) for `kernel`.
    pub(crate) fn new(
        weight: &[f32],
        bias: &[f32],
        n: usize,
        k: usize,
        kernel: Kernel,
    ) -> Result<Self> {
        check_sizes(weight, bias, n, k)?;
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
            bf16: None,
            bias: bias.to_vec(),
            kernel,
        })
    }

    /// Packs weights for a model being built: in bf16 inside [`with_bf16_weights`] on a CPU
    /// that runs the bf16 kernel, else as [`PackedMatrix::new`].
    pub(crate) fn for_weights(
        weight: &[f32],
        bias: &[f32],
        n: usize,
        k: usize,
        kernel: Kernel,
    ) -> Result<Self> {
        if kernel == Kernel::Avx512 && PACK_BF16.with(|c| c.get()) && bf16_supported() {
            Self::new_bf16(weight, bias, n, k)
        } else {
            Self::new(weight, bias, n, k, kernel)
        }
    }

    /// Packs `weight` as bf16 pairs for the AVX-512-BF16 kernel.
    pub(crate) fn new_bf16(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Result<Self> {
        check_sizes(weight, bias, n, k)?;
        let k2 = k.div_ceil(2);
        let mut packed = vec![0u32; n.div_ceil(NR) * k2 * NR];
        for (j, row) in weight.chunks_exact(k).enumerate() {
            let panel = &mut packed[(j / NR) * k2 * NR..][..k2 * NR];
            for (p, &v) in row.iter().enumerate() {
                panel[(p / 2) * NR + j % NR] |= u32::from(bf16_bits(v)) << (16 * (p % 2));
            }
        }
        Ok(Self {
            n,
            k,
            buf: Vec::new(),
            start: 0,
            bf16: Some(packed),
            bias: bias.to_vec(),
            kernel: Kernel::Avx512,
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

    /// The weight back in checkpoint layout (`n × k`, row-major), for the plain candle path
    /// (bf16 weights come back as the f32 values of their bf16 rounding).
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        if let Some(packed) = &self.bf16 {
            let k2 = k.div_ceil(2);
            let mut w = vec![0f32; n * k];
            for (j, row) in w.chunks_exact_mut(k).enumerate() {
                let panel = &packed[(j / NR) * k2 * NR..][..k2 * NR];
                for (p, v) in row.iter_mut().enumerate() {
                    *v = bf16_value((panel[(p / 2) * NR + j % NR] >> (16 * (p % 2))) as u16);
                }
            }
            return w;
        }
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
    pub(crate) fn forward(&self, x: &[f32], m: usize, epilogue: Epilogue) -> Result<Vec<f32>> {
        self.forward_on(x, m, epilogue, true)
    }

    /// [`Self::forward`] on the calling thread only (for callers that are already one of many
    /// parallel tasks).
    pub(crate) fn forward_serial(
        &self,
        x: &[f32],
        m: usize,
        epilogue: Epilogue,
    ) -> Result<Vec<f32>> {
        self.forward_on(x, m, epilogue, false)
    }

    fn forward_on(
        &self,
        x: &[f32],
        m: usize,
        epilogue: Epilogue,
        parallel: bool,
    ) -> Result<Vec<f32>> {
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
    ) -> Result<()> {
        let (n, k) = (self.n, self.k);
        let size = |operand, expected, found| Error::KernelOperand {
            op: "packed product",
            operand,
            expected,
            found,
        };
        if x.len() != m * k {
            return Err(size("input", m * k, x.len()));
        }
        if y.len() != m * n {
            return Err(size("output", m * n, y.len()));
        }
        if let Some(r) = epilogue.residual
            && r.len() != m * n
        {
            return Err(size("residual", m * n, r.len()));
        }
        if !self.kernel.supported() || (self.bf16.is_some() && !bf16_supported()) {
            return Err(Error::UnsupportedCpu {
                kernel: if self.bf16.is_some() {
                    "AVX-512-BF16"
                } else {
                    self.kernel.name()
                },
            });
        }
        if m == 0 {
            return Ok(());
        }
        // bf16 weights: the input rows rounded to bf16 pairs once for all panels.
        let xb = self.bf16.as_ref().map(|_| bf16_pairs(x, k));
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
            unsafe {
                let input = match &xb {
                    Some(xb) => Input::Bf16(xb),
                    None => Input::F32(x),
                };
                self.block(input, r, p, out, epilogue)
            };
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

    /// Rows `rows` × panels `panels` of the product, written through `y`. The depth is cut into
    /// blocks of at most [`Blocking::kc`] values (half as many pairs for bf16 weights), the rows
    /// into blocks of [`Blocking::mc`].
    ///
    /// # Safety
    /// `y` points to `m × n` floats of which no other thread touches this tile; the input has
    /// `m` rows (`k` floats, or `ceil(k / 2)` bf16 pairs with bf16 weights, which need
    /// AVX-512-BF16) and a residual `m × n`, with `rows.end <= m` and
    /// `panels.end <= ceil(n / NR)`.
    unsafe fn block(
        &self,
        x: Input,
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
            let n = self.n;
            // Depth in the units the kernels step by: values, or bf16 pairs.
            let Blocking { kc, mc } = Blocking::get();
            let (depth, kc_max) = match x {
                Input::F32(_) => (self.k, kc),
                Input::Bf16(_) => (self.k.div_ceil(2), kc / 2),
            };
            let f32_panels: &[f32] = match self.bf16 {
                None => self.panels(),
                Some(_) => &[],
            };
            let max_rows = self.kernel.max_rows();
            let k_blocks = depth.div_ceil(kc_max);
            for kb in 0..k_blocks {
                let kr = split(depth, k_blocks, kb);
                let (k0, kc) = (kr.start, kr.len());
                let first = kb == 0;
                let last = kb + 1 == k_blocks;
                let mut r0 = rows.start;
                while r0 < rows.end {
                    let r1 = (r0 + mc).min(rows.end);
                    let tiles = (r1 - r0).div_ceil(max_rows);
                    for p in panels.clone() {
                        let cols = NR.min(n - p * NR);
                        let b0 = p * depth * NR + k0 * NR;
                        for t in 0..tiles {
                            let tr = split(r1 - r0, tiles, t);
                            let (i0, mr) = (r0 + tr.start, tr.len());
                            let a0 = i0 * depth + k0;
                            // Bias, residual and activation go into the AVX-512 kernels' last
                            // store.
                            let tail = last.then(|| Tail {
                                bias: &self.bias[p * NR..],
                                residual: epilogue.residual.map(|r| &r[i0 * n + p * NR..]),
                                act: epilogue.act,
                            });
                            // SAFETY: the tile (rows i0..i0 + mr, columns p·NR..p·NR + cols) lies
                            // inside y and inside this task's share, and the kernels address only
                            // those `cols` columns of y, the bias and the residual; the input holds
                            // rows i0.. from k0, each row `depth` apart, the panel kc × NR packed
                            // values (or pairs).
                            unsafe {
                                let c = y.0.add(i0 * n + p * NR);
                                match (x, &self.bf16) {
                                    (Input::Bf16(xb), Some(packed)) => x86::tile_avx512_bf16(
                                        mr,
                                        kc,
                                        &xb[a0..],
                                        depth,
                                        &packed[b0..][..kc * NR],
                                        c,
                                        n,
                                        cols,
                                        !first,
                                        tail,
                                    ),
                                    (Input::F32(xf), _) => {
                                        let (a, b) = (&xf[a0..], &f32_panels[b0..][..kc * NR]);
                                        match self.kernel {
                                            Kernel::Avx512 => x86::tile_avx512(
                                                mr, kc, a, depth, b, c, n, cols, !first, tail,
                                            ),
                                            Kernel::Avx2 => {
                                                x86::tile_avx2(
                                                    mr, kc, a, depth, b, c, n, cols, !first,
                                                );
                                                if last {
                                                    self.finish(c, i0, mr, p * NR, cols, epilogue);
                                                }
                                            }
                                        }
                                    }
                                    // `forward_into` pairs bf16 inputs with bf16 weights only.
                                    (Input::Bf16(_), None) => {}
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
                Act::QuickGelu => row.iter_mut().for_each(|v| *v = quick_gelu(*v)),
                Act::Gelu => row.iter_mut().for_each(|v| *v = gelu_erf(*v)),
                Act::GeluTanh => row.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
            }
        }
    }
}

/// The size checks of packing `weight` (`n × k`) and `bias` (`n`).
fn check_sizes(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Result<()> {
    let size = |operand, expected, found| Error::KernelOperand {
        op: "packing",
        operand,
        expected,
        found,
    };
    if n == 0 || k == 0 {
        // An empty product: nothing to pack (and a `k = 0` product would leave `y` unset).
        return Err(size(
            "weight (n × k, both non-zero)",
            n.max(1) * k.max(1),
            0,
        ));
    }
    if weight.len() != n * k {
        return Err(size("weight", n * k, weight.len()));
    }
    if bias.len() != n {
        return Err(size("bias", n, bias.len()));
    }
    Ok(())
}

/// Part `i` of `0..len` cut into `parts` near-equal ranges.
fn split(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// The rows a product multiplies: f32 values, or bf16 pairs for bf16 weights.
#[derive(Clone, Copy)]
enum Input<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u32]),
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only written through in disjoint tiles (see `PackedMatrix::block`).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

#[cfg(test)]
pub(crate) mod tests {
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
                    Act::QuickGelu => (s as f64 / (1.0 + (-1.702 * s as f64).exp())) as f32,
                    Act::Gelu => gelu_erf(s),
                    Act::GeluTanh => {
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

    /// The CPU features each kernel family needs, as `is_x86_feature_detected!` names them.
    pub(crate) fn features(kernel: Kernel) -> &'static [&'static str] {
        match kernel {
            Kernel::Avx512 => &["avx512f"],
            Kernel::Avx2 => &["avx2", "fma"],
        }
    }

    /// Every kernel family this CPU runs; each one it lacks is a counted `SKIP(cpu)` of `test`.
    pub(crate) fn kernels(test: &str) -> Vec<Kernel> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|&k| {
                let has = dev_support::cpu_features_or_skip(test, features(k));
                assert_eq!(has, k.supported(), "{k:?}: feature detection disagrees");
                has
            })
            .collect()
    }

    #[test]
    fn pack_unpack_round_trip() {
        for (n, k) in [(1, 1), (33, 7), (64, 300), (70, 5)] {
            let w = values(n * k, 3);
            let p = PackedMatrix::new(&w, &vec![0.0; n], n, k, Kernel::Avx2).unwrap();
            assert_eq!(p.unpack(), w, "{n}×{k}");
        }
    }

    #[test]
    fn products_match_the_definition() {
        // Shapes cover partial panels (n % 32), one to three k blocks (k = 3100 is more than one
        // block for any `kc` up to 2048), one to many row tiles, and sizes that take the
        // threaded path.
        let shapes = [
            (1, 1, 1),
            (3, 17, 5),
            (13, 32, 256),
            (50, 96, 300),
            (97, 40, 513),
            (20, 64, 1700),
            (5, 40, 3100),
            (200, 130, 64),
            (7, 2304, 768),
        ];
        for kernel in kernels("products_match_the_definition") {
            for &(m, n, k) in &shapes {
                let x = values(m * k, 1);
                let w = values(n * k, 2);
                let b = values(n, 4);
                let r = values(m * n, 5);
                let packed = PackedMatrix::new(&w, &b, n, k, kernel).unwrap();
                for epilogue in [
                    Epilogue::BIAS,
                    Epilogue::residual(&r),
                    Epilogue::act(Act::QuickGelu),
                    Epilogue::act(Act::Gelu),
                    Epilogue::act(Act::GeluTanh),
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
                    let worst = dev_support::max_abs_diff(&got, &want).unwrap();
                    assert!(
                        worst <= tol && got.iter().all(|v| v.is_finite()),
                        "{kernel:?} {m}×{n}×{k} {epilogue:?}: max abs diff {worst} > {tol}"
                    );
                }
            }
        }
    }

    /// With more threads than column panels the rows are split too: every tile must still be
    /// written exactly once.
    #[test]
    fn row_split_across_threads_matches_the_definition() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .unwrap();
        for kernel in kernels("row_split_across_threads_matches_the_definition") {
            for (m, n, k) in [(150, 32, 120), (97, 20, 300)] {
                let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
                let packed = PackedMatrix::new(&w, &b, n, k, kernel).unwrap();
                let got = pool.install(|| packed.forward(&x, m, Epilogue::BIAS).unwrap());
                let want = reference(&x, &w, &b, m, n, k, Epilogue::BIAS);
                let worst = dev_support::max_abs_diff(&got, &want).unwrap();
                assert!(
                    worst <= 1e-5 * (k as f32).sqrt(),
                    "{kernel:?} {m}×{n}×{k}: {worst}"
                );
            }
        }
    }

    /// bf16 rounding: nearest, ties to even, NaN kept, as the instruction set's conversions do.
    #[test]
    fn bf16_rounding_is_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to the even mantissa (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: ties to even (1 + 2⁻⁶).
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_bits(1.0 + 1.5 / 256.0), 0x3f81);
        assert_eq!(bf16_bits(-2.0), 0xc000);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_value(bf16_bits(f32::MAX)), f32::INFINITY);
    }

    /// The bf16 kernel computes exactly the product of the bf16-rounded operands (each product of
    /// two bf16 values is exact in f32), up to f32 accumulation: the same bound as the f32
    /// kernels against the definition evaluated on the rounded values.
    #[test]
    fn bf16_products_match_the_definition_on_rounded_operands() {
        if !dev_support::cpu_features_or_skip(
            "bf16_products_match_the_definition_on_rounded_operands",
            &["avx512f", "avx512bf16"],
        ) {
            return;
        }
        let round = |v: &[f32]| {
            v.iter()
                .map(|&x| bf16_value(bf16_bits(x)))
                .collect::<Vec<_>>()
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 17, 5),
            (13, 32, 256),
            (97, 40, 513),
            (20, 64, 1701),
            (5, 40, 3101),
            (200, 130, 64),
            (7, 2304, 768),
            // Inputs over 2¹⁶ values: converted to bf16 in parallel chunks.
            (200, 48, 512),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let b = values(n, 4);
            let r = values(m * n, 5);
            let packed = PackedMatrix::new_bf16(&w, &b, n, k).unwrap();
            assert_eq!(packed.unpack(), round(&w), "{n}×{k} unpack");
            let (xr, wr) = (round(&x), round(&w));
            for epilogue in [
                Epilogue::BIAS,
                Epilogue::act(Act::QuickGelu),
                Epilogue::act(Act::Gelu),
                Epilogue {
                    residual: Some(&r),
                    act: Act::Relu,
                },
            ] {
                let got = packed.forward(&x, m, epilogue).unwrap();
                let want = reference(&xr, &wr, &b, m, n, k, epilogue);
                let worst = dev_support::max_abs_diff(&got, &want).unwrap();
                let tol = 1e-5 * (k as f32).sqrt().max(1.0);
                assert!(worst <= tol, "{m}×{n}×{k} {epilogue:?}: {worst} > {tol}");
            }
            // And against the f32 product: bf16 keeps 8 bits, so about 2⁻⁸ relative per term.
            let exact = reference(&x, &w, &b, m, n, k, Epilogue::BIAS);
            let got = packed.forward(&x, m, Epilogue::BIAS).unwrap();
            let worst = dev_support::max_abs_diff(&got, &exact).unwrap();
            assert!(
                worst <= 0.01 * (k as f32).sqrt(),
                "{m}×{n}×{k} vs f32: {worst}"
            );
        }
    }

    #[test]
    fn bf16_packing_is_chosen_only_inside_the_scope() {
        let (w, b) = (values(64 * 48, 1), values(64, 2));
        let outside = PackedMatrix::for_weights(&w, &b, 64, 48, Kernel::Avx512).unwrap();
        assert!(outside.bf16.is_none());
        let inside = with_bf16_weights(true, || {
            PackedMatrix::for_weights(&w, &b, 64, 48, Kernel::Avx512).unwrap()
        });
        assert_eq!(inside.bf16.is_some(), bf16_supported());
        let after = PackedMatrix::for_weights(&w, &b, 64, 48, Kernel::Avx512).unwrap();
        assert!(after.bf16.is_none());
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(PackedMatrix::new(&[0.0; 6], &[0.0; 2], 2, 2, Kernel::Avx2).is_err());
        assert!(PackedMatrix::new(&[0.0; 4], &[0.0; 3], 2, 2, Kernel::Avx2).is_err());
        assert!(PackedMatrix::new(&[], &[], 0, 2, Kernel::Avx2).is_err());
        assert!(PackedMatrix::new(&[], &[0.0; 2], 2, 0, Kernel::Avx2).is_err());
        let p = PackedMatrix::new(&[0.0; 4], &[0.0; 2], 2, 2, Kernel::Avx2).unwrap();
        if dev_support::cpu_features_or_skip("bad_shapes_are_errors", features(Kernel::Avx2)) {
            assert!(p.forward(&[0.0; 5], 2, Epilogue::BIAS).is_err());
            assert!(
                p.forward(&[0.0; 4], 2, Epilogue::residual(&[0.0; 3]))
                    .is_err()
            );
        }
    }
}
