//! The limits file (`--receive.limits-config-file`), checked from outside:
//!
//! - each request limit (`size_bytes_limit`, `series_limit`, `samples_limit`, default and per
//!   tenant) answers 413 at exactly the limit plus one and 200 at the limit, with the same codes
//!   as Thanos Receive given the same file;
//! - `head_series_limit` answers 429 once a tenant has reached it and not before: on one node,
//!   across an RF=3 ring of ringest (the limit counts every replica, as Thanos' docs define it),
//!   and with a real Prometheus 2.42 behind basic auth as the meta-monitoring source;
//! - ringest's own label limits drop the series over them and write the others (400), and its
//!   ingestion rate answers 429 with `Retry-After`, and a tenant offering 10x its rate does
//!   not slow another tenant's writes;
//! - the file is reloaded under load without failing a write; a bad reload keeps the limits in
//!   force and is counted; the concurrency gate is exported;
//! - a file that does not parse stops the start-up, naming the key.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::client::{RemoteWriter, series};
use ringest_e2e::oracle::Prometheus;
use ringest_e2e::pki::Pki;
use ringest_e2e::ring::{Ring, now_ms};
use ringest_e2e::{Receiver, wait_for};
use ringest_proto::prometheus::{TimeSeries, WriteRequest};

/// `n` series named `prefix_i`, each with `samples` samples.
fn req(prefix: &str, n: usize, samples: usize) -> WriteRequest {
    let t = now_ms();
    let points: Vec<(i64, f64)> = (0..samples).map(|i| (t - (samples - i) as i64, i as f64)).collect();
    let timeseries: Vec<TimeSeries> =
        (0..n).map(|i| series(&[("__name__", &format!("{prefix}_{i}")), ("job", "limits")], &points)).collect();
    WriteRequest { timeseries, ..Default::default() }
}

/// Writes `w` as `tenant`; the status and body.
fn write(addr: &str, tenant: &str, w: &WriteRequest) -> (u16, String) {
    let r = RemoteWriter::connect(addr).unwrap().with_tenant(tenant).send(w).unwrap();
    (r.status, r.text())
}

/// A receiver of kind `imp` with `flags`, ready.
fn start(imp: ringest_e2e::Impl, data: &Path, flags: &[String]) -> Receiver {
    let mut r = Receiver::unstarted_as(imp, data);
    r.extra = flags.to_vec();
    r.relaunch();
    r.wait_ready(Duration::from_secs(120));
    r
}

/// A request whose protobuf form is exactly `len` bytes (it compresses well: one series whose
/// label value is padded), and that length.
fn sized(len: usize) -> (WriteRequest, usize) {
    let t = now_ms();
    for pad in 0..len {
        let w = WriteRequest {
            timeseries: vec![series(&[("__name__", "sized"), ("pad", &"a".repeat(pad))], &[(t, 1.0)])],
            ..Default::default()
        };
        let n = snap::raw::decompress_len(&ringest_e2e::client::encode(&w)).unwrap();
        if n == len {
            return (w, n);
        }
    }
    panic!("no request of {len} bytes");
}

