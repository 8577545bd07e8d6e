//! `POST /api/v1/receive`: remote write 1.0 into the tenant's TSDB.
//!
//! Order of checks: readiness (503), tenant (400), Content-Encoding / Content-Type (415),
//! Content-Length over the limit (413), a replica header (400: only peers replicate, over gRPC),
//! admission to the in-flight budget ([`crate::admission`]: 503 with `Retry-After` when busy),
//! the body read within its timeout (408), capped at the limit (413, also for chunked bodies)
//! and charged as it arrives; then on a blocking thread: the snappy declared length (413) is
//! charged, the body decompressed (400), counted and bounded (413 naming the bound), its
//! decoded form charged, decoded (400), then [`crate::ingest`]: append + WAL (see
//! [`crate::writer`] for the status policy), or replication over the hashring.
//! A 200 is sent only after the WAL write holding the request's samples returned.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use ringest_trace::{KeyValue, Span, TRACE_ID_HEADER};

use super::{status_of, text_error};
use crate::admission::{Bound, Permit, PlanError, Refusal};
use crate::ingest::{Processed, write_tenant};
use crate::limits::{TenantLimits, ring_estimate};
use crate::outcome::{Outcome, WriteStatus};
use crate::pool::{KEEP_BYTES, Pool};
use crate::remote_write::{Decoded, SnappyError, decode_write_request, decompress, decompressed_len, reserve};
use crate::state::AppState;
use crate::tenancy::{Client, validate_tenant};
use crate::writer::WriteReport;

/// Why a request has no tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantRefused {
    /// The name is missing from the certificate or not valid: 400.
    #[error("{0}")]
    Invalid(String),
    /// A tenant header from a client that `--ringest.tenant-header.trusted-from` does not
    /// list: 403.
    #[error(
        "the tenant header {header} is honoured only from trusted proxies (--ringest.tenant-header.trusted-from), \
         and this client ({addr}) is not one"
    )]
    Untrusted {
        /// The header.
        header: String,
        /// The client's address.
        addr: std::net::SocketAddr,
    },
}

impl TenantRefused {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            TenantRefused::Invalid(_) => StatusCode::BAD_REQUEST,
            TenantRefused::Untrusted { .. } => StatusCode::FORBIDDEN,
        }
    }
}

/// The tenant of a request: the client certificate's field with
/// `--receive.tenant-certificate-field`, else the configured header, then `THANOS-TENANT` (from
/// a trusted proxy, when `--ringest.tenant-header.trusted-from` lists them), then the default.
pub fn tenant_of(st: &AppState, headers: &HeaderMap, extensions: &http::Extensions) -> Result<String, TenantRefused> {
    let client = extensions.get::<Client>();
    if let Some(field) = st.tenant_field {
        let tenant = field.tenant(client).map_err(|e| TenantRefused::Invalid(e.to_string()))?;
        validate_tenant(&tenant).map_err(|e| TenantRefused::Invalid(e.to_string()))?;
        return Ok(tenant);
    }
    let get = |name: &str| headers.get(name).map(|v| v.to_str().map(str::to_string));
    let v = match get(st.tenant_header.as_str()) {
        Some(v) => Some(v),
        None => get("THANOS-TENANT"),
    };
    if v.is_some()
        && let Some(trusted) = &st.trusted_proxies
        && !client.is_some_and(|c| trusted.trusts(c))
    {
        let addr = client.map_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.addr);
        return Err(TenantRefused::Untrusted { header: st.tenant_header.to_string(), addr });
    }
    let tenant = match v {
        Some(Ok(t)) if !t.is_empty() => t,
        Some(Err(_)) => {
            return Err(TenantRefused::Invalid("tenant name not valid: the tenant header is not visible ASCII".into()));
        }
        _ => st.default_tenant.clone(),
    };
    validate_tenant(&tenant).map_err(|e| TenantRefused::Invalid(e.to_string()))?;
    Ok(tenant)
}

