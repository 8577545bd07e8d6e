//! The state every request handler shares, whatever its transport (HTTP, gRPC) and the ingest
//! service below them.

use std::sync::Arc;

use http::HeaderName;

use crate::admission::Budget;
use crate::cardinality::CardinalityCache;
use crate::lane::Lanes;
use crate::metrics::Metrics;
use crate::probe::Probe;
use crate::replicate::Replicator;
use crate::tenancy::Tenants;

/// State shared by the handlers.
#[derive(Debug)]
pub struct AppState {
    /// Tenant TSDBs.
    pub tenants: Arc<Tenants>,
    /// Health and readiness.
    pub probe: Arc<Probe>,
    /// Metrics.
    pub metrics: Metrics,
    /// `--receive.tenant-header`.
    pub tenant_header: HeaderName,
    /// `--receive.default-tenant-id`.
    pub default_tenant: String,
    /// `--receive.tenant-certificate-field`: the tenant comes from the client certificate, and
    /// tenant headers are ignored.
    pub tenant_field: Option<crate::tenancy::CertField>,
    /// `--ringest.tenant-header.trusted-from`: whose tenant header is honoured (`None`: anyone's).
    pub trusted_proxies: Option<crate::tenancy::TrustedProxies>,
    /// `--receive.replica-header`.
    pub replica_header: HeaderName,
    /// `--tsdb.too-far-in-future.time-window` in ms (0: off).
    pub too_far_in_future_ms: i64,
    /// One write's bounds and the budget of all writes in flight (HTTP and gRPC).
    pub budget: Arc<Budget>,
    /// Where writes' CPU work runs: large writes at the lowest priority.
    pub lanes: Lanes,
    /// `--ringest.http.body-read-timeout`.
    pub body_read_timeout: std::time::Duration,
    /// Replication over the hashring (`None`: IngestorOnly, everything is written here).
    pub replicator: Option<Arc<Replicator>>,
    /// The limits file's write limits.
    pub limiter: Arc<crate::limits::Limiter>,
    /// Head cardinality statistics served by `/api/v1/status/tsdb`, at a bounded cost.
    pub cardinality: CardinalityCache,
}

impl AppState {
    /// This node's receiver mode ([`receiver_mode`]).
    pub fn receiver_mode(&self) -> &'static str {
        receiver_mode(self.replicator.as_ref().map(|r| r.options()))
    }
}

/// Thanos' receiver mode: `IngestorOnly` without a hashring, `RouterOnly` with one that does
/// not name this node, else `RouterIngestor`.
pub fn receiver_mode(replication: Option<&crate::replicate::Options>) -> &'static str {
    match replication {
        None => "IngestorOnly",
        Some(o) if o.local_endpoint.is_none() => "RouterOnly",
        Some(_) => "RouterIngestor",
    }
}
