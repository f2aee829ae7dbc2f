//! The x86-64 micro-kernels (AVX-512F, AVX2 + FMA) of the packed products (`packed.rs`) and the
//! AVX-512 softmax and `exp` of attention (`attention.rs`). Only `std::arch` intrinsics here;
//! callers check that the CPU runs a kernel before calling in.

use std::arch::x86_64::*;

use super::NR;
use super::epilogue::Act;

/// What the AVX-512 kernel applies before its last store: the bias (from the tile's first
/// column), the residual (from the tile's first element, rows `ldc` apart like the output), then
/// the activation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tail<'a> {
    pub bias: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub act: Act,
}

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
    // Columns 16..32 of `c`, the bias and the residual exist only when `cols > 16`: the upper
    // half is computed in registers regardless (the packed panel is zero-padded) but never
    // addressed in memory otherwise (`masks`).
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    // SAFETY (all pointer arithmetic below): `a` and `b` hold what is read (debug-asserted);
    // `c` (rows `ldc` apart), the bias and the residual are valid for `cols` values per row,
    // and only masked accesses within those are made.
    unsafe {
        let (mut lo, mut hi) = start_tile::<MR>(c, ldc, cols, accumulate);
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(bp.add(p * NR));
            let b1 = _mm512_loadu_ps(bp.add(p * NR + 16));
            for i in 0..MR {
                let x = _mm512_set1_ps(*ap.add(i * lda + p));
                lo[i] = _mm512_fmadd_ps(x, b0, lo[i]);
                hi[i] = _mm512_fmadd_ps(x, b1, hi[i]);
            }
        }
        finish_tile::<MR>(&mut lo, &mut hi, c, ldc, cols, tail);
    }
}

/// The accumulators of a tile: zero, or (`accumulate`) the `cols` columns already in `c`.
///
/// # Safety
/// `c` (rows `ldc` apart) is valid for `cols` values per row when `accumulate`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn start_tile<const MR: usize>(
    c: *const f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
) -> ([__m512; MR], [__m512; MR]) {
    let (m0, m1, hi_live) = masks(cols);
    let mut lo = [_mm512_setzero_ps(); MR];
    let mut hi = [_mm512_setzero_ps(); MR];
    if accumulate {
        for i in 0..MR {
            // SAFETY: masked loads within `cols` columns of row i, as stated.
            unsafe {
                lo[i] = _mm512_maskz_loadu_ps(m0, c.add(i * ldc));
                if hi_live {
                    hi[i] = _mm512_maskz_loadu_ps(m1, c.add(i * ldc + 16));
                }
            }
        }
    }
    (lo, hi)
}

