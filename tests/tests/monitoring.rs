//! deploy/monitoring against live rings: every ringest metric the alert rules and the dashboard
//! name is in a real scrape of a node (a three-node RF=3 ring with a bucket and a limits file, after writes),
//! with the type the expressions assume (histograms for `_bucket`, counters for `rate` and
//! `increase`), and the rules file loads in Prometheus' own checker; each alert on ringest's
//! metrics silent on healthy rings and firing in its fault, made for real (`promtool test rules`
//! on the scraped series). Also the operations features beside them: `/debug/pprof/` read by
//! Go's pprof tool, and `--request.logging-config` logging gRPC calls with the keys the real
//! Thanos Receive logs.

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

/// One scraped series as Prometheus holds it at the end of a phase: its labels, its last
/// value, and its slope over the phase (per second).
struct Scraped {
    labels: Vec<(String, String)>,
    last: f64,
    slope: f64,
}

/// Every series of `names` that Prometheus scraped over the last `window` and still scrapes at
/// its end (a killed node's series are gone, its `up` is 0).
fn capture(prom: &str, names: &BTreeSet<String>, window: std::time::Duration) -> Vec<Scraped> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let q = format!("{{__name__=~\"{}\",job=\"thanos-receive\"}}[{}s]", names.join("|"), window.as_secs());
    let path = format!("/api/v1/query?query={}", ringest_e2e::thanos::query_escape(&q));
    let resp = ringest_e2e::client::http_get(prom, &path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let now = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["values"].as_array()?.last()?[0].as_f64())
        .fold(0.0f64, f64::max);
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let values: Vec<(f64, f64)> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().parse::<f64>().unwrap()))
            .collect();
        let (Some(&(t0, v0)), Some(&(t1, v1))) = (values.first(), values.last()) else { continue };
        if t1 < now - 3.0 {
            continue;
        }
        let mut labels: Vec<(String, String)> = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        labels.sort();
        let name = &labels.iter().find(|(k, _)| k == "__name__").unwrap().1;
        let counter = ["_total", "_bucket", "_count", "_sum"].iter().any(|s| name.ends_with(s));
        let slope = if counter && t1 > t0 { (v1 - v0) / (t1 - t0) } else { 0.0 };
        out.push(Scraped { labels, last: v1, slope });
    }
    out
}

/// How long the scraped series of a phase are continued before the alerts are read: past every
/// `for:` but ThanosReceiveNoUpload's three hours.
const HOLD_MINUTES: u32 = 40;

/// Runs `promtool test rules` on the rules with `series` continued for `minutes` as they went
/// in the phase (counters at their slope, gauges at their last value), and checks which alerts
/// fire at the end: exactly `firing`. Returns promtool's output on failure.
fn alerts_firing(
    rules: &Path,
    dir: &Path,
    phase: &str,
    series: &[Scraped],
    firing: &[&str],
    minutes: u32,
) -> Result<(), String> {
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut yaml = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        rules.display()
    );
    for s in series {
        let name = &s.labels.iter().find(|(k, _)| k == "__name__").unwrap().1;
        let labels: Vec<String> =
            s.labels.iter().filter(|(k, _)| k != "__name__").map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
        let sel = format!("{name}{{{}}}", labels.join(","));
        yaml.push_str(&format!(
            "      - series: '{}'\n        values: '{:.6}+{:.6}x{minutes}'\n",
            sel.replace('\'', "''"),
            s.last,
            s.slope * 60.0
        ));
    }
    yaml.push_str(
        &format!(
            "    promql_expr_test:\n      - expr: group by (alertname) (ALERTS{{alertstate=\"firing\"}})\n        eval_time: {minutes}m\n"
        ),
    );
    if firing.is_empty() {
        yaml.push_str("        exp_samples: []\n");
    } else {
        yaml.push_str("        exp_samples:\n");
        for a in firing {
            yaml.push_str(&format!("          - labels: '{{alertname=\"{a}\"}}'\n            value: 1\n"));
        }
    }
    let file = dir.join(format!("{phase}.test.yml"));
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new("promtool").args(["test", "rules"]).arg(&file).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{phase}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The rules file and the metric names its expressions read (ringest's and `up`).
fn rules_and_names() -> (std::path::PathBuf, BTreeSet<String>) {
    let rules_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring/thanos-receive.rules.yml");
    let names: BTreeSet<String> = metric_names(&std::fs::read_to_string(&rules_path).unwrap(), "{\"panels\": []}")
        .into_iter()
        .filter(|n| !NOT_RINGEST.contains(&n.as_str()) || n == "up")
        .collect();
    (rules_path, names)
}

/// Prometheus 2.42 scraping every node of `ring` every second, as job `thanos-receive`.
fn scrape(dir: &Path, ring: &Ring) -> ringest_e2e::oracle::Prometheus {
    let targets: Vec<String> = ring.nodes.iter().map(|n| format!("'{}'", n.http_addr)).collect();
    ringest_e2e::oracle::Prometheus::start(
        dir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: thanos-receive\n    static_configs:\n      \
             - targets: [{}]\n",
            targets.join(", ")
        ),
        &[],
    )
}

