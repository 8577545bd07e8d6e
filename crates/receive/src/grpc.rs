//! The gRPC port (`--grpc-address`): `thanos.WriteableStore/RemoteWrite`, the write RPC Thanos
//! receivers replicate with (shared spec §3.2), and the gRPC health service.
//!
//! A request carrying a replica number was replicated by its router already: it is written
//! locally and never forwarded again. A request without one (a router sending to an ingestor,
//! or any client) is routed like an HTTP write. Both `timeseriesTenantData` (field 4, newer
//! Thanos) and the single-tenant fields 1-2 are accepted. Outcomes map to gRPC codes in
//! [`code_of`], as Thanos' handler answers. Requests are admitted and
//! charged to the write budget ([`crate::admission`]) as over HTTP: the message when its length
//! prefix arrives, then its decompressed size and its decoded form, each before allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use ringest_grpc::{Admission, Code, Message, Status, UnaryHandler};
use ringest_trace::{KeyValue, Span};

use crate::admission::{Bound, Permit, PlanError, Refusal};
use crate::ingest::{Processed, write_tenant};
use crate::outcome::{Outcome, WriteStatus};
use crate::pool::{KEEP_BYTES, Pool};
use crate::remote_write::{SeriesPrefix, Shape, decode_thanos_write_request};
use crate::replicate::REMOTE_WRITE_PATH;
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

/// The gRPC code of a write's [`Outcome`]: the one mapping of outcomes to gRPC, as Thanos'
/// handler answers (conflict → AlreadyExists, invalid input → InvalidArgument, not ready or
/// unavailable → Unavailable, anything else → Internal), plus ringest's bounds and limits
/// (ResourceExhausted, as grpc-go answers an oversized message) and a busy node (Unavailable: a
/// router retries it and counts it as a failed replica, not a bad request).
pub fn code_of(outcome: Outcome) -> Code {
    match outcome {
        Outcome::Ok => Code::Ok,
        Outcome::Conflict => Code::AlreadyExists,
        Outcome::Invalid => Code::InvalidArgument,
        Outcome::TooLarge | Outcome::Limited => Code::ResourceExhausted,
        Outcome::Busy | Outcome::NotReady | Outcome::Unavailable => Code::Unavailable,
        Outcome::Internal => Code::Internal,
    }
}

/// A write's status as the gRPC status it is answered with ([`code_of`]).
pub fn status(ws: WriteStatus) -> Status {
    Status { code: code_of(ws.outcome), message: ws.message }
}

impl UnaryHandler for RemoteWriteHandler {
    fn admit(&self, len: usize) -> Result<Option<Admission>, Status> {
        let st = &self.st;
        let admitted = st.budget.admit().and_then(|permit| permit.charge_body(len).map(|()| permit));
        match admitted {
            Ok(permit) => Ok(Some(Box::new(permit))),
            Err(r) => Err(status(st.budget.refuse(r))),
        }
    }

    fn call(&self, request: Message) -> Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + '_>> {
        Box::pin(async move {
            let root = Span::server(REMOTE_WRITE_PATH, request.metadata(), || vec![KeyValue::new("component", "gRPC")]);
            let answer = self.handle(request, &root).await;
            if let Err(st) = &answer {
                root.fail(&st.to_string());
            }
            answer
        })
    }
}

