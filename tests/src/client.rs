//! A minimal HTTP/1.1 client over `TcpStream`, so tests control every byte they send (headers,
//! chunked bodies, lying Content-Length) and read status, headers and body back exactly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prost::Message;
use ringest_proto::prometheus as pb;

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
    addr: String,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_nodelay(true)?;
        Ok(Conn { stream: BufReader::new(s), addr: addr.to_string() })
    }

    /// Sends a request with a body (`Content-Length` unless a `Transfer-Encoding` header is
    /// given, in which case `body` is sent as is) and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        let chunked = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
        let explicit_len = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !chunked && !explicit_len {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())?;
        // A server may answer (and close) before reading a large body: ignore write errors and
        // read the response.
        let _ = s.write_all(body);
        read_response(&mut self.stream, method == "HEAD")
    }
}

fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> std::io::Result<HttpResponse> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if !head_only {
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
    }
    Ok(HttpResponse { status, headers, body })
}

/// One request on a new connection.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    Conn::connect(addr)?.request(method, path, headers, body)
}

/// A GET on a new connection.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<HttpResponse> {
    http_request(addr, "GET", path, &[], &[])
}

/// Encodes a request as remote write 1.0 does: protobuf, then snappy block.
pub fn encode(req: &pb::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&encode_exact(req)).expect("snappy compress")
}

fn put_varint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

fn put_len(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(buf, field << 3 | 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Protobuf encoding of a `WriteRequest` that always writes sample values and timestamps.
/// Proto3 encoders (prost here, gogo in Go senders) skip a double equal to zero, and `-0.0 ==
/// 0.0`, so they silently turn -0 into +0; this one keeps every bit. Histograms, exemplars and
/// metadata are encoded with prost.
pub fn encode_exact(req: &pb::WriteRequest) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts = Vec::new();
    let mut tmp = Vec::new();
    for s in &req.timeseries {
        ts.clear();
        for l in &s.labels {
            tmp.clear();
            put_len(&mut tmp, 1, l.name.as_bytes());
            put_len(&mut tmp, 2, l.value.as_bytes());
            put_len(&mut ts, 1, &tmp);
        }
        for smp in &s.samples {
            tmp.clear();
            tmp.push(1 << 3 | 1);
            tmp.extend_from_slice(&smp.value.to_bits().to_le_bytes());
            put_varint(&mut tmp, 2 << 3);
            put_varint(&mut tmp, smp.timestamp as u64);
            put_len(&mut ts, 2, &tmp);
        }
        for e in &s.exemplars {
            put_len(&mut ts, 3, &e.encode_to_vec());
        }
        for h in &s.histograms {
            put_len(&mut ts, 4, &h.encode_to_vec());
        }
        put_len(&mut out, 1, &ts);
    }
    for m in &req.metadata {
        put_len(&mut out, 3, &m.encode_to_vec());
    }
    out
}

/// Builds a label.
pub fn label(name: &str, value: &str) -> pb::Label {
    pb::Label { name: name.into(), value: value.into() }
}

/// Builds a series.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples.iter().map(|&(t, v)| pb::Sample { value: v, timestamp: t }).collect(),
        ..Default::default()
    }
}

/// A remote-write sender on one keep-alive connection.
pub struct RemoteWriter {
    conn: Conn,
    tenant: Option<String>,
}

impl RemoteWriter {
    /// Connects to a remote-write address.
    pub fn connect(addr: &str) -> std::io::Result<Self> {
        Ok(RemoteWriter { conn: Conn::connect(addr)?, tenant: None })
    }

    /// Sends as `tenant` (THANOS-TENANT header).
    pub fn with_tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_string());
        self
    }

    /// Sends an already encoded body with the standard remote-write headers.
    pub fn send_raw(&mut self, body: &[u8]) -> std::io::Result<HttpResponse> {
        let mut h = vec![
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ];
        if let Some(t) = &self.tenant {
            h.push(("THANOS-TENANT", t.as_str()));
        }
        self.conn.request("POST", "/api/v1/receive", &h, body)
    }

    /// Encodes and sends `req`.
    pub fn send(&mut self, req: &pb::WriteRequest) -> std::io::Result<HttpResponse> {
        self.send_raw(&encode(req))
    }
}
