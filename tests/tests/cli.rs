//! The command line as an operator meets it: version, help, Thanos flags, refusals with the
//! flag's name, exit codes, logs in logfmt and JSON, probes, and SIGTERM.

use std::process::Command;
use std::time::Duration;

use ringest_e2e::{Receiver, http_get, ringest_bin};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ringest_bin()).args(args).output().expect("run ringest");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn version_and_help() {
    // As `thanos --version` prints it (on standard error), with the program's name as invoked.
    let (code, _, out) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ringest, version "), "{out}");
    let thanos = std::process::Command::new(ringest_e2e::thanos::thanos_bin()).arg("--version").output().unwrap();
    let keys = |s: &str| s.lines().skip(1).map(|l| l.split(':').next().unwrap_or("").to_string()).collect::<Vec<_>>();
    let thanos = String::from_utf8_lossy(&thanos.stderr).to_string();
    assert!(thanos.starts_with("thanos, version "), "{thanos}");
    assert_eq!(keys(&out), keys(&thanos), "{out}");
    let (code, _, again) = run(&["receive", "--version"]);
    assert_eq!((code, &again), (0, &out));
    let (code, out, _) = run(&["receive", "--help"]);
    assert_eq!(code, 0);
    for flag in
        ["--remote-write.address", "--tsdb.path", "--label", "--receive.tenant-header", "--tsdb.wal-compression"]
    {
        assert!(out.contains(flag), "help lacks {flag}");
    }
    assert!(out.contains("[not implemented yet: relabelling]"), "help marks unimplemented flags");
    let (code, out, _) = run(&["tsdb", "dump", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("promtool"));
}

#[test]
fn refusals_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("--tsdb.path={}", dir.path().display());
    // No external label: Thanos' start-up error, exit 1.
    let (code, _, err) = run(&["receive", &path]);
    assert_eq!(code, 1);
    assert!(err.contains("no external labels configured"), "{err}");
    // An unimplemented flag is named.
    let (code, _, err) = run(&["receive", &path, "--label=a=\"b\"", "--receive.relabel-config-file=/etc/r.yml"]);
    assert_eq!(code, 1);
    assert!(err.contains("--receive.relabel-config-file") && err.contains("not implemented"), "{err}");
    // A request logging configuration Thanos would refuse, with Thanos' message.
    let bad_log = "--request.logging-config=options:\n  decision:\n    log_end: true\n";
    let (code, _, err) = run(&["receive", &path, "--label=a=\"b\"", bad_log]);
    assert_eq!(code, 1);
    assert!(err.contains("error while parsing config for request logging: level field is empty"), "{err}");
    // Unknown flag and bad values: usage error, exit 2.
    let (code, _, err) = run(&["receive", "--label=a=\"b\"", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["receive", "--label=a=\"b\"", "--http-grace-period=soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a valid duration string"), "{err}");
    // A port in use is reported with the flag.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, _, err) = run(&[
        "receive",
        &path,
        "--label=a=\"b\"",
        &format!("--http-address={addr}"),
        "--remote-write.address=127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--http-address") && err.contains("in use"), "{err}");
}

