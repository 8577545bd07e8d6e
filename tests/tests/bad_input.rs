//! The bad-input table (shared spec reliability-security §5.1) for remote write 1.0: every row
//! with its status code and a message that names the problem, checked against a real process.

use std::time::{Duration, Instant};

use ringest_e2e::client::{encode, encode_exact, series};
use ringest_e2e::oracle::{labels_string, ringest_dump};
use ringest_e2e::{HttpResponse, Receiver, RemoteWriter, http_request};
use ringest_proto::prometheus as pb;

const T0: i64 = 1_800_000_000_000;
const RW: &[(&str, &str)] = &[("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];

fn post(r: &Receiver, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    http_request(&r.rw_addr, "POST", "/api/v1/receive", headers, body).expect("request")
}

fn req(series: Vec<pb::TimeSeries>) -> pb::WriteRequest {
    pb::WriteRequest { timeseries: series, metadata: vec![] }
}

fn expect(resp: &HttpResponse, status: u16, needle: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert!(resp.text().contains(needle), "{status}: {:?} does not mention {needle:?}", resp.text());
    if status != 200 {
        assert!(resp.text().ends_with('\n'));
        assert_eq!(resp.header("content-type"), Some("text/plain; charset=utf-8"));
    }
}

fn vmhwm_kib(pid: u32) -> u64 {
    ringest_loadgen::procstat::sample(pid).expect("read /proc").hwm / 1024
}

#[test]
fn transport_level_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    let ok_body = encode(&req(vec![series(&[("__name__", "ok")], &[(T0, 1.0)])]));

    // Methods and paths.
    let resp = http_request(&r.rw_addr, "GET", "/api/v1/receive", &[], &[]).unwrap();
    expect(&resp, 405, "method not allowed");
    assert_eq!(resp.header("allow"), Some("POST"));
    expect(&http_request(&r.rw_addr, "PUT", "/api/v1/receive", RW, &ok_body).unwrap(), 405, "use POST");
    expect(&http_request(&r.rw_addr, "POST", "/api/v1/nope", RW, &ok_body).unwrap(), 404, "404 page not found");

    // Encodings and content types.
    let gz = [("Content-Encoding", "gzip"), ("Content-Type", "application/x-protobuf")];
    expect(&post(&r, &gz, &ok_body), 415, "gzip");
    let json = [("Content-Encoding", "snappy"), ("Content-Type", "application/json")];
    expect(&post(&r, &json, &ok_body), 415, "application/json");
    let v2 = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
    ];
    expect(&post(&r, &v2, &ok_body), 415, "remote write 2.0");
    // Without any content headers the body is read as remote write 1.0 (like Prometheus).
    expect(&post(&r, &[], &ok_body), 200, "");
    expect(&post(&r, RW, &ok_body), 200, "");

    // Body size: 33 MiB with a Content-Length, then chunked without one.
    let big = vec![0u8; 33 << 20];
    expect(&post(&r, RW, &big), 413, "too large");
    let mut chunked = Vec::new();
    for _ in 0..33 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
        chunked.extend(std::iter::repeat_n(7u8, 1 << 20));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let te = [RW[0], RW[1], ("Transfer-Encoding", "chunked")];
    expect(&post(&r, &te, &chunked), 413, "too large");

    // A snappy header declaring 4 GiB: refused at once, without allocating it.
    let before = vmhwm_kib(r.pid());
    let bomb = [
        0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];
    let start = Instant::now();
    let resp = post(&r, RW, &bomb);
    let took = start.elapsed();
    expect(&resp, 413, "it has 4294967295 bytes, over the limit of 33554432 (--ringest.write.max-decoded-bytes)");
    assert!(took < Duration::from_secs(1), "refusing the bomb took {took:?}");
    let grew = vmhwm_kib(r.pid()).saturating_sub(before);
    assert!(grew < 64 * 1024, "peak RSS grew by {grew} KiB");

    // Corrupt snappy, protobuf garbage, truncated protobuf.
    expect(&post(&r, RW, b"\x0bnot snappy at all"), 400, "snappy decode error");
    let garbage = snap::raw::Encoder::new().compress_vec(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
    expect(&post(&r, RW, &garbage), 400, "proto");
    let full = encode_exact(&req(vec![series(&[("__name__", "t")], &[(T0, 1.0)])]));
    let truncated = snap::raw::Encoder::new().compress_vec(&full[..full.len() - 3]).unwrap();
    expect(&post(&r, RW, &truncated), 400, "unexpected EOF");

    // Empty request and metadata only: accepted, nothing written.
    expect(&post(&r, RW, &encode(&req(vec![]))), 200, "");
    let meta = pb::WriteRequest {
        timeseries: vec![],
        metadata: vec![pb::MetricMetadata {
            r#type: 1,
            metric_family_name: "m".into(),
            help: "h".into(),
            unit: "".into(),
        }],
    };
    expect(&post(&r, RW, &encode(&meta)), 200, "");

    // A client may not set the replica header: a write carrying one would be stored on the
    // receiving node only, skipping replication. Only peers replicate, over gRPC.
    for value in ["2", "two"] {
        let rh = [RW[0], RW[1], ("THANOS-REPLICA", value)];
        expect(&post(&r, &rh, &ok_body), 400, "replica header thanos-replica refused: only peers replicate");
    }

    // The connection stays usable after errors.
    let mut w = RemoteWriter::connect(&r.rw_addr).unwrap();
    assert_eq!(w.send_raw(b"\x0bnot snappy at all").unwrap().status, 400);
    assert_eq!(w.send_raw(&ok_body).unwrap().status, 200);
}

#[test]
fn tenants_are_single_safe_path_components() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut r = Receiver::start(&data, &[]);
    let body = encode(&req(vec![series(&[("__name__", "m")], &[(T0, 1.0)])]));
    for bad in ["..", ".", "../evil", "a/b", "/etc", "a\\b"] {
        let h = [RW[0], RW[1], ("THANOS-TENANT", bad)];
        expect(&post(&r, &h, &body), 400, "tenant name not valid");
    }
    let long = "x".repeat(300);
    let h = [RW[0], RW[1], ("THANOS-TENANT", long.as_str())];
    expect(&post(&r, &h, &body), 400, "tenant name not valid");
    // Nothing was created outside (or inside) the data directory for them.
    let mut entries: Vec<String> =
        std::fs::read_dir(&data).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries, vec!["default-tenant"]);
    assert!(!tmp.path().join("evil").exists());
    // A valid tenant gets its own directory on first write.
    let h = [RW[0], RW[1], ("THANOS-TENANT", "team-a")];
    expect(&post(&r, &h, &body), 200, "");
    assert!(data.join("team-a").join("wal").is_dir());
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"team-a\"}"), Some(1.0));
    // Every tenant directory is opened at start-up, before any write (the shutdown flushed
    // team-a's head into a block).
    assert!(r.terminate().success());
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_blocks_loaded{tenant=\"team-a\"}"), Some(1.0));
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"team-a\"}"), Some(0.0));
    assert_eq!(r.metric("prometheus_tsdb_head_series{tenant=\"default-tenant\"}"), Some(0.0));
}

