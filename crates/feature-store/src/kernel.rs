//! Dot-product kernels: one query against a block of rows of a row-major matrix.
//!
//! The portable code is plain Rust written so that LLVM vectorises it (16 independent lanes, no
//! reduction across lanes inside the loop). On x86-64 CPUs with AVX2, FMA and F16C (detected at run
//! time, so a default build uses them) explicit 8-lane FMA kernels with four accumulators run
//! instead; f16 rows are widened 8 halves per instruction. Each row's sum is computed the same way
//! wherever the row sits, so results do not depend on how rows are split between threads.

use half::f16;
use half::slice::HalfFloatSliceExt;

const LANES: usize = 16;

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let a_chunks = a.chunks_exact(LANES);
    let b_chunks = b.chunks_exact(LANES);
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    // Pairwise reduction in a fixed order: the result does not depend on where a row sits.
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    let mut sum = acc[0];
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

#[inline(always)]
fn rows_f32(query: &[f32], rows: &[f32], out: &mut [f32]) {
    let dim = query.len();
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        *o = dot(query, row);
    }
}

#[inline(always)]
fn rows_f16(query: &[f32], rows: &[f16], scratch: &mut [f32], out: &mut [f32]) {
    let dim = query.len();
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        // `half` converts whole slices with F16C when the CPU has it.
        row.convert_to_f32_slice(scratch);
        *o = dot(query, scratch);
    }
}

/// f32 rows with AVX2 + FMA: four 8-lane accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_f32_avx2(query: &[f32], rows: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    const STEP: usize = 32;
    let dim = query.len();
    let body = dim - dim % STEP;
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
        for (q, r) in query[..body]
            .chunks_exact(STEP)
            .zip(row[..body].chunks_exact(STEP))
        {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `q` and `r` hold 32 f32 each (chunks_exact), so each 8-lane load at
                // offset 8 * j (< 32) reads inside the slices; unaligned loads are used.
                let (qv, rv) = unsafe {
                    (
                        _mm256_loadu_ps(q.as_ptr().add(8 * j)),
                        _mm256_loadu_ps(r.as_ptr().add(8 * j)),
                    )
                };
                *acc = _mm256_fmadd_ps(qv, rv, *acc);
            }
        }
        let mut total = hsum(acc);
        for (q, r) in query[body..].iter().zip(&row[body..]) {
            total += q * r;
        }
        *o = total;
    }
}

/// Sum of the 32 lanes of four accumulators, in a fixed order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(acc: [std::arch::x86_64::__m256; 4]) -> f32 {
    use std::arch::x86_64::{
        _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps, _mm256_add_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps,
    };
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_hadd_ps(half, half);
    _mm_cvtss_f32(_mm_hadd_ps(pair, pair))
}

/// f16 rows with F16C: 8 halves widened per instruction, four 8-lane accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_f16_avx2(query: &[f32], rows: &[f16], out: &mut [f32]) {
    use std::arch::x86_64::{
        __m128i, __m256, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps,
    };
    const STEP: usize = 32;
    let dim = query.len();
    let body = dim - dim % STEP;
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
        for (q, r) in query[..body]
            .chunks_exact(STEP)
            .zip(row[..body].chunks_exact(STEP))
        {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `q` has 32 f32 and `r` 32 f16 (chunks_exact), so each 8-lane load at
                // offset 8 * j (< 32) reads inside the slices; unaligned loads are used.
                let (qv, rv) = unsafe {
                    (
                        _mm256_loadu_ps(q.as_ptr().add(8 * j)),
                        _mm_loadu_si128(r.as_ptr().add(8 * j).cast::<__m128i>()),
                    )
                };
                *acc = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(rv), *acc);
            }
        }
        let mut total = hsum(acc);
        for (q, r) in query[body..].iter().zip(&row[body..]) {
            total += q * r.to_f32();
        }
        *o = total;
    }
}

/// Which code path the kernels take on this CPU (detected once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// `out[i] = query · row i` for the rows of `rows` (row-major, `query.len()` columns).
    pub(crate) fn score_f32(self, query: &[f32], rows: &[f32], out: &mut [f32]) {
        match self {
            Isa::Portable => rows_f32(query, rows, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only produced by `detect` after checking that the CPU
            // supports AVX2, FMA and F16C.
            Isa::Avx2Fma => unsafe { rows_f32_avx2(query, rows, out) },
        }
    }

    /// Like [`Isa::score_f32`] for an f16 matrix; `scratch` holds `query.len()` values.
    pub(crate) fn score_f16(
        self,
        query: &[f32],
        rows: &[f16],
        scratch: &mut [f32],
        out: &mut [f32],
    ) {
        match self {
            Isa::Portable => rows_f16(query, rows, scratch, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only produced by `detect` after checking that the CPU
            // supports AVX2, FMA and F16C.
            Isa::Avx2Fma => unsafe { rows_f16_avx2(query, rows, out) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn kernels_match_f64_reference() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for dim in [1usize, 3, 15, 16, 17, 100, 512] {
            let q: Vec<f32> = (0..dim).map(|_| next()).collect();
            let rows: Vec<f32> = (0..dim * 9).map(|_| next()).collect();
            for isa in [Isa::Portable, Isa::detect()] {
                let mut out = vec![0.0; 9];
                isa.score_f32(&q, &rows, &mut out);
                for (i, o) in out.iter().enumerate() {
                    let want = naive(&q, &rows[i * dim..(i + 1) * dim]);
                    // f32 accumulation of `dim` products of magnitude <= 1: error well under 1e-5 * dim.
                    assert!(
                        (f64::from(*o) - want).abs() < 1e-5 * dim as f64,
                        "{isa:?} dim {dim}"
                    );
                }
                let rows16: Vec<f16> = rows.iter().map(|&x| f16::from_f32(x)).collect();
                let back: Vec<f32> = rows16.iter().map(|x| x.to_f32()).collect();
                let mut scratch = vec![0.0; dim];
                isa.score_f16(&q, &rows16, &mut scratch, &mut out);
                for (i, o) in out.iter().enumerate() {
                    let want = naive(&q, &back[i * dim..(i + 1) * dim]);
                    assert!(
                        (f64::from(*o) - want).abs() < 1e-5 * dim as f64,
                        "{isa:?} f16 dim {dim}"
                    );
                }
            }
        }
    }
}
