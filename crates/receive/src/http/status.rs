//! `GET /api/v1/status/tsdb`: head cardinality statistics of the caller's tenant.
//!
//! On the remote-write port in Thanos' shape (`data` is an array of one entry); on the ops port
//! in Prometheus' shape (`data` is one object), as the operations guide reads it; the tenant is
//! the tenant header's or the default tenant. Unlike Thanos, the remote-write port does not
//! answer `all_tenants=true` (any client could read every tenant's series) and neither sends
//! CORS headers (a page on any origin could read them); the statistics are computed at most
//! every few seconds per tenant (see [`crate::cardinality`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use ringest_tsdb::Tsdb;
use ringest_tsdb::db::Stat;
use serde_json::{Value, json};

use crate::cardinality::MAX_LIMIT;
use crate::state::AppState;

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status != StatusCode::OK {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn api_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    json_response(status, json!({"status": "error", "errorType": kind, "error": msg}))
}

fn stats(list: &[Stat], limit: usize) -> Value {
    Value::Array(list.iter().take(limit).map(|s| json!({"name": s.name, "value": s.value})).collect())
}

/// The statistics of `tenant` (whose TSDB is `db`, if it has one) with `limit` entries per list.
fn tenant_status(st: &AppState, tenant: &str, db: Option<&Tsdb>, limit: usize) -> Value {
    let (head, card) = match db {
        Some(db) => (db.head_stats(), st.cardinality.get(tenant, db)),
        None => (
            ringest_tsdb::db::HeadStats { num_series: 0, chunk_count: 0, min_time: i64::MAX, max_time: i64::MIN },
            Default::default(),
        ),
    };
    json!({
        "headStats": {
            "numSeries": head.num_series,
            "numLabelPairs": card.num_label_pairs,
            "chunkCount": head.chunk_count,
            "minTime": head.min_time,
            "maxTime": head.max_time,
        },
        "seriesCountByMetricName": stats(&card.series_count_by_metric_name, limit),
        "labelValueCountByLabelName": stats(&card.label_value_count_by_label_name, limit),
        "memoryInBytesByLabelName": stats(&card.memory_in_bytes_by_label_name, limit),
        "seriesCountByLabelValuePair": stats(&card.series_count_by_label_value_pair, limit),
        "tenant": tenant,
    })
}

/// The API error for a caller without a tenant.
fn no_tenant(e: &super::receive::TenantRefused) -> Response {
    let kind = if e.status() == StatusCode::FORBIDDEN { "forbidden" } else { "bad_data" };
    api_error(e.status(), kind, &e.to_string())
}

/// Thanos' handler on the remote-write port, for the caller's tenant only (the one its writes
/// would go to: from its client certificate with `--receive.tenant-certificate-field`).
pub async fn thanos_status(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    parts: http::request::Parts,
) -> Response {
    if !st.probe.is_ready() {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "service unavailable");
    }
    if q.get("all_tenants").is_some_and(|v| v == "true") {
        let msg = format!(
            "all_tenants is not served: every client of this port would read every tenant's series; \
             ask for one tenant with the {} header",
            st.tenant_header
        );
        return api_error(StatusCode::FORBIDDEN, "forbidden", &msg);
    }
    let limit = match q.get("limit") {
        None => 10,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => (n.max(0) as usize).min(MAX_LIMIT),
            Err(e) => {
                let msg = format!("unable to parse 'limit' parameter: strconv.ParseInt: parsing {s:?}: {e}");
                return api_error(StatusCode::BAD_REQUEST, "bad_data", &msg);
            }
        },
    };
    // The caller's tenant, as its writes would name it.
    let tenant = match super::receive::tenant_of(&st, &parts.headers, &parts.extensions) {
        Ok(t) => t,
        Err(e) => return no_tenant(&e),
    };
    let st2 = st.clone();
    let data = tokio::task::spawn_blocking(move || match st2.tenants.get(&tenant) {
        Some(db) => vec![tenant_status(&st2, &tenant, Some(&db), limit)],
        None => Vec::new(),
    })
    .await
    .unwrap_or_default();
    json_response(StatusCode::OK, json!({"status": "success", "data": data}))
}

/// Prometheus' handler shape on the ops port.
pub async fn prometheus_status(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    parts: http::request::Parts,
) -> Response {
    if !st.probe.is_ready() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "service unavailable");
    }
    let limit = match q.get("limit").map(|s| s.parse::<i64>()) {
        None => 10,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n as usize,
        Some(Ok(n)) if n > 10_000 => {
            return api_error(StatusCode::BAD_REQUEST, "bad_data", "limit must not exceed 10000");
        }
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "bad_data", "limit must be a positive number"),
    };
    // The caller's tenant, as its writes would name it.
    let tenant = match super::receive::tenant_of(&st, &parts.headers, &parts.extensions) {
        Ok(t) => t,
        Err(e) => return no_tenant(&e),
    };
    let st2 = st.clone();
    let data = tokio::task::spawn_blocking(move || {
        let db = st2.tenants.get(&tenant);
        tenant_status(&st2, &tenant, db.as_deref(), limit)
    })
    .await
    .unwrap_or(Value::Null);
    json_response(StatusCode::OK, json!({"status": "success", "data": data}))
}
