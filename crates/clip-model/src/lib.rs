//! CLIP image and text encoders (ViT, ModifiedResNet, text transformer), tokenizer and weight loading.
//!
//! Work in progress: the model API lands here step by step.
#![deny(missing_docs)]

pub mod config;
pub mod error;
mod layers;
pub mod model;
pub mod text;
pub mod vit;
pub mod weights;

pub use config::{Activation, ClipConfig, ConfigHints, TextConfig, VisionConfig, VitConfig};
pub use error::{Error, Result};
pub use model::{ClipModel, LoadOptions, TextLength, VisionTower};
pub use text::TextTransformer;
pub use vit::VisionTransformer;
pub use weights::{Naming, SafetensorsFile, Weights};

// Modules added by other parts of the crate go below, one line each, e.g.:
// pub mod tokenizer;
// pub mod resnet;
pub mod tokenizer;

pub use tokenizer::{TokenBatch, Tokenizer, Truncation};
