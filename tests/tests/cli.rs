//! The command line as an operator meets it: version, help, Thanos flags, refusals with the
//! flag's name, exit codes, logs in logfmt and JSON, probes, and SIGTERM.

use std::process::Command;
use std::time::Duration;

use ringest_e2e::{Ringest, free_port, http_get, ringest_bin};

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
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ringest "), "{out}");
    let (code, out, _) = run(&["receive", "--help"]);
    assert_eq!(code, 0);
    for flag in
        ["--remote-write.address", "--tsdb.path", "--label", "--receive.tenant-header", "--tsdb.wal-compression"]
    {
        assert!(out.contains(flag), "help lacks {flag}");
    }
    assert!(out.contains("[not implemented yet: hashring and replication]"), "help marks unimplemented flags");
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
    let (code, _, err) = run(&["receive", &path, "--label=a=\"b\"", "--objstore.config-file=/etc/o.yml"]);
    assert_eq!(code, 1);
    assert!(err.contains("--objstore.config-file") && err.contains("not implemented"), "{err}");
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
        &format!("--remote-write.address=127.0.0.1:{}", free_port()),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--http-address") && err.contains("in use"), "{err}");
}

#[test]
fn logs_probes_and_clean_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Ringest::start(&tmp.path().join("data"), &["--enable-auto-gomemlimit", "--log.level=debug"]);
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
    let r2 = Ringest::start(&tmp2.path().join("data"), &["--log.format=json"]);
    std::thread::sleep(Duration::from_millis(50));
    let first = r2.logs().lines().next().unwrap().to_string();
    assert!(
        first.starts_with("{\"caller\":")
            && first.contains("\"level\":\"info\"")
            && first.contains("\"msg\":\"running receive\""),
        "{first}"
    );
}
