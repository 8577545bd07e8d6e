//! `http_*` metrics of the remote-write port, labelled like Thanos' tenant-aware
//! instrumentation (`code`, `handler`, `method`, `tenant`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;

use crate::metrics::method_label;
use crate::state::AppState;

/// The tenant label of a request: its tenant (`super::receive::tenant_of`); names that would
/// be refused are counted as `invalid`, and past the cap of distinct tenants as `other`
/// (`crate::metrics::TenantLabels`), so a client cannot blow up label cardinality.
fn tenant_label(st: &AppState, req: &Request) -> String {
    match super::receive::tenant_of(st, req.headers(), req.extensions()) {
        Ok(t) => st.metrics.tenants.label(&t),
        Err(_) => "invalid".to_string(),
    }
}

/// promhttp's approximate request size.
fn request_size(req: &Request) -> f64 {
    let mut n = req.uri().to_string().len() + req.method().as_str().len() + "HTTP/1.1".len();
    for (k, v) in req.headers() {
        n += k.as_str().len() + v.len();
    }
    let cl = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    (n + cl.unwrap_or(0)) as f64
}

/// Middleware recording `http_requests_total`, `http_request_duration_seconds`,
/// `http_request_size_bytes`, `http_response_size_bytes` and `http_inflight_requests`.
pub async fn instrument(
    State((st, handler)): State<(Arc<AppState>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let tenant = tenant_label(&st, &req);
    // Any token is a method: a non-standard one is labelled `other`.
    let method_raw = method_label(req.method());
    let method = method_raw.to_ascii_lowercase();
    let size = request_size(&req);
    let h = &st.metrics.http;
    let inflight = h.inflight.with_label_values(&[handler, method_raw, &tenant]);
    inflight.inc();
    let start = Instant::now();
    let resp = next.run(req).await;
    inflight.dec();
    let code = resp.status().as_u16().to_string();
    let labels = [code.as_str(), handler, method.as_str(), tenant.as_str()];
    h.requests.with_label_values(&labels).inc();
    h.duration_receive.with_label_values(&labels).observe(start.elapsed().as_secs_f64());
    h.request_size.with_label_values(&labels).observe(size);
    let body_len = resp.body().size_hint().exact().unwrap_or(0);
    h.response_size.with_label_values(&labels).observe(body_len as f64);
    resp
}
