//! `POST /api/v1/receive`: remote write 1.0 and 2.0 into the tenant's TSDB.
//!
//! Order of checks: readiness (503), tenant (400), Content-Encoding / Content-Type (415; a
//! 2.0 version header without the 2.0 content type: 400),
//! Content-Length over the limit (413), a replica header (400: only peers replicate, over gRPC),
//! admission to the in-flight budget ([`crate::admission`]: 503 with `Retry-After` when busy),
//! the body read within its timeout (408), capped at the limit (413, also for chunked bodies)
//! and charged for the memory it makes resident ([`super::body`]); then on a blocking thread:
//! the snappy declared length (413) is charged, the body decompressed (400), a 2.0 request translated into 1.0
//! ([`crate::remote_write::v2`]: its symbols and 1.0 size charged, 413 past the decoded
//! bound, series that 2.0 refuses left out and answered 400 once the others are written),
//! counted and bounded (413 naming the bound), its decoded form charged, decoded (400), then
//! [`crate::ingest`]: append + WAL (see
//! [`crate::writer`] for the status policy), or replication over the hashring.
//! A 200 (204 for 2.0, with the `X-Prometheus-Remote-Write-*-Written` counts) is sent only
//! after the WAL write holding the request's samples returned.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use ringest_trace::{KeyValue, Span, TRACE_ID_HEADER};

use super::body::{BodyBuf, BufError};
use super::serve::CONNECTION_COST;
use super::{status_of, text_error};
use crate::admission::{Bound, Permit, PlanError, Refusal, WriteLimits};
use crate::ingest::{Processed, write_tenant};
use crate::limits::{TenantLimits, ring_estimate};
use crate::outcome::{Outcome, WriteStatus};
use crate::pool::{KEEP_BYTES, Pool};
use crate::remote_write::block::decompress_while;
use crate::remote_write::v2::{self, Translation, V2Error};
use crate::remote_write::{
    Decoded, SeriesPrefix, SnappyError, decode_write_request, decompress, decompressed_len, reserve,
};
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

/// The protobuf message a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// `prometheus.WriteRequest` (remote write 1.0).
    V1,
    /// `io.prometheus.write.v2.Request` (remote write 2.0).
    V2,
}

const V2_MESSAGE: &str = "io.prometheus.write.v2.Request";

