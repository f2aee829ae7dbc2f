//! Bit-exact OpenAI CLIP image preprocessing: decode, EXIF orientation, Pillow bicubic resize, centre crop, normalise.
//!
//! This crate is a documented skeleton: its API lands with the issue that fills it.
#![deny(missing_docs)]
