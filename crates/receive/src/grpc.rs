//! The gRPC port (`--grpc-address`): `thanos.WriteableStore/RemoteWrite`, the write RPC Thanos
//! receivers replicate with (shared spec §3.2), and the gRPC health service.
//!
//! A request carrying a replica number was replicated by its router already: it is written
//! locally and never forwarded again. A request without one (a router sending to an ingestor,
//! or any client) is routed like an HTTP write. Both `timeseriesTenantData` (field 4, newer
//! Thanos) and the single-tenant fields 1-2 are accepted. Outcomes map to gRPC codes as
//! Thanos' handler does: conflict → AlreadyExists, not ready / unavailable → Unavailable,
//! invalid input → InvalidArgument, anything else → Internal. Requests are admitted and
//! charged to the write budget ([`crate::admission`]) as over HTTP: the message when its length
//! prefix arrives, then its decompressed size and its decoded form, each before allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use ringest_grpc::{Admission, Code, Message, Status, UnaryHandler};

use crate::admission::{Bound, Permit, PlanError, Refusal, check};
use crate::ingest::{Processed, write_tenant};
use crate::pool::Pool;
use crate::remote_write::{DecodeError, Shape, decode_thanos_write_request};
use crate::state::AppState;
use crate::tenancy::validate_tenant;

/// `thanos.WriteableStore/RemoteWrite`.
#[derive(Debug)]
pub struct RemoteWriteHandler {
    st: Arc<AppState>,
}

impl RemoteWriteHandler {
    /// A handler writing through `st`.
    pub fn new(st: Arc<AppState>) -> Arc<RemoteWriteHandler> {
        Arc::new(RemoteWriteHandler { st })
    }
}

fn status(code: StatusCode, message: String) -> Status {
    let code = match code {
        StatusCode::CONFLICT => Code::AlreadyExists,
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    Status { code, message }
}

/// The gRPC status of a refusal: `ResourceExhausted` for a request over its bounds (as grpc-go
/// answers a message over its size limit), `Unavailable` while the node is busy (a router
/// retries it, and counts it as a failed replica, not a bad request).
fn refusal_status(st: &AppState, r: &Refusal) -> Status {
    st.budget.refused(r);
    tracing::debug!(err = %r, "gRPC write request refused");
    let code = if r.retryable() { Code::Unavailable } else { Code::ResourceExhausted };
    Status { code, message: r.to_string() }
}

impl UnaryHandler for RemoteWriteHandler {
    fn admit(&self, len: usize) -> Result<Option<Admission>, Status> {
        let st = &self.st;
        let limit = st.budget.limits().max_decoded_bytes;
        let admitted = check(Bound::DecodedBytes, len as u64, limit as u64)
            .and_then(|()| st.budget.admit())
            .and_then(|permit| permit.charge(len).map(|()| permit));
        match admitted {
            Ok(permit) => Ok(Some(Box::new(permit))),
            Err(r) => Err(refusal_status(st, &r)),
        }
    }

    fn call(&self, mut request: Message) -> Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + '_>> {
        Box::pin(async move {
            let st = self.st.clone();
            if !st.probe.is_ready() {
                return Err(Status { code: Code::Unavailable, message: "TSDB not ready".into() });
            }
            // Held until the answer is sent, replication included.
            let permit: Arc<Permit> = match request.take_admission().map(|a| a.downcast::<Permit>()) {
                Some(Ok(p)) => Arc::from(p),
                _ => Arc::new(st.budget.admit().map_err(|r| refusal_status(&st, &r))?),
            };
            let (st2, permit2) = (st.clone(), permit.clone());
            let work = tokio::task::spawn_blocking(move || {
                let mut scratch = SCRATCH.take();
                let out = write(&st2, &request, &permit2, &mut scratch);
                let keep = scratch.capacity() <= KEEP_SCRATCH_BYTES;
                SCRATCH.give(scratch, keep);
                out
            });
            let processed = work.await.map_err(|e| Status { code: Code::Internal, message: e.to_string() })??;
            let mut worst: Option<(StatusCode, String)> = None;
            for p in processed {
                let (code, msg) = match p {
                    Processed::Done(report) => report.response(),
                    Processed::Replicating { pending, .. } => {
                        let v = pending.wait().await;
                        (v.status, v.message)
                    }
                };
                if code != StatusCode::OK && worst.as_ref().is_none_or(|(c, _)| rank(code) > rank(*c)) {
                    worst = Some((code, msg));
                }
            }
            drop(permit);
            match worst {
                None => Ok(Bytes::new()),
                Some((code, msg)) => Err(status(code, msg)),
            }
        })
    }
}

/// Decompressed requests are decoded from buffers kept here, none larger than this.
const KEEP_SCRATCH_BYTES: usize = 8 << 20;

static SCRATCH: Pool<Vec<u8>> = Pool::new(8);

/// Decompresses, decodes and writes (or routes) one request, on a blocking thread; the
/// decompressed size and the decoded form are charged to `permit` before they are allocated.
fn write(st: &AppState, request: &Message, permit: &Permit, scratch: &mut Vec<u8>) -> Result<Vec<Processed>, Status> {
    let limits = st.budget.limits();
    let refused = |r: Refusal| refusal_status(st, &r);
    let declared = request.decompressed_len()?;
    check(Bound::DecodedBytes, declared as u64, limits.max_decoded_bytes as u64).map_err(refused)?;
    if request.is_compressed() {
        permit.charge(declared).map_err(refused)?;
    }
    let buf = request.bytes_in(scratch)?;
    let invalid = |e: DecodeError| Status { code: Code::InvalidArgument, message: e.to_string() };
    let (charge, shape) = limits.charge_decoded_form(permit, buf, true).map_err(|e| match e {
        PlanError::Refused(r) => refused(r),
        PlanError::Decode(e) => invalid(e),
    })?;
    // Without an exact count, sized as a typical request: a label takes ~32 bytes, a sample ~24.
    let len = buf.len() as u64;
    let hint = shape.unwrap_or(Shape { series: 0, labels: len / 32, samples: len / 24, tuples: 0 });
    let w = decode_thanos_write_request(buf, &hint).map_err(invalid)?;
    let got = w.tenants.iter().fold(Shape { tuples: w.tenants.len() as u64, ..Shape::default() }, |s, (_, d)| Shape {
        series: s.series + d.series.len() as u64,
        labels: s.labels + d.labels.len() as u64,
        samples: s.samples + d.samples.len() as u64,
        tuples: s.tuples,
    });
    charge.settle(limits, permit, &got).map_err(refused)?;
    let replica = u64::try_from(w.replica)
        .map_err(|_| Status { code: Code::InvalidArgument, message: "negative replica".into() })?;
    let mut out = Vec::with_capacity(w.tenants.len());
    for (tenant, decoded) in &w.tenants {
        let tenant = if tenant.is_empty() { st.default_tenant.clone() } else { tenant.clone() };
        validate_tenant(&tenant).map_err(|e| Status { code: Code::InvalidArgument, message: e.to_string() })?;
        out.push(write_tenant(st, &tenant, replica, buf, decoded).map_err(|e| status(e.status(), e.to_string()))?);
    }
    Ok(out)
}

fn rank(code: StatusCode) -> u8 {
    match code {
        StatusCode::SERVICE_UNAVAILABLE => 4,
        StatusCode::INTERNAL_SERVER_ERROR => 3,
        StatusCode::BAD_REQUEST => 2,
        StatusCode::CONFLICT => 1,
        _ => 0,
    }
}
