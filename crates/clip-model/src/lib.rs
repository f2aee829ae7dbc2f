//! CLIP image and text encoders (ViT, ModifiedResNet, text transformer), tokenizer and weight loading.
//!
//! This crate is a documented skeleton: its API lands with the issue that fills it.
#![deny(missing_docs)]
