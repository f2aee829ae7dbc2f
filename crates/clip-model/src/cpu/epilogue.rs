//! What the kernels apply to each output after a product: bias, an optional residual, an
//! activation. The model code maps its own activation setting onto [`Act`].

/// An activation applied by the kernels, last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// None.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x · sigmoid(1.702 x)`.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
    /// The tanh approximation of GELU, `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
}

impl Act {
    /// The activation of one value.
    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Relu => x.max(0.0),
            Act::QuickGelu => quick_gelu(x),
            Act::Gelu => gelu_erf(x),
            Act::GeluTanh => gelu_tanh(x),
        }
    }
}

/// What is applied after a product: `y = act(x Wᵀ + b + r)`, `r` (if any) shaped like `y`.
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
    #[cfg(test)]
    pub(crate) fn act(act: Act) -> Self {
        Epilogue {
            residual: None,
            act,
        }
    }

    /// `y = x Wᵀ + b + r`.
    #[cfg(test)]
    pub(crate) fn residual(r: &'a [f32]) -> Self {
        Epilogue {
            residual: Some(r),
            act: Act::Identity,
        }
    }
}

/// QuickGELU of one value, `x / (1 + e^(-1.702 x))`.
#[inline(always)]
pub(crate) fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + (-1.702 * x).exp())
}

/// erf-based GELU, `0.5 x (1 + erf(x / √2))`, as candle's `gelu_erf` computes it.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    (candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * x
}

/// tanh-approximated GELU, `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`, as PyTorch's
/// `gelu(approximate="tanh")` and candle's `gelu` compute it.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}
