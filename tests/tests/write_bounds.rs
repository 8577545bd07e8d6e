//! ringest's own bounds on what one client may cost (`--ringest.*` flags, README "Bounds on
//! what clients may cost"), each tried from outside: the status and message a client gets,
//! the metric that counts it, and that normal writes go on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use ringest_e2e::client::{encode, encode_exact, series};
use ringest_e2e::{Receiver, http_request, wait_for};
use ringest_grpc::{Channel, ChannelOptions, Code, Compression};
use ringest_proto::prometheus as pb;

const RW: [(&str, &str); 2] = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
const WRITE: &str = "/thanos.WriteableStore/RemoteWrite";
const T: i64 = 1_800_000_000_000;

fn request(series_count: usize, samples: usize, labels: usize) -> pb::WriteRequest {
    let timeseries = (0..series_count)
        .map(|i| {
            let names: Vec<String> = (0..labels.saturating_sub(1)).map(|l| format!("l{l}")).collect();
            let id = i.to_string();
            let mut ls: Vec<(&str, &str)> = vec![("__name__", "bounded")];
            ls.extend(names.iter().map(|n| (n.as_str(), id.as_str())));
            let ss: Vec<(i64, f64)> = (0..samples).map(|k| (T + k as i64 * 1000, k as f64)).collect();
            series(&ls, &ss)
        })
        .collect();
    pb::WriteRequest { timeseries, metadata: vec![] }
}

fn post(r: &Receiver, body: &[u8]) -> ringest_e2e::HttpResponse {
    http_request(&r.rw_addr, "POST", "/api/v1/receive", &RW, body).unwrap()
}

/// The same request as a `thanos.WriteRequest` (its field 1 is the series, as in remote write),
/// sent over gRPC with framed snappy; the gRPC status code and message.
fn grpc_write(r: &Receiver, req: &pb::WriteRequest) -> Result<(), (Code, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = ChannelOptions { compression: Compression::Snappy, ..Default::default() };
    let ch = Channel::new(r.grpc_addr.clone(), opts);
    let msg = Bytes::from(encode_exact(req));
    rt.block_on(ch.unary(WRITE, msg, Duration::from_secs(10))).map(|_| ()).map_err(|s| (s.code, s.message))
}

#[test]
fn a_request_over_a_bound_gets_413_naming_the_bound_over_http_and_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(
        &tmp.path().join("data"),
        &[
            "--ringest.write.max-series=10",
            "--ringest.write.max-samples=20",
            "--ringest.write.max-labels=30",
            "--ringest.write.max-decoded-bytes=64KiB",
        ],
    );
    let cases = [
        (request(11, 1, 1), "at least 11 series, over the limit of 10 (--ringest.write.max-series)", "series"),
        (request(5, 5, 1), "at least 25 samples, over the limit of 20 (--ringest.write.max-samples)", "samples"),
        (request(8, 1, 4), "at least 32 labels, over the limit of 30 (--ringest.write.max-labels)", "labels"),
    ];
    for (req, want, reason) in &cases {
        let resp = post(&r, &encode(req));
        assert_eq!(resp.status, 413, "{}", resp.text());
        assert!(resp.text().contains(want), "{want}: {}", resp.text());
        let (code, msg) = grpc_write(&r, req).unwrap_err();
        assert_eq!(code, Code::ResourceExhausted, "{msg}");
        assert!(msg.contains(want), "{want}: {msg}");
        let refused = r.metric(&format!("ringest_write_refused_total{{reason=\"{reason}\"}}"));
        assert_eq!(refused, Some(2.0), "{reason}");
    }
    // Decoded bytes: a body that compresses well but decompresses past the limit, and a
    // body whose Content-Length alone is past it.
    let big = pb::WriteRequest {
        timeseries: vec![series(&[("__name__", "big"), ("pad", &"x".repeat(100_000))], &[(T, 1.0)])],
        metadata: vec![],
    };
    let body = encode(&big);
    assert!(body.len() < 64 << 10);
    let resp = post(&r, &body);
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(resp.text().contains("over the limit of 65536 (--ringest.write.max-decoded-bytes)"), "{}", resp.text());
    let (code, msg) = grpc_write(&r, &big).unwrap_err();
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("--ringest.write.max-decoded-bytes"), "{msg}");
    let resp = post(&r, &vec![0u8; 70 << 10]);
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(resp.text().contains("--ringest.write.max-decoded-bytes"), "{}", resp.text());

    // Within every bound: written, over both transports.
    assert_eq!(post(&r, &encode(&request(10, 2, 3))).status, 200);
    grpc_write(&r, &request(10, 2, 3)).unwrap();
    assert_eq!(r.metric("ringest_write_inflight_requests"), Some(0.0));
    assert_eq!(r.metric("ringest_write_inflight_bytes"), Some(0.0), "every charge was released");
}

