//! Thanos Query reads ringest through the StoreAPI exactly as it reads Thanos Receive.
//!
//! One ringest and one Thanos Receive (the real binary) take the same workload; a real Thanos
//! Query stands in front of each. The same PromQL queries (raw samples, functions over ranges,
//! aggregations, regex and negative matchers, an absent series) and the same series, label
//! names and label values requests get the same answers from both, and the raw samples are
//! exactly the acknowledged ones (the load's own record). Thanos Query's TSDB status page (the
//! Status API) and exemplars query agree too. So do reads of two tenants, of series whose own
//! labels clash with the external ones, sharded queries (`shard_info`) and `limit`ed requests,
//! deduplicated or not (but for Thanos Receive listing a clashing label name twice), and reads
//! of an HA Prometheus pair deduplicated on a label of the series themselves.

use std::time::{Duration, Instant};

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::read::{self, sorted};
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
    Layout { shape, shards: 1, max_samples_per_send: SERIES, remote_write_v2: false }
}

fn query(q: &Component, path: &str, params: &[(&str, String)]) -> serde_json::Value {
    read::get(q, path, false, params)
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
    let series = read::try_raw(q, &format!("{{__name__=~\"{PREFIX}_.*\"}}"), "1h", at_s, false).unwrap();
    read::dump(&series, read::EXTERNAL).unwrap()
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
    // The 20 rounds end before now and within one 2h block range: a head chunk is also cut at a
    // range boundary, and a series in two chunks would count 240 samples, not 120.
    const RANGE_MS: i64 = 2 * 3600 * 1000;
    let now = now_ms();
    let end = if now % RANGE_MS < 21 * STEP_MS { now - now % RANGE_MS - 1 } else { now };
    let start_ms = (end - 20 * STEP_MS) / STEP_MS * STEP_MS;
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

/// Series whose own labels clash with the external labels a receiver adds (its replica label
/// and the tenant label): the external ones win, so some become the same series.
const CLASHING: &[&[(&str, &str)]] = &[
    &[("__name__", "clash"), ("a", "1"), ("receive_replica", "evil"), ("tenant_id", "evil")],
    &[("__name__", "clash"), ("a", "2"), ("receive_replica", "node0")],
    &[("__name__", "clash"), ("a", "3"), ("tenant_id", "default-tenant")],
    &[("__name__", "clash2"), ("a", "5"), ("receive_replica", "evil")],
    &[("__name__", "clash2"), ("a", "5"), ("receive_replica", "node0")],
    // Written by the default tenant, claiming another tenant's label.
    &[("__name__", "clash3"), ("a", "6"), ("tenant_id", "team-b")],
];

/// Two tenants (one in a hashring of its own with external labels, `job` among them), series
/// whose labels clash with the external labels, query sharding (`shard_info`, as Thanos' query
/// frontend sends it with vertical sharding) and `limit`: the same answers from ringest and
/// Thanos Receive through Thanos Query deduplicating on the replica label, with `dedup` on and
/// off; ringest's shards partition the series.
#[test]
fn tenants_clashing_labels_shards_and_limits_read_as_thanos_receive() {
    const ROUNDS: usize = 20;
    let start_ms = (now_ms() - ROUNDS as i64 * STEP_MS) / STEP_MS * STEP_MS;
    let end_ms = start_ms + ROUNDS as i64 * STEP_MS - 1;
    let hashrings = |eps: &str| {
        format!(
            "[{{\"hashring\": \"b\", \"tenants\": [\"team-b\"], \"endpoints\": {eps}, \
             \"external_labels\": {{\"region\": \"eu\", \"job\": \"ext\"}}}}, \
             {{\"hashring\": \"default\", \"endpoints\": {eps}}}]"
        )
    };
    let rings = [Ring::start_with_hashrings(&[R], &[], hashrings), Ring::start_with_hashrings(&[T], &[], hashrings)];
    let tmp = tempfile::tempdir().unwrap();
    let qs: Vec<Component> = rings
        .iter()
        .enumerate()
        .map(|(i, ring)| {
            let addr = &ring.nodes[0].rw_addr;
            run_load(&layout(start_ms), ROUNDS, addr, None, None).assert_all_2xx_first_time("default tenant");
            run_load(&layout(start_ms), ROUNDS / 2, addr, Some("team-b"), None).assert_all_2xx_first_time("team-b");
            let mut w = ringest_e2e::RemoteWriter::connect(addr).unwrap();
            for (k, labels) in CLASHING.iter().enumerate() {
                let s = ringest_e2e::client::series(labels, &[(end_ms - 5_000 + k as i64, k as f64)]);
                let req = ringest_proto::prometheus::WriteRequest { timeseries: vec![s], ..Default::default() };
                assert_eq!(w.send(&req).unwrap().status, 200, "{labels:?}");
            }
            read::querier(&tmp.path().join(format!("q{i}")), &[ring.nodes[0].grpc_addr.as_str()])
        })
        .collect();
    let at = format!("{}", end_ms as f64 / 1000.0);
    let count = format!("count({{__name__=~\"{PREFIX}_.*\"}})");
    for q in &qs {
        read::retry(q, "the querier sees both tenants", Duration::from_secs(60), || {
            let v = read::try_get(q, "/api/v1/query", false, &[("query", count.clone()), ("time", at.clone())])?;
            let n = v["result"][0]["value"][1].as_str().unwrap_or("none").to_string();
            if n == (2 * SERIES).to_string() { Ok(()) } else { Err(format!("{n} series")) }
        });
    }

    let window = [("start", format!("{}", start_ms as f64 / 1000.0)), ("end", at.clone())];
    let instant = |e: &str| vec![("query", e.to_string()), ("time", at.clone())];
    let with_window = |extra: &[(&'static str, &str)]| {
        let mut p = window.to_vec();
        p.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        p
    };
    let mut requests: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("/api/v1/query", instant(&format!("{{__name__=~\"{PREFIX}_.*|clash.*\"}}"))),
        ("/api/v1/query", instant(&format!("count by (tenant_id) ({{__name__=~\"{PREFIX}_.*\"}})"))),
        ("/api/v1/query", instant("{tenant_id=\"team-b\", cpu=\"1\"}[5m]")),
        ("/api/v1/query", instant("count by (tenant_id, region, job) ({__name__=~\".+\"})")),
        ("/api/v1/query", instant(&format!("{{__name__=~\"{PREFIX}_.*\", region=\"eu\", job=\"ext\", cpu=\"0\"}}"))),
        ("/api/v1/query", instant(&format!("{{tenant_id!=\"team-b\", __name__=~\"{PREFIX}_load.*\"}}"))),
        ("/api/v1/query", instant("{tenant_id=~\"team-.*|evil\", __name__=~\".+\"}")),
        ("/api/v1/query", instant("{receive_replica=\"node0\", a=~\"1|2\"}")),
        ("/api/v1/query", instant("count(clash2)")),
        ("/api/v1/query", instant("{__name__=\"clash3\"}")),
        ("/api/v1/series", with_window(&[("match[]", "{__name__=~\"clash.*\"}")])),
        ("/api/v1/series", with_window(&[("match[]", "{tenant_id=\"team-b\", cpu=\"0\"}"), ("limit", "5")])),
        ("/api/v1/labels", with_window(&[])),
        ("/api/v1/labels", with_window(&[("match[]", "{tenant_id=\"team-b\", cpu=\"1\"}")])),
        ("/api/v1/labels", with_window(&[("limit", "3")])),
        ("/api/v1/label/tenant_id/values", with_window(&[])),
        ("/api/v1/label/job/values", with_window(&[])),
        ("/api/v1/label/region/values", with_window(&[("match[]", "{cpu=\"1\"}")])),
        ("/api/v1/label/receive_replica/values", with_window(&[])),
        ("/api/v1/label/a/values", with_window(&[("match[]", "{receive_replica=\"node0\", a=~\".+\"}")])),
        ("/api/v1/label/cpu/values", with_window(&[("match[]", "{tenant_id=\"team-b\"}"), ("limit", "1")])),
    ];
    // Every shard of a few shardings, by some labels or without them.
    let all = format!("{{__name__=~\"{PREFIX}_.*|clash.*\"}}");
    let shardings: [(usize, bool, &str); 4] =
        [(2, true, "[\"cpu\"]"), (3, false, "[]"), (3, true, "[\"__name__\"]"), (4, false, "[\"receive_replica\"]")];
    for (total, by, labels) in shardings {
        for index in 0..total {
            let info = format!("{{\"shard_index\":{index},\"total_shards\":{total},\"by\":{by},\"labels\":{labels}}}");
            let mut p = instant(&all);
            p.push(("shard_info", info));
            requests.push(("/api/v1/query", p));
        }
    }
    for dedup in [false, true] {
        let whole = read::get(&qs[0], "/api/v1/query", dedup, &instant(&all))["result"].as_array().unwrap().len();
        let mut sharded = 0;
        for (path, params) in &requests {
            let get = |q: &Component| {
                let (data, warnings) =
                    read::try_get_with_warnings(q, path, dedup, params).unwrap_or_else(|e| panic!("{e}"));
                let truncated = params.iter().any(|(k, _)| *k == "limit");
                assert!(warnings.is_empty() || truncated, "{path} {params:?}: warnings {warnings:?}");
                (sorted(data), warnings)
            };
            let ((a, wa), (mut b, wb)) = (get(&qs[0]), get(&qs[1]));
            // Thanos Receive v0.42.5 lists a label name twice when series of its own carry an
            // external label's name (its TSDB's names and the external ones are concatenated);
            // ringest lists each name once.
            if *path == "/api/v1/labels" {
                let names = a.as_array().unwrap();
                assert!(names.windows(2).all(|w| w[0] != w[1]), "{path} {params:?}: a name twice: {a}");
                b.as_array_mut().unwrap().dedup();
            }
            assert_eq!(a, b, "dedup={dedup}: {path} {params:?}");
            assert_eq!(wa, wb, "dedup={dedup}: {path} {params:?}: warnings");
            assert!(a.get("result").unwrap_or(&a).as_array().is_some_and(|r| !r.is_empty()), "{path} {params:?}: {a}");
            if params.iter().any(|(k, _)| *k == "shard_info") {
                sharded += a["result"].as_array().unwrap().len();
            }
        }
        assert_eq!(
            sharded,
            shardings.iter().map(|_| whole).sum::<usize>(),
            "dedup={dedup}: each sharding partitions the series"
        );
    }
    // Checklist E.42, tenant isolation: a series written by one tenant with another tenant's
    // label is that writer's series, and never one of the other tenant's.
    for q in &qs {
        let mine = read::get(q, "/api/v1/query", false, &instant("{__name__=\"clash3\"}"));
        assert_eq!(mine["result"][0]["metric"]["tenant_id"], "default-tenant", "{mine}");
        let theirs = read::get(q, "/api/v1/query", false, &instant("{__name__=\"clash3\", tenant_id=\"team-b\"}"));
        assert_eq!(theirs["result"].as_array().map(Vec::len), Some(0), "{theirs}");
    }
}

/// Two HA Prometheus replicas (series labels `replica="a"` and `replica="b"`, scraped 300 ms
/// apart) writing into one receiver, read through Thanos Query deduplicating on `replica`, a
/// label of the series themselves (Thanos' e2e `ha_ingestor_with_ha_prom`, its issue #6257):
/// the store drops it from the series, which then sort as equal neighbours, and the querier
/// merges them. With `dedup=true` every series comes back once with its samples from one
/// replica, the same from ringest and Thanos Receive; with `dedup=false` both replicas.
#[test]
fn ha_prometheus_pairs_deduplicate_on_a_label_of_the_series() {
    const HA_SERIES: usize = 30;
    const ROUNDS: usize = 40;
    let start_ms = (now_ms() - ROUNDS as i64 * STEP_MS - 10_000) / STEP_MS * STEP_MS;
    let end_ms = start_ms + ROUNDS as i64 * STEP_MS;
    let rings = [Ring::start(&[R], &[]), Ring::start(&[T], &[])];
    let tmp = tempfile::tempdir().unwrap();
    let qs: Vec<Component> = rings
        .iter()
        .enumerate()
        .map(|(i, ring)| {
            let mut w = ringest_e2e::RemoteWriter::connect(&ring.nodes[0].rw_addr).unwrap();
            for round in 0..ROUNDS {
                for (replica, offset) in [("a", 0), ("b", 300)] {
                    let timeseries = (0..HA_SERIES)
                        .map(|s| {
                            let (name, instance) = (format!("ha_requests_{}_total", s % 5), format!("host-{s}"));
                            let labels = [
                                ("__name__", name.as_str()),
                                ("instance", instance.as_str()),
                                ("job", "ha"),
                                ("replica", replica),
                            ];
                            let t = start_ms + round as i64 * STEP_MS + offset;
                            ringest_e2e::client::series(&labels, &[(t, (round * 10 + s) as f64)])
                        })
                        .collect();
                    let req = ringest_proto::prometheus::WriteRequest { timeseries, ..Default::default() };
                    assert_eq!(w.send(&req).unwrap().status, 200);
                }
            }
            let args = [
                format!("--endpoint={}", ring.nodes[0].grpc_addr),
                "--query.replica-label=replica".into(),
                "--query.replica-label=receive_replica".into(),
            ];
            Component::start("query", &tmp.path().join(format!("q{i}")), &args)
        })
        .collect();
    let at = format!("{}", end_ms as f64 / 1000.0);
    let raw = |q: &Component, dedup: bool| {
        read::retry(q, "the querier sees both replicas", Duration::from_secs(60), || {
            let series = read::try_raw(q, "{job=\"ha\"}", "1h", end_ms as f64 / 1000.0, dedup)?;
            let want = if dedup { HA_SERIES } else { 2 * HA_SERIES };
            if series.len() == want { Ok(series) } else { Err(format!("{} series", series.len())) }
        })
    };
    for dedup in [false, true] {
        let (a, b) = (raw(&qs[0], dedup), raw(&qs[1], dedup));
        let dropped: &[&str] = if dedup { &[] } else { &["tenant_id", "receive_replica"] };
        let (da, db) = (read::dump(&a, dropped).unwrap(), read::dump(&b, dropped).unwrap());
        assert_eq!(da, db, "dedup={dedup}: raw samples, ringest vs Thanos");
        for (labels, samples) in &a {
            assert_eq!(labels.contains_key("replica"), !dedup, "{labels:?}");
            assert_eq!(samples.len(), ROUNDS, "dedup={dedup}: {labels:?}: one sample a round");
        }
    }
    let exprs = [
        "count({job=\"ha\"})",
        "count by (replica) ({job=\"ha\"})",
        "sum by (instance) (rate({job=\"ha\"}[5m]))",
        "count_over_time(ha_requests_1_total[10m])",
    ];
    for dedup in [false, true] {
        for e in exprs {
            let p = [("query", e.to_string()), ("time", at.clone())];
            let (a, b) = (read::get(&qs[0], "/api/v1/query", dedup, &p), read::get(&qs[1], "/api/v1/query", dedup, &p));
            assert_eq!(sorted(a), sorted(b), "dedup={dedup}: {e}");
        }
        let window = [("start", format!("{}", start_ms as f64 / 1000.0)), ("end", at.clone())];
        let series = [window[0].clone(), window[1].clone(), ("match[]", "{job=\"ha\"}".to_string())];
        for (path, p) in [
            ("/api/v1/series", &series[..]),
            ("/api/v1/labels", &window[..]),
            ("/api/v1/label/replica/values", &window[..]),
        ] {
            let (a, b) = (read::get(&qs[0], path, dedup, p), read::get(&qs[1], path, dedup, p));
            assert_eq!(sorted(a), sorted(b), "dedup={dedup}: {path}");
        }
    }
}
