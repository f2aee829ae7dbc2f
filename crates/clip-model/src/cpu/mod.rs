//! The CPU compute layer: packed matrix products, attention, element-wise passes, convolution.
//!
//! This layer knows nothing of CLIP: it imports no model code (only [`crate::error`]), and has
//! its own small vocabulary, [`Act`] and [`Epilogue`] (what is applied after a product). Each
//! entry point takes candle tensors or plain `f32` slices and either runs its fast path (f32
//! contiguous CPU tensors, x86-64 kernels where the CPU has them) or says it does not apply
//! (`Option`), or runs the same arithmetic with candle ops behind the same call.
//!
//! - [`packed`]: a weight matrix packed once at load ([`PackedMatrix`]) and the blocked product
//!   `act(x Wᵀ + b + r)`; the micro-kernels themselves are in `x86` (AVX-512F, AVX2 + FMA).
//! - [`mod@attention`]: multi-head attention straight from the packed q/k/v projection.
//! - [`elementwise`]: bias + residual + activation in one in-place pass ([`bias_epilogue`]).
//! - [`conv`]: convolution ([`conv::Conv2d`], one entry point), channels-last maps ([`conv::Nhwc`]).
//! - `tensor`: when the fast paths apply ([`fused`]) and how they reach a tensor's values.
//!
//! Switches, read once per process, for A/B runs: `CLIP_MODEL_UNFUSED=1` (plain candle ops
//! throughout), `CLIP_MODEL_UNPACKED=1` (candle's matmul / `gemm` instead of the packed kernels),
//! `CLIP_MODEL_KERNEL=avx2` (the AVX2 kernels on an AVX-512 CPU).

pub(crate) mod attention;
pub(crate) mod blocking;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod epilogue;
pub(crate) mod packed;
pub(crate) mod tensor;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Output columns per packed panel: the layout shared by the packing code and the micro-kernels.
pub(crate) const NR: usize = 32;

pub(crate) use attention::{attention, packed_causal_attention};
pub(crate) use elementwise::{apply_act, bias_epilogue};
pub(crate) use epilogue::{Act, Epilogue};
pub(crate) use packed::{PackedMatrix, bf16_supported, kernel_for, with_bf16_weights};
pub(crate) use tensor::{fused, with_f32};
