//! The write path below the transports: one tenant's decoded series written to its TSDB
//! (IngestorOnly, or a write that already carries a replica number), or handed to the
//! replicator, whose local share is written here. HTTP (`http/receive.rs`) and gRPC
//! (`grpc.rs`) both end here, on a blocking thread.

use std::cell::RefCell;

use http::StatusCode;
use ringest_tsdb::AppendBuffers;

use crate::http::AppState;
use crate::remote_write::Decoded;
use crate::replicate::{Failure, Kind, Pending};
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

/// Writes the decoded series of one tenant: locally without a hashring, else through the
/// replicator (whose local share is written here, on this blocking thread).
pub fn write_tenant(
    st: &AppState,
    tenant: &str,
    replica: u64,
    buf: &[u8],
    decoded: &Decoded,
) -> Result<Processed, (StatusCode, String)> {
    let Some(rep) = &st.replicator else {
        return APPEND.with(|a| write_local(st, tenant, buf, decoded, None, &mut a.borrow_mut())).map(Processed::Done);
    };
    // A router without a local endpoint treats every write as fresh (Thanos' RouterOnly).
    let replica = if rep.options().local_endpoint.is_none() { 0 } else { replica };
    let rf = rep.options().replication_factor as u64;
    if replica > rf {
        let msg = format!("write request rejected: replica {replica} exceeds the replication factor {rf}");
        tracing::error!(tenant, err = %msg, "write request rejected");
        return Err((StatusCode::BAD_REQUEST, msg));
    }
    if replica > 0 {
        // Already replicated by its router: this node's copy, written here and nowhere else.
        return APPEND.with(|a| write_local(st, tenant, buf, decoded, None, &mut a.borrow_mut())).map(Processed::Done);
    }
    let mut local = |select: &[u32]| -> Result<(), Failure> {
        let r = APPEND.with(|a| write_local(st, tenant, buf, decoded, Some(select), &mut a.borrow_mut()));
        match r {
            Ok(report) => match report.response() {
                (StatusCode::OK, _) => Ok(()),
                (StatusCode::CONFLICT, m) => Err(Failure { kind: Kind::Conflict, message: m }),
                (StatusCode::BAD_REQUEST, m) => Err(Failure { kind: Kind::BadRequest, message: m }),
                (_, m) => Err(Failure { kind: Kind::Other, message: m }),
            },
            Err((StatusCode::SERVICE_UNAVAILABLE, m)) if m.contains("not ready") => {
                Err(Failure { kind: Kind::NotReady, message: m })
            }
            Err((_, m)) => Err(Failure { kind: Kind::Other, message: m }),
        }
    };
    let pending = rep.route(tenant, buf, decoded, &mut local).map_err(|f| {
        tracing::error!(tenant, err = %f.message, "failed to distribute timeseries to replicas");
        (StatusCode::INTERNAL_SERVER_ERROR, f.message)
    })?;
    Ok(Processed::Replicating { pending, series: decoded.series.len() as u64, samples: decoded.samples.len() as u64 })
}

thread_local! {
    static APPEND: RefCell<AppendBuffers> = RefCell::new(AppendBuffers::default());
}

/// Appends series of `decoded` (all, or `select`) to the tenant's TSDB.
fn write_local(
    st: &AppState,
    tenant: &str,
    buf: &[u8],
    decoded: &Decoded,
    select: Option<&[u32]>,
    append: &mut AppendBuffers,
) -> Result<WriteReport, (StatusCode, String)> {
    let db = st.tenants.get_or_open(tenant).map_err(|e| match e {
        crate::tenancy::TenantError::Closed => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    let max_t = if st.too_far_in_future_ms > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        now.saturating_add(st.too_far_in_future_ms)
    } else {
        i64::MAX
    };
    let report = writer::write_selected(tenant, &db, buf, decoded, select, max_t, append)
        .map_err(|e: WriteError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if db.compactable() {
        st.tenants.request_compaction();
    }
    Ok(report)
}
