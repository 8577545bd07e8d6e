//! Probes and metrics on the ops port.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::text_error;
use crate::state::AppState;

fn probe_response(ok: bool) -> Response {
    if ok {
        let mut r = (StatusCode::OK, "OK").into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        r
    } else {
        text_error(StatusCode::SERVICE_UNAVAILABLE, "NOT OK")
    }
}

/// `/-/healthy`: 200 `OK` once the servers run.
pub async fn healthy(State(st): State<Arc<AppState>>) -> Response {
    probe_response(st.probe.is_healthy())
}

/// `/-/ready`: 200 `OK` once every tenant's WAL is replayed; 503 during start-up and shutdown.
pub async fn ready(State(st): State<Arc<AppState>>) -> Response {
    probe_response(st.probe.is_ready())
}

/// `/metrics` in the Prometheus text format.
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let body = tokio::task::spawn_blocking(move || st.metrics.render()).await.unwrap_or_default();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// `/api/v1/receive/hashrings` (the operations guide's hashring API): the loaded rings as
/// `{"status": "success", "data": [{"name", "tenants", "endpoints", ...}]}`; an empty list
/// without a hashring.
pub async fn hashrings(State(st): State<Arc<AppState>>) -> Response {
    let rings = match &st.replicator {
        Some(r) => r.state().ring.to_json(),
        None => serde_json::json!([]),
    };
    let data: Vec<serde_json::Value> = rings
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|ring| {
            let endpoints: Vec<&serde_json::Value> =
                ring["endpoints"].as_array().map(|e| e.iter().map(|ep| &ep["address"]).collect()).unwrap_or_default();
            serde_json::json!({
                "name": ring["hashring"],
                "tenants": ring["tenants"],
                "tenant_matcher_type": ring["tenant_matcher_type"],
                "endpoints": endpoints,
                "algorithm": ring["algorithm"],
                "external_labels": ring["external_labels"],
            })
        })
        .collect();
    let body = serde_json::json!({ "status": "success", "data": data });
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