/// The message the headers announce, or why they are refused: the status (415 for an
/// encoding or content type this server does not take) and the message.
fn check_content_headers(headers: &HeaderMap) -> Result<Proto, (StatusCode, String)> {
    let unsupported = |m: String| (StatusCode::UNSUPPORTED_MEDIA_TYPE, m);
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim();
        if !enc.eq_ignore_ascii_case("snappy") {
            return Err(unsupported(format!(
                "{enc:?} encoding (compression) is not accepted by this server; only snappy is acceptable"
            )));
        }
    }
    let mut proto = Proto::V1;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(unsupported(format!(
                "expected application/x-protobuf as the first (media) part, got {ct:?} content-type"
            )));
        }
        for p in parts {
            if let Some(message) = p.strip_prefix("proto=") {
                proto = match message {
                    "prometheus.WriteRequest" => Proto::V1,
                    V2_MESSAGE => Proto::V2,
                    _ => {
                        return Err(unsupported(format!(
                            "unknown remote write protobuf message {message:?}; \
                             prometheus.WriteRequest and {V2_MESSAGE} are accepted"
                        )));
                    }
                };
            }
        }
    }
    let version = headers.get("X-Prometheus-Remote-Write-Version").and_then(|v| v.to_str().ok()).unwrap_or("");
    if version.starts_with("2.") && proto == Proto::V1 {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "X-Prometheus-Remote-Write-Version is {version:?} but the Content-Type does not name {V2_MESSAGE}: \
                 send application/x-protobuf;proto={V2_MESSAGE}"
            ),
        ));
    }
    Ok(proto)
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
    let mut buf = BodyBuf::new(declared, limit, permit).map_err(|e| match e {
        BufError::Refused(r) => st.budget.refuse(r),
        BufError::Map(e) => WriteStatus::new(Outcome::Internal, e.to_string()),
    })?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| WriteStatus::new(Outcome::Invalid, format!("read request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        let need = buf.len() + data.len();
        if need > limit {
            return Err(st.budget.refuse(too_large(need)));
        }
        buf.push(&data, permit).map_err(|r| st.budget.refuse(r))?;
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
    let proto = match check_content_headers(req.headers()) {
        Ok(p) => p,
        Err((code, e)) => return text_error(code, &e),
    };
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
    // What its connection holds while the body arrives (read buffers).
    if let Err(r) = permit.charge(CONNECTION_COST) {
        return respond(&st, &tenant, st.budget.refuse(r), 0, 0);
    }
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
    // A small write may run on this worker if nothing it does can wait long (see `lane`).
    let quick = || st.tenants.get(&tenant).is_some_and(|db| !db.maintaining());
    let result = st
        .lanes
        .run(size, quick, move || {
            let processed = process(&st2, &tenant2, &tenant_limits, proto, &body, &permit, &span);
            drop(body);
            (processed, permit, span)
        })
        .await;
    // `_span` lasts until the replicas answered.
    let (processed, _permit, _span) = match result {
        Ok(done) => done,
        Err(e) => return respond(&st, &tenant, e.into(), 0, 0),
    };
    // `_permit` is held until the answer is sent, replication included.
    let (done, set_aside, translation) = match processed {
        Ok(Done { processed, set_aside, v2 }) => (Ok(processed), set_aside, v2),
        Err(ws) => (Err(ws), None, None),
    };
    let (ws, series, samples) = match done {
        Ok(Processed::Done(report)) => (report.status(), report.series, report.samples),
        Ok(Processed::Replicating { pending, series, samples }) => (pending.wait().await, series, samples),
        Err(ws) => (ws, 0, 0),
    };
    // 2.0's counts: what the write stored, all of it or nothing as far as this node knows.
    let written = translation.filter(|_| ws.is_ok()).map_or(0, |t| t.samples);
    // Series set aside (label limits, 2.0's checks): told once the others are written.
    let ws = match set_aside {
        Some(d) if d.outcome.worst(ws.outcome) == d.outcome => d,
        _ => ws,
    };
    let mut resp = respond(&st, &tenant, ws, series, samples);
    if proto == Proto::V2 {
        answer_v2(&mut resp, written);
    }
    resp
}

/// A 2.0 answer: 204 on success, and the written counts (ringest stores float samples only:
/// native histograms are refused and exemplars are not kept, as Thanos drops them by default).
fn answer_v2(resp: &mut Response, samples_written: u64) {
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    let h = resp.headers_mut();
    h.insert("X-Prometheus-Remote-Write-Samples-Written", HeaderValue::from(samples_written));
    h.insert("X-Prometheus-Remote-Write-Histograms-Written", HeaderValue::from_static("0"));
    h.insert("X-Prometheus-Remote-Write-Exemplars-Written", HeaderValue::from_static("0"));
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
    /// A 2.0 request translated into 1.0.
    translated: Vec<u8>,
    v2: v2::Scratch,
    decoded: Decoded,
}

/// What [`process`] made of a request.
struct Done {
    processed: Processed,
    /// Series set aside before the write (over the label limits, or refused by 2.0's checks):
    /// answered once the others are written.
    set_aside: Option<WriteStatus>,
    /// A 2.0 request's translation.
    v2: Option<Translation>,
}

/// A few buffer sets are kept for reuse, none larger than [`KEEP_BYTES`].
static BUFFERS: Pool<Buffers> = Pool::new(8);

/// Decompresses, decodes and writes one request (runs on a blocking thread).
fn process(
    st: &AppState,
    tenant: &str,
    limits: &TenantLimits,
    proto: Proto,
    body: &[u8],
    permit: &Permit,
    span: &Span,
) -> Result<Done, WriteStatus> {
    let mut b = BUFFERS.take();
    let res = process_with(st, tenant, limits, proto, body, permit, &mut b, span);
    let heap = b.decompressed.capacity() + b.translated.capacity() + b.v2.heap_bytes() + b.decoded.heap_bytes();
    BUFFERS.give(b, heap <= KEEP_BYTES);
    res
}

#[allow(clippy::too_many_arguments)]
fn process_with(
    st: &AppState,
    tenant: &str,
    tenant_limits: &TenantLimits,
    proto: Proto,
    body: &[u8],
    permit: &Permit,
    b: &mut Buffers,
    span: &Span,
) -> Result<Done, WriteStatus> {
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
    if declared as u64 > limits.bulk_bytes {
        // A large request (1.0 or 2.0) with more series than allowed is refused as soon as
        // the decompressed prefix shows them: a decode bomb of 16M empty series shows 200,000
        // of them in its first 400 KiB of 32 MiB.
        let mut prefix = if proto == Proto::V2 { SeriesPrefix::v2() } else { SeriesPrefix::default() };
        let whole = decompress_while(body, &mut b.decompressed, |p| {
            prefix.advance(p);
            prefix.series <= limits.max_series
        })
        .map_err(snappy)?;
        if !whole {
            return Err(refuse(Refusal::TooLarge {
                bound: Bound::Series,
                got: prefix.series,
                limit: limits.max_series,
            }));
        }
    } else {
        decompress(body, &mut b.decompressed).map_err(snappy)?;
    }
    let (buf, v2, refused) = match proto {
        Proto::V1 => (&b.decompressed[..], None, None),
        Proto::V2 => {
            let t =
                translate_v2(limits, permit, &b.decompressed, &mut b.v2, &mut b.translated).map_err(|e| match e {
                    TranslateError::Refused(r) => refuse(r),
                    TranslateError::Decode(e) => bad(&e),
                })?;
            let refused = v2_refusals(&t);
            (&b.translated[..], Some(t), refused)
        }
    };
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
        return Ok(Done { processed: Processed::Done(WriteReport::default()), set_aside: refused, v2 });
    }
    let shape = b.decoded.shape();
    st.limiter.check_counts(tenant_limits, tenant, shape.series, shape.samples)?;
    st.limiter.check_rate(tenant_limits, tenant, shape.samples, ring_nodes(st, tenant))?;
    let dropped = st.limiter.drop_over_label_limits(tenant_limits, tenant, buf, &mut b.decoded);
    let set_aside = match (dropped, refused) {
        (Some(d), Some(r)) => {
            Some(WriteStatus::new(d.outcome.worst(r.outcome), format!("{}; {}", r.message, d.message)))
        }
        (d, r) => d.or(r),
    };
    if let Some(d) = set_aside.as_ref().filter(|_| b.decoded.series.is_empty()) {
        return Err(d.clone());
    }
    // A client's write is always fresh: replica 0, replicated over the hashring.
    let processed =
        write_tenant(st, tenant, 0, buf, &b.decoded, span).map_err(|e| WriteStatus::new(e.outcome(), e.to_string()))?;
    Ok(Done { processed, set_aside, v2 })
}