#[test]
fn request_limits_answer_413_past_each_limit_as_thanos_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (at_size, size) = sized(4000);
    let (over_size, over) = sized(size + 1);
    assert_eq!(over, size + 1, "one byte more");
    let file = tmp.path().join("limits.yaml");
    std::fs::write(
        &file,
        format!(
            "write:\n  default:\n    request:\n      series_limit: 3\n      samples_limit: 6\n  tenants:\n    \
             big:\n      request:\n        series_limit: 0\n        samples_limit: 0\n        size_bytes_limit: {size}\n"
        ),
    )
    .unwrap();
    let flags = vec![format!("--receive.limits-config-file={}", file.display())];
    let cases: Vec<(&str, WriteRequest, u16, &str)> = vec![
        ("default-tenant", req("s", 3, 2), 200, ""),
        ("default-tenant", req("s", 4, 1), 413, "too many timeseries"),
        ("default-tenant", req("t", 1, 6), 200, ""),
        ("default-tenant", req("t", 1, 7), 413, "too many samples"),
        ("big", req("s", 10, 10), 200, ""),
        ("big", at_size, 200, ""),
        ("big", over_size, 413, "write request too large"),
    ];
    let mut codes = Vec::new();
    for imp in [R, T] {
        let mut r = start(imp, &tmp.path().join(format!("{imp:?}")), &flags);
        let got: Vec<u16> = cases
            .iter()
            .map(|(tenant, w, want, msg)| {
                let (code, body) = write(&r.rw_addr, tenant, w);
                assert!(body.contains(msg), "{imp:?} {tenant}: {body}");
                if imp == R {
                    assert_eq!(code, *want, "{tenant}: {body}");
                    // ringest names the limit and the tenant.
                    if code == 413 {
                        assert!(body.contains("_limit of tenant") && body.contains("limits file"), "{body}");
                    }
                }
                code
            })
            .collect();
        if imp == R {
            let m = r.metrics();
            let hit =
                ringest_e2e::ring::metric_sum(&m, "thanos_receive_write_limits_hit_count", &[("limit", "series")]);
            assert_eq!(hit, 1.0, "{m}");
            let configured = ringest_e2e::ring::metric_sum(
                &m,
                "thanos_receive_write_limits",
                &[("tenant", "big"), ("limit", "body_size")],
            );
            assert_eq!(configured, size as f64);
        }
        codes.push(got);
        assert!(r.terminate().success(), "{}", r.logs());
    }
    assert_eq!(codes[0], codes[1], "ringest and Thanos Receive answer the same codes");
}

#[test]
fn head_series_limit_answers_429_once_reached_on_one_node_and_across_a_ring() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("limits.yaml");
    std::fs::write(
        &file,
        "write:\n  default:\n    head_series_limit: 10\n  tenants:\n    free:\n      head_series_limit: 0\n",
    )
    .unwrap();
    let flag = format!("--receive.limits-config-file={}", file.display());
    let mut r = start(R, &tmp.path().join("one"), std::slice::from_ref(&flag));
    assert_eq!(write(&r.rw_addr, "a", &req("a", 9, 1)).0, 200);
    assert_eq!(write(&r.rw_addr, "a", &req("b", 1, 1)).0, 200, "9 head series: under the limit");
    let (code, body) = write(&r.rw_addr, "a", &req("a", 1, 1));
    assert_eq!(code, 429, "10 head series: the limit is reached: {body}");
    assert!(body.contains("tenant is above active series limit") && body.contains("head_series_limit"), "{body}");
    assert_eq!(write(&r.rw_addr, "free", &req("a", 20, 1)).0, 200, "a tenant without a limit");
    assert_eq!(write(&r.rw_addr, "free", &req("b", 1, 1)).0, 200);
    assert_eq!(r.metric("thanos_receive_head_series_limited_requests_total{tenant=\"a\"}"), Some(1.0));
    assert_eq!(r.metric("thanos_receive_head_series_limit{tenant=\"\"}"), Some(10.0));
    assert!(r.terminate().success(), "{}", r.logs());

    // An RF=3 ring of three: 10 series are 30 head series across the ring.
    std::fs::write(&file, "write:\n  default:\n    head_series_limit: 30\n").unwrap();
    let ring = Ring::start(&[R, R, R], &[flag, "--receive.replication-factor=3".into()]);
    let all_have = |n: f64| {
        wait_for(&format!("{n} head series on every node"), Duration::from_secs(30), || {
            ring.nodes.iter().all(|r| r.metric("prometheus_tsdb_head_series{tenant=\"a\"}") == Some(n))
        })
    };
    assert_eq!(write(&ring.nodes[0].rw_addr, "a", &req("a", 9, 1)).0, 200);
    all_have(9.0);
    assert_eq!(write(&ring.nodes[1].rw_addr, "a", &req("b", 1, 1)).0, 200, "27 across the ring");
    all_have(10.0);
    for node in &ring.nodes {
        let (code, body) = write(&node.rw_addr, "a", &req("a", 1, 1));
        assert_eq!(code, 429, "30 across the ring: {body}");
        assert!(body.contains("30 head series across the ring"), "{body}");
    }
}

