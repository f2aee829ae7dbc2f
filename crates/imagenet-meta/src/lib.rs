//! ImageNet devkit metadata: MATLAB v5 meta.mat reader, synsets, class indices, ground truth.
//!
//! This crate is a documented skeleton: its API lands with the issue that fills it.
#![deny(missing_docs)]
