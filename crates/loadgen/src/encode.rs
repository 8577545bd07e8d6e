//! Remote write encoding: protobuf `prometheus.WriteRequest` (1.0) or
//! `io.prometheus.write.v2.Request` (2.0), then snappy block format.
//!
//! Hand-written so the load generator shares no code with the receiver it measures. Sample
//! values and timestamps are always written, even when zero: proto3 encoders skip a double
//! equal to zero, and since `-0.0 == 0.0` they silently turn -0 into +0.

fn put_varint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

fn varint_len(mut x: u64) -> usize {
    let mut n = 1;
    while x >= 0x80 {
        x >>= 7;
        n += 1;
    }
    n
}

fn put_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(buf, field << 3 | 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// One series of a request.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Labels (sorted by name, as senders must send them).
    pub labels: &'a [(String, String)],
    /// Samples `(timestamp ms, value)`.
    pub samples: &'a [(i64, f64)],
}

/// Appends the protobuf encoding of one `TimeSeries` as field 1 of a `WriteRequest`.
pub fn put_series(out: &mut Vec<u8>, s: Series<'_>) {
    let label_len =
        |n: &str, v: &str| 1 + varint_len(n.len() as u64) + n.len() + 1 + varint_len(v.len() as u64) + v.len();
    let sample_len = |t: i64| 1 + 8 + 1 + varint_len(t as u64);
    let mut body = 0;
    for (n, v) in s.labels {
        let l = label_len(n, v);
        body += 1 + varint_len(l as u64) + l;
    }
    for &(t, _) in s.samples {
        let l = sample_len(t);
        body += 1 + varint_len(l as u64) + l;
    }
    put_varint(out, 1 << 3 | 2);
    put_varint(out, body as u64);
    for (n, v) in s.labels {
        put_varint(out, 1 << 3 | 2);
        put_varint(out, label_len(n, v) as u64);
        put_bytes(out, 1, n.as_bytes());
        put_bytes(out, 2, v.as_bytes());
    }
    for &(t, v) in s.samples {
        put_varint(out, 2 << 3 | 2);
        put_varint(out, sample_len(t) as u64);
        out.push(1 << 3 | 1);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
        put_varint(out, 2 << 3);
        put_varint(out, t as u64);
    }
}

/// Encodes a whole `WriteRequest` (protobuf only).
pub fn write_request<'a>(series: impl IntoIterator<Item = Series<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    for s in series {
        put_series(&mut out, s);
    }
    out
}

/// Builds a remote write 2.0 request: every distinct string once in the symbols table (the
/// empty string first), each series' labels as references into it.
#[derive(Debug, Default)]
pub struct V2Request {
    symbols: Vec<String>,
    index: std::collections::HashMap<String, u32>,
    series: Vec<u8>,
}

impl V2Request {
    fn symbol(&mut self, s: &str) -> u32 {
        if self.symbols.is_empty() {
            self.symbols.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    /// Adds one series (field 5 `TimeSeries`: packed `labels_refs`, then `Sample`s).
    pub fn put_series(&mut self, s: Series<'_>) {
        let mut refs = Vec::with_capacity(s.labels.len() * 4);
        for (n, v) in s.labels {
            let (n, v) = (self.symbol(n), self.symbol(v));
            put_varint(&mut refs, n as u64);
            put_varint(&mut refs, v as u64);
        }
        let mut body = Vec::with_capacity(refs.len() + 2 + s.samples.len() * 22);
        put_bytes(&mut body, 1, &refs);
        for &(t, v) in s.samples {
            let mut sample = Vec::with_capacity(20);
            sample.push(1 << 3 | 1);
            sample.extend_from_slice(&v.to_bits().to_le_bytes());
            put_varint(&mut sample, 2 << 3);
            put_varint(&mut sample, t as u64);
            put_bytes(&mut body, 2, &sample);
        }
        put_bytes(&mut self.series, 5, &body);
    }

    /// The encoded request (protobuf only).
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.series.len() + self.symbols.iter().map(|s| s.len() + 2).sum::<usize>());
        for s in &self.symbols {
            put_bytes(&mut out, 4, s.as_bytes());
        }
        out.extend_from_slice(&self.series);
        out
    }
}

/// Snappy block compression, as remote write bodies are.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy block compression cannot fail on in-memory input")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labels_and_samples() {
        let labels = vec![("__name__".to_string(), "up".to_string()), ("job".to_string(), "a".to_string())];
        let samples = [(1_700_000_000_000i64, 1.0), (5, -0.0)];
        let raw = write_request([Series { labels: &labels, samples: &samples }]);
        // field 1 (TimeSeries), then its length, then label 1 {name, value}.
        assert_eq!(raw[0], 0x0a);
        assert_eq!(raw[2..6], [0x0a, 0x0e, 0x0a, 0x08]);
        // -0.0 keeps its sign bit on the wire.
        let neg_zero = (-0.0f64).to_bits().to_le_bytes();
        assert!(raw.windows(8).any(|w| w == neg_zero));
        let mut d = snap::raw::Decoder::new();
        assert_eq!(d.decompress_vec(&snappy(&raw)).unwrap(), raw);
    }

    #[test]
    fn v2_requests_name_each_string_once() {
        use prost::Message;
        let a = vec![("__name__".to_string(), "up".to_string()), ("job".to_string(), "a".to_string())];
        let b = vec![("__name__".to_string(), "up".to_string()), ("job".to_string(), "b".to_string())];
        let mut req = V2Request::default();
        req.put_series(Series { labels: &a, samples: &[(7, 1.5)] });
        req.put_series(Series { labels: &b, samples: &[(8, -0.0)] });
        let decoded = ringest_proto::write_v2::Request::decode(&req.finish()[..]).unwrap();
        assert_eq!(decoded.symbols, ["", "__name__", "up", "job", "a", "b"]);
        assert_eq!(decoded.timeseries[0].labels_refs, [1, 2, 3, 4]);
        assert_eq!(decoded.timeseries[1].labels_refs, [1, 2, 3, 5]);
        let s = &decoded.timeseries[1].samples[0];
        assert_eq!((s.timestamp, s.value.to_bits()), (8, (-0.0f64).to_bits()));
    }
}
