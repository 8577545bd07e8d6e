//! ringest-loadgen: a remote-write load generator and the side-by-side benchmark driver.
//!
//! An external client: the write side shares no code with ringest (its own protobuf encoder and
//! HTTP/1.1 client), so what it measures is what any Prometheus-compatible sender would see.
//! The read side speaks the StoreAPI with tonic clients of the upstream `.proto` files
//! (ringest-proto) and decodes XOR chunks with ringest-tsdb's reader, the same code for
//! ringest and Thanos Receive (so Thanos' chunks, written by Prometheus' Go encoder, keep that
//! reader honest).
//!
//! - [`shape`]: which series a workload writes (avalanche-like or node_exporter-like, churn);
//! - [`plan`]: the requests, pre-encoded before the clock starts, cut into shards and batches
//!   the way Prometheus' remote-write queue does;
//! - [`send`]: one keep-alive connection per shard, retries with backoff on 5xx/429, pacing;
//! - [`procstat`], [`report`]: receiver CPU and RSS from `/proc`, latency percentiles, tables;
//! - [`check`]: every acknowledged sample readable with its exact value (via promtool, or
//!   through the StoreAPI of a running receiver: [`store`]);
//! - [`read`]: the bench's StoreAPI read phase (Thanos Query-shaped Series and LabelValues);
//! - [`bench`]: ringest, Thanos Receive, Prometheus 2.42 and VictoriaMetrics on the same
//!   workloads, one table.

pub mod bench;
pub mod check;
pub mod encode;
pub mod http;
pub mod plan;
pub mod port;
pub mod procstat;
pub mod read;
pub mod report;
pub mod send;
pub mod shape;
pub mod store;
pub mod tls;
