//! Remote write 2.0: an `io.prometheus.write.v2.Request` translated into the 1.0
//! `prometheus.WriteRequest` that the rest of the pipeline bounds, validates, writes and
//! replicates (peers, Thanos Receive among them, take 1.0 series over gRPC).
//!
//! Field numbers: Request{symbols=4, timeseries=5}; TimeSeries{labels_refs=1, samples=2,
//! histograms=3, exemplars=4, metadata=5}; Sample{value=1, timestamp=2, start_timestamp=3};
//! Exemplar{labels_refs=1, value=2, timestamp=3}.
//!
//! Series are checked as Prometheus' 2.0 receiver checks them, each refused on its own with
//! a reason while the others are kept (a partial write, answered 400): labels_refs of odd
//! length or outside the symbols table, no `__name__` or an empty label name, a repeated
//! label name, no sample. Labels are sorted by name. Native histograms are refused as in 1.0
//! (ringest does not store them yet); an exemplar whose labels_refs are bad is dropped and
//! reported; metadata and start timestamps are dropped, as Thanos drops them.
//!
//! Nothing is allocated per symbol or per series beyond one span per symbol and reused
//! scratch vectors (exemplars, rare, use small vectors of their own). A 2.0 request can name
//! one long symbol many times, so its 1.0 form can be far larger than itself: [`measure`]
//! bounds that size by adding lengths (nothing is built), checking it against a limit as it
//! goes, so that the caller can refuse or charge it before [`translate`] writes it.

use ringest_tsdb::encoding::put_uvarint;

use super::decode::{Cursor, DecodeError, FIXED64, LEN, VARINT, decode_sample, err, wrong_type};

/// Why a series (or an exemplar) of a request was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `labels_refs` holds an odd number of references.
    RefsLength,
    /// A reference is outside the symbols table.
    RefOutOfRange,
    /// No `__name__`, or an empty label name.
    InvalidName,
    /// Two labels with one name.
    DuplicateName,
    /// Neither a sample nor a histogram.
    NoData,
    /// Native histograms (not stored by ringest yet).
    Histograms,
    /// An exemplar whose `labels_refs` are bad (the series is kept).
    Exemplar,
}

impl Reason {
    /// What a client is told.
    pub fn text(self) -> &'static str {
        match self {
            Reason::RefsLength => "invalid labels_refs length (not name/value pairs)",
            Reason::RefOutOfRange => "labels_refs outside of the symbols table",
            Reason::InvalidName => "invalid metric name or labels (no __name__, or an empty label name)",
            Reason::DuplicateName => "invalid labels: duplicated label name",
            Reason::NoData => "a time series must contain at least one sample or histogram",
            Reason::Histograms => "native histograms are not supported by ringest yet",
            Reason::Exemplar => "exemplar dropped: its labels_refs are invalid",
        }
    }
}

/// Series (or exemplars) left out for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The reason.
    pub reason: Reason,
    /// How many.
    pub count: u64,
    /// The first one: its labels, or its references when they cannot be resolved.
    pub first: String,
}

/// What a request became.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Translation {
    /// Bytes of the 1.0 request.
    pub len: usize,
    /// Series kept.
    pub series: u64,
    /// Float samples of the series kept.
    pub samples: u64,
    /// Exemplars of the series kept.
    pub exemplars: u64,
    /// Metadata entries (dropped).
    pub metadata: u64,
    /// What was left out, by reason, in the order first met.
    pub refused: Vec<Refused>,
}

impl Translation {
    fn refuse(&mut self, reason: Reason, first: impl FnOnce() -> String) {
        match self.refused.iter_mut().find(|r| r.reason == reason) {
            Some(r) => r.count += 1,
            None => self.refused.push(Refused { reason, count: 1, first: first() }),
        }
    }
}

/// Reused buffers: the symbols table as spans of the request, and one series' references.
#[derive(Debug, Default)]
pub struct Scratch {
    symbols: Vec<(u32, u32)>,
    refs: Vec<u32>,
    labels: Vec<(u32, u32)>,
    body: Vec<u8>,
}

impl Scratch {
    /// Bytes held allocated.
    pub fn heap_bytes(&self) -> usize {
        self.symbols.capacity() * 8 + self.refs.capacity() * 4 + self.labels.capacity() * 8 + self.body.capacity()
    }
}