/// A request whose headers arrived and whose body has not: it holds one of the requests in
/// flight until its body read timeout.
fn stalled_request(r: &Receiver) -> TcpStream {
    let mut c = TcpStream::connect(&r.rw_addr).unwrap();
    c.write_all(
        b"POST /api/v1/receive HTTP/1.1\r\nHost: ringest\r\nContent-Encoding: snappy\r\n\
          Content-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\nonly a few bytes",
    )
    .unwrap();
    c
}

fn status_of(c: &mut TcpStream) -> String {
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn past_the_in_flight_budget_writes_get_503_with_retry_after_at_once_and_slow_bodies_time_out() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(
        &tmp.path().join("data"),
        &["--ringest.write.max-inflight-requests=1", "--ringest.http.body-read-timeout=3s"],
    );
    let mut stalled = stalled_request(&r);
    wait_for("the stalled request to be admitted", Duration::from_secs(10), || {
        r.metric("ringest_write_inflight_requests") == Some(1.0)
    });
    let started = std::time::Instant::now();
    let body = encode(&request(1, 1, 1));
    let resp = post(&r, &body);
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once, not queued");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(resp.text().contains("--ringest.write.max-inflight-requests"), "{}", resp.text());
    let (code, msg) = grpc_write(&r, &request(1, 1, 1)).unwrap_err();
    assert_eq!(code, Code::Unavailable, "{msg}");
    assert_eq!(r.metric("ringest_write_refused_total{reason=\"inflight_requests\"}"), Some(2.0));

    // The stalled body times out (408); its place is free again.
    let answer = status_of(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--ringest.http.body-read-timeout"), "{answer}");
    assert_eq!(post(&r, &body).status, 200);
    grpc_write(&r, &request(1, 1, 1)).unwrap();
}

#[test]
fn the_bytes_in_flight_are_bounded_and_one_request_over_the_whole_budget_is_too_large() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(
        &tmp.path().join("data"),
        &["--ringest.write.max-inflight-bytes=300KiB", "--ringest.http.max-header-bytes=16KiB"],
    );
    // One request needing more than the whole budget can never be taken: 413, not 503.
    let resp = post(&r, &encode(&request(2000, 1, 5)));
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(
        resp.text().contains("of the in-flight budget of 307200 bytes (--ringest.write.max-inflight-bytes)"),
        "{}",
        resp.text()
    );
    // A stalled request charges what its connection holds (40 KiB) and its body as it arrives:
    // with 256 KiB held of the 281 KiB writes may be charged (a sixteenth of the budget is held
    // back), a second request that needs more than what is left is refused as busy.
    let mut c = TcpStream::connect(&r.rw_addr).unwrap();
    c.write_all(
        b"POST /api/v1/receive HTTP/1.1\r\nHost: ringest\r\nContent-Encoding: snappy\r\n\
          Content-Type: application/x-protobuf\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    c.write_all(&vec![0u8; 224 << 10]).unwrap();
    wait_for("the stalled body to be charged", Duration::from_secs(10), || {
        r.metric("ringest_write_inflight_bytes").is_some_and(|b| b >= (256 << 10) as f64)
    });
    let resp = post(&r, &encode(&request(300, 1, 5)));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.text().contains("--ringest.write.max-inflight-bytes"), "{}", resp.text());
    assert_eq!(resp.header("retry-after"), Some("1"));
    drop(c);
    wait_for("the stalled request's charge to be released", Duration::from_secs(10), || {
        r.metric("ringest_write_inflight_bytes") == Some(0.0)
    });
    assert_eq!(post(&r, &encode(&request(300, 1, 5))).status, 200);
}

