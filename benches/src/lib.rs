//! hb benchmarks live under `benches/benches/` (criterion) and `cargo xtask bench`.