impl RemoteWriteHandler {
    /// One call, under its server span `root`.
    async fn handle(&self, mut request: Message, root: &Span) -> Result<Bytes, Status> {
        let st = self.st.clone();
        if !st.probe.is_ready() {
            return Err(status(WriteStatus::new(Outcome::NotReady, "TSDB not ready")));
        }
        // Held until the answer is sent, replication included.
        let permit: Arc<Permit> = match request.take_admission().map(|a| a.downcast::<Permit>()) {
            Some(Ok(p)) => Arc::from(p),
            _ => Arc::new(st.budget.admit().map_err(|r| status(st.budget.refuse(r)))?),
        };
        let (st2, permit2) = (st.clone(), permit.clone());
        // Its decompressed length picks its lane, and is charged before it is decompressed.
        let declared = request.decompressed_len()?;
        let span = root.child("receive_grpc", Vec::new);
        // Never on this worker: the tenants a message writes to are known only once it is
        // decoded, and one not open yet is created on the disk.
        let work = st.lanes.run(
            declared as u64,
            || false,
            move || {
                let mut scratch = SCRATCH.take();
                let out = write(&st2, &request, declared, &permit2, &mut scratch, &span);
                let keep = scratch.capacity() <= KEEP_BYTES;
                SCRATCH.give(scratch, keep);
                (out, span)
            },
        );
        // The span lasts until the replicas answered.
        let (processed, span) = work.await.map_err(|e| status(e.into()))?;
        let processed = processed?;
        // One answer for every tenant of the request: the worst of their outcomes.
        let mut answer = WriteStatus::ok();
        for p in processed {
            let ws = match p {
                Processed::Done(report) => report.status(),
                Processed::Replicating { pending, .. } => pending.wait().await,
            };
            if answer.outcome.worst(ws.outcome) != answer.outcome {
                answer = ws;
            }
        }
        drop((permit, span));
        if answer.is_ok() { Ok(Bytes::new()) } else { Err(status(answer)) }
    }
}

/// Decompressed requests are decoded from buffers kept here, none larger than [`KEEP_BYTES`].
static SCRATCH: Pool<Vec<u8>> = Pool::new(8);

/// Decompresses, decodes and writes (or routes) one request of `declared` decompressed bytes,
/// on a blocking thread; the decompressed size and the decoded form are charged to `permit`
/// before they are allocated.
fn write(
    st: &AppState,
    request: &Message,
    declared: usize,
    permit: &Permit,
    scratch: &mut Vec<u8>,
    span: &Span,
) -> Result<Vec<Processed>, Status> {
    let limits = st.budget.limits();
    let refused = |r: Refusal| status(st.budget.refuse(r));
    if request.is_compressed() {
        permit.charge_body(declared).map_err(refused)?;
    }
    // A request with more series than allowed is refused as soon as the first chunks show
    // them, before the rest is decompressed: a decode bomb of 16M empty series takes 32 MiB
    // and a bulk thread's core for its decompression, and shows 200,000 of them in its first
    // 400 KiB.
    let mut prefix = SeriesPrefix::thanos();
    let counted = request.bytes_in_while(scratch, |p| {
        prefix.advance(p);
        prefix.series <= limits.max_series
    })?;
    let buf = counted.ok_or_else(|| {
        refused(Refusal::TooLarge { bound: Bound::Series, got: prefix.series, limit: limits.max_series })
    })?;
    let invalid = |e: &dyn std::fmt::Display| status(WriteStatus::new(Outcome::Invalid, e.to_string()));
    let (charge, shape) = limits.charge_decoded_form(permit, buf, true).map_err(|e| match e {
        PlanError::Refused(r) => refused(r),
        PlanError::Decode(e) => invalid(&e),
    })?;
    // Without an exact count, sized as a typical request: a label takes ~32 bytes, a sample ~24.
    let len = buf.len() as u64;
    let hint = shape.unwrap_or(Shape { series: 0, labels: len / 32, samples: len / 24, tuples: 0 });
    let w = decode_thanos_write_request(buf, &hint).map_err(|e| invalid(&e))?;
    charge.settle(limits, permit, &w.shape()).map_err(refused)?;
    let replica = u64::try_from(w.replica).map_err(|_| invalid(&"negative replica"))?;
    // Every tenant is checked before any is written: a refused request writes nothing.
    let tenants: Vec<String> = w
        .tenants
        .iter()
        .map(|(t, _)| {
            let t = if t.is_empty() { st.default_tenant.clone() } else { t.clone() };
            validate_tenant(&t).map(|()| t).map_err(|e| invalid(&e))
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(w.tenants.len());
    for (tenant, (_, decoded)) in tenants.iter().zip(&w.tenants) {
        let processed = write_tenant(st, tenant, replica, buf, decoded, span);
        out.push(processed.map_err(|e| status(WriteStatus::new(e.outcome(), e.to_string())))?);
    }
    Ok(out)
}
