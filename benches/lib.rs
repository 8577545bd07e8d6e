//! Criterion benchmarks of ringest's hot paths live in `benches/`; this library is empty.
//! Run them with `cargo bench -p ringest-benches`.
