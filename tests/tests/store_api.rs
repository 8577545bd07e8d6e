//! Thanos Query reads ringest through the StoreAPI exactly as it reads Thanos Receive.
//!
//! One ringest and one Thanos Receive (the real binary) take the same workload; a real Thanos
//! Query stands in front of each. The same PromQL queries (raw samples, functions over ranges,
//! aggregations, regex and negative matchers, an absent series) and the same series, label
//! names and label values requests get the same answers from both, and the raw samples are
//! exactly the acknowledged ones (the load's own record). Thanos Query's TSDB status page (the
//! Status API) and exemplars query agree too.

use std::time::{Duration, Instant};

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::ring::{LoadRun, Ring, now_ms, run_load};
use ringest_e2e::thanos::{Component, query_escape};
use ringest_loadgen::check::{self, Dump};
use ringest_loadgen::plan::Layout;
use ringest_loadgen::shape::Shape;

const SERIES: usize = 48;
const STEP_MS: i64 = 15_000;
const ROUNDS: usize = 80;
const PREFIX: &str = "st";

fn layout(start_ms: i64) -> Layout {
    let mut shape = Shape::node(SERIES);
    shape.prefix = PREFIX.into();
    shape.interval_ms = STEP_MS;
    shape.start_ms = start_ms;
    Layout { shape, shards: 1, max_samples_per_send: SERIES }
}

fn query(q: &Component, path: &str, params: &[(&str, String)]) -> serde_json::Value {
    let mut p = format!("{path}?dedup=false&partial_response=false");
    for (k, v) in params {
        p.push_str(&format!("&{k}={}", query_escape(v)));
    }
    q.api(&p)["data"].clone()
}

/// Results sorted by their labels, so two answers compare whatever order they came in.
fn sorted(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(a) = v.get_mut("result").and_then(|r| r.as_array_mut()) {
        a.sort_by_key(|s| s["metric"].to_string());
    } else if let Some(a) = v.as_array_mut() {
        a.sort_by_key(|s| s.to_string());
    }
    v
}

/// Waits until the querier sees every series of the workload through its store.
fn wait_for_store(q: &Component, at_s: f64) {
    let start = Instant::now();
    loop {
        let v = query(
            q,
            "/api/v1/query",
            &[("query", format!("count({{__name__=~\"{PREFIX}_.*\"}})")), ("time", format!("{at_s}"))],
        );
        if v["result"][0]["value"][1].as_str() == Some(&SERIES.to_string()) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the querier never saw the store: {v}\n{}", q.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every raw sample through the querier, as a checker dump (labels without external ones).
fn raw(q: &Component, at_s: f64) -> Dump {
    let v = query(
        q,
        "/api/v1/query",
        &[("query", format!("{{__name__=~\"{PREFIX}_.*\"}}[1h]")), ("time", format!("{at_s}"))],
    );
    let mut dump = Dump::new();
    for s in v["result"].as_array().expect("matrix") {
        let mut labels: Vec<(String, String)> = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "tenant_id" && *k != "receive_replica")
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        labels.sort();
        let samples = dump.entry(check::labels_string(&labels)).or_default();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            samples.insert(t, p[1].as_str().unwrap().to_string());
        }
    }
    dump
}

fn load(ring: &Ring, start_ms: i64) -> LoadRun {
    let run = run_load(&layout(start_ms), ROUNDS, &ring.nodes[0].rw_addr, None, None);
    run.assert_all_2xx_first_time("the workload");
    run
}

