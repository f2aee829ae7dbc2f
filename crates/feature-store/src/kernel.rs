//! Dot-product kernels: one query against a block of rows of a row-major matrix.
//!
//! The code is plain Rust written so that LLVM vectorises it (16 independent lanes, no reduction
//! across lanes inside the loop). On x86-64 the same code is compiled a second time with AVX2 + FMA
//! enabled and picked at run time, so a default build still uses the wide instructions.

use half::f16;
use half::slice::HalfFloatSliceExt;

const LANES: usize = 16;

#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let a_chunks = a.chunks_exact(LANES);
    let b_chunks = b.chunks_exact(LANES);
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for j in 0..LANES {
            acc[j] = if FMA {
                x[j].mul_add(y[j], acc[j])
            } else {
                acc[j] + x[j] * y[j]
            };
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
fn rows_f32<const FMA: bool>(query: &[f32], rows: &[f32], out: &mut [f32]) {
    let dim = query.len();
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        *o = dot::<FMA>(query, row);
    }
}

#[inline(always)]
fn rows_f16<const FMA: bool>(query: &[f32], rows: &[f16], scratch: &mut [f32], out: &mut [f32]) {
    let dim = query.len();
    for (row, o) in rows.chunks_exact(dim).zip(out.iter_mut()) {
        // `half` converts whole slices with F16C when the CPU has it.
        row.convert_to_f32_slice(scratch);
        *o = dot::<FMA>(query, scratch);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_f32_avx2(query: &[f32], rows: &[f32], out: &mut [f32]) {
    rows_f32::<true>(query, rows, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_f16_avx2(query: &[f32], rows: &[f16], scratch: &mut [f32], out: &mut [f32]) {
    rows_f16::<true>(query, rows, scratch, out)
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
            Isa::Portable => rows_f32::<false>(query, rows, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only produced by `detect` after checking that the CPU
            // supports AVX2 and FMA.
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
            Isa::Portable => rows_f16::<false>(query, rows, scratch, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, the CPU supports AVX2 and FMA.
            Isa::Avx2Fma => unsafe { rows_f16_avx2(query, rows, scratch, out) },
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
