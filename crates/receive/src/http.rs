//! The two HTTP servers: the remote-write port (`POST /api/v1/receive`, `GET
//! /api/v1/status/tsdb`, as Thanos serves them) and the ops port (`/-/healthy`, `/-/ready`,
//! `/metrics`, `/api/v1/status/tsdb` in Prometheus' shape, as the operations guide calls it,
//! and `/debug/pprof/`).

pub mod body;
pub mod instrument;
pub mod ops;
pub mod pprof;
pub mod receive;
pub mod serve;
pub mod status;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::{HeaderValue, StatusCode, header};

use crate::outcome::Outcome;
use crate::state::AppState;

/// The HTTP status of a write's [`Outcome`]: the one mapping of outcomes to HTTP (Thanos'
/// codes, plus 413 and 429 for ringest's bounds and limits).
pub fn status_of(outcome: Outcome) -> StatusCode {
    match outcome {
        Outcome::Ok => StatusCode::OK,
        Outcome::Conflict => StatusCode::CONFLICT,
        Outcome::Invalid => StatusCode::BAD_REQUEST,
        Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Outcome::Limited => StatusCode::TOO_MANY_REQUESTS,
        Outcome::Busy | Outcome::NotReady | Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A plain-text error response the way Go's `http.Error` writes it (message + newline).
pub fn text_error(status: StatusCode, msg: &str) -> Response {
    let mut r = (status, format!("{msg}\n")).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

async fn not_found() -> Response {
    text_error(StatusCode::NOT_FOUND, "404 page not found")
}

async fn method_not_allowed_post() -> Response {
    let mut r = text_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use POST");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn method_not_allowed_get() -> Response {
    let mut r = text_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

/// Routes of the remote-write port.
pub fn remote_write_router(st: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/api/v1/receive",
            post(receive::receive)
                .fallback(method_not_allowed_post)
                .layer(axum::middleware::from_fn_with_state((st.clone(), "receive"), instrument::instrument)),
        )
        .route(
            "/api/v1/status/tsdb",
            get(status::thanos_status)
                .fallback(method_not_allowed_get)
                .layer(axum::middleware::from_fn_with_state((st.clone(), "tsdb_status"), instrument::instrument)),
        )
        .fallback(not_found)
        .with_state(st)
}

/// Routes of the ops port.
pub fn ops_router(st: Arc<AppState>) -> Router {
    Router::new()
        .route("/-/healthy", any(ops::healthy))
        .route("/-/ready", any(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/status/tsdb", get(status::prometheus_status).fallback(method_not_allowed_get))
        .route("/api/v1/receive/hashrings", get(ops::hashrings).fallback(method_not_allowed_get))
        .route("/debug/pprof/", get(pprof::index))
        .route("/debug/pprof/profile", get(pprof::profile))
        .route("/debug/pprof/cmdline", get(pprof::cmdline))
        .route("/debug/pprof/{name}", get(pprof::other))
        .fallback(not_found)
        .with_state(st)
}
