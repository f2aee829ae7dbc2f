//! Model code: the layers and towers, built from checkpoint tensors and run on candle tensors.

pub(crate) mod layers;
pub(crate) mod resnet;
pub mod text;
pub mod vit;
