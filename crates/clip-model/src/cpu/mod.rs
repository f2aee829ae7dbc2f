//! The CPU compute layer: packed matrix products, attention, element-wise passes, convolution.

pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod packed;
