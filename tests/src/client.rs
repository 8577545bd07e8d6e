//! Remote-write requests for tests: the load generator's raw HTTP/1.1 client (tests control
//! every byte they send) and an exact protobuf encoding of prost requests.

use prost::Message;
use ringest_proto::prometheus as pb;

pub use ringest_loadgen::http::{Conn, HttpResponse, get as http_get, request as http_request};

/// The headers of a remote write 2.0 request (`io.prometheus.write.v2.Request`, snappy).
pub const RW2_HEADERS: &[(&str, &str)] = &[
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
    ("X-Prometheus-Remote-Write-Version", "2.0.0"),
];

/// Encodes a request as remote write 1.0 does: protobuf, then snappy block.
pub fn encode(req: &pb::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&encode_exact(req)).expect("snappy compress")
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub(crate) fn put_len(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
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
        self.send_raw_with_headers(body, &[])
    }

    /// Encodes and sends `req` with extra headers.
    pub fn send_with_headers(
        &mut self,
        req: &pb::WriteRequest,
        extra: &[(&str, &str)],
    ) -> std::io::Result<HttpResponse> {
        self.send_raw_with_headers(&encode(req), extra)
    }

    fn send_raw_with_headers(&mut self, body: &[u8], extra: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
        let mut h = vec![
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ];
        if let Some(t) = &self.tenant {
            h.push(("THANOS-TENANT", t.as_str()));
        }
        h.extend_from_slice(extra);
        self.conn.request("POST", "/api/v1/receive", &h, body)
    }

    /// Encodes and sends `req`.
    pub fn send(&mut self, req: &pb::WriteRequest) -> std::io::Result<HttpResponse> {
        self.send_raw(&encode(req))
    }
}
