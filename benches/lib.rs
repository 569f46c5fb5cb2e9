//! Holder crate for the criterion benchmarks in this directory (`cargo bench -p keyhaven-benches`).