/// Symbols in `buf` (a `Request`), counted without allocating: the table costs 8 bytes per
/// symbol, to be charged before [`measure`] builds it.
pub fn count_symbols(buf: &[u8]) -> Result<usize, DecodeError> {
    let mut n = 0;
    each_field::<DecodeError>(buf, |field, _| {
        n += usize::from(field == 4);
        Ok(())
    })?;
    Ok(n)
}

/// Calls `f` with the field number and byte range of each `symbols` and `timeseries` field.
fn each_field<E: From<DecodeError>>(
    buf: &[u8],
    mut f: impl FnMut(u64, (usize, usize)) -> Result<(), E>,
) -> Result<(), E> {
    if buf.len() > u32::MAX as usize {
        return Err(err("Request", "message too large").into());
    }
    let mut c = Cursor { buf, pos: 0, end: buf.len(), message: "Request" };
    while c.more() {
        let (field, wt) = c.key()?;
        match field {
            4 | 5 if wt != LEN => return Err(wrong_type(&c, field, wt).into()),
            4 | 5 => f(field, c.len_field()?)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(())
}

/// Why a request cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V2Error {
    /// Malformed protobuf.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Its 1.0 form would be larger than the limit.
    #[error("its remote write 1.0 form would have at least {got} bytes, over the limit of {limit}")]
    TooLarge {
        /// Bytes counted when the limit was passed.
        got: usize,
        /// The limit.
        limit: usize,
    },
}

/// Reads the symbols table and returns an upper bound of the 1.0 request's size (every series
/// counted as kept, with all its samples and exemplars), refusing with
/// [`V2Error::TooLarge`] once it passes `limit`. Nothing is written: only lengths are added.
pub fn measure(buf: &[u8], sc: &mut Scratch, limit: usize) -> Result<usize, V2Error> {
    sc.symbols.clear();
    each_field::<DecodeError>(buf, |field, (s, e)| {
        if field == 4 {
            sc.symbols.push((s as u32, (e - s) as u32));
        }
        Ok(())
    })?;
    let mut total = 0usize;
    each_field(buf, |field, (start, end)| {
        if field != 5 {
            return Ok(());
        }
        let body = series_len_bound(Cursor { buf, pos: start, end, message: "TimeSeries" }, sc)?;
        total += 1 + uvarint_len(body as u64) + body;
        if total > limit {
            return Err(V2Error::TooLarge { got: total, limit });
        }
        Ok(())
    })?;
    Ok(total)
}

/// The 1.0 size of `refs` as `Label` fields (0 for a reference outside the table).
fn labels_len(refs: &[u32], symbols: &[(u32, u32)]) -> usize {
    let len = |r: u32| symbols.get(r as usize).map_or(0, |&(_, l)| l as usize);
    refs.chunks_exact(2)
        .map(|p| {
            let (n, v) = (len(p[0]), len(p[1]));
            let label = 2 + uvarint_len(n as u64) + n + uvarint_len(v as u64) + v;
            1 + uvarint_len(label as u64) + label
        })
        .sum()
}

/// At least the 1.0 size of a `TimeSeries`' body, were it kept whole.
fn series_len_bound(mut c: Cursor<'_>, sc: &mut Scratch) -> Result<usize, V2Error> {
    sc.refs.clear();
    let mut len = 0;
    while c.more() {
        let (field, wt) = c.key()?;
        match field {
            1 => read_refs(&mut c, wt, &mut sc.refs)?,
            2..=5 if wt != LEN => return Err(wrong_type(&c, field, wt).into()),
            2 => {
                let r = c.len_field()?;
                let (ts, _) = decode_sample(c.sub(r, "Sample"))?;
                let sample = 10 + uvarint_len(ts as u64);
                len += 1 + uvarint_len(sample as u64) + sample;
            }
            4 => {
                let r = c.len_field()?;
                let (refs, _, ts) = exemplar_fields(c.sub(r, "Exemplar"))?;
                let body = labels_len(&refs, &sc.symbols) + 10 + uvarint_len(ts as u64);
                len += 1 + uvarint_len(body as u64) + body;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(len + labels_len(&sc.refs, &sc.symbols))
}

/// Writes the 1.0 request into `out` (cleared first), after [`measure`] read the symbols
/// and bounded its size by `limit`.
pub fn translate(buf: &[u8], sc: &mut Scratch, limit: usize, out: &mut Vec<u8>) -> Result<Translation, V2Error> {
    out.clear();
    let mut t = Translation::default();
    let mut body = std::mem::take(&mut sc.body);
    let walked = each_field(buf, |field, r| {
        if field != 5 {
            return Ok(());
        }
        body.clear();
        let c = Cursor { buf, pos: r.0, end: r.1, message: "TimeSeries" };
        // Before this series' body: the request so far, the body's key and length.
        let base = t.len + 1 + uvarint_len(limit as u64);
        if !series(c, sc, &mut t, Body { out: &mut body, base, limit })? {
            return Ok(());
        }
        t.series += 1;
        t.len += 1 + uvarint_len(body.len() as u64) + body.len();
        out.push(0x0a);
        put_uvarint(out, body.len() as u64);
        out.extend_from_slice(&body);
        Ok(())
    });
    sc.body = body;
    walked.map(|()| t)
}

fn uvarint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

fn symbol<'a>(buf: &'a [u8], symbols: &[(u32, u32)], i: u32) -> &'a [u8] {
    let (s, l) = symbols[i as usize];
    &buf[s as usize..(s + l) as usize]
}

/// Reads a `repeated uint32` field (packed or not) into `refs`.
fn read_refs(c: &mut Cursor<'_>, wt: u64, refs: &mut Vec<u32>) -> Result<(), DecodeError> {
    let message = c.message;
    let mut one = |v: u64| {
        refs.push(u32::try_from(v).map_err(|_| err(message, "labels_refs: reference over 32 bits"))?);
        Ok(())
    };
    match wt {
        VARINT => {
            let v = c.varint()?;
            one(v)
        }
        LEN => {
            let r = c.len_field()?;
            let mut p = c.sub(r, "labels_refs");
            while p.more() {
                one(p.varint()?)?;
            }
            Ok(())
        }
        _ => Err(wrong_type(c, 1, wt)),
    }
}

/// Resolves `refs` (name/value pairs) into `labels`.
fn resolve(refs: &[u32], n_symbols: usize, labels: &mut Vec<(u32, u32)>) -> Result<(), Reason> {
    if !refs.len().is_multiple_of(2) {
        return Err(Reason::RefsLength);
    }
    labels.clear();
    for p in refs.chunks_exact(2) {
        if p[0] as usize >= n_symbols || p[1] as usize >= n_symbols {
            return Err(Reason::RefOutOfRange);
        }
        labels.push((p[0], p[1]));
    }
    Ok(())
}

fn refs_string(refs: &[u32]) -> String {
    format!("labels_refs {refs:?}")
}

fn labels_string(buf: &[u8], symbols: &[(u32, u32)], labels: &[(u32, u32)]) -> String {
    let mut s = String::from("{");
    for (i, &(n, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&String::from_utf8_lossy(symbol(buf, symbols, n)));
        s.push('=');
        let _ = ringest_tsdb::labels::write_go_quoted(&mut s, &String::from_utf8_lossy(symbol(buf, symbols, v)));
    }
    s.push('}');
    s
}

/// A series' 1.0 body being written, refusing to take the request past `limit` bytes.
struct Body<'a> {
    out: &'a mut Vec<u8>,
    /// Bytes of the request before this body.
    base: usize,
    limit: usize,
}

impl Body<'_> {
    /// Appends a length-delimited field (`tag`, then `len` bytes that `fill` writes), after
    /// checking that it fits.
    fn field(&mut self, tag: u8, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Result<(), V2Error> {
        let got = self.base + self.out.len() + 1 + uvarint_len(len as u64) + len;
        if got > self.limit {
            return Err(V2Error::TooLarge { got, limit: self.limit });
        }
        self.out.push(tag);
        put_uvarint(self.out, len as u64);
        let at = self.out.len();
        fill(self.out);
        debug_assert_eq!(self.out.len() - at, len);
        Ok(())
    }

    /// The labels as 1.0 `Label` fields.
    fn labels(&mut self, buf: &[u8], symbols: &[(u32, u32)], labels: &[(u32, u32)]) -> Result<(), V2Error> {
        for &(n, v) in labels {
            let (n, v) = (symbol(buf, symbols, n), symbol(buf, symbols, v));
            let len = 2 + uvarint_len(n.len() as u64) + n.len() + uvarint_len(v.len() as u64) + v.len();
            self.field(0x0a, len, |out| {
                for (tag, bytes) in [(0x0a, n), (0x12, v)] {
                    out.push(tag);
                    put_uvarint(out, bytes.len() as u64);
                    out.extend_from_slice(bytes);
                }
            })?;
        }
        Ok(())
    }
}

/// A float and a timestamp as the fields of a 1.0 `Sample` (`value_tag` 0x09: field 1,
/// fixed64) or `Exemplar` (0x11: field 2); the timestamp is the next field, a varint, whose
/// tag is 7 more in both.
fn value_and_time(out: &mut Vec<u8>, value_tag: u8, v: f64, ts: i64) {
    out.push(value_tag);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
    out.push(value_tag + 7);
    put_uvarint(out, ts as u64);
}

/// One `TimeSeries`: its 1.0 encoding into `body` and `true`, or `false` when it is left out.
fn series(mut c: Cursor<'_>, sc: &mut Scratch, t: &mut Translation, mut body: Body<'_>) -> Result<bool, V2Error> {
    let buf = c.buf;
    let (start, end) = (c.pos, c.end);
    sc.refs.clear();
    let (mut samples, mut histograms, mut exemplars) = (0u64, 0u64, 0u64);
    while c.more() {
        let (field, wt) = c.key()?;
        match field {
            1 => read_refs(&mut c, wt, &mut sc.refs)?,
            2..=5 if wt != LEN => return Err(wrong_type(&c, field, wt).into()),
            2 => {
                let r = c.len_field()?;
                decode_sample(c.sub(r, "Sample"))?;
                samples += 1;
            }
            3 => {
                c.len_field()?;
                histograms += 1;
            }
            4 => {
                c.len_field()?;
                exemplars += 1;
            }
            5 => {
                c.len_field()?;
                t.metadata += 1;
            }
            _ => c.skip(wt)?,
        }
    }
    if let Err(reason) = resolve(&sc.refs, sc.symbols.len(), &mut sc.labels) {
        t.refuse(reason, || refs_string(&sc.refs));
        return Ok(false);
    }
    let (symbols, labels) = (&sc.symbols, &mut sc.labels);
    let name = |i: u32| symbol(buf, symbols, i);
    // Senders send labels sorted: one scan shows it (and that no name repeats); otherwise sort.
    let strictly_sorted = labels.windows(2).all(|w| name(w[0].0) < name(w[1].0));
    if !strictly_sorted {
        labels.sort_by(|a, b| name(a.0).cmp(name(b.0)));
    }
    let named = labels.iter().any(|&(n, v)| name(n) == b"__name__" && !name(v).is_empty());
    let reason = if !named || labels.first().is_some_and(|&(n, _)| name(n).is_empty()) {
        Some(Reason::InvalidName)
    } else if !strictly_sorted && labels.windows(2).any(|w| name(w[0].0) == name(w[1].0)) {
        Some(Reason::DuplicateName)
    } else if histograms > 0 {
        Some(Reason::Histograms)
    } else if samples == 0 {
        Some(Reason::NoData)
    } else {
        None
    };
    if let Some(reason) = reason {
        t.refuse(reason, || labels_string(buf, symbols, labels));
        return Ok(false);
    }
    body.labels(buf, symbols, labels)?;
    // Second look: samples and exemplars in the order received.
    let mut c = Cursor { buf, pos: start, end, message: "TimeSeries" };
    while c.more() {
        let (field, wt) = c.key()?;
        match field {
            2 => {
                let r = c.len_field()?;
                let (ts, v) = decode_sample(c.sub(r, "Sample"))?;
                body.field(0x12, 10 + uvarint_len(ts as u64), |out| value_and_time(out, 0x09, v, ts))?;
            }
            4 => {
                let r = c.len_field()?;
                if let Err(refs) = exemplar(c.sub(r, "Exemplar"), buf, symbols, &mut body)? {
                    exemplars -= 1;
                    t.refuse(Reason::Exemplar, || {
                        format!("{} of {}", refs_string(&refs), labels_string(buf, symbols, labels))
                    });
                }
            }
            _ => c.skip(wt)?,
        }
    }
    t.samples += samples;
    t.exemplars += exemplars;
    Ok(true)
}

/// An `Exemplar`'s references, value and timestamp.
fn exemplar_fields(mut c: Cursor<'_>) -> Result<(Vec<u32>, f64, i64), DecodeError> {
    let mut refs = Vec::new();
    let (mut value, mut ts) = (0f64, 0i64);
    while c.more() {
        let (field, wt) = c.key()?;
        match (field, wt) {
            (1, _) => read_refs(&mut c, wt, &mut refs)?,
            (2, FIXED64) => value = f64::from_bits(c.fixed64()?),
            (3, VARINT) => ts = c.varint()? as i64,
            (2, _) | (3, _) => return Err(wrong_type(&c, field, wt)),
            _ => c.skip(wt)?,
        }
    }
    Ok((refs, value, ts))
}

/// One exemplar, as a 1.0 `Exemplar` field of the series' body; its references instead
/// (nothing written) when they are bad.
fn exemplar(
    c: Cursor<'_>,
    buf: &[u8],
    symbols: &[(u32, u32)],
    body: &mut Body<'_>,
) -> Result<Result<(), Vec<u32>>, V2Error> {
    let (refs, value, ts) = exemplar_fields(c)?;
    let mut labels = Vec::with_capacity(refs.len() / 2);
    if resolve(&refs, symbols.len(), &mut labels).is_err() {
        return Ok(Err(refs));
    }
    let mut e = Vec::new();
    Body { out: &mut e, base: body.base + body.out.len(), limit: body.limit }.labels(buf, symbols, &labels)?;
    value_and_time(&mut e, 0x11, value, ts);
    body.field(0x1a, e.len(), |out| out.extend_from_slice(&e))?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use ringest_proto::prometheus as v1;
    use ringest_proto::write_v2 as pb;

    /// A request whose symbols are `symbols` (with the empty string first).
    fn request(symbols: &[&str], timeseries: Vec<pb::TimeSeries>) -> Vec<u8> {
        let symbols = std::iter::once("").chain(symbols.iter().copied()).map(String::from).collect();
        pb::Request { symbols, timeseries }.encode_to_vec()
    }

    fn series(refs: &[u32], samples: &[(i64, f64)]) -> pb::TimeSeries {
        pb::TimeSeries {
            labels_refs: refs.to_vec(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| pb::Sample { value, timestamp, start_timestamp: 0 })
                .collect(),
            ..Default::default()
        }
    }

    fn run_both(buf: &[u8], limit: usize) -> (Translation, v1::WriteRequest) {
        let mut sc = Scratch::default();
        let bound = measure(buf, &mut sc, limit).unwrap();
        let mut out = Vec::new();
        let t = translate(buf, &mut sc, limit, &mut out).unwrap();
        assert!(t.len <= bound, "measure bounds the translation: {} > {bound}", t.len);
        if t.refused.is_empty() {
            assert_eq!(t.len, bound, "with every series kept, the bound is exact");
        }
        assert_eq!(t.len, out.len());
        (t, v1::WriteRequest::decode(&out[..]).expect("the 1.0 form decodes"))
    }

    fn labels(ts: &v1::TimeSeries) -> Vec<(&str, &str)> {
        ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
    }

    #[test]
    fn series_become_sorted_1_0_series_with_their_samples_and_exemplars() {
        // Symbols: 1 job, 2 api, 3 __name__, 4 up, 5 trace_id, 6 abc.
        let syms = ["job", "api", "__name__", "up", "trace_id", "abc"];
        let mut s = series(&[1, 2, 3, 4], &[(1000, 1.5), (2000, f64::NAN), (-5, f64::INFINITY)]);
        s.exemplars = vec![pb::Exemplar { labels_refs: vec![5, 6], value: 0.25, timestamp: 1500 }];
        s.metadata = Some(pb::Metadata { r#type: 1, help_ref: 2, unit_ref: 0 });
        let buf = request(&syms, vec![s]);
        let (t, req) = run_both(&buf, 1 << 20);
        assert_eq!((t.series, t.samples, t.exemplars, t.metadata), (1, 3, 1, 1));
        assert!(t.refused.is_empty());
        let ts = &req.timeseries[0];
        assert_eq!(labels(ts), [("__name__", "up"), ("job", "api")]);
        let samples: Vec<(i64, u64)> = ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
        assert_eq!(samples, [(1000, 1.5f64.to_bits()), (2000, f64::NAN.to_bits()), (-5, f64::INFINITY.to_bits())]);
        let e = &ts.exemplars[0];
        assert_eq!(
            (e.labels[0].name.as_str(), e.labels[0].value.as_str(), e.value, e.timestamp),
            ("trace_id", "abc", 0.25, 1500)
        );
    }

    #[test]
    fn each_bad_series_is_left_out_with_its_reason_and_the_others_kept() {
        // 1 __name__, 2 up, 3 job, 4 a, 5 "" (empty name), 6 b
        let syms = ["__name__", "up", "job", "a", "", "b"];
        let mut hist = series(&[1, 2], &[]);
        hist.histograms = vec![pb::Histogram { schema: 1, timestamp: 5, ..Default::default() }];
        let mut bad_exemplar = series(&[1, 2, 3, 6], &[(1, 1.0)]);
        bad_exemplar.exemplars = vec![pb::Exemplar { labels_refs: vec![3], value: 1.0, timestamp: 1 }];
        let buf = request(
            &syms,
            vec![
                series(&[1, 2, 3], &[(1, 1.0)]),              // odd refs
                series(&[1, 2, 3, 99], &[(1, 1.0)]),          // out of range
                series(&[3, 4], &[(1, 1.0)]),                 // no __name__
                series(&[1, 2, 5, 4], &[(1, 1.0)]),           // empty name ("" is symbol 0 and 5)
                series(&[1, 2, 3, 4, 3, 6], &[(1, 1.0)]),     // job twice
                series(&[1, 2, 3, 4], &[]),                   // no data
                hist,                                         // native histogram
                series(&[3, 4, 1, 2], &[(7, 2.0), (8, 3.0)]), // kept
                bad_exemplar,                                 // kept, its exemplar dropped
            ],
        );
        let (t, req) = run_both(&buf, 1 << 20);
        let reasons: Vec<(Reason, u64)> = t.refused.iter().map(|r| (r.reason, r.count)).collect();
        assert_eq!(
            reasons,
            [
                (Reason::RefsLength, 1),
                (Reason::RefOutOfRange, 1),
                (Reason::InvalidName, 2),
                (Reason::DuplicateName, 1),
                (Reason::NoData, 1),
                (Reason::Histograms, 1),
                (Reason::Exemplar, 1),
            ]
        );
        assert_eq!(t.refused[0].first, "labels_refs [1, 2, 3]");
        assert_eq!(t.refused[2].first, "{job=\"a\"}");
        assert_eq!(t.refused[3].first, "{__name__=\"up\", job=\"a\", job=\"b\"}");
        assert_eq!((t.series, t.samples, t.exemplars), (2, 3, 0));
        assert_eq!(labels(&req.timeseries[0]), [("__name__", "up"), ("job", "a")]);
        assert_eq!(labels(&req.timeseries[1]), [("__name__", "up"), ("job", "b")]);
        assert!(req.timeseries[1].exemplars.is_empty());
    }

    #[test]
    fn a_long_symbol_named_many_times_is_refused_past_the_limit_before_it_is_written() {
        let long = "x".repeat(64 << 10);
        let many: Vec<pb::TimeSeries> = (0..64).map(|i| series(&[1, 2, 3, 4], &[(i, 1.0)])).collect();
        let buf = request(&["__name__", "up", "long", &long], many);
        assert!(buf.len() < 80 << 10);
        let mut sc = Scratch::default();
        let e = measure(&buf, &mut sc, 1 << 20).unwrap_err();
        match e {
            V2Error::TooLarge { got, limit } => assert!(got > limit && limit == 1 << 20, "{got} {limit}"),
            e => panic!("{e}"),
        }
        // Nothing larger than the limit was built on the way.
        assert!(sc.heap_bytes() < 2 << 20, "{}", sc.heap_bytes());
        let (t, _) = run_both(&buf, 8 << 20);
        assert_eq!(t.series, 64);
    }

    #[test]
    fn truncations_and_garbage_are_errors_not_panics() {
        let buf = request(&["__name__", "up"], vec![series(&[1, 2], &[(1, 1.0), (2, 2.0)])]);
        for n in 0..buf.len() {
            let mut sc = Scratch::default();
            let _ =
                measure(&buf[..n], &mut sc, 1 << 20).map(|_| translate(&buf[..n], &mut sc, 1 << 20, &mut Vec::new()));
        }
        let mut sc = Scratch::default();
        assert!(measure(&[0x22, 0x05, 0x01], &mut sc, 1 << 20).is_err());
        assert!(measure(&[0x28, 0x01], &mut sc, 1 << 20).is_err(), "timeseries as a varint");
    }

    fn arb_request() -> impl proptest::strategy::Strategy<Value = (Vec<String>, Vec<pb::TimeSeries>)> {
        use proptest::prelude::*;
        let symbols = proptest::collection::vec(prop_oneof![Just(String::from("__name__")), "[a-c]{0,3}"], 0..8);
        let ts = (
            proptest::collection::vec(0u32..10, 0..8),
            proptest::collection::vec((any::<i64>(), any::<f64>()), 0..4),
            proptest::collection::vec(proptest::collection::vec(0u32..10, 0..4), 0..2),
            0usize..2,
        )
            .prop_map(|(refs, samples, exemplars, histograms)| pb::TimeSeries {
                labels_refs: refs,
                samples: samples
                    .into_iter()
                    .map(|(timestamp, value)| pb::Sample { value, timestamp, start_timestamp: 3 })
                    .collect(),
                exemplars: exemplars
                    .into_iter()
                    .map(|labels_refs| pb::Exemplar { labels_refs, value: 1.0, timestamp: 2 })
                    .collect(),
                histograms: vec![pb::Histogram::default(); histograms],
                metadata: None,
            });
        (symbols, proptest::collection::vec(ts, 0..6))
    }

    proptest::proptest! {
        /// Every series is kept or refused once; a kept one is its labels resolved and sorted,
        /// with every sample, and nothing else.
        #[test]
        fn kept_series_are_the_resolved_sorted_input((symbols, timeseries) in arb_request()) {
            let buf = pb::Request { symbols: symbols.clone(), timeseries: timeseries.clone() }.encode_to_vec();
            let (t, req) = run_both(&buf, 1 << 20);
            let refused_series: u64 = t.refused.iter().filter(|r| r.reason != Reason::Exemplar).map(|r| r.count).sum();
            proptest::prop_assert_eq!(t.series + refused_series, timeseries.len() as u64);
            let mut kept = req.timeseries.iter();
            for ts in &timeseries {
                let resolved: Option<Vec<(&str, &str)>> = (ts.labels_refs.len() % 2 == 0)
                    .then(|| ts.labels_refs.chunks(2).map(|p| Some((symbols.get(p[0] as usize)?.as_str(), symbols.get(p[1] as usize)?.as_str()))).collect())
                    .flatten();
                let Some(mut want) = resolved else { continue };
                want.sort();
                let ok = want.iter().any(|&(n, v)| n == "__name__" && !v.is_empty())
                    && want.iter().all(|&(n, _)| !n.is_empty())
                    && want.windows(2).all(|w| w[0].0 != w[1].0)
                    && ts.histograms.is_empty()
                    && !ts.samples.is_empty();
                if !ok {
                    continue;
                }
                let got = kept.next().expect("a kept series");
                proptest::prop_assert_eq!(labels(got), want);
                let samples: Vec<(i64, u64)> = got.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
                // prost, encoding the input, leaves out a value equal to 0.0, and -0.0 is.
                let sent: Vec<(i64, u64)> = ts
                    .samples
                    .iter()
                    .map(|s| (s.timestamp, if s.value == 0.0 { 0 } else { s.value.to_bits() }))
                    .collect();
                proptest::prop_assert_eq!(samples, sent);
            }
            proptest::prop_assert!(kept.next().is_none());
        }
    }
}