#[test]
fn logs_probes_and_clean_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &["--enable-auto-gomemlimit", "--log.level=debug"]);
    let healthy = http_get(&r.http_addr, "/-/healthy").unwrap();
    assert_eq!((healthy.status, healthy.text().as_str()), (200, "OK"));
    let ready = http_get(&r.http_addr, "/-/ready").unwrap();
    assert_eq!((ready.status, ready.text().as_str()), (200, "OK"));
    let m = r.metrics();
    for name in [
        "thanos_status{check=\"ready\",component=\"receive\"} 1",
        "prometheus_tsdb_head_series{tenant=\"default-tenant\"} 0",
        "prometheus_tsdb_wal_segment_current{tenant=\"default-tenant\"}",
        "process_resident_memory_bytes",
    ] {
        assert!(m.contains(name), "metrics lack {name}");
    }
    // Prometheus' own linter accepts the exposition.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), m.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r.terminate().success(), "SIGTERM exits 0");
    let logs = r.logs();
    for line in [
        "level=info",
        "msg=\"running receive\" mode=IngestorOnly",
        "msg=\"no supported bucket was configured, uploads will be disabled\"",
        "msg=\"changing probe status\" status=ready",
        "msg=\"storage started, and server is ready to receive requests\"",
        "msg=\"caught signal. Exiting.\"",
        "msg=\"shutting down storage\"",
        "msg=\"storage is closed\"",
        "msg=\"changing probe status\" status=not-ready reason=\"shutting down\"",
        "component=multi-tsdb tenant=default-tenant msg=\"opening TSDB\"",
        "level=debug",
        "flag=--enable-auto-gomemlimit",
    ] {
        assert!(logs.contains(line), "logs lack {line}:\n{logs}");
    }
    // The WAL was closed cleanly: the segment is padded to whole 32 KiB pages.
    let wal = r.tenant_dir("default-tenant").join("wal");
    for e in std::fs::read_dir(&wal).unwrap().flatten() {
        assert_eq!(e.metadata().unwrap().len() % 32768, 0, "{:?}", e.path());
    }
    // JSON logs.
    let tmp2 = tempfile::tempdir().unwrap();
    let r2 = Receiver::start(&tmp2.path().join("data"), &["--log.format=json"]);
    std::thread::sleep(Duration::from_millis(50));
    let first = r2.logs().lines().next().unwrap().to_string();
    assert!(
        first.starts_with("{\"caller\":")
            && first.contains("\"level\":\"info\"")
            && first.contains("\"msg\":\"running receive\""),
        "{first}"
    );
}

fn fill(r: &Receiver, series: usize, rounds: usize) {
    let w = ringest_e2e::workload::Workload {
        series,
        batch: 2000,
        start_ms: 1_800_000_000_000,
        step_ms: 15_000,
        name: "replay".into(),
    };
    std::thread::scope(|s| {
        for part in 0..4 {
            let (w, addr) = (w.clone(), r.rw_addr.clone());
            s.spawn(move || {
                let mut c = ringest_e2e::RemoteWriter::connect(&addr).unwrap();
                let mut acked = ringest_e2e::workload::Acked::new();
                let wl = ringest_e2e::workload::Workload { name: format!("replay{part}"), ..w };
                wl.send(&mut c, 0..rounds, &mut acked).unwrap();
            });
        }
    });
}

#[test]
fn not_ready_while_the_wal_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &[]);
    fill(&r, 25_000, 30); // 4 x 25k series x 30 samples
    r.kill9();
    r.relaunch();
    let mut unready = 0;
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(120), "never ready:\n{}", r.logs());
        let Ok(ready) = http_get(&r.http_addr, "/-/ready") else { continue };
        if ready.status == 200 {
            break;
        }
        assert_eq!((ready.status, ready.text().as_str()), (503, "NOT OK\n"));
        let healthy = http_get(&r.http_addr, "/-/healthy").unwrap();
        assert_eq!(healthy.status, 200, "healthy while replaying");
        let rw = ringest_e2e::http_request(
            &r.rw_addr,
            "POST",
            "/api/v1/receive",
            &[("Content-Encoding", "snappy")],
            b"\x00",
        );
        match rw {
            Ok(resp) if resp.status != 200 => {
                assert_eq!((resp.status, resp.text().as_str()), (503, "Service Unavailable"));
            }
            _ => {}
        }
        unready += 1;
    }
    assert!(unready > 0, "the replay window was observed");
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"default-tenant\"}"), Some(100_000.0));
    assert!(r.metric("prometheus_tsdb_data_replay_duration_seconds{tenant=\"default-tenant\"}").unwrap() > 0.0);
}

