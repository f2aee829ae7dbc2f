//! CLIP image and text encoders (ViT, ModifiedResNet, text transformer), tokenizer and weight loading.
//!
//! Work in progress: the model API lands here step by step.
#![deny(missing_docs)]

pub mod error;

pub use error::{Error, Result};

// Modules added by other parts of the crate go below, one line each, e.g.:
// pub mod tokenizer;
// pub mod resnet;
pub mod resnet;
pub mod tokenizer;

pub use tokenizer::{TokenBatch, Tokenizer, Truncation};