fn check_content_headers(headers: &HeaderMap) -> Result<(), String> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim();
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(format!(
                "{enc:?} encoding (compression) is not accepted by this server; only snappy is acceptable"
            ));
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(format!("expected application/x-protobuf as the first (media) part, got {ct:?} content-type"));
        }
        for p in parts {
            if let Some(proto) = p.strip_prefix("proto=") {
                if proto == "io.prometheus.write.v2.Request" {
                    return Err("remote write 2.0 (proto=io.prometheus.write.v2.Request) is not supported yet; \
                                use remote write 1.0 (prometheus.WriteRequest)"
                        .into());
                }
                if proto != "prometheus.WriteRequest" {
                    return Err(format!(
                        "unknown remote write protobuf message {proto:?}; only prometheus.WriteRequest is accepted"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn observe(st: &AppState, tenant: &str, code: StatusCode, series: u64, samples: u64) {
    let code = code.as_u16().to_string();
    let tenant = st.metrics.tenants.label(tenant);
    let labels = [code.as_str(), tenant.as_str()];
    let m = &st.metrics;
    m.write_timeseries.with_label_values(&labels).observe(series as f64);
    m.write_samples.with_label_values(&labels).observe(samples as f64);
    m.write_requests_total.with_label_values(&labels).inc();
    m.write_timeseries_total.with_label_values(&labels).inc_by(series);
    m.write_samples_total.with_label_values(&labels).inc_by(samples);
}

/// Seconds a client is asked to wait before retrying a write refused while the node is busy,
/// not ready, or failing to write its WAL (every retryable 503).
const RETRY_AFTER_SECONDS: &str = "1";

/// Reads the body, charging each piece to `permit` before keeping it; at most `limit` bytes.
async fn read_body(
    st: &AppState,
    body: Body,
    limit: usize,
    declared: Option<u64>,
    permit: &Permit,
) -> Result<Bytes, WriteStatus> {
    let too_large = |got: usize| Refusal::TooLarge { bound: Bound::DecodedBytes, got: got as u64, limit: limit as u64 };
    let mut body = body;
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |d| d as usize).min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| WriteStatus::new(Outcome::Invalid, format!("read request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            return Err(st.budget.refuse(too_large(buf.len() + data.len())));
        }
        permit.charge(data.len()).map_err(|r| st.budget.refuse(r))?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// The answer to a write that reached the ingest stage (or was refused on its way there):
/// logged once and counted here, its outcome mapped to HTTP by [`status_of`].
fn respond(st: &AppState, tenant: &str, ws: WriteStatus, series: u64, samples: u64) -> Response {
    let code = status_of(ws.outcome);
    let msg = &ws.message;
    match ws.outcome {
        Outcome::Ok => {}
        Outcome::Internal => tracing::error!(tenant = %tenant, err = %msg, "internal server error"),
        Outcome::Unavailable | Outcome::NotReady => {
            tracing::error!(tenant = %tenant, status = code.as_u16(), err = %msg, "failed to handle request")
        }
        _ => tracing::debug!(tenant = %tenant, status = code.as_u16(), err = %msg, "failed to handle request"),
    }
    observe(st, tenant, code, series, samples);
    if ws.is_ok() {
        return Response::new(Body::empty());
    }
    let mut resp = text_error(code, msg);
    if let Some(s) = ws.retry_after_s {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    } else if matches!(ws.outcome, Outcome::Busy | Outcome::NotReady | Outcome::Unavailable) {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    resp
}

/// The handler: Thanos' spans (`/receive HTTP[server]`, continuing the client's trace, and
/// `receive_http` under it) around [`handle`]; a sampled trace's ID is answered in
/// `X-Thanos-Trace-Id`.
pub async fn receive(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let root = Span::server("/receive HTTP[server]", req.headers(), || {
        let mut attrs = vec![
            KeyValue::new("http.method", req.method().to_string()),
            KeyValue::new("http.url", req.uri().to_string()),
        ];
        if let Some(id) = req.headers().get("X-Request-ID").and_then(|v| v.to_str().ok()) {
            attrs.push(KeyValue::new("request_id", id.to_string()));
        }
        attrs
    });
    let span = root.child("receive_http", || vec![KeyValue::new("receiver.mode", st.receiver_mode())]);
    let mut resp = handle(st, req, span).await;
    let code = resp.status();
    root.set(|| KeyValue::new("http.status_code", i64::from(code.as_u16())));
    if code.is_server_error() {
        root.fail(code.canonical_reason().unwrap_or("server error"));
    }
    if let Some(id) = root.sampled_trace_id().and_then(|id| HeaderValue::from_str(&id).ok()) {
        resp.headers_mut().insert(TRACE_ID_HEADER, id);
    }
    resp
}

async fn handle(st: Arc<AppState>, req: Request, span: Span) -> Response {
    if !st.probe.is_ready() {
        // Thanos writes this one without a trailing newline.
        let retry = [(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS))];
        return (StatusCode::SERVICE_UNAVAILABLE, retry, "Service Unavailable").into_response();
    }
    let tenant = match tenant_of(&st, req.headers(), req.extensions()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(err = %e, "error getting tenant from HTTP");
            return text_error(e.status(), &e.to_string());
        }
    };
    span.set(|| KeyValue::new("tenant", tenant.clone()));
    if let Err(e) = check_content_headers(req.headers()) {
        return text_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e);
    }
    let limit = st.budget.limits().max_decoded_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared
        && let Err(r) = st.budget.limits().check_body(n)
    {
        return respond(&st, &tenant, st.budget.refuse(r), 0, 0);
    }
    if req.headers().contains_key(&st.replica_header) {
        // Thanos' legacy HTTP replication, where a write carrying a replica number is stored on
        // this node only: any client could skip replication with it. Peers replicate over gRPC.
        return text_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "replica header {} refused: only peers replicate writes, over gRPC (--grpc-address)",
                st.replica_header
            ),
        );
    }
    // The limits file, as Thanos applies it: the gate, the head series, the declared size.
    let limits = st.limiter.limits();
    let tenant_limits = *limits.of(&tenant);
    let gate = span.child("receive_write_gate_ismyturn", Vec::new);
    let _slot = match st.limiter.enter(st.body_read_timeout).await {
        Ok(slot) => slot,
        Err(ws) => return respond(&st, &tenant, ws, 0, 0),
    };
    drop(gate);
    if let Err(ws) = st.limiter.check_head_series(&tenant_limits, &tenant, || ring_head_series(&st, &tenant)) {
        return respond(&st, &tenant, ws, 0, 0);
    }
    if let Some(n) = declared
        && let Err(ws) = st.limiter.check_size(&tenant_limits, &tenant, n)
    {
        return respond(&st, &tenant, ws, 0, 0);
    }
    let permit = match st.budget.admit() {
        Ok(p) => p,
        Err(r) => return respond(&st, &tenant, st.budget.refuse(r), 0, 0),
    };
    let timeout = st.body_read_timeout;
    let body = match tokio::time::timeout(timeout, read_body(&st, req.into_body(), limit, declared, &permit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(ws)) => return respond(&st, &tenant, ws, 0, 0),
        Err(_) => {
            let msg =
                format!("reading the request body took longer than {timeout:?} (--ringest.http.body-read-timeout)");
            return text_error(StatusCode::REQUEST_TIMEOUT, &msg);
        }
    };
    let (st2, tenant2) = (st.clone(), tenant.clone());
    // Sized by its decompressed length; a body whose length cannot be read fails in `process`.
    let size = decompressed_len(&body).unwrap_or(0) as u64;
    let result = st
        .lanes
        .run(size, move || (process(&st2, &tenant2, &tenant_limits, &body, &permit, &span), permit, span))
        .await;
    // `_span` lasts until the replicas answered.
    let (processed, _permit, _span) = match result {
        Ok(done) => done,
        Err(e) => return respond(&st, &tenant, e.into(), 0, 0),
    };
    // `_permit` is held until the answer is sent, replication included.
    let processed_dropped = processed.as_ref().ok().and_then(|(_, d)| d.clone());
    let (ws, series, samples) = match processed {
        Ok((Processed::Done(report), _)) => (report.status(), report.series, report.samples),
        Ok((Processed::Replicating { pending, series, samples }, _)) => (pending.wait().await, series, samples),
        Err(ws) => (ws, 0, 0),
    };
    // Series dropped for the label limits: told once the others are written.
    let ws = match &processed_dropped {
        Some(d) if d.outcome.worst(ws.outcome) == d.outcome => d.clone(),
        _ => ws,
    };
    respond(&st, &tenant, ws, series, samples)
}

/// `head_series_limit`'s count of `tenant`'s head series across the ring, from this node's own
/// head (`crate::limits::ring_estimate`): the node's count times the nodes of the tenant's ring;
/// alone (no hashring), its own count.
fn ring_head_series(st: &AppState, tenant: &str) -> Option<u64> {
    let (nodes, in_ring) = tenant_ring(st, tenant)?;
    ring_estimate(st.tenants.get(tenant).map(|db| db.num_series()), nodes, in_ring)
}

/// The number of nodes in `tenant`'s ring (1 without a hashring), over which
/// `ingestion_rate` is divided.
fn ring_nodes(st: &AppState, tenant: &str) -> usize {
    tenant_ring(st, tenant).map_or(1, |(n, _)| n)
}

/// The size of `tenant`'s ring and whether this node is in it (`(1, true)` without a
/// hashring; `None` when the tenant has no ring).
fn tenant_ring(st: &AppState, tenant: &str) -> Option<(usize, bool)> {
    let Some(r) = &st.replicator else { return Some((1, true)) };
    let state = r.state();
    let ring = state.ring.for_tenant(tenant).ok()?;
    let me = r.options().local_endpoint.as_deref();
    let in_ring = me.is_some_and(|me| ring.endpoints().iter().any(|e| e.address == me || e.capnproto_address == me));
    Some((ring.endpoints().len(), in_ring))
}

/// Decoding buffers, reused across requests.
#[derive(Default)]
struct Buffers {
    decompressed: Vec<u8>,
    decoded: Decoded,
}

/// A few buffer sets are kept for reuse, none larger than [`KEEP_BYTES`].
static BUFFERS: Pool<Buffers> = Pool::new(8);

/// Decompresses, decodes and writes one request (runs on a blocking thread).
fn process(
    st: &AppState,
    tenant: &str,
    limits: &TenantLimits,
    body: &[u8],
    permit: &Permit,
    span: &Span,
) -> Result<(Processed, Option<WriteStatus>), WriteStatus> {
    let mut b = BUFFERS.take();
    let res = process_with(st, tenant, limits, body, permit, &mut b, span);
    let heap = b.decompressed.capacity() + b.decoded.heap_bytes();
    BUFFERS.give(b, heap <= KEEP_BYTES);
    res
}

fn process_with(
    st: &AppState,
    tenant: &str,
    tenant_limits: &TenantLimits,
    body: &[u8],
    permit: &Permit,
    b: &mut Buffers,
    span: &Span,
) -> Result<(Processed, Option<WriteStatus>), WriteStatus> {
    let limits = st.budget.limits();
    let refuse = |r: Refusal| st.budget.refuse(r);
    let bad = |e: &dyn std::fmt::Display| WriteStatus::new(Outcome::Invalid, e.to_string());
    let snappy = |e: SnappyError| {
        tracing::error!(err = %e, "snappy decode error");
        bad(&e)
    };
    let declared = decompressed_len(body).map_err(snappy)?;
    // Without a Content-Length, the body's size is known only now.
    st.limiter.check_size(tenant_limits, tenant, body.len() as u64)?;
    st.limiter.check_size(tenant_limits, tenant, declared as u64)?;
    permit.charge_body(declared).map_err(refuse)?;
    decompress(body, &mut b.decompressed).map_err(snappy)?;
    let buf = &b.decompressed[..];
    let (charge, shape) = limits.charge_decoded_form(permit, buf, false).map_err(|e| match e {
        PlanError::Refused(r) => refuse(r),
        PlanError::Decode(e) => bad(&e),
    })?;
    if let Some(shape) = &shape {
        reserve(&mut b.decoded, shape);
    }
    decode_write_request(buf, &mut b.decoded).map_err(|e| bad(&e))?;
    charge.settle(limits, permit, &b.decoded.shape()).map_err(refuse)?;
    if b.decoded.series.is_empty() {
        tracing::debug!(metadata = b.decoded.metadata, "empty remote write request or metadata only; skipping");
        return Ok((Processed::Done(WriteReport::default()), None));
    }
    let shape = b.decoded.shape();
    st.limiter.check_counts(tenant_limits, tenant, shape.series, shape.samples)?;
    st.limiter.check_rate(tenant_limits, tenant, shape.samples, ring_nodes(st, tenant))?;
    let dropped = st.limiter.drop_over_label_limits(tenant_limits, tenant, buf, &mut b.decoded);
    if let Some(d) = dropped.as_ref().filter(|_| b.decoded.series.is_empty()) {
        return Err(d.clone());
    }
    // A client's write is always fresh: replica 0, replicated over the hashring.
    let processed =
        write_tenant(st, tenant, 0, buf, &b.decoded, span).map_err(|e| WriteStatus::new(e.outcome(), e.to_string()))?;
    Ok((processed, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_headers() {
        let mut h = HeaderMap::new();
        assert!(check_content_headers(&h).is_ok());
        h.insert(header::CONTENT_ENCODING, "snappy".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
        assert!(check_content_headers(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "application/x-protobuf;proto=prometheus.WriteRequest".parse().unwrap());
        assert!(check_content_headers(&h).is_ok());
        h.insert(header::CONTENT_TYPE, "application/x-protobuf;proto=io.prometheus.write.v2.Request".parse().unwrap());
        assert!(check_content_headers(&h).unwrap_err().contains("2.0"));
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(check_content_headers(&h).is_err());
        h.insert(header::CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(check_content_headers(&h).unwrap_err().contains("gzip"));
    }
}