/// Why a 2.0 request could not be translated.
enum TranslateError {
    Refused(Refusal),
    Decode(crate::remote_write::DecodeError),
}

/// Translates the 2.0 request `buf` into 1.0 in `out`, its symbols table and a bound of its
/// 1.0 form charged to `permit` (the bound under `--ringest.write.max-decoded-bytes`) before
/// they are built.
fn translate_v2(
    limits: &WriteLimits,
    permit: &Permit,
    buf: &[u8],
    sc: &mut v2::Scratch,
    out: &mut Vec<u8>,
) -> Result<Translation, TranslateError> {
    let limit = limits.max_decoded_bytes;
    let v2_error = |e: V2Error| match e {
        V2Error::Decode(e) => TranslateError::Decode(e),
        V2Error::TooLarge { got, limit } => TranslateError::Refused(Refusal::TooLarge {
            bound: Bound::TranslatedBytes,
            got: got as u64,
            limit: limit as u64,
        }),
    };
    let symbols = v2::count_symbols(buf).map_err(TranslateError::Decode)?;
    permit.charge(symbols.saturating_mul(8)).map_err(TranslateError::Refused)?;
    let bound = v2::measure(buf, sc, limit).map_err(v2_error)?;
    permit.charge(bound).map_err(TranslateError::Refused)?;
    out.reserve(bound);
    v2::translate(buf, sc, limit, out).map_err(v2_error)
}

/// The 400 for the series (and exemplars) a 2.0 request's checks left out.
fn v2_refusals(t: &Translation) -> Option<WriteStatus> {
    if t.refused.is_empty() {
        return None;
    }
    let mut reasons: Vec<String> = t
        .refused
        .iter()
        .map(|r| {
            format!(
                "{} {}: {} (first: {})",
                r.count,
                if r.reason == v2::Reason::Exemplar { "exemplars" } else { "series" },
                r.reason.text(),
                r.first
            )
        })
        .collect();
    reasons.sort();
    Some(WriteStatus::new(Outcome::Invalid, crate::writer::join_reasons(&reasons)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(check_content_headers(&h), Ok(Proto::V1));
        h.insert(header::CONTENT_ENCODING, "snappy".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
        assert_eq!(check_content_headers(&h), Ok(Proto::V1));
        h.insert(header::CONTENT_TYPE, "application/x-protobuf;proto=prometheus.WriteRequest".parse().unwrap());
        assert_eq!(check_content_headers(&h), Ok(Proto::V1));
        h.insert("X-Prometheus-Remote-Write-Version", "2.0.0".parse().unwrap());
        let (code, msg) = check_content_headers(&h).unwrap_err();
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(msg.contains("2.0.0"), "{msg}");
        h.insert(header::CONTENT_TYPE, "application/x-protobuf;proto=io.prometheus.write.v2.Request".parse().unwrap());
        assert_eq!(check_content_headers(&h), Ok(Proto::V2));
        h.insert(header::CONTENT_TYPE, "application/x-protobuf;proto=foo.Bar".parse().unwrap());
        assert_eq!(check_content_headers(&h).unwrap_err().0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(check_content_headers(&h).unwrap_err().0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        h.insert(header::CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        let (code, msg) = check_content_headers(&h).unwrap_err();
        assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(msg.contains("gzip"), "{msg}");
    }
}