#[test]
fn label_rows_answer_409_as_thanos_naming_the_series_and_keep_valid_series() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    let good = series(&[("__name__", "good"), ("job", "x")], &[(T0, 7.0)]);
    let cases: Vec<(pb::TimeSeries, &str, &str)> = vec![
        (series(&[("__name__", "a"), ("", "v")], &[(T0, 1.0)]), "empty name or value", "{__name__=\"a\", =\"v\"}"),
        (series(&[("__name__", "b"), ("job", "")], &[(T0, 1.0)]), "empty name or value", "{__name__=\"b\", job=\"\"}"),
        (series(&[("__name__", "c"), ("job", "1"), ("job", "2")], &[(T0, 1.0)]), "duplicate label names", "job=\"2\""),
        (series(&[], &[(T0, 1.0)]), "label set is empty", "{}"),
        (series(&[("job", "x"), ("__name__", "unsorted")], &[(T0, 3.0)]), "out of order labels", "job=\"x\""),
        (series(&[("b", "1"), ("a", "")], &[(T0, 3.0)]), "empty name or value", "{b=\"1\", a=\"\"}"),
    ];
    // Thanos refuses these label sets with 409 (a conflict: the sender drops the series).
    for (bad, reason, shown) in cases {
        let resp = post(&r, RW, &encode(&req(vec![good.clone(), bad])));
        expect(&resp, 409, reason);
        assert!(resp.text().contains(shown), "{} does not show {shown}", resp.text());
    }
    // Invalid UTF-8 (prost refuses to build it, so patch the encoded bytes): Thanos stores it,
    // ringest refuses it as a client error.
    let mut raw = encode_exact(&req(vec![good.clone(), series(&[("__name__", "u"), ("job", "XY")], &[(T0, 1.0)])]));
    let pos = raw.windows(2).position(|w| w == b"XY").unwrap();
    raw[pos] = 0xc3;
    raw[pos + 1] = 0x28;
    let resp = post(&r, RW, &snap::raw::Encoder::new().compress_vec(&raw).unwrap());
    expect(&resp, 400, "not valid UTF-8");
    // An unsorted label set is refused even when its sorted form is a series that exists.
    let unsorted = series(&[("job", "x"), ("__name__", "good")], &[(T0 + 1000, 3.0)]);
    expect(&post(&r, RW, &encode(&req(vec![unsorted]))), 409, "out of order labels");
    // The valid series of the refused requests were written; invalid ones were not.
    let dump = ringest_dump(&r.tenant_dir("default-tenant"));
    let names: Vec<&String> = dump.keys().collect();
    assert_eq!(names, vec!["{__name__=\"good\", job=\"x\"}"]);
    assert_eq!(dump["{__name__=\"good\", job=\"x\"}"].len(), 1);
    // Native histograms are not supported yet: 400, floats of the request still written.
    let mut h = series(&[("__name__", "hist")], &[]);
    h.histograms.push(pb::Histogram { timestamp: T0, ..Default::default() });
    let resp = post(&r, RW, &encode(&req(vec![h, series(&[("__name__", "float")], &[(T0, 1.0)])])));
    expect(&resp, 400, "native histograms are not supported");
    assert_eq!(ringest_dump(&r.tenant_dir("default-tenant")).len(), 2);
}

