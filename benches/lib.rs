//! Criterion benchmarks of this workspace live in `benches/benches/`; run them with `cargo bench`.
