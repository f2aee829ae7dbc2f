//! Ranking scores: [`top_k`] and its batched forms.
//!
//! Order: higher score first; equal scores (including `0.0` and `-0.0`) keep the lower index
//! first; NaN ranks below every number (below `-inf`), NaNs among themselves by index. The
//! result is therefore fully deterministic for any input.

use std::cmp::Ordering;

use crate::error::{Error, Result};

/// Compares two scores so that "greater" means "ranked first": NaN is the smallest value.
fn score_cmp(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Whether `(sa, ia)` ranks before `(sb, ib)`.
fn ranks_before(sa: f32, ia: usize, sb: f32, ib: usize) -> bool {
    match score_cmp(sa, sb) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => ia < ib,
    }
}

/// Indices of the `k` highest scores, best first (fewer when `scores` has fewer than `k`).
///
/// Ties go to the lower index; NaN ranks last (see the module docs).
///
/// ```
/// assert_eq!(clip_eval::top_k(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
/// assert_eq!(clip_eval::top_k(&[f32::NAN, -1.0], 2), vec![1, 0]);
/// ```
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(k.min(scores.len()));
    top_k_into(scores, k, &mut out);
    out
}

/// [`top_k`] writing into a reusable buffer (cleared first).
pub fn top_k_into(scores: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    let k = k.min(scores.len());
    if k == 0 {
        return;
    }
    if k > 32 {
        out.extend(0..scores.len());
        out.sort_by(|&a, &b| score_cmp(scores[b], scores[a]).then(a.cmp(&b)));
        out.truncate(k);
        return;
    }
    // Small k: keep a sorted list of the best k seen (one pass, k-element insertion).
    for (i, &s) in scores.iter().enumerate() {
        if out.len() == k {
            let last = out[k - 1];
            if !ranks_before(s, i, scores[last], last) {
                continue;
            }
            out.pop();
        }
        let pos = out
            .iter()
            .position(|&j| ranks_before(s, i, scores[j], j))
            .unwrap_or(out.len());
        out.insert(pos, i);
    }
}

/// [`top_k`] of every row of a row-major `rows × n_cols` matrix.
///
/// Errors when `n_cols` is 0 while `scores` is not empty, or `scores.len()` is not a multiple of
/// `n_cols`.
pub fn top_k_batch(scores: &[f32], n_cols: usize, k: usize) -> Result<Vec<Vec<usize>>> {
    check_matrix(scores, n_cols)?;
    if scores.is_empty() {
        return Ok(Vec::new());
    }
    Ok(scores
        .chunks_exact(n_cols)
        .map(|row| top_k(row, k))
        .collect())
}

/// Like [`top_k_batch`], also returning each row's top scores (same order as the indices).
pub fn top_k_batch_with_scores(
    scores: &[f32],
    n_cols: usize,
    k: usize,
) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
    check_matrix(scores, n_cols)?;
    if scores.is_empty() {
        return Ok(Vec::new());
    }
    Ok(scores
        .chunks_exact(n_cols)
        .map(|row| {
            let idx = top_k(row, k);
            let s = idx.iter().map(|&i| row[i]).collect();
            (idx, s)
        })
        .collect())
}

pub(crate) fn check_matrix(data: &[f32], n_cols: usize) -> Result<()> {
    if (n_cols == 0 && !data.is_empty()) || (n_cols != 0 && !data.len().is_multiple_of(n_cols)) {
        return Err(Error::Shape {
            what: "score matrix",
            expected: format!("a multiple of {n_cols} values (row-major rows of {n_cols})"),
            found: format!("{} values", data.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: full stable sort by the documented order.
    fn reference(scores: &[f32], k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        idx.sort_by(|&a, &b| {
            let (x, y) = (scores[a], scores[b]);
            let key = |v: f32| if v.is_nan() { (0u8, 0.0f32) } else { (1u8, v) };
            let (kx, ky) = (key(x), key(y));
            ky.0.cmp(&kx.0)
                .then(ky.1.partial_cmp(&kx.1).unwrap())
                .then(a.cmp(&b))
        });
        idx.truncate(k);
        idx
    }

    #[test]
    fn hand_worked_cases() {
        assert_eq!(top_k(&[], 5), Vec::<usize>::new());
        assert_eq!(top_k(&[1.0, 2.0], 0), Vec::<usize>::new());
        assert_eq!(top_k(&[3.0, 1.0, 2.0], 5), vec![0, 2, 1]);
        // Ties: lower index first, also across the k boundary.
        assert_eq!(top_k(&[1.0, 5.0, 5.0, 5.0, 0.0], 2), vec![1, 2]);
        assert_eq!(top_k(&[2.0; 4], 3), vec![0, 1, 2]);
        // -0.0 and 0.0 are equal.
        assert_eq!(top_k(&[-0.0, 0.0], 2), vec![0, 1]);
        assert_eq!(top_k(&[0.0, -0.0], 2), vec![0, 1]);
        // NaN below -inf, NaNs by index.
        let nan = f32::NAN;
        assert_eq!(
            top_k(&[nan, f32::NEG_INFINITY, nan, 1.0], 4),
            vec![3, 1, 0, 2]
        );
        assert_eq!(top_k(&[nan, nan], 1), vec![0]);
        assert_eq!(top_k(&[f32::INFINITY, 1e30, nan], 2), vec![0, 1]);
    }

    #[test]
    fn matches_a_full_sort_on_random_inputs_with_ties_and_nans() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for trial in 0..2000 {
            let n = (next() % 70) as usize;
            let scores: Vec<f32> = (0..n)
                .map(|_| match next() % 10 {
                    0 => f32::NAN,
                    1 => 0.5, // frequent ties
                    2 => -0.0,
                    3 => 0.0,
                    _ => (next() % 1000) as f32 / 100.0 - 5.0,
                })
                .collect();
            for k in [0, 1, 2, 5, 33, 100] {
                assert_eq!(
                    top_k(&scores, k),
                    reference(&scores, k),
                    "trial {trial} k {k} {scores:?}"
                );
            }
        }
    }

    #[test]
    fn batch_forms() {
        let m = [0.1, 0.3, 0.2, 0.9, 0.0, 0.9];
        assert_eq!(top_k_batch(&m, 3, 2).unwrap(), vec![vec![1, 2], vec![0, 2]]);
        let ws = top_k_batch_with_scores(&m, 3, 1).unwrap();
        assert_eq!(ws, vec![(vec![1], vec![0.3]), (vec![0], vec![0.9])]);
        assert!(top_k_batch(&m, 4, 1).is_err());
        assert!(top_k_batch(&m, 0, 1).is_err());
        assert!(top_k_batch(&[], 0, 1).unwrap().is_empty());
    }
}
