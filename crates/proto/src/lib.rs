//! ringest-proto: prost types of the wire protocols ringest speaks, generated at build time
//! from the `.proto` files in the repository's `proto/` directory (upstream package, message
//! and field numbers).
//!
//! The remote-write hot path does not use these types (it has a hand-written zero-copy
//! decoder); they serve tests, the load generator and the Thanos read APIs: tonic server traits
//! and clients for `thanos.Store`, `thanos.info.Info`, `thanos.Status` and `thanos.Exemplars`
//! (e.g. `thanos::store_client::StoreClient`). The clients are generic over the transport and
//! have no `connect` constructor: wrap any tonic channel with `StoreClient::new` (enabling
//! tonic's `channel` feature is the caller's business).

/// Prometheus remote write 1.0 (`package prometheus`).
#[allow(missing_docs, clippy::all)]
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Thanos' StoreAPI, Status and Exemplars (`package thanos`) and Info (`package thanos.info`).
#[allow(missing_docs, clippy::all)]
pub mod thanos {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));

    /// `package thanos.info`.
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}