#[test]
fn connections_past_the_limit_are_closed_and_oversized_headers_get_431() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(
        &tmp.path().join("data"),
        &["--ringest.http.max-connections=3", "--ringest.http.max-header-bytes=16KiB"],
    );
    // Three connections, each with an answered request: open and accepted.
    let mut open: Vec<ringest_e2e::client::Conn> =
        (0..3).map(|_| ringest_e2e::client::Conn::connect(&r.rw_addr).unwrap()).collect();
    for c in &mut open {
        assert_eq!(c.request("GET", "/-/ready", &[], b"").unwrap().status, 404);
    }
    let mut fourth = TcpStream::connect(&r.rw_addr).unwrap();
    let _ = fourth.write_all(b"GET /api/v1/status/tsdb HTTP/1.1\r\nHost: ringest\r\n\r\n");
    let answer = status_of(&mut fourth);
    assert!(answer.is_empty(), "closed without an answer: {answer}");
    assert_eq!(r.metric("ringest_http_connections_refused_total{server=\"remote-write\"}"), Some(1.0));
    // The ops port has its own count: probes still answer.
    assert_eq!(ringest_e2e::http_get(&r.http_addr, "/-/ready").unwrap().status, 200);
    drop(open.pop());
    wait_for("a connection to be accepted again", Duration::from_secs(10), || {
        http_request(&r.rw_addr, "POST", "/api/v1/receive", &RW, &encode(&request(1, 1, 1)))
            .is_ok_and(|resp| resp.status == 200)
    });

    drop(open);
    // Headers past the limit: 431, and the connection closed. (The server closes with the rest
    // of the headers unread, so the kernel may reset the connection before the 431 is read.)
    let head =
        |n: usize| format!("GET /api/v1/status/tsdb HTTP/1.1\r\nHost: ringest\r\nX-Huge: {}\r\n\r\n", "x".repeat(n));
    let mut c = TcpStream::connect(&r.rw_addr).unwrap();
    let _ = c.write_all(head(20 << 10).as_bytes());
    let answer = status_of(&mut c);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Just under the limit: served.
    let mut c = TcpStream::connect(&r.rw_addr).unwrap();
    c.write_all(head(12 << 10).as_bytes()).unwrap();
    let mut first = [0u8; 12];
    c.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
}

#[test]
fn a_node_creates_at_most_max_tenants() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &["--ringest.max-tenants=2"]);
    let body = encode(&request(1, 1, 1));
    let post_as = |tenant: &str| {
        let headers = [RW[0], RW[1], ("THANOS-TENANT", tenant)];
        http_request(&r.rw_addr, "POST", "/api/v1/receive", &headers, &body).unwrap()
    };
    // default-tenant exists from start-up: one more may be created.
    assert_eq!(post_as("default-tenant").status, 200);
    assert_eq!(post_as("team-a").status, 200);
    let resp = post_as("team-b");
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert!(resp.text().contains("tenant team-b refused: this node has 2 tenants already"), "{}", resp.text());
    assert!(resp.text().contains("--ringest.max-tenants"), "{}", resp.text());
    assert!(!r.tenant_dir("team-b").exists(), "no directory for a refused tenant");
    assert_eq!(post_as("team-a").status, 200, "existing tenants are served");
}