#[test]
fn head_series_limit_with_prometheus_as_meta_monitoring() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::unstarted(&tmp.path().join("node"));
    // Prometheus 2.42 scrapes the node every second and serves its API over TLS with basic
    // auth; the node queries it every 15 s, as Thanos, with meta_monitoring_http_client's
    // CA and credentials.
    let pki = Pki::new(&tmp.path().join("pki"));
    let web = tmp.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  ringest: {}\n",
            Pki::s(&pki.cert),
            Pki::s(&pki.key),
            bcrypt::hash("s3cret", 4).unwrap()
        ),
    )
    .unwrap();
    let web_flag = format!("--web.config.file={}", web.display());
    let prom = Prometheus::start_with_web_config(
        &tmp.path().join("prom"),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: receive\n    static_configs:\n      - targets: ['{}']\n",
            r.http_addr
        ),
        &[&web_flag],
    );
    let password = tmp.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let file = tmp.path().join("limits.yaml");
    std::fs::write(
        &file,
        format!(
            "write:\n  global:\n    meta_monitoring_url: https://{}\n    meta_monitoring_http_client:\n      \
             basic_auth: {{username: ringest, password_file: {}}}\n      tls_config: {{ca_file: {}}}\n  \
             default:\n    head_series_limit: 5\n",
            prom.addr,
            password.display(),
            Pki::s(&pki.ca)
        ),
    )
    .unwrap();
    r.extra = vec![format!("--receive.limits-config-file={}", file.display())];
    r.first_start();
    assert_eq!(write(&r.rw_addr, "a", &req("a", 6, 1)).0, 200, "unknown to meta-monitoring: allowed");
    // Once Prometheus has scraped the 6 series and the node has asked it, writes are refused.
    let refused = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        write(&r.rw_addr, "a", &req("a", 1, 1)).0 == 429
    });
    assert!(refused, "no 429 within 60 s: {}", r.logs());
    assert_eq!(r.metric("thanos_receive_metamonitoring_failed_queries_total"), Some(0.0), "{}", r.logs());
    // A wrong password (the file is read at each query): the queries fail, and are counted.
    std::fs::write(&password, "wrong\n").unwrap();
    wait_for("a failed meta-monitoring query", Duration::from_secs(30), || {
        r.metric("thanos_receive_metamonitoring_failed_queries_total").unwrap_or(0.0) >= 1.0
    });
    assert!(r.logs().contains("status 401"), "{}", r.logs());
    assert!(r.terminate().success(), "{}", r.logs());
}

#[test]
fn label_limits_drop_series_and_the_rate_limit_answers_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("limits.yaml");
    std::fs::write(
        &file,
        "write:\n  default:\n    max_label_names_per_series: 3\n    max_label_value_length: 10\n    \
         ingestion_rate: 10\n    ingestion_burst_size: 20\n  tenants:\n    labels:\n      ingestion_rate: 0\n",
    )
    .unwrap();
    let r = start(R, &tmp.path().join("node"), &[format!("--receive.limits-config-file={}", file.display())]);
    // Three series: one within the limits, one with 4 labels, one with an 11-byte value.
    let t = now_ms();
    let w = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "ok"), ("a", "1")], &[(t, 1.0)]),
            series(&[("__name__", "many"), ("a", "1"), ("b", "2"), ("c", "3")], &[(t, 1.0)]),
            series(&[("__name__", "long"), ("a", "12345678901")], &[(t, 1.0)]),
        ],
        ..Default::default()
    };
    let (code, body) = write(&r.rw_addr, "labels", &w);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("2 series dropped") && body.contains("max_label_names_per_series of 3"), "{body}");
    assert!(body.contains("the other series were written"), "{body}");
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"labels\"}"), Some(1.0), "the valid series is written");
    let m = r.metrics();
    let dropped =
        ringest_e2e::ring::metric_sum(&m, "ringest_receive_label_limited_series_total", &[("tenant", "labels")]);
    assert_eq!(dropped, 2.0);

    // 20 samples (the burst) pass; 5 more at once do not, until the bucket refills (10/s).
    assert_eq!(write(&r.rw_addr, "rate", &req("r", 1, 20)).0, 200);
    let resp = RemoteWriter::connect(&r.rw_addr).unwrap().with_tenant("rate").send(&req("r", 1, 5)).unwrap();
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert!(resp.text().contains("ingestion_rate"), "{}", resp.text());
    let retry: u64 = resp.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    wait_for("the bucket to refill", Duration::from_secs(5), || write(&r.rw_addr, "rate", &req("q", 1, 5)).0 == 200);
    let (code, body) = write(&r.rw_addr, "rate", &req("r", 1, 21));
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("more than the ingestion_burst_size 20"), "{body}");
}

