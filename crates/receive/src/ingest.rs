//! The write path below the transports: one tenant's decoded series written to its TSDB
//! (IngestorOnly, or a write that already carries a replica number), or handed to the
//! replicator, whose local share is written here. HTTP (`http/receive.rs`) and gRPC
//! (`grpc.rs`) both end here, on a blocking thread.

use std::cell::RefCell;

use ringest_tsdb::AppendBuffers;

use ringest_trace::{KeyValue, Span};

use crate::outcome::{Outcome, WriteStatus};
use crate::remote_write::Decoded;
use crate::replicate::{Failure, Pending};
use crate::state::AppState;
use crate::tenancy::TenantError;
use crate::writer::{self, WriteError, WriteReport};

/// A write handed to the TSDB, or to the replicator.
#[derive(Debug)]
pub enum Processed {
    /// Written locally (no hashring).
    Done(WriteReport),
    /// Distributed over the hashring; the verdict comes when the quorum is decided.
    Replicating {
        /// The groups in flight.
        pending: Pending,
        /// Series in the request.
        series: u64,
        /// Samples in the request.
        samples: u64,
    },
}

/// Why a write failed as a whole (nothing of it was written here).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The replica number is over the replication factor.
    #[error("write request rejected: replica {replica} exceeds the replication factor {rf}")]
    BadReplica {
        /// The request's replica number.
        replica: u64,
        /// `--receive.replication-factor`.
        rf: u64,
    },
    /// The tenant's TSDB is closed (the node is shutting down) or could not be opened.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The TSDB could not write the WAL, or closed during the write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The series could not be distributed over the hashring.
    #[error("{0}")]
    Route(String),
}

impl IngestError {
    /// What became of the write.
    pub fn outcome(&self) -> Outcome {
        match self {
            IngestError::BadReplica { .. } => Outcome::Invalid,
            IngestError::Tenant(TenantError::TooMany { .. }) => Outcome::Limited,
            IngestError::Tenant(TenantError::Closed) | IngestError::Write(WriteError::Closed) => Outcome::NotReady,
            IngestError::Tenant(TenantError::Unavailable { .. }) | IngestError::Write(WriteError::Wal(_)) => {
                Outcome::Unavailable
            }
            IngestError::Tenant(TenantError::Open { .. }) | IngestError::Route(_) => Outcome::Internal,
        }
    }
}

/// How far ahead of its clock a node accepts a write that a router already replicated (and so
/// already checked against `--tsdb.too-far-in-future.time-window` with the router's clock):
/// replicas decide alike unless their clocks are further apart than this, and a router that
/// does not check (Go Thanos) still cannot store absurd timestamps here.
pub const REPLICA_CLOCK_SKEW: i64 = 10 * 60 * 1000;

