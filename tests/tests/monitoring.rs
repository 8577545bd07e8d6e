//! deploy/monitoring against a live ring: every ringest metric the alert rules and the dashboard
//! name is in a real scrape of a node (a three-node RF=3 ring with a bucket and a limits file, after writes),
//! with the type the expressions assume (histograms for `_bucket`, counters for `rate` and
//! `increase`), and the rules file loads in Prometheus' own checker. Also the operations
//! features beside them: `/debug/pprof/` read by Go's pprof tool, and `--request.logging-config`
//! logging gRPC calls with the keys the real Thanos Receive logs.

use std::collections::BTreeSet;
use std::path::Path;

use ringest_e2e::Impl::Ringest as R;
use ringest_e2e::client::{RemoteWriter, series};
use ringest_e2e::ring::{Ring, now_ms};
use ringest_proto::prometheus::WriteRequest;

/// Metrics that come from other exporters (node-exporter, cAdvisor) or from Prometheus itself.
const NOT_RINGEST: &[&str] = &[
    "up",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "container_memory_usage_bytes",
    "container_spec_memory_limit_bytes",
];

/// PromQL functions, keywords and grouping labels the rules and the dashboard use (not metric
/// names).
const WORDS: &[&str] = &[
    "code",
    "limit",
    "result",
    "rate",
    "increase",
    "sum",
    "by",
    "max",
    "avg",
    "and",
    "on",
    "floor",
    "histogram_quantile",
    "count",
    "job",
    "le",
    "instance",
    "tenant",
    "humanize",
    "humanizePercentage",
];

/// The metric names of the rules' expressions and the dashboard's queries.
fn metric_names(rules: &str, dashboard: &str) -> BTreeSet<String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(rules).unwrap();
    let mut names = BTreeSet::new();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            names.extend(names_in(r["expr"].as_str().unwrap()));
        }
    }
    let dash: serde_json::Value = serde_json::from_str(dashboard).unwrap();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            names.extend(names_in(t["expr"].as_str().unwrap()));
        }
    }
    names
}

