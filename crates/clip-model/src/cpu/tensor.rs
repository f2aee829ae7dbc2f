//! When the CPU kernels apply to a tensor, and how they reach its values.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor, bail};

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

/// The values of a contiguous f32 storage (in a custom op).
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: expected f32 storage")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// [`f32_slice`], writable (in an in-place op).
pub(crate) fn f32_slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: expected f32 storage")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// Largest absolute difference between two tensors of one shape (NaN when either holds NaN), for
/// tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    dev_support::max_abs_diff(&a, &b).unwrap()
}
