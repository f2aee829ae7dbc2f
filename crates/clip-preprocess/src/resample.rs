//! Pillow's separable, antialiased convolution resampling (`Image.resize` with BICUBIC or
//! BILINEAR) and its nearest-neighbour scaling (used for palette and bilevel images),
//! reproduced operation by operation so that the output bytes are identical.
//!
//! What has to match Pillow (`libImaging/Resample.c`, `Geometry.c`):
//! - filter support scaled by the downscale factor (antialiasing), window bounds rounded with
//!   `(int)(center ± support + 0.5)`, weights evaluated in `f64` at `(x + xmin - center + 0.5) /
//!   filterscale` and normalised by their sum;
//! - 8-bit images: weights converted to 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`,
//!   rounded half away from zero), accumulated in `i32` from `1 << 21`, shifted and clamped;
//! - the horizontal pass first, rounded to 8 bits, then the vertical pass;
//! - 16-bit images: `f64` weights and sums, rounded half away from zero, clamped to 0..=65535.
//!
//! Integer sums do not depend on summation order, so the passes may be computed only over the
//! window that the centre crop keeps, and the vertical pass may accumulate whole rows at once.

/// Resampling filter (the subset of Pillow's filters this crate supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interpolation {
    /// Pillow `Resampling.BICUBIC` (Keys cubic, a = -0.5, support 2): what CLIP uses.
    Bicubic,
    /// Pillow `Resampling.BILINEAR` (triangle, support 1).
    Bilinear,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Interpolation::Bicubic => 2.0,
            Interpolation::Bilinear => 1.0,
        }
    }

    #[inline]
    fn weight(self, x: f64) -> f64 {
        match self {
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                let x = if x < 0.0 { -x } else { x };
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Interpolation::Bilinear => {
                let x = if x < 0.0 { -x } else { x };
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per-output-sample windows and weights along one axis.
pub(crate) struct Coeffs {
    /// `(first input index, number of taps)` per output index.
    pub bounds: Vec<(usize, usize)>,
    /// Row stride of `weights`.
    pub ksize: usize,
    /// Normalised weights, `ksize` per output index (unused tail is zero).
    pub weights: Vec<f64>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` for the full input range `[0, in_size)`.
    #[cfg(test)]
    pub fn new(in_size: usize, out_size: usize, filter: Interpolation) -> Self {
        Self::new_range(in_size, out_size, filter, 0..out_size)
    }

    /// [`Coeffs::new`] restricted to the output indices `range` (entry `i` is output
    /// `range.start + i`); every entry is computed exactly as for the full range.
    pub fn new_range(
        in_size: usize,
        out_size: usize,
        filter: Interpolation,
        range: std::ops::Range<usize>,
    ) -> Self {
        // box = (0, in_size) held as C floats: exact for sizes below 2^24, which the pixel
        // limit guarantees.
        let in0 = 0.0f64;
        let in1 = in_size as f32 as f64;
        let scale = (in1 - in0) / out_size as f64;
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(range.len());
        let mut weights = vec![0.0f64; range.len() * ksize];
        for (i, xx) in range.enumerate() {
            let center = in0 + (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let n = (xmax - xmin).max(0) as usize;
            let xmin = xmin as usize;
            let k = &mut weights[i * ksize..i * ksize + n];
            let mut ww = 0.0f64;
            for (x, w) in k.iter_mut().enumerate() {
                *w = filter.weight(((x + xmin) as f64 - center + 0.5) * inv_filterscale);
                ww += *w;
            }
            if ww != 0.0 {
                for w in k.iter_mut() {
                    *w /= ww;
                }
            }
            bounds.push((xmin, n));
        }
        Self {
            bounds,
            ksize,
            weights,
        }
    }

    /// The weights in Pillow's 8-bit fixed point (`normalize_coeffs_8bpc`).
    pub fn fixed(&self) -> Vec<i32> {
        let one = (1u32 << PRECISION_BITS) as f64;
        self.weights
            .iter()
            .map(|&k| {
                if k < 0.0 {
                    (-0.5 + k * one) as i32
                } else {
                    (0.5 + k * one) as i32
                }
            })
            .collect()
    }
}

#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Window of the resized image that is actually needed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub x0: usize,
    pub x1: usize,
    pub y0: usize,
    pub y1: usize,
}

/// The source rows `[first, last)` that the kept output rows read: the rows under the vertical
/// filter taps when the height changes, else the window's own rows.
fn source_rows(vert: &Coeffs, need_v: bool, win: &Window) -> (usize, usize) {
    if need_v {
        let first = vert.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = vert.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        (first, last)
    } else {
        (win.y0, win.y1)
    }
}

/// Resizes an interleaved 8-bit image with `C` channels to `out_w`×`out_h` and returns only
/// `win` of the result (row-major, `C` channels), bit-identical to Pillow.
///
/// On x86-64 CPUs with AVX2 the same code is compiled a second time with AVX2 enabled (32-bit
/// lane multiplies); integer arithmetic makes both versions produce identical bytes.
pub(crate) fn resample_u8<const C: usize>(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    win: Window,
    filter: Interpolation,
) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { resample_u8_avx2::<C>(src, w, h, out_w, out_h, win, filter) };
        }
    }
    resample_u8_impl::<C>(src, w, h, out_w, out_h, win, filter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn resample_u8_avx2<const C: usize>(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    win: Window,
    filter: Interpolation,
) -> Vec<u8> {
    resample_u8_impl::<C>(src, w, h, out_w, out_h, win, filter)
}

/// Whether Pillow (≥ 13) runs the vertical pass first: when the height shrinks by more than
/// twice as many pixels as the width (`ImagingResampleInner`'s `horizontal_first`). The two orders
/// round the intermediate image differently, so the order must match for identical bytes.
fn vertical_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    let dh = h as i64 - out_h as i64;
    let dw = w as i64 - out_w as i64;
    dh > 0 && dh > dw * 2
}

#[inline(always)]
fn resample_u8_impl<const C: usize>(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    win: Window,
    filter: Interpolation,
) -> Vec<u8> {
    let win_w = win.x1 - win.x0;
    let win_h = win.y1 - win.y0;
    let need_h = out_w != w;
    let need_v = out_h != h;
    let vert = Coeffs::new_range(h, out_h, filter, win.y0..win.y1);
    if need_h && need_v && vertical_first(w, h, out_w, out_h) {
        // Vertical pass over whole source rows (every column the horizontal taps may read), then
        // the horizontal pass on its output.
        let row_len = w * C;
        let mut tmp = vec![0u8; win_h * row_len];
        vertical_pass_u8(src, row_len, &vert, &vert.fixed(), 0, &mut tmp);
        let horiz = Coeffs::new_range(w, out_w, filter, win.x0..win.x1);
        let mut out = vec![0u8; win_h * win_w * C];
        horizontal_pass_u8::<C>(&tmp, w, &mut out, win_w, &horiz, &horiz.fixed());
        return out;
    }
    let (row_first, row_last) = source_rows(&vert, need_v, &win);
    // Horizontal pass over the needed rows and kept columns (or a plain copy of the columns).
    let tmp_h = row_last - row_first;
    let mut tmp = vec![0u8; tmp_h * win_w * C];
    if need_h {
        let horiz = Coeffs::new_range(w, out_w, filter, win.x0..win.x1);
        let rows = &src[row_first * w * C..row_last * w * C];
        horizontal_pass_u8::<C>(rows, w, &mut tmp, win_w, &horiz, &horiz.fixed());
    } else {
        for (ty, out_row) in tmp.chunks_exact_mut(win_w * C).enumerate() {
            let y = row_first + ty;
            out_row.copy_from_slice(&src[(y * w + win.x0) * C..(y * w + win.x1) * C]);
        }
    }
    if !need_v {
        return tmp;
    }
    let mut out = vec![0u8; win_h * win_w * C];
    vertical_pass_u8(&tmp, win_w * C, &vert, &vert.fixed(), row_first, &mut out);
    out
}

/// The horizontal 8-bit pass: each row of `rows` (`w` pixels of `C` bytes) to a row of `out`
/// (`win_w` pixels, output columns `horiz` describes).
#[inline(always)]
fn horizontal_pass_u8<const C: usize>(
    rows: &[u8],
    w: usize,
    out: &mut [u8],
    win_w: usize,
    horiz: &Coeffs,
    kk: &[i32],
) {
    // RGB rows are widened to RGBX first so that each tap is one 4-lane multiply-add.
    let mut wide = if C == 3 { vec![0u8; w * 4] } else { Vec::new() };
    for (line, out_row) in rows
        .chunks_exact(w * C)
        .zip(out.chunks_exact_mut(win_w * C))
    {
        if C == 3 {
            for (d, s) in wide.chunks_exact_mut(4).zip(line.chunks_exact(3)) {
                d[..3].copy_from_slice(s);
            }
            horizontal_row_rgbx::<C>(&wide, out_row, 0, horiz, kk);
        } else if C == 4 {
            horizontal_row_rgbx::<C>(line, out_row, 0, horiz, kk);
        } else {
            horizontal_row::<C, C>(line, out_row, 0, horiz, kk);
        }
    }
}

/// The vertical 8-bit pass: output row `oy` of `out` (rows of `row_len` bytes) from the rows of
/// `src` under its taps; `src` row 0 is source row `row_first`. Integer sums, order-independent.
#[inline(always)]
fn vertical_pass_u8(
    src: &[u8],
    row_len: usize,
    vert: &Coeffs,
    kk: &[i32],
    row_first: usize,
    out: &mut [u8],
) {
    let mut acc = vec![0i32; row_len];
    for (oy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, n) = vert.bounds[oy];
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (i, &kv) in kk[oy * vert.ksize..oy * vert.ksize + n].iter().enumerate() {
            let r = ymin + i - row_first;
            let row = &src[r * row_len..(r + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * kv;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
}

/// One row of the horizontal 8-bit pass: `S` bytes per input pixel, the first `C` written out.
#[inline(always)]
fn horizontal_row<const S: usize, const C: usize>(
    line: &[u8],
    out_row: &mut [u8],
    x0: usize,
    horiz: &Coeffs,
    kk: &[i32],
) {
    for (ox, out_px) in out_row.chunks_exact_mut(C).enumerate() {
        let xx = x0 + ox;
        let (xmin, n) = horiz.bounds[xx];
        let k = &kk[xx * horiz.ksize..xx * horiz.ksize + n];
        let px = &line[xmin * S..(xmin + n) * S];
        let mut ss = [1i32 << (PRECISION_BITS - 1); S];
        for (p, &kv) in px.chunks_exact(S).zip(k) {
            for c in 0..S {
                ss[c] += p[c] as i32 * kv;
            }
        }
        for c in 0..C {
            out_px[c] = clip8(ss[c]);
        }
    }
}

/// [`horizontal_row`] for 4-byte input pixels, with explicit AVX2 when the CPU has it (two taps
/// per 256-bit multiply-add; the same 32-bit integer sums, so the same bytes).
#[inline(always)]
fn horizontal_row_rgbx<const C: usize>(
    line: &[u8],
    out_row: &mut [u8],
    x0: usize,
    horiz: &Coeffs,
    kk: &[i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available (checked just above).
            unsafe { horizontal_row_rgbx_avx2::<C>(line, out_row, x0, horiz, kk) };
            return;
        }
    }
    horizontal_row::<4, C>(line, out_row, x0, horiz, kk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn horizontal_row_rgbx_avx2<const C: usize>(
    line: &[u8],
    out_row: &mut [u8],
    x0: usize,
    horiz: &Coeffs,
    kk: &[i32],
) {
    use std::arch::x86_64::*;
    for (ox, out_px) in out_row.chunks_exact_mut(C).enumerate() {
        let xx = x0 + ox;
        let (xmin, n) = horiz.bounds[xx];
        let k = &kk[xx * horiz.ksize..xx * horiz.ksize + n];
        let px = &line[xmin * 4..(xmin + n) * 4];
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 2 <= n {
            let mut two = [0u8; 8];
            two.copy_from_slice(&px[i * 4..i * 4 + 8]);
            let v = _mm256_cvtepu8_epi32(_mm_set1_epi64x(i64::from_le_bytes(two)));
            let kv = _mm256_set_m128i(_mm_set1_epi32(k[i + 1]), _mm_set1_epi32(k[i]));
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(v, kv));
            i += 2;
        }
        let mut acc4 = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        acc4 = _mm_add_epi32(acc4, _mm_set1_epi32(1 << (PRECISION_BITS - 1)));
        if i < n {
            let mut one = [0u8; 4];
            one.copy_from_slice(&px[i * 4..i * 4 + 4]);
            let v = _mm_cvtepu8_epi32(_mm_set1_epi32(i32::from_le_bytes(one)));
            acc4 = _mm_add_epi32(acc4, _mm_mullo_epi32(v, _mm_set1_epi32(k[i])));
        }
        // clip8: arithmetic shift, then saturate to 0..=255 (values are within -640..=639).
        let shifted = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(acc4);
        let packed = _mm_packus_epi16(_mm_packs_epi32(shifted, shifted), _mm_setzero_si128());
        let bytes = (_mm_cvtsi128_si32(packed) as u32).to_le_bytes();
        out_px.copy_from_slice(&bytes[..C]);
    }
}

#[inline(always)]
fn round_clip16(ss: f64) -> u16 {
    // ROUND_UP then CLIP16 of Resample.c; `as i64` truncates like C's `(int)`.
    let r = if ss >= 0.0 { ss + 0.5 } else { ss - 0.5 } as i64;
    r.clamp(0, 65535) as u16
}

/// Resizes a single-channel 16-bit image (Pillow's `I;16` path: `f64` weights and sums), returning
/// only `win` of the result.
pub(crate) fn resample_u16(
    src: &[u16],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    win: Window,
    filter: Interpolation,
) -> Vec<u16> {
    let win_w = win.x1 - win.x0;
    let win_h = win.y1 - win.y0;
    let need_h = out_w != w;
    let need_v = out_h != h;
    let vert = Coeffs::new_range(h, out_h, filter, win.y0..win.y1);
    if need_h && need_v && vertical_first(w, h, out_w, out_h) {
        let mut tmp = vec![0u16; win_h * w];
        vertical_pass_u16(src, w, &vert, 0, &mut tmp);
        let horiz = Coeffs::new_range(w, out_w, filter, win.x0..win.x1);
        let mut out = vec![0u16; win_h * win_w];
        horizontal_pass_u16(&tmp, w, &mut out, win_w, &horiz);
        return out;
    }
    let (row_first, row_last) = source_rows(&vert, need_v, &win);
    let tmp_h = row_last - row_first;
    let mut tmp = vec![0u16; tmp_h * win_w];
    if need_h {
        let horiz = Coeffs::new_range(w, out_w, filter, win.x0..win.x1);
        horizontal_pass_u16(
            &src[row_first * w..row_last * w],
            w,
            &mut tmp,
            win_w,
            &horiz,
        );
    } else {
        for (ty, out_row) in tmp.chunks_exact_mut(win_w).enumerate() {
            let y = row_first + ty;
            out_row.copy_from_slice(&src[y * w + win.x0..y * w + win.x1]);
        }
    }
    if !need_v {
        return tmp;
    }
    let mut out = vec![0u16; win_h * win_w];
    vertical_pass_u16(&tmp, win_w, &vert, row_first, &mut out);
    out
}

/// The horizontal 16-bit pass (`f64` weights and sums, Pillow's `I;16` path).
fn horizontal_pass_u16(rows: &[u16], w: usize, out: &mut [u16], win_w: usize, horiz: &Coeffs) {
    for (line, out_row) in rows.chunks_exact(w).zip(out.chunks_exact_mut(win_w)) {
        for (ox, o) in out_row.iter_mut().enumerate() {
            let (xmin, n) = horiz.bounds[ox];
            let k = &horiz.weights[ox * horiz.ksize..ox * horiz.ksize + n];
            let mut ss = 0.0f64;
            for (&p, &kv) in line[xmin..xmin + n].iter().zip(k) {
                ss += p as f64 * kv;
            }
            *o = round_clip16(ss);
        }
    }
}

/// The vertical 16-bit pass; `src` row 0 is source row `row_first`.
fn vertical_pass_u16(
    src: &[u16],
    row_len: usize,
    vert: &Coeffs,
    row_first: usize,
    out: &mut [u16],
) {
    let mut acc = vec![0f64; row_len];
    for (oy, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, n) = vert.bounds[oy];
        acc.fill(0.0);
        // Same per-pixel summation order as Pillow (y ascending, starting from 0.0).
        for (i, &kv) in vert.weights[oy * vert.ksize..oy * vert.ksize + n]
            .iter()
            .enumerate()
        {
            let r = ymin + i - row_first;
            for (a, &p) in acc.iter_mut().zip(&src[r * row_len..(r + 1) * row_len]) {
                *a += p as f64 * kv;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = round_clip16(a);
        }
    }
}

/// Source index per output index in `range` for Pillow's nearest-neighbour scaling
/// (`ImagingScaleAffine`): positions accumulated in `f64` from output 0 exactly as Pillow does;
/// `None` where Pillow leaves the fill value.
pub(crate) fn nearest_indices(
    in_size: usize,
    out_size: usize,
    range: std::ops::Range<usize>,
) -> Vec<Option<usize>> {
    let a = (in_size as f32 as f64) / out_size as f64;
    let mut pos = 0.0 + a * 0.5;
    let mut out = Vec::with_capacity(range.len());
    for o in 0..range.end.min(out_size) {
        if o >= range.start {
            let i = if pos < 0.0 { -1 } else { pos as i64 };
            out.push(if i >= 0 && (i as usize) < in_size {
                Some(i as usize)
            } else {
                None
            });
        }
        pos += a;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_identity_is_exact() {
        let c = Coeffs::new(500, 224, Interpolation::Bicubic);
        for (i, &(_, n)) in c.bounds.iter().enumerate() {
            let s: f64 = c.weights[i * c.ksize..i * c.ksize + n].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
        // Same size: weights are exactly 1 at the centre tap.
        let src: Vec<u8> = (0..7 * 5).map(|i| (i * 37 % 256) as u8).collect();
        let win = Window {
            x0: 0,
            x1: 7,
            y0: 0,
            y1: 5,
        };
        let same = resample_u8::<1>(&src, 7, 5, 7, 5, win, Interpolation::Bicubic);
        assert_eq!(same, src);
    }

    #[test]
    fn simd_and_scalar_paths_agree() {
        // Pseudo-random pixels with full-range values: clipping and ringing both occur.
        let mut x = 0x2545_f491u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        };
        let (w, h) = (173, 61);
        let src3: Vec<u8> = (0..w * h * 3).map(|_| next()).collect();
        let src4: Vec<u8> = (0..w * h * 4).map(|_| next()).collect();
        for (ow, oh) in [(64, 23), (300, 90), (173, 20), (50, 61)] {
            let win = Window {
                x0: 1,
                x1: ow - 1,
                y0: 0,
                y1: oh,
            };
            let f = Interpolation::Bicubic;
            assert_eq!(
                resample_u8::<3>(&src3, w, h, ow, oh, win, f),
                resample_u8_impl::<3>(&src3, w, h, ow, oh, win, f)
            );
            assert_eq!(
                resample_u8::<4>(&src4, w, h, ow, oh, win, f),
                resample_u8_impl::<4>(&src4, w, h, ow, oh, win, f)
            );
            // The 4-byte row kernel against the generic one.
            let horiz = Coeffs::new(w, ow, f);
            let kk = horiz.fixed();
            let line = &src4[..w * 4];
            let (mut a, mut b) = (vec![0u8; ow * 3], vec![0u8; ow * 3]);
            horizontal_row_rgbx::<3>(line, &mut a, 0, &horiz, &kk);
            horizontal_row::<4, 3>(line, &mut b, 0, &horiz, &kk);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 30 * 20 * 3];
        let win = Window {
            x0: 0,
            x1: 9,
            y0: 0,
            y1: 13,
        };
        let out = resample_u8::<3>(&src, 30, 20, 9, 13, win, Interpolation::Bicubic);
        assert!(out.iter().all(|&v| v == 200));
    }
}