/// Opens a remote-write request whose body never completes, so it stays in flight.
fn stuck_request(addr: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/receive HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\n0123456789"
    )
    .unwrap();
    s
}

#[test]
fn sigterm_drains_in_flight_requests_and_a_second_signal_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &[]);
    let _stuck = stuck_request(&r.rw_addr);
    std::thread::sleep(Duration::from_millis(100));
    r.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let ready = http_get(&r.http_addr, "/-/ready").unwrap();
    assert_eq!(ready.status, 503, "not ready while draining");
    assert!(r.wait_exit(Duration::from_millis(500)).is_none(), "waits for the in-flight request");
    r.signal(libc::SIGTERM);
    let st = r.wait_exit(Duration::from_secs(3)).expect("second signal exits at once");
    assert_eq!(st.code(), Some(1));
    assert!(r.logs().contains("caught second signal, exiting immediately"));
}

#[test]
fn grace_period_bounds_the_drain() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &["--http-grace-period=1s"]);
    let _stuck = stuck_request(&r.rw_addr);
    std::thread::sleep(Duration::from_millis(100));
    r.signal(libc::SIGTERM);
    let st = r.wait_exit(Duration::from_secs(10)).expect("exits after the grace period");
    assert!(st.success(), "{st}");
    assert!(r.logs().contains("did not finish within the grace period"));
    let wal = r.tenant_dir("default-tenant").join("wal");
    for e in std::fs::read_dir(&wal).unwrap().flatten() {
        assert_eq!(e.metadata().unwrap().len() % 32768, 0, "WAL closed cleanly");
    }
}

#[test]
fn tsdb_status_in_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    let mut w = ringest_e2e::RemoteWriter::connect(&r.rw_addr).unwrap();
    let req = ringest_proto::prometheus::WriteRequest {
        timeseries: (0..5)
            .map(|i| {
                ringest_e2e::client::series(
                    &[("__name__", "up"), ("job", &format!("j{i}"))],
                    &[(1_800_000_000_000, 1.0)],
                )
            })
            .collect(),
        metadata: vec![],
    };
    assert_eq!(w.send(&req).unwrap().status, 200);
    // Prometheus' shape on the ops port, as the operations guide reads it.
    let walked = std::time::Instant::now();
    let ops = http_get(&r.http_addr, "/api/v1/status/tsdb").unwrap();
    assert_eq!(ops.status, 200);
    let t = ops.text();
    for needle in [
        "\"status\":\"success\"",
        "\"data\":{",
        "\"numSeries\":5",
        "\"chunkCount\":5",
        "\"minTime\":1800000000000",
        "\"seriesCountByMetricName\":[{\"name\":\"up\",\"value\":5}]",
    ] {
        assert!(t.contains(needle), "{needle} not in {t}");
    }
    // Thanos' shape on the remote-write port: the caller's tenant only, no CORS headers (a page
    // on any origin could read it), and never every tenant at once.
    let th = http_get(&r.rw_addr, "/api/v1/status/tsdb").unwrap();
    assert_eq!(th.status, 200);
    assert!(th.text().contains("\"data\":[{") && th.text().contains("\"tenant\":\"default-tenant\""), "{}", th.text());
    assert!(th.text().contains("\"numSeries\":5"), "{}", th.text());
    assert_eq!(th.header("access-control-allow-origin"), None);
    let other =
        ringest_e2e::http_request(&r.rw_addr, "GET", "/api/v1/status/tsdb", &[("THANOS-TENANT", "x")], &[]).unwrap();
    assert_eq!(other.status, 200);
    assert!(other.text().contains("\"data\":[]"), "another tenant sees nothing of this one: {}", other.text());
    for headers in [&[][..], &[("THANOS-TENANT", "x")][..]] {
        let all =
            ringest_e2e::http_request(&r.rw_addr, "GET", "/api/v1/status/tsdb?all_tenants=true", headers, &[]).unwrap();
        assert_eq!(all.status, 403, "{}", all.text());
        assert!(all.text().contains("all_tenants is not served"), "{}", all.text());
    }
    // The statistics are computed at most every 10 s per tenant: new series show up in the
    // lists once the last walk is older than that (bounded cost, whatever the rate of calls).
    let more = ringest_proto::prometheus::WriteRequest {
        timeseries: vec![ringest_e2e::client::series(
            &[("__name__", "up"), ("job", "j5")],
            &[(1_800_000_000_000, 1.0)],
        )],
        metadata: vec![],
    };
    assert_eq!(w.send(&more).unwrap().status, 200);
    let series_by_metric = |r: &ringest_e2e::HttpResponse| {
        r.text().contains("\"seriesCountByMetricName\":[{\"name\":\"up\",\"value\":6}]")
    };
    let again = http_get(&r.rw_addr, "/api/v1/status/tsdb").unwrap();
    assert!(again.text().contains("\"numSeries\":6"), "head counts are current: {}", again.text());
    if walked.elapsed() < Duration::from_secs(8) {
        assert!(!series_by_metric(&again), "cardinality lists were served from the last walk: {}", again.text());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = http_get(&r.rw_addr, "/api/v1/status/tsdb").unwrap();
        if series_by_metric(&now) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the statistics were never walked again: {}", now.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let bad = http_get(&r.http_addr, "/api/v1/status/tsdb?limit=0").unwrap();
    assert_eq!(bad.status, 400);
}