/// The metric names of one PromQL expression: its identifiers outside label matchers, range
/// selectors and strings, less PromQL's own words.
fn names_in(expr: &str) -> BTreeSet<String> {
    let (mut bare, mut inside) = (String::new(), None);
    for c in expr.chars() {
        match (inside, c) {
            (None, '{') => inside = Some('}'),
            (None, '[') => inside = Some(']'),
            (None, '"') => inside = Some('"'),
            (Some(end), c) if c == end => inside = None,
            (None, c) => bare.push(c),
            _ => {}
        }
    }
    bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()) && !WORDS.contains(w))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_is_in_a_live_scrape() {
    let rules_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring/thanos-receive.rules.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let out = std::process::Command::new("promtool").args(["check", "rules"]).arg(&rules_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let dashboard =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring/dashboard.json"))
            .unwrap();
    let names = metric_names(&rules, &dashboard);
    assert!(names.contains("thanos_receive_hashring_nodes") && names.contains("up"), "{names:?}");

    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let limits = tmp.path().join("limits.yaml");
    // One tenant at its head series limit, so that the counter of limited requests exists.
    std::fs::write(
        &limits,
        "write:\n  default:\n    head_series_limit: 1000000\n  tenants:\n    small:\n      head_series_limit: 3\n    capped:\n      request: {series_limit: 20}\n",
    )
    .unwrap();
    let ring = Ring::start(
        &[R, R, R],
        &[
            "--receive.replication-factor=3".into(),
            format!("--objstore.config={{type: FILESYSTEM, config: {{directory: {}}}}}", bucket.display()),
            format!("--receive.limits-config-file={}", limits.display()),
        ],
    );
    let w = WriteRequest {
        timeseries: (0..10).map(|i| series(&[("__name__", &format!("m{i}"))], &[(now_ms(), 1.0)])).collect(),
        ..Default::default()
    };
    let resp = RemoteWriter::connect(&ring.nodes[0].rw_addr).unwrap().send(&w).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    // And a request over a request limit of the file, for the limits' summary.
    let over =
        WriteRequest { timeseries: w.timeseries.iter().cycle().take(30).cloned().collect(), ..Default::default() };
    let resp = RemoteWriter::connect(&ring.nodes[0].rw_addr).unwrap().with_tenant("capped").send(&over).unwrap();
    assert_eq!(resp.status, 413, "{}", resp.text());
    let small = |addr: &str| RemoteWriter::connect(addr).unwrap().with_tenant("small").send(&w).unwrap().status;
    assert_eq!(small(&ring.nodes[0].rw_addr), 200);
    ringest_e2e::wait_for("the small tenant's series on every node", std::time::Duration::from_secs(30), || {
        ring.nodes.iter().all(|r| r.metric("prometheus_tsdb_head_series{tenant=\"small\"}") == Some(10.0))
    });
    assert_eq!(small(&ring.nodes[0].rw_addr), 429);
    let scrape = ring.nodes[0].metrics();
    let typed =
        |name: &str| scrape.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")).map(str::to_string));
    let mut missing = Vec::new();
    for name in names.iter().filter(|n| !NOT_RINGEST.contains(&n.as_str())) {
        // What the name's suffix says the family is: `_bucket` of a histogram, `_count` of a
        // histogram or summary, `_total` of a counter.
        let (base, want): (&str, &[&str]) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, &["histogram"])
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, &["histogram", "summary"])
        } else if name.ends_with("_total") {
            (name, &["counter"])
        } else {
            (name, &[])
        };
        match typed(base) {
            None => missing.push(format!("{name}: not exported")),
            Some(t) if !want.is_empty() && !want.contains(&t.as_str()) => missing.push(format!("{name}: a {t}")),
            Some(_) => {}
        }
    }
    assert!(missing.is_empty(), "{missing:?}\n{scrape}");
}

/// `/debug/pprof/` on the ops port: a CPU profile taken under load is read by Go's own pprof
/// tool and names ringest's functions; one profile at a time; bad `seconds` is a 400; the Go
/// profiles ringest cannot take answer 501 saying why; the command line is served as Go does.
#[test]
fn a_cpu_profile_under_load_is_read_by_go_tool_pprof() {
    use ringest_e2e::client::http_get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let r = ringest_e2e::Receiver::start(&tmp.path().join("node"), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (r.rw_addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut w = RemoteWriter::connect(&addr).unwrap();
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let t = now_ms() + i;
                let timeseries =
                    (0..500).map(|s| series(&[("__name__", "load"), ("s", &s.to_string())], &[(t, 1.0)])).collect();
                assert_eq!(w.send(&WriteRequest { timeseries, ..Default::default() }).unwrap().status, 200);
                i += 1;
            }
        })
    };
    // Two profiles asked for at once: one is taken, the other refused (one at a time).
    let takers: Vec<_> = (0..2)
        .map(|_| {
            let addr = r.http_addr.clone();
            std::thread::spawn(move || http_get(&addr, "/debug/pprof/profile?seconds=3").unwrap())
        })
        .collect();
    let mut answers: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
    answers.sort_by_key(|a| a.status);
    assert_eq!(answers.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 409]);
    let profile = answers.swap_remove(0);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(profile.status, 200, "{}", String::from_utf8_lossy(&profile.body));
    let file = tmp.path().join("cpu.pb");
    std::fs::write(&file, &profile.body).unwrap();
    let out = std::process::Command::new("go")
        .args(["tool", "pprof", "-top", "-lines", "-nodecount=1000"])
        .arg(&file)
        .output()
        .expect("go tool pprof (Go is on the machine: scripts/thanos.sh builds Thanos with it)");
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", top, String::from_utf8_lossy(&out.stderr));
    assert!(top.contains("Type: cpu"), "{top}");
    // The profile is symbolized: the HTTP front end and the TSDB append path show with their
    // source files.
    assert!(top.contains("crates/receive/src/") && top.contains("crates/tsdb/src/"), "{top}");

    assert_eq!(http_get(&r.http_addr, "/debug/pprof/profile?seconds=0").unwrap().status, 400);
    let heap = http_get(&r.http_addr, "/debug/pprof/heap").unwrap();
    assert_eq!(heap.status, 501);
    assert!(String::from_utf8_lossy(&heap.body).contains("mimalloc"));
    assert_eq!(http_get(&r.http_addr, "/debug/pprof/nonsense").unwrap().status, 404);
    let cmdline = http_get(&r.http_addr, "/debug/pprof/cmdline").unwrap();
    let args: Vec<String> = String::from_utf8_lossy(&cmdline.body).split('\0').map(str::to_string).collect();
    assert_eq!(args.get(1).map(String::as_str), Some("receive"), "{args:?}");
    assert!(http_get(&r.http_addr, "/debug/pprof/").unwrap().status == 200);
}