#[test]
fn special_values_round_trip_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    let values =
        [f64::NAN, f64::from_bits(0x7ff0_0000_0000_0002), f64::INFINITY, f64::NEG_INFINITY, -0.0, 5e-324, 1e308];
    let samples: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, &v)| (T0 + i as i64 * 1000, v)).collect();
    expect(&post(&r, RW, &encode(&req(vec![series(&[("__name__", "special")], &samples)]))), 200, "");
    let dump = ringest_dump(&r.tenant_dir("default-tenant"));
    let got: Vec<(i64, u64)> = dump["{__name__=\"special\"}"].iter().map(|(&t, &b)| (t, b)).collect();
    let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(got, want);
}

#[test]
fn conflicts_answer_409_and_keep_the_original_values() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &["--tsdb.too-far-in-future.time-window=5m"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let l = [("__name__", "c"), ("job", "x")];
    let original: Vec<(i64, f64)> = (0..5).map(|i| (now - 60_000 + i * 10_000, i as f64)).collect();
    expect(&post(&r, RW, &encode(&req(vec![series(&l, &original)]))), 200, "");
    // Exact duplicates of the latest sample are accepted.
    expect(&post(&r, RW, &encode(&req(vec![series(&l, &original[4..])]))), 200, "");
    // So is an exact retry of the whole multi-sample request (Prometheus ignores samples it
    // already holds, value for value), and it counts no conflict.
    expect(&post(&r, RW, &encode(&req(vec![series(&l, &original)]))), 200, "");
    // Same timestamp, other value.
    let resp = post(&r, RW, &encode(&req(vec![series(&l, &[(original[4].0, 99.0)])])));
    expect(&resp, 409, "duplicate sample for timestamp");
    assert!(resp.text().contains("{__name__=\"c\", job=\"x\"}"), "{}", resp.text());
    // Older timestamps with other values.
    let resp = post(&r, RW, &encode(&req(vec![series(&l, &[(original[1].0, 42.0), (original[2].0, 43.0)])])));
    expect(&resp, 409, "add 2 samples: out of order sample");
    assert_eq!(
        r.metric("prometheus_tsdb_out_of_order_samples_total{tenant=\"default-tenant\",type=\"float\"}"),
        Some(2.0)
    );
    // Far older than the head (more than an hour behind its newest sample): out of bounds.
    let resp = post(&r, RW, &encode(&req(vec![series(&[("__name__", "old")], &[(now - 3 * 3_600_000, 1.0)])])));
    expect(&resp, 409, "out of bounds");
    // Beyond --tsdb.too-far-in-future.time-window.
    let resp = post(&r, RW, &encode(&req(vec![series(&[("__name__", "future")], &[(now + 3_600_000, 1.0)])])));
    expect(&resp, 409, "too far in the future");
    // A request mixing a conflict with a new valid sample: 409, the valid sample is written.
    let next = original[4].0 + 10_000;
    let resp = post(
        &r,
        RW,
        &encode(&req(vec![series(&l, &[(original[0].0, 5.0)]), series(&[("__name__", "fresh")], &[(next, 1.0)])])),
    );
    expect(&resp, 409, "out of order");
    // Every refused write left the original values alone, also after a restart.
    for restart in [false, true] {
        if restart {
            assert!(r.terminate().success());
            r.restart();
        }
        let dump = ringest_dump(&r.tenant_dir("default-tenant"));
        let got: Vec<(i64, u64)> = dump[&labels_string(&[("__name__".into(), "c".into()), ("job".into(), "x".into())])]
            .iter()
            .map(|(&t, &b)| (t, b))
            .collect();
        let want: Vec<(i64, u64)> = original.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert!(dump.contains_key("{__name__=\"fresh\"}"));
        assert!(!dump.contains_key("{__name__=\"old\"}") && !dump.contains_key("{__name__=\"future\"}"));
    }
}