#[test]
fn thanos_query_reads_ringest_as_it_reads_thanos_receive() {
    let start_ms = (now_ms() - ROUNDS as i64 * STEP_MS - 60_000) / STEP_MS * STEP_MS;
    let ours = Ring::start(&[R], &[]);
    let theirs = Ring::start(&[T], &[]);
    let run = load(&ours, start_ms);
    load(&theirs, start_ms);
    let tmp = tempfile::tempdir().unwrap();
    let querier = |name: &str, ring: &Ring| {
        Component::start("query", &tmp.path().join(name), &[format!("--endpoint={}", ring.nodes[0].grpc_addr)])
    };
    let (q_ours, q_theirs) = (querier("ours", &ours), querier("theirs", &theirs));
    let end_s = (start_ms + ROUNDS as i64 * STEP_MS) as f64 / 1000.0;
    wait_for_store(&q_ours, end_s);
    wait_for_store(&q_theirs, end_s);

    // Exactly the acknowledged samples.
    let rep = check::check(&run.log, &raw(&q_ours, end_s));
    assert!(rep.ok() && rep.intact == rep.acked && rep.acked > 0, "raw samples through Thanos Query: {rep:?}");

    let instant = |q: &Component, expr: &str, t: f64| {
        sorted(query(q, "/api/v1/query", &[("query", expr.to_string()), ("time", format!("{t}"))]))
    };
    let exprs = [
        format!("{{__name__=~\"{PREFIX}_.*\"}}[10m]"),
        format!("{{__name__=~\"{PREFIX}_.*\"}}"),
        format!("count_over_time({PREFIX}_cpu_seconds_total[30m])"),
        format!("sum by (mode) (rate({PREFIX}_cpu_seconds_total{{mode!=\"\"}}[5m]))"),
        format!("topk(3, {{__name__=~\"{PREFIX}_.*\"}})"),
        format!("{{__name__=~\"{PREFIX}_.*\", cpu!=\"0\", mode=~\"user|system|idle\"}}"),
        format!("{{__name__=~\"{PREFIX}_.*\", mode!~\"i.*\"}}"),
        format!("{{__name__=~\"{PREFIX}_.*\", nope=\"\"}}"),
        "absent(st_no_such_metric)".to_string(),
    ];
    for t in [end_s - 600.0, end_s - 1.0, end_s + 120.0] {
        for e in &exprs {
            let (a, b) = (instant(&q_ours, e, t), instant(&q_theirs, e, t));
            assert_eq!(a, b, "{e} at {t}");
        }
    }
    let range = |q: &Component, expr: &str| {
        let p = [
            ("query", expr.to_string()),
            ("start", format!("{}", start_ms as f64 / 1000.0)),
            ("end", format!("{end_s}")),
            ("step", "60".to_string()),
        ];
        sorted(query(q, "/api/v1/query_range", &p))
    };
    let e = format!("sum by (job) (rate({PREFIX}_cpu_seconds_total[2m]))");
    assert_eq!(range(&q_ours, &e), range(&q_theirs, &e), "{e} over the whole load");

    let meta = |q: &Component, path: &str, params: &[(&str, String)]| sorted(query(q, path, params));
    let window = [("start", format!("{}", start_ms as f64 / 1000.0)), ("end", format!("{end_s}"))];
    let matcher = ("match[]", format!("{{__name__=~\"{PREFIX}_.*\", mode=\"user\"}}"));
    let series_params = [window[0].clone(), window[1].clone(), matcher.clone()];
    assert_eq!(meta(&q_ours, "/api/v1/series", &series_params), meta(&q_theirs, "/api/v1/series", &series_params));
    assert_eq!(meta(&q_ours, "/api/v1/labels", &window), meta(&q_theirs, "/api/v1/labels", &window));
    for label in ["mode", "__name__", "receive_replica", "tenant_id"] {
        let path = format!("/api/v1/label/{label}/values");
        assert_eq!(meta(&q_ours, &path, &window), meta(&q_theirs, &path, &window), "{label} values");
    }
    let path = "/api/v1/label/mode/values";
    assert_eq!(meta(&q_ours, path, &series_params), meta(&q_theirs, path, &series_params), "mode values, matched");

    // thanos.Status (Thanos Query's TSDB status page) and thanos.Exemplars (none stored).
    let status = |q: &Component| q.api("/api/v1/status/tsdb?limit=5")["data"].clone();
    let (a, b) = (status(&q_ours), status(&q_theirs));
    assert_eq!(a["headStats"]["numSeries"], SERIES, "{a}");
    assert_eq!(a["headStats"], b["headStats"], "TSDB status");
    // Top lists: which of several equal counts make the cut is map order in Thanos; the counts
    // must agree, and the names wherever the counts differ.
    for list in [
        "seriesCountByMetricName",
        "labelValueCountByLabelName",
        "memoryInBytesByLabelName",
        "seriesCountByLabelValuePair",
    ] {
        let counts = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v[list].as_array().unwrap().iter().map(|e| e["value"].clone()).collect()
        };
        assert_eq!(counts(&a), counts(&b), "{list}: {a} vs {b}");
    }
    assert_eq!(a["memoryInBytesByLabelName"], b["memoryInBytesByLabelName"], "bytes per label name");
    let ex = [("query", format!("{PREFIX}_cpu_seconds_total")), window[0].clone(), window[1].clone()];
    let exemplars = |q: &Component| query(q, "/api/v1/query_exemplars", &ex);
    assert_eq!(exemplars(&q_ours), exemplars(&q_theirs), "exemplars");

    // go-grpc-prometheus' server metrics, as Thanos exposes them: calls counted by code, every
    // method of the served APIs present from the start.
    let node = &ours.nodes[0];
    let handled = |service: &str, method: &str, kind: &str, code: &str| {
        node.metric(&format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"}}"
        ))
    };
    assert!(handled("thanos.Store", "Series", "server_stream", "OK").unwrap_or(0.0) >= 10.0);
    assert!(handled("thanos.info.Info", "Info", "unary", "OK").unwrap_or(0.0) >= 1.0);
    assert!(handled("thanos.Store", "LabelValues", "unary", "OK").unwrap_or(0.0) >= 1.0);
    assert_eq!(handled("thanos.WriteableStore", "RemoteWrite", "unary", "DataLoss"), Some(0.0));
    assert_eq!(handled("thanos.Status", "TSDBStatistics", "server_stream", "Internal"), Some(0.0));
    let started = node.metric(
        "grpc_server_started_total{grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"}",
    );
    assert_eq!(started, handled("thanos.Store", "Series", "server_stream", "OK"), "every Series call ended OK");
}

