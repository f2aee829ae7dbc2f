//! Embedding library: image vectors mapped back to images, dedupe, persistence, exact top-k search.
//!
//! This crate is a documented skeleton: its API lands with the issue that fills it.
#![deny(missing_docs)]