/// `--name` → default as `thanos receive --help` prints it (`None`: no default shown), or
/// `"bool"` for `--[no-]name` switches. Kingpin's own `--help-long`/`--help-man` are left out.
fn thanos_flags() -> std::collections::BTreeMap<String, Option<String>> {
    let out = Command::new(ringest_e2e::thanos::thanos_bin()).args(["receive", "--help"]).output().expect("thanos");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let mut flags = std::collections::BTreeMap::new();
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("-h, ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("--") else { continue };
        if line.len() - t.len() > 8 {
            continue; // a wrapped help line that starts with a flag name
        }
        let spec = rest.split("  ").next().unwrap_or(rest).trim();
        if let Some(name) = spec.strip_prefix("[no-]") {
            flags.insert(name.to_string(), Some("bool".into()));
            continue;
        }
        let (name, value) = spec.split_once('=').map_or((spec, None), |(n, v)| (n, Some(v)));
        // Placeholders (`<file-path>`, `key="value" ...`, `RECEIVE.LOCAL-ENDPOINT`) are not defaults.
        let placeholder = |v: &str| {
            v.starts_with('<')
                || v.ends_with("...")
                || (v.bytes().any(|b| b.is_ascii_alphabetic()) && v.to_uppercase() == v && !v.starts_with('"'))
        };
        let default = value.filter(|v| !placeholder(v)).map(|v| v.trim_matches('"').to_string());
        flags.insert(name.to_string(), default);
    }
    flags
}