/// Request metrics are labelled by what clients send (the tenant header, the method), so
/// their label values are capped: past 1000 distinct tenants, and for non-standard methods,
/// the value is `other`. (Without the cap, a client could add series to `/metrics` without
/// bound.)
#[test]
fn request_metrics_cap_client_chosen_label_values() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    // Refused bodies: counted under their tenant, but no tenant is created.
    for i in 0..1100 {
        let tenant = format!("t{i}");
        let headers = [RW[0], RW[1], ("THANOS-TENANT", tenant.as_str())];
        assert_eq!(post(&r, &headers, b"not snappy").status, 400);
    }
    let odd = http_request(&r.rw_addr, "FROB", "/api/v1/receive", &[], &[]).expect("request");
    assert_eq!(odd.status, 405, "{}", odd.text());
    let metrics = r.metrics();
    let tenants_of = |name: &str| -> std::collections::BTreeSet<String> {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split("tenant=\"").nth(1)?.split('"').next().map(str::to_owned))
            .collect()
    };
    for name in ["http_requests_total{", "thanos_receive_write_requests_total{"] {
        let tenants = tenants_of(name);
        assert!(tenants.len() <= 1001, "{name}: {} tenant values", tenants.len());
        assert!(tenants.contains("other") && tenants.contains("t0"), "{name}: {tenants:?}");
        assert!(!tenants.contains("t1099"), "{name}: a tenant past the cap has its own series");
    }
    assert!(metrics.lines().any(|l| l.starts_with("http_requests_total{") && l.contains("method=\"other\"")));
    assert!(!metrics.to_lowercase().contains("frob"), "a non-standard method became a label value");
}
