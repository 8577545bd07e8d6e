//! ringest-proto: prost types of the wire protocols ringest speaks, generated at build time
//! from the `.proto` files in the repository's `proto/` directory (upstream package, message
//! and field numbers).
//!
//! The remote-write hot path does not use these types (it has a hand-written zero-copy
//! decoder); they serve tests, the load generator and, later, gRPC.

/// Prometheus remote write 1.0 (`package prometheus`).
#[allow(missing_docs, clippy::all)]
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}
