//! `POST /api/v1/receive`: remote write 1.0 into the tenant's TSDB.
//!
//! Order of checks: readiness (503), tenant (400), Content-Encoding / Content-Type (415),
//! Content-Length over the limit (413), a replica header (400: only peers replicate, over gRPC),
//! body read capped at the limit
//! (413, also for chunked bodies), then on a blocking thread: snappy declared length (413) and
//! decoding (400), protobuf (400), then [`crate::ingest`]: append + WAL (see [`crate::writer`]
//! for the status policy), or replication over the hashring.
//! A 200 is sent only after the WAL write holding the request's samples returned.

use std::cell::RefCell;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::text_error;
use crate::ingest::{Processed, write_tenant};
use crate::remote_write::{Decoded, SnappyError, decode_write_request, decompress};
use crate::state::AppState;
use crate::tenancy::validate_tenant;
use crate::writer::WriteReport;

/// Per-thread buffers reused across requests.
#[derive(Default)]
struct Buffers {
    decompressed: Vec<u8>,
    decoded: Decoded,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Buffers bigger than this are released after a request instead of being kept per thread.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

/// The tenant of a request: the configured header, then `THANOS-TENANT`, then the default.
pub fn tenant_of(st: &AppState, headers: &HeaderMap) -> Result<String, String> {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().map(str::to_string));
    let v = match get(st.tenant_header.as_str()) {
        Some(v) => Some(v),
        None => get("THANOS-TENANT"),
    };
    let tenant = match v {
        Some(Ok(t)) if !t.is_empty() => t,
        Some(Err(_)) => return Err("tenant name not valid: the tenant header is not visible ASCII".into()),
        _ => st.default_tenant.clone(),
    };
    validate_tenant(&tenant).map_err(|e| e.to_string())?;
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

/// The handler.
pub async fn receive(State(st): State<Arc<AppState>>, req: Request) -> Response {
    if !st.probe.is_ready() {
        // Thanos writes this one without a trailing newline.
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let tenant = match tenant_of(&st, req.headers()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(err = %e, "error getting tenant from HTTP");
            return text_error(StatusCode::BAD_REQUEST, &e);
        }
    };
    if let Err(e) = check_content_headers(req.headers()) {
        return text_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e);
    }
    let limit = st.size_limit;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return text_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "write request too large: body of {} bytes exceeds the limit of {limit} bytes",
                declared.unwrap_or(0)
            ),
        );
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
    let body: Bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return text_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("write request too large: body exceeds the limit of {limit} bytes"),
            );
        }
        Err(e) => return text_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("read compressed request body: {e}")),
    };
    let st2 = st.clone();
    let tenant2 = tenant.clone();
    let result = tokio::task::spawn_blocking(move || process(&st2, &tenant2, &body)).await;
    let (status, msg, series, samples) = match result {
        Ok(Ok(Processed::Done(report))) => {
            let (status, msg) = report.response();
            (status, msg, report.series, report.samples)
        }
        Ok(Ok(Processed::Replicating { pending, series, samples })) => {
            let v = pending.wait().await;
            (v.status, v.message, series, samples)
        }
        Ok(Err((status, msg))) => (status, msg, 0, 0),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {e}"), 0, 0),
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(tenant = %tenant, err = %msg, "internal server error");
    } else if status.is_server_error() {
        tracing::error!(tenant = %tenant, status = status.as_u16(), err = %msg, "failed to handle request");
    } else if status != StatusCode::OK {
        tracing::debug!(tenant = %tenant, status = status.as_u16(), err = %msg, "failed to handle request");
    }
    observe(&st, &tenant, status, series, samples);
    if status == StatusCode::OK { Response::new(Body::empty()) } else { text_error(status, &msg) }
}

/// Decompresses, decodes and writes one request (runs on a blocking thread).
fn process(st: &AppState, tenant: &str, body: &[u8]) -> Result<Processed, (StatusCode, String)> {
    BUFFERS.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Buffers { decompressed, decoded } = &mut *guard;
        let res = process_with(st, tenant, body, decompressed, decoded);
        if decompressed.capacity() > KEEP_BUFFER_BYTES {
            *decompressed = Vec::new();
            *decoded = Decoded::default();
        }
        res
    })
}

fn process_with(
    st: &AppState,
    tenant: &str,
    body: &[u8],
    decompressed: &mut Vec<u8>,
    decoded: &mut Decoded,
) -> Result<Processed, (StatusCode, String)> {
    decompress(body, decompressed, st.size_limit).map_err(|e| match e {
        SnappyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        SnappyError::Corrupt(_) => {
            tracing::error!(err = %e, "snappy decode error");
            (StatusCode::BAD_REQUEST, e.to_string())
        }
    })?;
    decode_write_request(decompressed, decoded).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    if decoded.series.is_empty() {
        tracing::debug!(metadata = decoded.metadata, "empty remote write request or metadata only; skipping");
        return Ok(Processed::Done(WriteReport::default()));
    }
    // A client's write is always fresh: replica 0, replicated over the hashring.
    write_tenant(st, tenant, 0, decompressed, decoded).map_err(|e| (e.status(), e.to_string()))
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