#[test]
fn every_flag_of_the_real_thanos_receive_is_known_with_its_default() {
    let thanos = thanos_flags();
    assert!(thanos.len() > 70, "parsed {} flags of thanos receive --help", thanos.len());
    assert_eq!(thanos.get("tsdb.retention"), Some(&Some("15d".to_string())), "{thanos:?}");
    assert_eq!(thanos.get("tsdb.wal-compression"), Some(&Some("bool".to_string())), "{thanos:?}");
    let with_defaults = thanos.values().filter(|d| d.as_deref().is_some_and(|d| d != "bool" && !d.is_empty())).count();
    assert!(with_defaults > 30, "{with_defaults} defaults parsed: {thanos:?}");
    let (code, out, _) = run(&["receive", "--help"]);
    assert_eq!(code, 0);
    // ringest's help: `--name <VALUE>` then the help text, ending `[default: x]` for valued
    // flags and `(default: true|false; ...)` for switches.
    let mut ours: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            let name = rest.split([' ', '<']).next().unwrap().to_string();
            ours.insert(name.clone(), String::new());
            current = Some(name);
        } else if let Some(c) = &current {
            ours.get_mut(c).unwrap().push_str(t);
            ours.get_mut(c).unwrap().push(' ');
        }
    }
    let mut problems = Vec::new();
    for (name, default) in &thanos {
        if name == "help" || name == "version" {
            continue;
        }
        let Some(help) = ours.get(name) else {
            problems.push(format!("--{name}: not a ringest receive flag"));
            continue;
        };
        match default.as_deref() {
            Some("bool") if !help.contains("(default: true;") && !help.contains("(default: false;") => {
                problems.push(format!("--{name}: ringest does not take it as a switch: {help}"));
            }
            Some(d) if d != "bool" && !d.is_empty() && !help.contains(&format!("[default: {d}]")) => {
                problems.push(format!("--{name}: Thanos' default is {d:?}, ringest's help says {help}"));
            }
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{} differences from thanos receive:\n{}", problems.len(), problems.join("\n"));
}

/// A tenant whose TSDB cannot be opened (here its `wal` is a file) does not keep the node from
/// starting: the node becomes ready and serves the other tenants; that tenant's writes get 503
/// naming it and the cause, which is in the log and in `ringest_tsdb_open_failed`.
#[test]
fn a_tenant_that_fails_to_open_does_not_stop_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("broken")).unwrap();
    std::fs::write(data.join("broken").join("wal"), b"not a directory").unwrap();
    let r = Receiver::start(&data, &[]);
    let req = ringest_proto::prometheus::WriteRequest {
        timeseries: vec![ringest_e2e::client::series(&[("__name__", "up")], &[(1_800_000_000_000, 1.0)])],
        metadata: vec![],
    };
    let body = ringest_e2e::client::encode(&req);
    let rw = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
    let post = |tenant: &str| {
        let headers = [rw[0], rw[1], ("THANOS-TENANT", tenant)];
        ringest_e2e::http_request(&r.rw_addr, "POST", "/api/v1/receive", &headers, &body).unwrap()
    };
    assert_eq!(post("default-tenant").status, 200);
    assert_eq!(post("fresh").status, 200, "new tenants are created as before");
    let refused = post("broken");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("TSDB of tenant broken unavailable"), "{}", refused.text());
    assert!(r.logs().contains("opening TSDB failed"), "{}", r.logs());
    assert_eq!(r.metric("ringest_tsdb_open_failed{tenant=\"broken\"}"), Some(1.0));
}

/// A tenant directory whose name is no longer accepted for writes (here reserved, as one Thanos
/// may have created) is still opened at start-up: what its WAL holds is replayed (and would be
/// shipped), with a warning; writes naming it are refused.
#[test]
fn an_existing_tenant_with_a_refused_name_is_still_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut r = Receiver::start(&data, &[]);
    let req = ringest_proto::prometheus::WriteRequest {
        timeseries: vec![ringest_e2e::client::series(&[("__name__", "up")], &[(1_800_000_000_000, 1.0)])],
        metadata: vec![],
    };
    let body = ringest_e2e::client::encode(&req);
    let post = |r: &Receiver, tenant: &str| {
        let h = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf"), ("THANOS-TENANT", tenant)];
        ringest_e2e::http_request(&r.rw_addr, "POST", "/api/v1/receive", &h, &body).unwrap()
    };
    assert_eq!(post(&r, "legacy").status, 200);
    r.kill9();
    std::fs::rename(data.join("legacy"), data.join("__legacy")).unwrap();
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"__legacy\"}"), Some(1.0), "{}", r.logs());
    assert!(r.logs().contains("opening a tenant whose name is refused for new writes"), "{}", r.logs());
    assert_eq!(post(&r, "__legacy").status, 400);
}