/// Writes 20 series at `t` for `tenant` through each of `nodes`, expecting `code`.
fn write_expecting(nodes: &[&ringest_e2e::Receiver], tenant: &str, t: i64, code: u16) {
    for (i, n) in nodes.iter().enumerate() {
        let w = WriteRequest {
            timeseries: (0..20)
                .map(|s| series(&[("__name__", "load"), ("s", &s.to_string()), ("via", &i.to_string())], &[(t, 1.0)]))
                .collect(),
            ..Default::default()
        };
        let resp = RemoteWriter::connect(&n.rw_addr).unwrap().with_tenant(tenant).send(&w).unwrap();
        assert_eq!(resp.status, code, "{}", resp.text());
    }
}

/// Writes through `nodes` five times a second for `secs` seconds, and on until `done` holds
/// (at most two minutes), each write answered `code`.
fn run_phase(nodes: &[&ringest_e2e::Receiver], secs: u64, code: u16, done: &dyn Fn() -> bool) {
    use std::time::{Duration, Instant};
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) || !done() {
        assert!(start.elapsed() < Duration::from_secs(120), "phase did not reach its condition");
        write_expecting(nodes, "default-tenant", now_ms(), code);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The alerts of deploy/monitoring against a real ring under faults: a three-node RF=3 ring
/// with an S3 bucket (moto behind a fault proxy) is scraped by Prometheus 2.42 every second
/// through a healthy phase, an S3 outage during which blocks are cut, a node killed with -9,
/// and a second one killed (no quorum: replication failing). The series scraped in each phase,
/// continued for 40 minutes as they went, are fed to `promtool test rules`: no alert fires for
/// the healthy phase, and in each fault exactly the alerts of that fault fire.
#[test]
fn alerts_are_silent_when_healthy_and_fire_in_their_faults() {
    use ringest_e2e::faultproxy::{FaultProxy, Mode};
    use ringest_e2e::s3::{Moto, MotoOpts};
    use std::time::Duration;

    let (rules_path, names) = rules_and_names();
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start(MotoOpts::default()).expect("start moto_server");
    moto.create_bucket("thanos").unwrap();
    let s3 = FaultProxy::start(moto.addr());
    let objstore = ringest_e2e::thanos::s3_objstore(&s3.endpoint(), "thanos");
    let mut ring =
        Ring::start(&[R, R, R], &["--receive.replication-factor=3".into(), format!("--objstore.config={objstore}")]);
    let prom = scrape(&tmp.path().join("prom"), &ring);
    let write = |nodes: &[&ringest_e2e::Receiver], tenant: &str, t: i64| write_expecting(nodes, tenant, t, 200);
    let mut failures = Vec::new();

    let all: Vec<&ringest_e2e::Receiver> = ring.nodes.iter().collect();
    run_phase(&all, 20, 200, &|| true);
    let healthy = capture(&prom.addr, &names, Duration::from_secs(15));
    if let Err(e) = alerts_firing(&rules_path, tmp.path(), "healthy", &healthy, &[], HOLD_MINUTES) {
        failures.push(e);
    }

    // S3 down, and a tenant whose head spans four hours: each node cuts a block and cannot
    // upload it.
    s3.set_mode(Mode::Refuse);
    let old = now_ms() - 4 * 3600 * 1000;
    write(&all, "history", old);
    write(&all, "history", now_ms());
    let failed = || {
        ring.nodes
            .iter()
            .all(|n| n.metric("thanos_shipper_upload_failures_total{tenant=\"history\"}").unwrap_or(0.0) >= 2.0)
    };
    run_phase(&all, 20, 200, &failed);
    let s3_down = capture(&prom.addr, &names, Duration::from_secs(20));
    if let Err(e) =
        alerts_firing(&rules_path, tmp.path(), "s3-down", &s3_down, &["ThanosReceiverS3UploadFailing"], HOLD_MINUTES)
    {
        failures.push(e);
    }

    // S3 back, then a node killed: the others forward to it in vain.
    s3.set_mode(Mode::Pass);
    ring.nodes[2].kill9();
    let live: Vec<&ringest_e2e::Receiver> = ring.nodes[..2].iter().collect();
    run_phase(&live, 20, 200, &|| true);
    let node_down = capture(&prom.addr, &names, Duration::from_secs(15));
    if let Err(e) = alerts_firing(
        &rules_path,
        tmp.path(),
        "node-down",
        &node_down,
        &["ThanosReceiveHighForwardRequestFailures", "ThanosReceiverDown", "ThanosReceiverHashringInconsistent"],
        HOLD_MINUTES,
    ) {
        failures.push(e);
    }

    // A second node killed: no series reaches its quorum, writes answer 503.
    ring.nodes[1].kill9();
    let last: Vec<&ringest_e2e::Receiver> = ring.nodes[..1].iter().collect();
    run_phase(&last, 20, 503, &|| true);
    let no_quorum = capture(&prom.addr, &names, Duration::from_secs(15));
    let no_quorum_alerts = [
        "ThanosReceiveHighForwardRequestFailures",
        "ThanosReceiveHighReplicationFailures",
        "ThanosReceiveHttpRequestErrorRateHigh",
        "ThanosReceiverDown",
        "ThanosReceiverHashringInconsistent",
        "ThanosReceiverReplicationFailing",
    ];
    if let Err(e) = alerts_firing(&rules_path, tmp.path(), "no-quorum", &no_quorum, &no_quorum_alerts, HOLD_MINUTES) {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The alerts of configuration, limits and uploads against a real node: one ringest in its own
/// hashring, with a limits file and a FILESYSTEM bucket, scraped by Prometheus 2.42. Each fault
/// is made for real and its scraped series fed to `promtool test rules` as above: no block
/// uploaded for three hours (the healthy series held for 200 minutes), a block uploaded
/// (silent), the hashring file broken and reverted, the limits file broken, a meta-monitoring
/// Prometheus that cannot be reached, and a tenant at its `head_series_limit`.
#[test]
fn config_limits_and_upload_alerts_fire_in_their_faults() {
    use std::time::Duration;

    let (rules_path, names) = rules_and_names();
    let tmp = tempfile::tempdir().unwrap();
    let limits = tmp.path().join("limits.yml");
    let good_limits = "write:\n  default:\n    request:\n      series_limit: 1000\n";
    std::fs::write(&limits, good_limits).unwrap();
    let bucket = tmp.path().join("bucket");
    let extra = [
        format!("--receive.limits-config-file={}", limits.display()),
        "--receive.limits-config-reload-timer=1s".into(),
        format!("--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n", bucket.display()),
    ];
    let ring = Ring::start(&[R], &extra);
    let prom = scrape(&tmp.path().join("prom"), &ring);
    let node = &ring.nodes[0];
    let nodes = [node];
    let counter = |name: &str| node.metric(name).unwrap_or(0.0);
    let mut failures = Vec::new();
    let mut expect = |phase: &str, window: u64, firing: &[&str], minutes: u32| {
        let series = capture(&prom.addr, &names, Duration::from_secs(window));
        if let Err(e) = alerts_firing(&rules_path, tmp.path(), phase, &series, firing, minutes) {
            failures.push(e);
        }
    };

    // Healthy, nothing to upload yet: silent for 40 minutes, ThanosReceiveNoUpload after three
    // hours without an upload.
    run_phase(&nodes, 15, 200, &|| true);
    expect("single-healthy", 10, &[], HOLD_MINUTES);
    expect("no-upload", 10, &["ThanosReceiveNoUpload"], 200);

    // A tenant whose head comes to span four hours: a block is cut and uploaded (its upload
    // counter seen at 0 by Prometheus first, so that the upload is an increase), and three
    // hours on nothing fires.
    write_expecting(&nodes, "history", now_ms() - 4 * 3600 * 1000, 200);
    let scraped = || {
        let q = ringest_e2e::thanos::query_escape("thanos_shipper_uploads_total{tenant=\"history\"}");
        let resp = ringest_e2e::client::http_get(&prom.addr, &format!("/api/v1/query?query={q}")).unwrap();
        resp.text().contains("\"history\"")
    };
    ringest_e2e::wait_for("Prometheus to scrape the new tenant's upload counter", Duration::from_secs(30), scraped);
    write_expecting(&nodes, "history", now_ms(), 200);
    let uploaded = || counter("thanos_shipper_uploads_total{tenant=\"history\"}") >= 1.0;
    ringest_e2e::wait_for("the history block's upload", Duration::from_secs(60), uploaded);
    run_phase(&nodes, 3, 200, &|| true);
    expect("uploaded", 20, &[], 200);

    // The hashring file broken: every refresh fails, the last reload is not successful.
    let ring_text = std::fs::read_to_string(&ring.ring_file).unwrap();
    std::fs::write(&ring.ring_file, "[{\"hashring\": ").unwrap();
    let errors = || counter("thanos_receive_hashrings_file_errors_total");
    let before = errors();
    run_phase(&nodes, 15, 200, &|| errors() >= before + 3.0);
    expect(
        "hashring-broken",
        10,
        &["ThanosReceiveHighHashringFileRefreshFailures", "ThanosReceiveConfigReloadFailure"],
        HOLD_MINUTES,
    );

    // Reverted to the very same text: the reload succeeds again. Then the limits file broken.
    std::fs::write(&ring.ring_file, &ring_text).unwrap();
    let reloaded = || counter("thanos_receive_config_last_reload_successful") == 1.0;
    ringest_e2e::wait_for("the reverted hashring to count as reloaded", Duration::from_secs(30), reloaded);
    std::fs::write(&limits, "write: [").unwrap();
    let reload_errors = || counter("thanos_receive_limits_config_reload_err_total");
    run_phase(&nodes, 15, 200, &|| reload_errors() >= 3.0);
    expect("limits-broken", 10, &["ThanosReceiveLimitsConfigReloadFailure"], HOLD_MINUTES);

    // A meta-monitoring Prometheus that refuses connections: its queries fail every 15 s.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    std::fs::write(
        &limits,
        format!("write:\n  global:\n    meta_monitoring_url: {dead_url}\n  default:\n    head_series_limit: 100000\n"),
    )
    .unwrap();
    let failed_queries = || counter("thanos_receive_metamonitoring_failed_queries_total");
    let first = failed_queries();
    run_phase(&nodes, 5, 200, &|| failed_queries() >= first + 1.0);
    let second = failed_queries();
    run_phase(&nodes, 5, 200, &|| failed_queries() >= second + 2.0);
    expect("meta-monitoring-down", 35, &["ThanosReceiveLimitsHighMetaMonitoringQueriesFailureRate"], HOLD_MINUTES);

    // A tenant over its head_series_limit (this node's own count): its writes answer 429.
    std::fs::write(&limits, "write:\n  default:\n    head_series_limit: 10\n").unwrap();
    let limited = || counter("thanos_receive_head_series_limit{tenant=\"\"}") == 10.0;
    ringest_e2e::wait_for("the head series limit to load", Duration::from_secs(30), limited);
    run_phase(&nodes, 15, 429, &|| true);
    expect("head-series-limited", 10, &["ThanosReceiveTenantLimitedByHeadSeries"], HOLD_MINUTES);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The receive handler's latency buckets reach the forward timeout as Thanos Receive's do
/// (up to 5 s, then every 2 s, then the timeout), so that the mixin's 10 s latency alert can
/// fire where the timeout allows such latencies: the same `le` values from both for the same
/// `--receive-forward-timeout`.
#[test]
fn receive_latency_buckets_follow_the_forward_timeout_as_in_thanos() {
    let tmp = tempfile::tempdir().unwrap();
    let les = |r: &ringest_e2e::Receiver| -> BTreeSet<String> {
        write_expecting(&[r], "default-tenant", now_ms(), 200);
        r.metrics()
            .lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_bucket{") && l.contains("handler=\"receive\""))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect()
    };
    let mut thanos = ringest_e2e::Receiver::unstarted_as(ringest_e2e::Impl::Thanos, &tmp.path().join("t"));
    thanos.extra = vec!["--receive-forward-timeout=15s".into()];
    thanos.relaunch();
    thanos.wait_ready(std::time::Duration::from_secs(60));
    let ours = ringest_e2e::Receiver::start(&tmp.path().join("r"), &["--receive-forward-timeout=15s"]);
    let (want, got) = (les(&thanos), les(&ours));
    assert!(want.contains("13") && want.contains("15"), "{want:?}");
    assert_eq!(got, want);
}

/// A peer that stops answering (SIGSTOP) in a two-node RF=1 ring with a 15 s forward timeout
/// (the receive handler's latency buckets reach 15 s, as Thanos sets them for it): between
/// backoffs, forwards to it wait out the timeout and every write stalls, so the p99 passes
/// 10 s and the mixin's latency alert fires with the alerts of failing writes; all silent
/// before, when healthy.
#[test]
fn a_stopped_peer_fires_the_latency_and_failing_write_alerts() {
    use std::time::{Duration, Instant};

    let (rules_path, names) = rules_and_names();
    let tmp = tempfile::tempdir().unwrap();
    let ring = Ring::start(&[R, R], &["--receive.replication-factor=1".into(), "--receive-forward-timeout=15s".into()]);
    let prom = scrape(&tmp.path().join("prom"), &ring);
    let node = &ring.nodes[0];
    let mut failures = Vec::new();
    run_phase(&[node], 15, 200, &|| true);
    let healthy = capture(&prom.addr, &names, Duration::from_secs(10));
    if let Err(e) = alerts_firing(&rules_path, tmp.path(), "two-healthy", &healthy, &[], HOLD_MINUTES) {
        failures.push(e);
    }

    ring.nodes[1].signal(libc::SIGSTOP);
    // Writers in parallel: the first requests wait out the forward timeout.
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..3 {
            s.spawn(move || {
                while start.elapsed() < Duration::from_secs(40) {
                    let req = WriteRequest {
                        timeseries: (0..20)
                            .map(|i| {
                                series(
                                    &[("__name__", "slow"), ("s", &i.to_string()), ("w", &w.to_string())],
                                    &[(now_ms(), 1.0)],
                                )
                            })
                            .collect(),
                        ..Default::default()
                    };
                    let resp = RemoteWriter::connect(&node.rw_addr).unwrap().send(&req).unwrap();
                    assert!(resp.status >= 500, "{} {}", resp.status, resp.text());
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    let stopped = capture(&prom.addr, &names, Duration::from_secs(30));
    ring.nodes[1].signal(libc::SIGCONT);
    let firing = [
        "ThanosReceiveHighForwardRequestFailures",
        "ThanosReceiveHttpRequestErrorRateHigh",
        "ThanosReceiveHttpRequestLatencyHigh",
        "ThanosReceiverDown",
        "ThanosReceiverHashringInconsistent",
        "ThanosReceiverReplicationFailing",
    ];
    if let Err(e) = alerts_firing(&rules_path, tmp.path(), "peer-stopped", &stopped, &firing, HOLD_MINUTES) {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