#[test]
fn limits_reload_under_load_and_a_bad_reload_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("limits.yaml");
    let limits = |series: usize| {
        format!("write:\n  global:\n    max_concurrency: 4\n  default:\n    request:\n      series_limit: {series}\n")
    };
    std::fs::write(&file, limits(100)).unwrap();
    let r = start(R, &tmp.path().join("node"), &[format!("--receive.limits-config-file={}", file.display())]);
    assert_eq!(r.metric("thanos_receive_write_request_concurrent_gate_write_requests_max"), Some(4.0));
    // Writers of 4 series, under every limit below, until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let (addr, stop) = (r.rw_addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                let mut w = RemoteWriter::connect(&addr).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    codes.push(w.send(&req(&format!("load{i}"), 4, 1)).unwrap().status);
                }
                codes
            })
        })
        .collect();
    let reloads = |n: f64| {
        wait_for(&format!("{n} reloads"), Duration::from_secs(30), || {
            r.metric("thanos_receive_limits_config_reload_total") == Some(n)
        })
    };
    std::fs::write(&file, limits(50)).unwrap();
    reloads(1.0);
    assert_eq!(write(&r.rw_addr, "t", &req("s", 51, 1)).0, 413);
    assert_eq!(write(&r.rw_addr, "t", &req("s", 50, 1)).0, 200);
    std::fs::write(&file, "write:\n  default:\n    request:\n      series_limt: 5\n").unwrap();
    reloads(2.0);
    assert_eq!(r.metric("thanos_receive_limits_config_reload_err_total"), Some(1.0));
    assert!(r.logs().contains("series_limt"), "the bad key is named in the log");
    assert_eq!(write(&r.rw_addr, "t", &req("s", 51, 1)).0, 413, "the limits in force are kept");
    assert_eq!(write(&r.rw_addr, "t", &req("s", 50, 1)).0, 200);
    std::fs::write(&file, limits(5)).unwrap();
    reloads(3.0);
    assert_eq!(write(&r.rw_addr, "t", &req("s", 6, 1)).0, 413);
    stop.store(true, Ordering::Relaxed);
    let codes: Vec<u16> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(codes.len() > 10 && codes.iter().all(|&c| c == 200), "writes during the reloads: {codes:?}");
    assert!(
        r.metric("thanos_receive_write_request_concurrent_gate_write_requests_total").unwrap() >= codes.len() as f64
    );
}

