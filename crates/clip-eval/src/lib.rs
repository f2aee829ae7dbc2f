//! Zero-shot classifier building, top-k metrics and evaluation reports.
//!
//! This crate is a documented skeleton: its API lands with the issue that fills it.
#![deny(missing_docs)]