/// Checklist D.38: 200 concurrent requests of 8 MiB (decompressed; the same series each time,
/// so the head does not grow) against the default budget of 128 MiB in flight. Every request is
/// answered 200 or 503 with `Retry-After` (never dropped), some of each, and the peak RSS stays
/// under the budget. Each write is charged what its connection holds besides the body (40 KiB:
/// reads are capped at 8 KiB, so hyper's read buffer stays at 16 KiB) and its body by the page
/// as it fills memory that is not resident before (an anonymous mapping, unmapped when freed);
/// writes may be charged 15/16 of the budget, the rest held back for what no write is charged
/// (the connections of refused requests, the allocator's rounding). Measured before the
/// sixteenth was held back: 124-130 MiB at 128 MiB, 64-66 MiB at 64 MiB. (Before reads were
/// capped, the read buffer doubled up to the 64 KiB header limit while a body arrived: 142-147
/// MiB with each write charged 176 KiB for it; body buffers from the allocator, charged as they
/// filled though reused memory may be resident whole, 153-158 MiB; 1 MiB read buffers per
/// connection, 100 MiB more; freed bodies kept for a second by the allocator, 120 MiB more.)
#[test]
fn two_hundred_concurrent_8_mib_requests_stay_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let extra: Vec<String> =
        std::env::var("XARGS").map(|a| a.split(' ').map(String::from).collect()).unwrap_or_default();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let r = Receiver::start(&tmp.path().join("data"), &extra);
    let req = request(55_000, 1, 10);
    let raw = ringest_e2e::client::encode_exact(&req);
    assert!((7 << 20..10 << 20).contains(&raw.len()), "{} bytes decompressed", raw.len());
    let body = std::sync::Arc::new(encode(&req));
    let first = post(&r, &body);
    assert_eq!(first.status, 200, "{}", first.text());
    // A read indexes the new series now (32 MiB for these 55,000): else the receiver's
    // periodic indexing, 5 s after start, could do it in the middle of the measurement.
    let store = ringest_loadgen::store::Store::connect(&r.grpc_addr).unwrap();
    let names = store
        .label_values(ringest_proto::thanos::LabelValuesRequest {
            label: "__name__".into(),
            start: i64::MIN,
            end: i64::MAX,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(names.values, ["bounded"]);
    let pid = r.pid();
    // Peak RSS from here on (writing 5 to clear_refs resets VmHWM to the current RSS).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let base = ringest_loadgen::procstat::sample(pid).unwrap().hwm;
    let codes: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..200)
            .map(|_| {
                let (body, addr) = (body.clone(), &r.rw_addr);
                s.spawn(move || {
                    let resp = http_request(addr, "POST", "/api/v1/receive", &RW, &body).expect("an answer");
                    if resp.status == 503 {
                        assert_eq!(resp.header("retry-after"), Some("1"), "{}", resp.text());
                    }
                    resp.status
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let peak = ringest_loadgen::procstat::sample(pid).unwrap().hwm;
    let (ok, busy) = (codes.iter().filter(|&&c| c == 200).count(), codes.iter().filter(|&&c| c == 503).count());
    println!(
        "200 x {} MiB ({} bytes compressed): {ok} answered 200, {busy} 503; peak RSS +{} MiB",
        raw.len() >> 20,
        body.len(),
        (peak - base) >> 20
    );
    assert_eq!(ok + busy, 200, "{codes:?}");
    assert!(ok > 0 && busy > 0, "{ok} taken, {busy} refused");
    // (Flags from XARGS, for experiments, may change the budget.)
    if extra.is_empty() {
        assert!(peak - base < 128 << 20, "peak RSS grew by {} MiB, over the 128 MiB budget", (peak - base) >> 20);
    }
    assert!(r.metric("ringest_write_refused_total{reason=\"inflight_bytes\"}").unwrap_or(0.0) > 0.0);
}