/// The keys of a logfmt line (values may be quoted, with escapes).
fn logfmt_keys(line: &str) -> BTreeSet<String> {
    let (mut keys, mut key, mut in_key, mut quoted, mut escaped) = (BTreeSet::new(), String::new(), true, false, false);
    for c in line.chars() {
        if in_key {
            match c {
                '=' => {
                    keys.insert(std::mem::take(&mut key));
                    in_key = false;
                }
                ' ' => key.clear(),
                c => key.push(c),
            }
        } else if escaped {
            escaped = false;
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else {
            match c {
                '"' => quoted = true,
                ' ' => in_key = true,
                _ => {}
            }
        }
    }
    keys
}

/// `--request.logging-config` as Thanos Receive reads it: a two-node RF=2 ring of ringest and
/// the real Thanos Receive, each logging the calls of `thanos.WriteableStore/RemoteWrite`;
/// a write through each node is replicated to the other, and each logs "started call" and
/// "finished call" for it with the same keys.
#[test]
fn request_logging_logs_the_grpc_calls_as_thanos_receive_does() {
    use ringest_e2e::Impl::Thanos as T;
    let cfg = "grpc:\n  options:\n    level: DEBUG\n    decision:\n      log_start: true\n      log_end: true\n  \
               config:\n    - service: thanos.WriteableStore\n      method: RemoteWrite\n";
    let extra = [
        format!("--request.logging-config={cfg}"),
        "--receive.replication-factor=2".into(),
        "--log.level=debug".into(),
    ];
    let ring = Ring::start(&[R, T], &extra);
    for (i, node) in ring.nodes.iter().enumerate() {
        let w = WriteRequest {
            timeseries: vec![series(&[("__name__", "logged"), ("via", &i.to_string())], &[(now_ms(), 1.0)])],
            ..Default::default()
        };
        assert_eq!(RemoteWriter::connect(&node.rw_addr).unwrap().send(&w).unwrap().status, 200);
    }
    let line = |node: &ringest_e2e::Receiver, msg: &str| {
        node.logs().lines().find(|l| l.contains(msg) && l.contains("grpc.method=RemoteWrite")).map(str::to_string)
    };
    for msg in ["msg=\"started call\"", "msg=\"finished call\""] {
        let mut lines = Vec::new();
        for node in &ring.nodes {
            ringest_e2e::wait_for(msg, std::time::Duration::from_secs(10), || line(node, msg).is_some());
            lines.push(line(node, msg).unwrap());
        }
        let (ours, thanos) = (logfmt_keys(&lines[0]), logfmt_keys(&lines[1]));
        assert_eq!(ours, thanos, "ringest: {}\nThanos: {}", lines[0], lines[1]);
        assert!(lines[0].contains("grpc.service=thanos.WriteableStore") && lines[0].contains("level=debug"));
    }
    assert!(ring.nodes[0].logs().contains("grpc.code=OK"));
}
