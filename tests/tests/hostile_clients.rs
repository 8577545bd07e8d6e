//! Clients that try to hold a receiver's resources (shared spec reliability-security §5, §7).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringest_e2e::client::{encode, series};
use ringest_e2e::{Receiver, http_request};
use ringest_proto::prometheus as pb;

/// The server's header read timeout (`http/serve.rs`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the server closed `c` (end of stream or reset); `false` while it is open and quiet.
fn closed(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Slowloris: connections that send a request line and then a header now and then, and idle
/// keep-alive connections, are closed by the server once they have taken the header read
/// timeout without a complete request; writes go on meanwhile.
#[test]
fn slow_and_idle_connections_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    let start = Instant::now();
    let mut slow: Vec<(TcpStream, Option<Duration>)> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(&r.rw_addr).unwrap();
            c.write_all(b"POST /api/v1/receive HTTP/1.1\r\nHost: ringest\r\n").unwrap();
            c.set_nonblocking(true).unwrap();
            (c, None)
        })
        .collect();
    // An idle keep-alive connection: one complete request, then silence.
    let mut idle = TcpStream::connect(&r.rw_addr).unwrap();
    idle.write_all(b"GET /-/ready HTTP/1.1\r\nHost: ringest\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 404", "a complete answer on the idle connection");
    idle.set_nonblocking(true).unwrap();
    let mut idle_closed = None;
    let body = encode(&pb::WriteRequest {
        timeseries: vec![series(&[("__name__", "during")], &[(1_800_000_000_000, 1.0)])],
        metadata: vec![],
    });
    let rw = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
    let deadline = start + HEADER_READ_TIMEOUT + Duration::from_secs(15);
    let mut tick = 0;
    while Instant::now() < deadline && (slow.iter().any(|(_, t)| t.is_none()) || idle_closed.is_none()) {
        tick += 1;
        for (c, at) in slow.iter_mut().filter(|(_, t)| t.is_none()) {
            // One more header line now and then: never the blank line that ends the headers.
            let _ = c.write_all(format!("X-Slow-{tick}: {tick}\r\n").as_bytes());
            if closed(c) {
                *at = Some(start.elapsed());
            }
        }
        if idle_closed.is_none() && closed(&mut idle) {
            idle_closed = Some(start.elapsed());
        }
        let ok = http_request(&r.rw_addr, "POST", "/api/v1/receive", &rw, &body).unwrap();
        assert_eq!(ok.status, 200, "writes go on: {}", ok.text());
        std::thread::sleep(Duration::from_secs(1));
    }
    let times: Vec<Option<Duration>> = slow.iter().map(|(_, t)| *t).collect();
    assert!(times.iter().all(|t| t.is_some()), "every slow connection was closed: {times:?}");
    let earliest = times.iter().flatten().min().unwrap();
    assert!(
        *earliest >= HEADER_READ_TIMEOUT - Duration::from_secs(2),
        "closed by the timeout, not before: {earliest:?}"
    );
    let idle_at = idle_closed.expect("the idle connection was closed");
    assert!(idle_at >= HEADER_READ_TIMEOUT - Duration::from_secs(2), "{idle_at:?}");
}
