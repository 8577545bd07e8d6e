//! ringest: a native drop-in replacement for Thanos Receive.
//!
//! This crate is the server: the command line with Thanos' flags ([`config`]), logging in
//! Thanos' formats ([`logging`]), the remote-write front end ([`http`], [`remote_write`]),
//! tenancy with one TSDB per tenant ([`tenancy`]), the limits file ([`limits`]), the hashring ([`ring`]) and replication
//! over gRPC ([`replicate`], [`grpc`]), the StoreAPI read path ([`store`]) with tenants'
//! external labels ([`external`]), uploads to the bucket ([`upload`]), the write policy ([`writer`]), metrics
//! with Thanos' and Prometheus' names ([`metrics`]), the state every handler shares ([`state`]),
//! probes and the server lifecycle ([`server`]). Storage is the `ringest-tsdb` crate; blocking work (decode, append, WAL)
//! runs on blocking threads, never on the async reactor.

pub mod admission;
pub mod cardinality;
pub mod config;
pub mod external;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod lane;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod pool;
pub mod probe;
pub mod remote_write;
pub mod replicate;
pub mod request_log;
pub mod ring;
pub mod sched;
pub mod server;
pub mod state;
pub mod store;
pub mod tenancy;
pub mod tools;
pub mod upload;
pub mod writer;

/// The version `--version` and `thanos_build_info` report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `--version` prints, in the shape of `thanos --version` (Prometheus' version
/// package): `name` is the program as invoked (`thanos` in an image that aliases it), the
/// "go version" line names the implementation, as `thanos_build_info`'s `goversion` does.
pub fn version_text(name: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "{name}, version {VERSION} (branch: , revision: )\n  build user:       \n  build date:       \n  \
         go version:       ringest (rust)\n  platform:         {}/{arch}\n  tags:             unknown\n",
        std::env::consts::OS
    )
}
