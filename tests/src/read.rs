//! Reading receivers through a real Thanos Query: a querier over receivers' gRPC endpoints that
//! deduplicates on the replica label every node of a [`crate::ring::Ring`] has its own value of,
//! Prometheus HTTP API calls with an explicit `dedup` and no partial responses, and raw samples
//! turned into the checker's dumps (each series exactly once, or the conversion fails).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ringest_loadgen::check::{self, Dump};
use serde_json::Value;

use crate::client::http_get;
use crate::thanos::{Component, query_escape};

/// The replica label of a ring's nodes (`--label=receive_replica="node<i>"`).
pub const REPLICA_LABEL: &str = "receive_replica";
/// The tenant label receivers add to every series they serve.
pub const TENANT_LABEL: &str = "tenant_id";
/// The external labels a ring's receivers add to their series: tenant and replica.
pub const EXTERNAL: &[&str] = &[TENANT_LABEL, REPLICA_LABEL];

/// Starts a Thanos Query over the gRPC `endpoints` with `--query.replica-label` set to
/// [`REPLICA_LABEL`] (so `dedup=true` merges a ring's replicas) and the default (penalty)
/// deduplication.
pub fn querier(dir: &Path, endpoints: &[&str]) -> Component {
    querier_with(dir, endpoints, &[])
}

/// [`querier`] with more flags (e.g. `--deduplication.func=chain`).
pub fn querier_with(dir: &Path, endpoints: &[&str], extra: &[&str]) -> Component {
    let mut args: Vec<String> = endpoints.iter().map(|e| format!("--endpoint={e}")).collect();
    args.push(format!("--query.replica-label={REPLICA_LABEL}"));
    args.extend(extra.iter().map(|s| s.to_string()));
    Component::start("query", dir, &args)
}

/// `GET path?dedup=..&partial_response=false&<params>`: the `data` of an answer that says
/// success and carries no warnings, else (connection error, error status, warnings) the reason.
pub fn try_get(q: &Component, path: &str, dedup: bool, params: &[(&str, String)]) -> Result<Value, String> {
    match try_get_with_warnings(q, path, dedup, params)? {
        (data, w) if w.is_empty() => Ok(data),
        (data, w) => Err(format!("GET {path} {params:?}: warnings {w:?}: {data}")),
    }
}

/// [`try_get`] that accepts warnings (e.g. `results truncated due to limit`) and returns them.
pub fn try_get_with_warnings(
    q: &Component,
    path: &str,
    dedup: bool,
    params: &[(&str, String)],
) -> Result<(Value, Vec<String>), String> {
    let mut p = format!("{path}?dedup={dedup}&partial_response=false");
    for (k, v) in params {
        p.push_str(&format!("&{k}={}", query_escape(v)));
    }
    let r = http_get(&q.http_addr, &p).map_err(|e| format!("GET {p}: {e}"))?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("GET {p}: {e}: {}", r.text()))?;
    if v["status"] != "success" {
        return Err(format!("GET {p}: {v}"));
    }
    let warnings = v["warnings"].as_array().map(|a| a.iter().map(|w| w.as_str().unwrap_or("").to_string()).collect());
    Ok((v["data"].clone(), warnings.unwrap_or_default()))
}

/// [`try_get`], panicking on anything but a clean success.
pub fn get(q: &Component, path: &str, dedup: bool, params: &[(&str, String)]) -> Value {
    try_get(q, path, dedup, params).unwrap_or_else(|e| panic!("{e}"))
}

/// Calls `f` until it returns `Ok` (a querier that just lost or regained a store answers errors
/// for a few seconds, until its endpoint set is updated); panics with the last error and the
/// querier's log after `timeout`.
pub fn retry<T>(q: &Component, what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => {
                assert!(start.elapsed() < timeout, "{what}: still failing after {timeout:?}: {e}\n{}", q.logs());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Results (or a list) sorted by their labels, so two answers compare whatever order they came in.
pub fn sorted(mut v: Value) -> Value {
    if let Some(a) = v.get_mut("result").and_then(|r| r.as_array_mut()) {
        a.sort_by_key(|s| s["metric"].to_string());
    } else if let Some(a) = v.as_array_mut() {
        a.sort_by_key(|s| s.to_string());
    }
    v
}

/// One series of a matrix: all its labels and its samples (ms, value as the API prints it).
pub type RawSeries = (BTreeMap<String, String>, Vec<(i64, String)>);

/// The series of a matrix answer (`data` of a range-vector query).
pub fn matrix(data: &Value) -> Result<Vec<RawSeries>, String> {
    let result = data["result"].as_array().ok_or_else(|| format!("not a matrix: {data}"))?;
    result
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .ok_or_else(|| format!("no labels: {s}"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let samples = s["values"]
                .as_array()
                .ok_or_else(|| format!("no values: {s}"))?
                .iter()
                .map(|p| {
                    ((p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64, p[1].as_str().unwrap_or("").into())
                })
                .collect();
            Ok((labels, samples))
        })
        .collect()
}

/// Every raw sample of `selector` in the `window` (e.g. `6h`) before `at_s` (seconds).
pub fn try_raw(q: &Component, selector: &str, window: &str, at_s: f64, dedup: bool) -> Result<Vec<RawSeries>, String> {
    let params = [("query", format!("{selector}[{window}]")), ("time", format!("{at_s}"))];
    matrix(&try_get(q, "/api/v1/query", dedup, &params)?)
}

/// The series as a checker dump, keyed by their labels without `dropped` (e.g. [`EXTERNAL`]).
/// Fails if two series are the same once those labels are dropped, or a series has a timestamp
/// twice: every sample must come back exactly once.
pub fn dump(series: &[RawSeries], dropped: &[&str]) -> Result<Dump, String> {
    let mut out = Dump::new();
    for (labels, samples) in series {
        let kept: Vec<(String, String)> = labels
            .iter()
            .filter(|(k, _)| !dropped.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let key = check::labels_string(&kept);
        if out.contains_key(&key) {
            return Err(format!("{key} twice (labels {labels:?})"));
        }
        let mut m = BTreeMap::new();
        for (t, v) in samples {
            if m.insert(*t, v.clone()).is_some() {
                return Err(format!("{key} @ {t} twice"));
            }
        }
        out.insert(key, m);
    }
    Ok(out)
}

/// The series grouped by the value of `label` (`""` where absent), e.g. one group per replica.
pub fn by_label(series: Vec<RawSeries>, label: &str) -> BTreeMap<String, Vec<RawSeries>> {
    let mut out: BTreeMap<String, Vec<RawSeries>> = BTreeMap::new();
    for s in series {
        out.entry(s.0.get(label).cloned().unwrap_or_default()).or_default().push(s);
    }
    out
}