/// Bias, residual and activation of `tail` (if any) on the accumulators, then the masked store
/// of `cols` columns per row.
///
/// # Safety
/// `c` (rows `ldc` apart), the bias and the residual are valid for `cols` values per row.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn finish_tile<const MR: usize>(
    lo: &mut [__m512; MR],
    hi: &mut [__m512; MR],
    c: *mut f32,
    ldc: usize,
    cols: usize,
    tail: Option<Tail>,
) {
    let (m0, m1, hi_live) = masks(cols);
    // SAFETY: as stated; only masked accesses within `cols` columns are made.
    unsafe {
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
                Act::QuickGelu => {
                    for i in 0..MR {
                        lo[i] = quick_gelu_avx512(lo[i]);
                        hi[i] = quick_gelu_avx512(hi[i]);
                    }
                }
                Act::GeluTanh => {
                    for i in 0..MR {
                        lo[i] = gelu_tanh_avx512(lo[i]);
                        hi[i] = gelu_tanh_avx512(hi[i]);
                    }
                }
                Act::Gelu => {
                    for i in 0..MR {
                        lo[i] = gelu_erf_avx512(lo[i]);
                        hi[i] = gelu_erf_avx512(hi[i]);
                    }
                }
                Act::Identity => {}
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

/// Store masks of the two 16-column halves of a tile of `cols` columns, and whether the upper
/// half exists.
#[inline(always)]
fn masks(cols: usize) -> (__mmask16, __mmask16, bool) {
    let m0: __mmask16 = if cols >= 16 {
        0xffff
    } else {
        (1u16 << cols) - 1
    };
    let hi_live = cols > 16;
    let m1: __mmask16 = if cols >= 32 {
        0xffff
    } else if hi_live {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    (m0, m1, hi_live)
}

/// [`tile_avx512`] with bf16 operands: `a` holds pairs of bf16 (`k` even in the low half, odd in
/// the high half) rows `lda` pairs apart, `b` a packed panel of `kc2` pair-rows × `NR` columns;
/// products with f32 accumulation (`vdpbf16ps`). `mr` ≤ 12.
///
/// # Safety
/// AVX-512F and AVX-512-BF16 available; the slices and `c` cover the stated ranges.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile_avx512_bf16(
    mr: usize,
    kc2: usize,
    a: &[u32],
    lda: usize,
    b: &[u32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
    tail: Option<Tail>,
) {
    macro_rules! go {
        ($($r:literal)*) => {
            match mr {
                $($r => unsafe { kernel_avx512_bf16::<$r>(kc2, a, lda, b, c, ldc, cols, accumulate, tail) },)*
                _ => unreachable!("tile of {mr} rows"),
            }
        };
    }
    go!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// `dst[i] = bf16(src[2i]) | bf16(src[2i + 1]) << 16` (round to nearest even), 32 values at a
/// time.
///
/// # Safety
/// AVX-512F and AVX-512-BF16 available; `src.len() == 2 * dst.len()`, a multiple of 32.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn bf16_pairs_avx512(src: &[f32], dst: &mut [u32]) {
    debug_assert!(src.len() == 2 * dst.len() && src.len().is_multiple_of(32));
    for (s, d) in src.chunks_exact(32).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: 32 values read, 16 written, inside the chunks.
        unsafe {
            let lo = _mm512_loadu_ps(s.as_ptr());
            let hi = _mm512_loadu_ps(s.as_ptr().add(16));
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(d.as_mut_ptr().cast(), v);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx512_bf16<const MR: usize>(
    kc2: usize,
    a: &[u32],
    lda: usize,
    b: &[u32],
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
    tail: Option<Tail>,
) {
    debug_assert!(a.len() >= (MR - 1) * lda + kc2 && b.len() >= kc2 * NR);
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    // SAFETY: `a` and `b` hold what is read (debug-asserted); `c` is valid for `cols` values per
    // row and only masked accesses within those are made.
    unsafe {
        let (mut lo, mut hi) = start_tile::<MR>(c, ldc, cols, accumulate);
        for p in 0..kc2 {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(p * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(p * NR + 16).cast()));
            for i in 0..MR {
                let x: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*ap.add(i * lda + p) as i32));
                lo[i] = _mm512_dpbf16_ps(lo[i], x, b0);
                hi[i] = _mm512_dpbf16_ps(hi[i], x, b1);
            }
        }
        finish_tile::<MR>(&mut lo, &mut hi, c, ldc, cols, tail);
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

/// tanh-approximated GELU for 16 lanes: `0.5 x (1 + tanh(u))` with
/// `u = √(2/π) (x + 0.044715 x³)`, computed as the equal `x / (1 + e^(−2u))` (SigLIP's MLPs).
#[target_feature(enable = "avx512f")]
#[inline]
fn gelu_tanh_avx512(x: __m512) -> __m512 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let x2 = _mm512_mul_ps(x, x);
    let inner = _mm512_fmadd_ps(_mm512_set1_ps(0.044715), x2, _mm512_set1_ps(1.0));
    let u2 = _mm512_mul_ps(
        _mm512_mul_ps(x, inner),
        _mm512_set1_ps(-2.0 * SQRT_TWO_OVER_PI),
    );
    _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), exp_avx512(u2)))
}

/// Exact (erf) GELU for 16 lanes, `0.5 x (1 + erf(x / √2))`, with erf from Abramowitz and
/// Stegun 7.1.26 (absolute error ≤ 1.5e-7): `erf(z) = 1 − t (a₁ + t (a₂ + …)) e^(−z²)`,
/// `t = 1 / (1 + p z)` for `z ≥ 0`, odd symmetry for `z < 0` (BERT, LAION's GELU ViTs).
#[target_feature(enable = "avx512f")]
#[inline]
fn gelu_erf_avx512(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let a = _mm512_abs_ps(z);
    let t = _mm512_div_ps(
        _mm512_set1_ps(1.0),
        _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), a, _mm512_set1_ps(1.0)),
    );
    let mut p = _mm512_set1_ps(1.061_405_4);
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
    }
    let e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    // erf(|z|) = 1 − t·p·e; then erf(z) carries z's sign.
    let erf_abs = _mm512_fnmadd_ps(_mm512_mul_ps(t, p), e, _mm512_set1_ps(1.0));
    let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
    let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
    _mm512_mul_ps(
        _mm512_mul_ps(_mm512_set1_ps(0.5), x),
        _mm512_add_ps(_mm512_set1_ps(1.0), erf),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_exp_is_accurate() {
        if !dev_support::cpu_features_or_skip("vector_exp_is_accurate", &["avx512f"]) {
            return;
        }
        let mut xs = [0f32; 16];
        let mut worst = 0f64;
        for start in (-870..880).step_by(16) {
            for (i, v) in xs.iter_mut().enumerate() {
                *v = (start + i as i32) as f32 * 0.1;
            }
            let got = exp16(xs).unwrap();
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
        let edge = exp16([f32::NEG_INFINITY; 16]).unwrap();
        assert!(edge.iter().all(|&v| v == 0.0));
        let mut odd = [0f32; 16];
        odd[..4].copy_from_slice(&[f32::NAN, f32::INFINITY, 200.0, -200.0]);
        let got = exp16(odd).unwrap();
        assert!(got[0].is_nan(), "NaN must stay NaN, got {}", got[0]);
        assert_eq!(&got[1..4], &[f32::INFINITY, f32::INFINITY, 0.0]);
    }
}