/// `--store.limits.request-series` and `--store.limits.request-samples` refuse a Series call
/// past them with Thanos' message (every series frame a series, every chunk 120 samples), count
/// it by reason, and leave smaller calls alone.
#[test]
fn store_limits_refuse_large_selects() {
    let start_ms = (now_ms() - 20 * STEP_MS) / STEP_MS * STEP_MS;
    let ring =
        Ring::start(&[R], &["--store.limits.request-series=10".into(), "--store.limits.request-samples=30".into()]);
    let run = run_load(&layout(start_ms), 20, &ring.nodes[0].rw_addr, None, None);
    run.assert_all_2xx_first_time("the workload");
    let tmp = tempfile::tempdir().unwrap();
    let q = Component::start("query", tmp.path(), &[format!("--endpoint={}", ring.nodes[0].grpc_addr)]);
    let end_s = (start_ms + 20 * STEP_MS) as f64 / 1000.0;
    let get = |expr: &str| {
        let path = format!("/api/v1/query?partial_response=false&query={}&time={end_s}", query_escape(expr));
        let r = ringest_e2e::client::http_get(&q.http_addr, &path).unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    // The querier must see the store first (label values meet no limit).
    let get_path = |path: &str| {
        let r = ringest_e2e::client::http_get(&q.http_addr, path).unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    let start = Instant::now();
    while get_path("/api/v1/label/__name__/values")["data"].as_array().is_none_or(|a| a.is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(60), "the querier never saw the store:\n{}", q.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Series without chunks (the series API) meet the series limit only.
    let few = format!(
        "/api/v1/series?partial_response=false&match[]={}",
        query_escape(&format!("{PREFIX}_cpu_seconds_total"))
    );
    let few = get_path(&few);
    assert_eq!(few["status"], "success", "{few}");
    assert!((1..=10).contains(&few["data"].as_array().unwrap().len()), "{few}");
    let path = format!(
        "/api/v1/series?partial_response=false&match[]={}",
        query_escape(&format!("{{__name__=~\"{PREFIX}_.*\"}}"))
    );
    let many = get_path(&path);
    assert_eq!(many["status"], "error", "{many}");
    assert!(many["error"].as_str().unwrap().contains("failed to send series: limit 10 violated (got 11)"), "{many}");
    // One chunk counts as 120 samples.
    let samples = get(&format!("{PREFIX}_cpu_seconds_total[1h]"));
    assert_eq!(samples["status"], "error", "{samples}");
    assert!(
        samples["error"].as_str().unwrap().contains("failed to send samples: limit 30 violated (got 120)"),
        "{samples}"
    );
    let m = |reason: &str| ring.nodes[0].metric(&format!("thanos_store_selects_dropped_total{{reason=\"{reason}\"}}"));
    assert!(
        m("series").unwrap_or(0.0) >= 1.0 && m("chunks").unwrap_or(0.0) >= 1.0,
        "{:?} {:?}",
        m("series"),
        m("chunks")
    );
}