#[test]
fn a_limits_file_that_does_not_parse_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("limits.yaml");
    for (content, want) in [
        ("write:\n  default:\n    head_series_limt: 5\n", "head_series_limt"),
        ("write:\n  global:\n    meta_monitoring_url: prom:9090\n", "not a valid meta-monitoring URL"),
        (
            "write:\n  global:\n    meta_monitoring_url: http://p\n    meta_monitoring_http_client:\n      oauth2: {}\n",
            "meta_monitoring_http_client: oauth2 is not supported by ringest yet",
        ),
    ] {
        std::fs::write(&file, content).unwrap();
        let out = std::process::Command::new(ringest_e2e::ringest_bin())
            .args([
                "receive",
                "--label=replica=\"r\"",
                &format!("--receive.limits-config-file={}", file.display()),
                &format!("--tsdb.path={}", tmp.path().join("data").display()),
                "--http-address=127.0.0.1:0",
                "--grpc-address=127.0.0.1:0",
                "--remote-write.address=127.0.0.1:0",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains(want), "{content:?}: {text}");
    }
    let out = std::process::Command::new(ringest_e2e::ringest_bin())
        .args([
            "receive",
            "--label=replica=\"r\"",
            &format!("--receive.limits-config-file={}", file.display()),
            "--receive.limits-config=write: {}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("both --receive.limits-config-file and --receive.limits-config"), "{text}");
}

/// Checklist E.45, the last part: one tenant writing at 10x its `ingestion_rate` does not slow
/// another down. `noisy` may write 20,000 samples a second and offers 200,000 (four clients,
/// 25 requests of 2,000 samples a second each, at the lowest CPU priority as remote clients); `quiet` writes 50
/// series every 20 ms throughout. Its p99 beside `noisy` stays within 2x its p99 alone (or
/// 20 ms, which two shared cores may take anyway, as in the slowloris check); `noisy` gets its
/// share and 429 for the rest.
#[test]
fn a_tenant_at_ten_times_its_rate_does_not_slow_another() {
    use ringest_e2e::latency::{as_remote_client, p99};
    use std::time::Instant;

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("limits.yaml");
    std::fs::write(
        &file,
        "write:\n  tenants:\n    noisy:\n      ingestion_rate: 20000\n      ingestion_burst_size: 20000\n",
    )
    .unwrap();
    let r = start(R, &tmp.path().join("node"), &[format!("--receive.limits-config-file={}", file.display())]);
    let mut quiet = RemoteWriter::connect(&r.rw_addr).unwrap().with_tenant("quiet");
    let mut round = 0usize;
    let mut quiet_phase = |rounds: usize| -> Vec<Duration> {
        (0..rounds)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                round += 1;
                let t = now_ms();
                let w = WriteRequest {
                    timeseries: (0..50)
                        .map(|i| series(&[("__name__", &format!("quiet_{i}"))], &[(t, round as f64)]))
                        .collect(),
                    ..Default::default()
                };
                let start = Instant::now();
                let resp = quiet.send(&w).unwrap();
                let took = start.elapsed();
                assert_eq!(resp.status, 200, "{}", resp.text());
                took
            })
            .collect()
    };
    let alone = quiet_phase(300);

    let stop = Arc::new(AtomicBool::new(false));
    let noisy: Vec<_> = (0..4)
        .map(|k| {
            let (stop, addr) = (stop.clone(), r.rw_addr.clone());
            std::thread::spawn(move || {
                as_remote_client();
                let mut w = RemoteWriter::connect(&addr).unwrap().with_tenant("noisy");
                let (mut ok, mut limited, mut last) = (0u64, 0u64, 0i64);
                let mut next = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    last = now_ms().max(last + 1);
                    let req = WriteRequest {
                        timeseries: (0..2000)
                            .map(|i| series(&[("__name__", &format!("noisy_{k}_{i}"))], &[(last, 1.0)]))
                            .collect(),
                        ..Default::default()
                    };
                    let resp = w.send(&req).unwrap();
                    match resp.status {
                        200 => ok += 1,
                        429 => {
                            assert!(resp.header("retry-after").is_some(), "{}", resp.text());
                            limited += 1;
                        }
                        s => panic!("noisy got {s}: {}", resp.text()),
                    }
                    next += Duration::from_millis(40);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                (ok, limited)
            })
        })
        .collect();
    let beside = quiet_phase(300);
    stop.store(true, Ordering::Release);
    let (ok, limited) = noisy.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let (base, loaded) = (p99(&alone), p99(&beside));
    println!(
        "quiet p99: {base:?} alone, {loaded:?} beside noisy ({ok} of its requests written, {limited} refused 429)"
    );
    assert!(ok > 0 && limited > 4 * ok, "noisy: {ok} written, {limited} refused");
    assert!(loaded <= (base * 2).max(Duration::from_millis(20)), "p99 {loaded:?}, alone {base:?}");
}
