//! `GET /api/v1/status/tsdb`: head cardinality statistics of this node's tenants.
//!
//! On the remote-write port in Thanos' shape (`data` is an array with one entry per tenant;
//! `all_tenants=true` for all of them); on the ops port in Prometheus' shape (`data` is one
//! object, for the tenant of the tenant header or the default tenant), as the operations guide
//! reads it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use ringest_tsdb::Tsdb;
use ringest_tsdb::db::Stat;
use serde_json::{Value, json};

use crate::state::AppState;

fn json_response(status: StatusCode, body: Value, cors: bool) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if cors {
        h.insert(
            "Access-Control-Allow-Headers",
            HeaderValue::from_static("Accept, Accept-Encoding, Authorization, Content-Type, Origin"),
        );
        h.insert("Access-Control-Allow-Methods", HeaderValue::from_static("GET, POST, OPTIONS"));
        h.insert("Access-Control-Allow-Origin", HeaderValue::from_static("*"));
        h.insert("Access-Control-Expose-Headers", HeaderValue::from_static("Date"));
    }
    if status != StatusCode::OK {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn api_error(status: StatusCode, kind: &str, msg: &str, cors: bool) -> Response {
    json_response(status, json!({"status": "error", "errorType": kind, "error": msg}), cors)
}

fn stats(list: &[Stat]) -> Value {
    Value::Array(list.iter().map(|s| json!({"name": s.name, "value": s.value})).collect())
}

fn tenant_status(tenant: Option<&str>, db: Option<&Tsdb>, limit: usize) -> Value {
    let (head, card) = match db {
        Some(db) => (db.head_stats(), db.cardinality(limit)),
        None => (
            ringest_tsdb::db::HeadStats { num_series: 0, chunk_count: 0, min_time: i64::MAX, max_time: i64::MIN },
            Default::default(),
        ),
    };
    let mut v = json!({
        "headStats": {
            "numSeries": head.num_series,
            "numLabelPairs": card.num_label_pairs,
            "chunkCount": head.chunk_count,
            "minTime": head.min_time,
            "maxTime": head.max_time,
        },
        "seriesCountByMetricName": stats(&card.series_count_by_metric_name),
        "labelValueCountByLabelName": stats(&card.label_value_count_by_label_name),
        "memoryInBytesByLabelName": stats(&card.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": stats(&card.series_count_by_label_value_pair),
    });
    if let (Some(t), Some(obj)) = (tenant, v.as_object_mut()) {
        obj.insert("tenant".into(), json!(t));
    }
    v
}

fn header_tenant(st: &AppState, headers: &HeaderMap) -> Option<String> {
    headers.get(&st.tenant_header).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Thanos' handler on the remote-write port.
pub async fn thanos_status(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !st.probe.is_ready() {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "service unavailable", true);
    }
    let all = q.get("all_tenants").is_some_and(|v| v == "true");
    let header = header_tenant(&st, &headers);
    if all && header.is_some() {
        let msg = format!("using both the all_tenants parameter and the {} header is not supported", st.tenant_header);
        return api_error(StatusCode::BAD_REQUEST, "bad_data", &msg, true);
    }
    let limit = match q.get("limit") {
        None => 10,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n.max(0) as usize,
            Err(e) => {
                let msg = format!("unable to parse 'limit' parameter: strconv.ParseInt: parsing {s:?}: {e}");
                return api_error(StatusCode::BAD_REQUEST, "bad_data", &msg, true);
            }
        },
    };
    let tenant = header.unwrap_or_else(|| st.default_tenant.clone());
    let st2 = st.clone();
    let data = tokio::task::spawn_blocking(move || {
        let dbs: Vec<(String, Arc<Tsdb>)> = if all {
            st2.tenants.all()
        } else {
            st2.tenants.get(&tenant).map(|db| vec![(tenant.clone(), db)]).unwrap_or_default()
        };
        dbs.iter().map(|(t, db)| tenant_status(Some(t), Some(db), limit)).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    json_response(StatusCode::OK, json!({"status": "success", "data": data}), true)
}

/// Prometheus' handler shape on the ops port.
pub async fn prometheus_status(
    State(st): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !st.probe.is_ready() {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "service unavailable", false);
    }
    let limit = match q.get("limit").map(|s| s.parse::<i64>()) {
        None => 10,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n as usize,
        Some(Ok(n)) if n > 10_000 => {
            return api_error(StatusCode::BAD_REQUEST, "bad_data", "limit must not exceed 10000", false);
        }
        Some(_) => return api_error(StatusCode::BAD_REQUEST, "bad_data", "limit must be a positive number", false),
    };
    let tenant = header_tenant(&st, &headers).unwrap_or_else(|| st.default_tenant.clone());
    let st2 = st.clone();
    let data = tokio::task::spawn_blocking(move || {
        let db = st2.tenants.get(&tenant);
        tenant_status(Some(&tenant), db.as_deref(), limit)
    })
    .await
    .unwrap_or(Value::Null);
    json_response(StatusCode::OK, json!({"status": "success", "data": data}), false)
}