/// The newest timestamp a write may carry: now plus `--tsdb.too-far-in-future.time-window`
/// and `slack` (none when the window is 0: off).
fn newest_allowed(st: &AppState, slack: i64) -> i64 {
    if st.too_far_in_future_ms <= 0 {
        return i64::MAX;
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    now.saturating_add(st.too_far_in_future_ms).saturating_add(slack)
}

/// Writes the decoded series of one tenant: locally without a hashring, else through the
/// replicator (whose local share is written here, on this blocking thread). Samples too far in
/// the future are decided once, here on the node that received the write, before it is
/// routed, so that replicas with other clocks cannot disagree. `span` is the request's
/// (`receive_http` or `receive_grpc`).
pub fn write_tenant(
    st: &AppState,
    tenant: &str,
    replica: u64,
    buf: &[u8],
    decoded: &Decoded,
    span: &Span,
) -> Result<Processed, IngestError> {
    let Some(rep) = &st.replicator else {
        let max_t = newest_allowed(st, 0);
        return write_here(st, tenant, buf, decoded, max_t, span);
    };
    // A router without a local endpoint treats every write as fresh (Thanos' RouterOnly).
    let replica = if rep.options().local_endpoint.is_none() { 0 } else { replica };
    let rf = rep.options().replication_factor as u64;
    if replica > rf {
        let e = IngestError::BadReplica { replica, rf };
        tracing::error!(tenant, err = %e, "write request rejected");
        return Err(e);
    }
    if replica > 0 {
        // Already replicated by its router: this node's copy, written here and nowhere else.
        let max_t = newest_allowed(st, REPLICA_CLOCK_SKEW);
        return write_here(st, tenant, buf, decoded, max_t, span);
    }
    let (series, samples) = (decoded.series.len() as u64, decoded.samples.len() as u64);
    let stripped = writer::strip_too_far_in_future(buf, decoded, newest_allowed(st, 0))
        .map_err(|e| IngestError::Route(format!("re-encode a request without its future samples: {e}")))?;
    let (buf, decoded, refused) = match &stripped {
        Some((b, d, refused)) => (&b[..], d, Some(refused.clone())),
        None => (buf, decoded, None),
    };
    let mut local = |select: &[u32], fanout: &Span| -> Result<(), Failure> {
        // Decided above: nothing left is too far in the future.
        let r =
            APPEND.with(|a| write_local(st, tenant, buf, decoded, Some(select), i64::MAX, &mut a.borrow_mut(), fanout));
        let status = match r {
            Ok(report) => report.status(),
            // A failed local write is an error of this replica, counted as Thanos counts an
            // ingestor's commit error, unless the TSDB is not ready (counted apart) or the
            // tenant is over this node's limit.
            Err(e) => match e.outcome() {
                o @ (Outcome::NotReady | Outcome::Limited) => WriteStatus::new(o, e.to_string()),
                _ => WriteStatus::new(Outcome::Internal, e.to_string()),
            },
        };
        if status.is_ok() { Ok(()) } else { Err(Failure { outcome: status.outcome, message: status.message }) }
    };
    let fanout = span.child("receive_fanout_forward", Vec::new);
    let pending = rep.route(tenant, buf, decoded, &mut local, fanout).map_err(|f| {
        tracing::error!(tenant, err = %f.message, "failed to distribute timeseries to replicas");
        IngestError::Route(f.message)
    })?;
    let pending = match refused {
        Some(r) => pending.with_refused(r),
        None => pending,
    };
    Ok(Processed::Replicating { pending, series, samples })
}

/// Writes every series of `decoded` here, in the spans Thanos opens for a write that stays on
/// its node (`receive_fanout_forward`, then `receive_forward`).
fn write_here(
    st: &AppState,
    tenant: &str,
    buf: &[u8],
    decoded: &Decoded,
    max_t: i64,
    span: &Span,
) -> Result<Processed, IngestError> {
    let fanout = span.child("receive_fanout_forward", Vec::new);
    let forward = fanout.child("receive_forward", Vec::new);
    let r = APPEND.with(|a| write_local(st, tenant, buf, decoded, None, max_t, &mut a.borrow_mut(), &forward));
    drop(forward);
    r.map(Processed::Done)
}

thread_local! {
    static APPEND: RefCell<AppendBuffers> = RefCell::new(AppendBuffers::default());
}

/// Appends series of `decoded` (all, or `select`) to the tenant's TSDB, refusing samples newer
/// than `max_t`, in a `receive_tsdb_write` span under `parent`.
#[allow(clippy::too_many_arguments)]
fn write_local(
    st: &AppState,
    tenant: &str,
    buf: &[u8],
    decoded: &Decoded,
    select: Option<&[u32]>,
    max_t: i64,
    append: &mut AppendBuffers,
    parent: &Span,
) -> Result<WriteReport, IngestError> {
    let span = parent.child("receive_tsdb_write", || vec![KeyValue::new("tenant", tenant.to_string())]);
    let db = st.tenants.get_or_open(tenant).inspect_err(|e| span.fail(&e.to_string()))?;
    let report = writer::write_selected(tenant, &db, buf, decoded, select, max_t, append)
        .inspect_err(|e| span.fail(&e.to_string()))?;
    if span.is_recording() {
        // The status (messages formatted) only for a span that records it.
        let status = report.status();
        if !status.is_ok() {
            span.fail(&status.message);
        }
    }
    if db.compactable() {
        st.tenants.request_compaction();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringest_tsdb::TsdbError;

    /// A closed TSDB, found when the tenant is opened or when the WAL is written, is "not
    /// ready" (counted apart by the quorum); a WAL failure is unavailable.
    #[test]
    fn outcomes() {
        let not_ready = [IngestError::Tenant(TenantError::Closed), IngestError::Write(WriteError::Closed)];
        for e in &not_ready {
            assert_eq!(e.outcome(), Outcome::NotReady, "{e}");
            assert!(e.to_string().contains("TSDB not ready: shutting down"), "{e}");
        }
        let wal = IngestError::Write(WriteError::Wal(TsdbError::Replay("disk full".into())));
        assert_eq!(wal.outcome(), Outcome::Unavailable);
        let replica = IngestError::BadReplica { replica: 4, rf: 3 };
        assert_eq!(replica.outcome(), Outcome::Invalid);
        assert_eq!(replica.to_string(), "write request rejected: replica 4 exceeds the replication factor 3");
        assert_eq!(IngestError::Route("no hashring".into()).outcome(), Outcome::Internal);
        let many = IngestError::Tenant(TenantError::TooMany { tenant: "t".into(), max: 1 });
        assert_eq!(many.outcome(), Outcome::Limited);
    }
}
