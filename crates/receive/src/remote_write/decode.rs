//! Hand-written protobuf decoder for `prometheus.WriteRequest` (remote write 1.0).
//!
//! Field numbers: WriteRequest{timeseries=1, metadata=3}; TimeSeries{labels=1, samples=2,
//! exemplars=3, histograms=4}; Label{name=1, value=2}; Sample{value=1 (double),
//! timestamp=2 (int64)}. Unknown fields are skipped by wire type, as any protobuf decoder does.
//! Label strings are not checked for UTF-8 here: the TSDB validates them when it creates a
//! series (an existing series matched by hash has identical, already validated bytes).

use ringest_tsdb::labels::name_lt;

/// A label as byte ranges of the decompressed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSpan {
    /// Offset of the name.
    pub name_off: u32,
    /// Length of the name.
    pub name_len: u32,
    /// Offset of the value.
    pub value_off: u32,
    /// Length of the value.
    pub value_len: u32,
}

impl LabelSpan {
    /// The name bytes in `buf`.
    #[inline]
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name_off as usize..(self.name_off + self.name_len) as usize]
    }
    /// The value bytes in `buf`.
    #[inline]
    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value_off as usize..(self.value_off + self.value_len) as usize]
    }
}

/// One decoded time series: ranges into [`Decoded::labels`] and [`Decoded::samples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesSpan {
    /// First label index.
    pub labels_start: u32,
    /// One past the last label index.
    pub labels_end: u32,
    /// First sample index.
    pub samples_start: u32,
    /// One past the last sample index.
    pub samples_end: u32,
    /// Number of exemplars (not stored).
    pub exemplars: u32,
    /// Number of native histogram samples (not supported yet).
    pub histograms: u32,
    /// Start of the encoded `TimeSeries` message in the buffer (forwarded to peers as is).
    pub raw_start: u32,
    /// End of the encoded `TimeSeries` message.
    pub raw_end: u32,
    /// `(start, end)` of the label fields as received, when they are the canonical encoding
    /// of labels strictly sorted by name (`ringest_tsdb::labels::SeriesHasher`): contiguous
    /// `Label` fields of one-byte tags and lengths, each `name` then `value`. The series key
    /// is then hashed from these bytes in place.
    pub labels_encoded: Option<(u32, u32)>,
}

impl SeriesSpan {
    /// The encoded `TimeSeries` message in `buf`.
    #[inline]
    pub fn raw<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.raw_start as usize..self.raw_end as usize]
    }

    /// The canonically encoded label fields in `buf` (see [`SeriesSpan::labels_encoded`]).
    #[inline]
    pub fn encoded_labels<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.labels_encoded.map(|(s, e)| &buf[s as usize..e as usize])
    }
}

/// A decoded request; reuse it across requests to avoid allocations.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Series in request order.
    pub series: Vec<SeriesSpan>,
    /// All labels, series after series.
    pub labels: Vec<LabelSpan>,
    /// All samples `(timestamp, value)`, series after series.
    pub samples: Vec<(i64, f64)>,
    /// Number of metadata entries (ignored, as Thanos does).
    pub metadata: u32,
    /// The most labels of one series, the longest label name and the longest label value, in
    /// bytes (so that label limits cost nothing when no series comes near them).
    pub label_extremes: LabelExtremes,
}

/// The largest label figures of a request (see [`Decoded::label_extremes`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LabelExtremes {
    /// Labels of the series with the most.
    pub labels_per_series: u32,
    /// Longest label name.
    pub name_len: u32,
    /// Longest label value.
    pub value_len: u32,
}

impl Decoded {
    /// Its counts (no tenant tuples).
    pub fn shape(&self) -> Shape {
        Shape {
            series: self.series.len() as u64,
            labels: self.labels.len() as u64,
            samples: self.samples.len() as u64,
            tuples: 0,
        }
    }

    /// Bytes its vectors hold allocated.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.series.capacity() * size_of::<SeriesSpan>()
            + self.labels.capacity() * size_of::<LabelSpan>()
            + self.samples.capacity() * size_of::<(i64, f64)>()
    }

    fn clear(&mut self) {
        self.series.clear();
        self.labels.clear();
        self.samples.clear();
        self.metadata = 0;
        self.label_extremes = LabelExtremes::default();
    }
}

/// A malformed protobuf body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proto: {message}: {problem}")]
pub struct DecodeError {
    /// The message being decoded.
    pub message: &'static str,
    /// What was wrong.
    pub problem: String,
}

pub(super) fn err(message: &'static str, problem: impl Into<String>) -> DecodeError {
    DecodeError { message, problem: problem.into() }
}

pub(super) const VARINT: u64 = 0;
pub(super) const FIXED64: u64 = 1;
pub(super) const LEN: u64 = 2;
pub(super) const FIXED32: u64 = 5;

pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) end: usize,
    pub(super) message: &'static str,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(super) fn more(&self) -> bool {
        self.pos < self.end
    }

    #[inline(always)]
    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        if self.pos + 1 < self.end {
            let (b0, b1) = (self.buf[self.pos], self.buf[self.pos + 1]);
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(b0 as u64);
            }
            // Two bytes: the length of most series (128 B to 16 KiB).
            if b1 < 0x80 {
                self.pos += 2;
                return Ok((b0 & 0x7f) as u64 | (b1 as u64) << 7);
            }
        } else if self.pos < self.end && self.buf[self.pos] < 0x80 {
            self.pos += 1;
            return Ok(self.buf[self.pos - 1] as u64);
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let mut x: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf[..self.end].get(self.pos).ok_or_else(|| err(self.message, "unexpected EOF"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(err(self.message, "integer overflow"));
            }
            x |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(x);
            }
            shift += 7;
        }
    }

    #[inline(always)]
    pub(super) fn key(&mut self) -> Result<(u64, u64), DecodeError> {
        let k = self.varint()?;
        let field = k >> 3;
        let wt = k & 7;
        if field == 0 {
            return Err(err(self.message, format!("illegal tag 0 (wire type {wt})")));
        }
        Ok((field, wt))
    }

    /// Returns `(start, end)` of a length-delimited field.
    #[inline(always)]
    pub(super) fn len_field(&mut self) -> Result<(usize, usize), DecodeError> {
        let n = self.varint()?;
        let start = self.pos;
        if n > (self.end - start) as u64 {
            return Err(err(self.message, "unexpected EOF"));
        }
        self.pos = start + n as usize;
        Ok((start, self.pos))
    }

    #[inline(always)]
    pub(super) fn fixed64(&mut self) -> Result<u64, DecodeError> {
        if self.end - self.pos < 8 {
            return Err(err(self.message, "unexpected EOF"));
        }
        let v = u64::from_le_bytes(self.buf[self.pos..self.pos + 8].try_into().unwrap_or([0; 8]));
        self.pos += 8;
        Ok(v)
    }

    pub(super) fn skip(&mut self, wt: u64) -> Result<(), DecodeError> {
        match wt {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.fixed64()?;
            }
            LEN => {
                self.len_field()?;
            }
            FIXED32 => {
                if self.end - self.pos < 4 {
                    return Err(err(self.message, "unexpected EOF"));
                }
                self.pos += 4;
            }
            _ => return Err(err(self.message, format!("unsupported wire type {wt}"))),
        }
        Ok(())
    }

    pub(super) fn sub(&self, (start, end): (usize, usize), message: &'static str) -> Cursor<'a> {
        Cursor { buf: self.buf, pos: start, end, message }
    }
}

pub(super) fn wrong_type(c: &Cursor<'_>, field: u64, wt: u64) -> DecodeError {
    err(c.message, format!("wrong wire type {wt} for field {field}"))
}

/// A label, and whether it is encoded exactly as `0a <len> name 12 <len> value` with one-byte
/// lengths (canonical: the way every encoder writes a label shorter than 128 bytes).
#[inline(always)]
fn decode_label(mut c: Cursor<'_>) -> Result<(LabelSpan, bool), DecodeError> {
    let (b, p, e) = (c.buf, c.pos, c.end);
    if e - p >= 4 && b[p] == 0x0a && b[p + 1] < 0x80 {
        let (ns, nl) = (p + 2, b[p + 1] as usize);
        let vp = ns + nl;
        if vp + 2 <= e && b[vp] == 0x12 && b[vp + 1] < 0x80 {
            let (vs, vl) = (vp + 2, b[vp + 1] as usize);
            if vs + vl == e {
                let l =
                    LabelSpan { name_off: ns as u32, name_len: nl as u32, value_off: vs as u32, value_len: vl as u32 };
                return Ok((l, true));
            }
        }
    }
    let mut l = LabelSpan { name_off: 0, name_len: 0, value_off: 0, value_len: 0 };
    while c.more() {
        let (field, wt) = c.key()?;
        match field {
            1 | 2 => {
                if wt != LEN {
                    return Err(wrong_type(&c, field, wt));
                }
                let (s, e) = c.len_field()?;
                if field == 1 {
                    (l.name_off, l.name_len) = (s as u32, (e - s) as u32);
                } else {
                    (l.value_off, l.value_len) = (s as u32, (e - s) as u32);
                }
            }
            _ => c.skip(wt)?,
        }
    }
    Ok((l, false))
}

#[inline(always)]
pub(super) fn decode_sample(mut c: Cursor<'_>) -> Result<(i64, f64), DecodeError> {
    // Fast path: `09 <8 bytes> 10 <varint>`, the encoding of every sender.
    let (b, p, e) = (c.buf, c.pos, c.end);
    if e - p >= 11 && b[p] == 0x09 && b[p + 9] == 0x10 {
        let v = f64::from_bits(u64::from_le_bytes(b[p + 1..p + 9].try_into().unwrap_or([0; 8])));
        c.pos = p + 10;
        let t = c.varint()? as i64;
        if c.pos == e {
            return Ok((t, v));
        }
        c.pos = p;
    }
    let (mut t, mut v) = (0i64, 0f64);
    while c.more() {
        let (field, wt) = c.key()?;
        match (field, wt) {
            (1, FIXED64) => v = f64::from_bits(c.fixed64()?),
            (2, VARINT) => t = c.varint()? as i64,
            (1, _) | (2, _) => return Err(wrong_type(&c, field, wt)),
            _ => c.skip(wt)?,
        }
    }
    Ok((t, v))
}

fn decode_series(mut c: Cursor<'_>, out: &mut Decoded) -> Result<(), DecodeError> {
    let mut s = SeriesSpan {
        raw_start: c.pos as u32,
        raw_end: c.end as u32,
        labels_start: out.labels.len() as u32,
        samples_start: out.samples.len() as u32,
        ..Default::default()
    };
    // Whether the label fields so far are canonical and sorted, where they start and end, and
    // the last name.
    let (mut canonical, mut region, mut last): (bool, (usize, usize), &[u8]) = (true, (0, 0), &[]);
    while c.more() {
        let at = c.pos;
        let (field, wt) = c.key()?;
        if (1..=4).contains(&field) && wt != LEN {
            return Err(wrong_type(&c, field, wt));
        }
        match field {
            1 => {
                let r = c.len_field()?;
                let (l, plain) = decode_label(c.sub(r, "Label"))?;
                if canonical {
                    let name = l.name(c.buf);
                    let first = out.labels.len() as u32 == s.labels_start;
                    // A one-byte tag and length, right after the previous label, in name order.
                    canonical = plain && r.0 == at + 2 && (first || (at == region.1 && name_lt(last, name)));
                    if first {
                        region.0 = at;
                    }
                    (region.1, last) = (r.1, name);
                }
                let x = &mut out.label_extremes;
                (x.name_len, x.value_len) = (x.name_len.max(l.name_len), x.value_len.max(l.value_len));
                out.labels.push(l);
            }
            2 => {
                let r = c.len_field()?;
                out.samples.push(decode_sample(c.sub(r, "Sample"))?);
            }
            3 => {
                c.len_field()?;
                s.exemplars += 1;
            }
            4 => {
                c.len_field()?;
                s.histograms += 1;
            }
            _ => c.skip(wt)?,
        }
    }
    s.labels_end = out.labels.len() as u32;
    s.samples_end = out.samples.len() as u32;
    let x = &mut out.label_extremes;
    x.labels_per_series = x.labels_per_series.max(s.labels_end - s.labels_start);
    if canonical && s.labels_end > s.labels_start {
        s.labels_encoded = Some((region.0 as u32, region.1 as u32));
    }
    out.series.push(s);
    Ok(())
}

/// How much a request holds, counted by a pass that allocates nothing, so that its decoded form
/// can be bounded and paid for before it is built. Counts are upper bounds of what decoding
/// keeps (a field of the wrong wire type is counted here and refused by the decoder).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// `TimeSeries` messages.
    pub series: u64,
    /// `Label` messages.
    pub labels: u64,
    /// `Sample` messages.
    pub samples: u64,
    /// `TimeSeriesTenantTuple` messages (`thanos.WriteRequest` only).
    pub tuples: u64,
}

impl Shape {
    /// Bytes the decoded form takes: [`Decoded`]'s entries, and an entry per tenant tuple.
    pub fn decoded_form_bytes(&self) -> u64 {
        use std::mem::size_of;
        self.series * size_of::<SeriesSpan>() as u64
            + self.labels * size_of::<LabelSpan>() as u64
            + self.samples * size_of::<(i64, f64)>() as u64
            + self.tuples * (size_of::<(String, Decoded)>() + 64) as u64
    }

    /// The most bytes the decoded form of any request of `len` bytes could take: every
    /// element (series, label, sample, tenant tuple) takes at least 2 bytes of it.
    pub fn decoded_form_bytes_at_most(len: u64, thanos: bool) -> u64 {
        let one = |s: Shape| s.decoded_form_bytes();
        let n = len / 2;
        let mut worst = one(Shape { series: n, ..Shape::default() })
            .max(one(Shape { labels: n, ..Shape::default() }))
            .max(one(Shape { samples: n, ..Shape::default() }));
        if thanos {
            worst = worst.max(one(Shape { tuples: n, ..Shape::default() }));
        }
        worst
    }

    /// Whether a count is over its maximum in `max`.
    pub fn exceeds(&self, max: &Shape) -> bool {
        self.series > max.series || self.labels > max.labels || self.samples > max.samples || self.tuples > max.tuples
    }

    /// No maximum.
    pub const UNBOUNDED: Shape = Shape { series: u64::MAX, labels: u64::MAX, samples: u64::MAX, tuples: u64::MAX };

    /// Counts one `TimeSeries`. Labels and samples with one-byte lengths (nearly all) are
    /// counted by a tight loop over tags and lengths; the rest field by field, which also stops
    /// once a count exceeds `max`. (The caller checks `max` after each series.)
    fn count_series(&mut self, c: Cursor<'_>, max: &Shape) -> Result<(), DecodeError> {
        self.series += 1;
        let (b, e) = (c.buf, c.end);
        let mut p = c.pos;
        while p + 1 < e && b[p + 1] < 0x80 {
            match b[p] {
                0x0a => self.labels += 1,
                0x12 => self.samples += 1,
                _ => break,
            }
            p += 2 + b[p + 1] as usize;
        }
        if p > e {
            return Err(err(c.message, "unexpected EOF"));
        }
        let mut c = Cursor { pos: p, ..c };
        while c.more() && !self.exceeds(max) {
            let (field, wt) = c.key()?;
            match field {
                1 => self.labels += 1,
                2 => self.samples += 1,
                _ => {}
            }
            c.skip(wt)?;
        }
        Ok(())
    }
}

/// A part of a request met by [`walk`].
enum Part<'a> {
    /// A `TimeSeries`' contents.
    Series(Cursor<'a>),
    /// A `TimeSeriesTenantTuple` starts.
    Tuple,
}

/// Visits the series of a `prometheus.WriteRequest` (of a `thanos.WriteRequest`, tenant tuples
/// included, when `thanos`) while `visit` answers true.
fn walk<'a>(
    buf: &'a [u8],
    thanos: bool,
    mut visit: impl FnMut(Part<'a>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let message = if thanos { "thanos.WriteRequest" } else { "WriteRequest" };
    let mut c = Cursor { buf, pos: 0, end: buf.len(), message };
    while c.more() {
        match c.key()? {
            (1, LEN) => {
                let r = c.len_field()?;
                if !visit(Part::Series(c.sub(r, "TimeSeries")))? {
                    return Ok(());
                }
            }
            (4, LEN) if thanos => {
                let r = c.len_field()?;
                if !visit(Part::Tuple)? {
                    return Ok(());
                }
                let mut t = c.sub(r, "TimeSeriesTenantTuple");
                while t.more() {
                    match t.key()? {
                        (1, LEN) => {
                            let r = t.len_field()?;
                            if !visit(Part::Series(t.sub(r, "TimeSeries")))? {
                                return Ok(());
                            }
                        }
                        (_, wt) => t.skip(wt)?,
                    }
                }
            }
            (_, wt) => c.skip(wt)?,
        }
    }
    Ok(())
}

/// The [`Shape`] of a `prometheus.WriteRequest` (of a `thanos.WriteRequest` when `thanos`);
/// counting stops as soon as a count exceeds its maximum in `max` (the request is refused
/// then, and the rest need not be read).
pub fn shape_of(buf: &[u8], thanos: bool, max: &Shape) -> Result<Shape, DecodeError> {
    let mut shape = Shape::default();
    walk(buf, thanos, |part| {
        match part {
            Part::Series(c) => shape.count_series(c, max)?,
            Part::Tuple => shape.tuples += 1,
        }
        Ok(!shape.exceeds(max))
    })?;
    Ok(shape)
}

/// A request's outline: its series counted exactly, and the bytes of their encodings, from
/// which its decoded form is bounded without reading inside a series (a label or a sample takes
/// at least 2 bytes). Cheap: a small request is charged this bound, and only a large one is
/// counted exactly ([`Shape`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outline {
    /// `TimeSeries` messages.
    pub series: u64,
    /// Bytes of the `TimeSeries` messages' contents.
    pub series_bytes: u64,
    /// `TimeSeriesTenantTuple` messages (`thanos.WriteRequest` only).
    pub tuples: u64,
}

impl Outline {
    /// An upper bound of the bytes of the decoded form.
    pub fn decoded_form_bound(&self) -> u64 {
        Shape { series: self.series, labels: self.series_bytes / 2, samples: 0, tuples: self.tuples }
            .decoded_form_bytes()
    }
}

/// The [`Outline`] of a `prometheus.WriteRequest` (of a `thanos.WriteRequest` when `thanos`);
/// counting stops once more than `max_series` series are seen.
pub fn outline(buf: &[u8], thanos: bool, max_series: u64) -> Result<Outline, DecodeError> {
    let mut o = Outline::default();
    walk(buf, thanos, |part| {
        match part {
            Part::Series(c) => {
                o.series += 1;
                o.series_bytes += (c.end - c.pos) as u64;
            }
            Part::Tuple => o.tuples += 1,
        }
        Ok(o.series <= max_series)
    })?;
    Ok(o)
}

/// Counts the `TimeSeries` of a request from a growing prefix of it (as it is decompressed),
/// so that a request with too many can be refused before the rest is decompressed: those at
/// the top level (field 1 of a 1.0 request, field 5 of a 2.0 one), and in a
/// `thanos.WriteRequest` those of its tenant tuples too. The count is what [`outline`] finds in
/// the prefix; malformed input ends the counting, for the decoder to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPrefix {
    /// `TimeSeries` seen so far.
    pub series: u64,
    /// The field number of a `TimeSeries`.
    series_field: u64,
    /// Whether the request is a `thanos.WriteRequest`.
    thanos: bool,
    /// Where the next field starts.
    pos: usize,
    /// Where the tenant tuple the next field is in ends, if it is in one.
    tuple_end: Option<usize>,
    /// Whether malformed input ended the counting.
    stopped: bool,
}

impl Default for SeriesPrefix {
    /// A counter for a remote write 1.0 `prometheus.WriteRequest`.
    fn default() -> SeriesPrefix {
        SeriesPrefix { series: 0, series_field: 1, thanos: false, pos: 0, tuple_end: None, stopped: false }
    }
}

impl SeriesPrefix {
    /// A counter for a `thanos.WriteRequest` (its tenant tuples' series counted too).
    pub fn thanos() -> SeriesPrefix {
        SeriesPrefix { thanos: true, ..SeriesPrefix::default() }
    }

    /// A counter for a remote write 2.0 `io.prometheus.write.v2.Request`.
    pub fn v2() -> SeriesPrefix {
        SeriesPrefix { series_field: 5, ..SeriesPrefix::default() }
    }

    /// Counts the series that `prefix` (the request's first bytes, a longer prefix than the
    /// last call's) shows.
    pub fn advance(&mut self, prefix: &[u8]) {
        while !self.stopped && self.pos < prefix.len() {
            if self.tuple_end == Some(self.pos) {
                self.tuple_end = None;
                continue;
            }
            let Some((key, after_key)) = prefix_varint(prefix, self.pos) else { return };
            let (field, wire) = (key >> 3, key & 7);
            let (start, end) = match wire {
                0 => match prefix_varint(prefix, after_key) {
                    Some((_, end)) => (end, end),
                    None => return,
                },
                1 => (after_key, after_key + 8),
                5 => (after_key, after_key + 4),
                LEN => match prefix_varint(prefix, after_key) {
                    Some((len, start)) => (start, start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX))),
                    None => return,
                },
                _ => (0, usize::MAX),
            };
            if end == usize::MAX || self.tuple_end.is_some_and(|t| end > t) {
                self.stopped = true;
                return;
            }
            match (field, wire) {
                (f, LEN) if f == self.series_field => self.series += 1,
                // A tenant tuple: its fields are read in turn (its series are field 1 too).
                (4, LEN) if self.thanos && self.tuple_end.is_none() => {
                    self.tuple_end = Some(end);
                    self.pos = start;
                    continue;
                }
                _ => {}
            }
            self.pos = end;
        }
    }
}

/// The varint at `pos` and where it ends; `None` if `buf` ends first (or if its first 10 bytes
/// do not end one, which no longer prefix changes: the count stays where it is).
fn prefix_varint(buf: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in buf.get(pos..)?.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, pos + i + 1));
        }
    }
    None
}

/// Reserves room for a request of `shape` in `out`, whose vectors are then never regrown.
pub fn reserve(out: &mut Decoded, shape: &Shape) {
    let room = |n: u64, len: usize| usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(len);
    out.series.reserve(room(shape.series, out.series.len()));
    out.labels.reserve(room(shape.labels, out.labels.len()));
    out.samples.reserve(room(shape.samples, out.samples.len()));
}

/// Decodes a `prometheus.WriteRequest` from `buf` into `out` (cleared first).
pub fn decode_write_request(buf: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    out.clear();
    if buf.len() > u32::MAX as usize {
        return Err(err("WriteRequest", "message too large"));
    }
    let mut c = Cursor { buf, pos: 0, end: buf.len(), message: "WriteRequest" };
    while c.more() {
        let (field, wt) = c.key()?;
        match field {
            1 | 3 if wt != LEN => return Err(wrong_type(&c, field, wt)),
            1 => {
                let r = c.len_field()?;
                decode_series(c.sub(r, "TimeSeries"), out)?;
            }
            3 => {
                c.len_field()?;
                out.metadata += 1;
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(())
}

/// A decoded `thanos.WriteRequest` (the replication RPC, shared spec §3.2): the replica number
/// and, per tenant, the series (fields 1+2, or every `timeseriesTenantData` entry of field 4).
#[derive(Debug, Default)]
pub struct ThanosWrite {
    /// 1-based replica number (0: not replicated yet).
    pub replica: i64,
    /// Tenant and its series, decoded against the request buffer.
    pub tenants: Vec<(String, Decoded)>,
}

impl ThanosWrite {
    /// Its counts, every tenant together (one tuple per tenant).
    pub fn shape(&self) -> Shape {
        self.tenants.iter().fold(Shape { tuples: self.tenants.len() as u64, ..Shape::default() }, |s, (_, d)| {
            let d = d.shape();
            Shape { series: s.series + d.series, labels: s.labels + d.labels, samples: s.samples + d.samples, ..s }
        })
    }
}

fn tenant_string(c: &mut Cursor<'_>) -> Result<String, DecodeError> {
    let (a, b) = c.len_field()?;
    String::from_utf8(c.buf[a..b].to_vec()).map_err(|_| err(c.message, "tenant is not valid UTF-8"))
}

/// Decodes a `thanos.WriteRequest`: `timeseries=1`, `tenant=2`, `replica=3`,
/// `timeseriesTenantData=4` (`TimeSeriesTenantTuple{timeseries=1, tenant=2}`). When field 4
/// is present it carries the data (fields 1-2 are the legacy single-tenant form). Each tenant
/// appears once in the result, whatever the number of its tuples, and only with series.
/// `hint` (the request's [`Shape`], or an estimate) sizes the legacy series' vectors.
pub fn decode_thanos_write_request(buf: &[u8], hint: &Shape) -> Result<ThanosWrite, DecodeError> {
    if buf.len() > u32::MAX as usize {
        return Err(err("WriteRequest", "message too large"));
    }
    let mut out = ThanosWrite::default();
    let mut legacy = Decoded::default();
    if hint.tuples == 0 {
        reserve(&mut legacy, hint);
    }
    let mut legacy_tenant = String::new();
    let mut tuples = false;
    // Position in `out.tenants` by tenant.
    let mut positions: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut c = Cursor { buf, pos: 0, end: buf.len(), message: "thanos.WriteRequest" };
    while c.more() {
        let (field, wt) = c.key()?;
        match (field, wt) {
            (1, LEN) => {
                let r = c.len_field()?;
                decode_series(c.sub(r, "TimeSeries"), &mut legacy)?;
            }
            (2, LEN) => legacy_tenant = tenant_string(&mut c)?,
            (3, VARINT) => out.replica = c.varint()? as i64,
            (4, LEN) => {
                tuples = true;
                let r = c.len_field()?;
                // The tenant first (fields come in any order), then the series into that
                // tenant's entry: repeated tuples of one tenant make one entry, so later work is
                // per tenant, not per tuple.
                let mut t = c.sub(r, "TimeSeriesTenantTuple");
                let mut tenant = String::new();
                while t.more() {
                    match t.key()? {
                        (2, LEN) => tenant = tenant_string(&mut t)?,
                        (f @ (1 | 2), wt) if wt != LEN => return Err(wrong_type(&t, f, wt)),
                        (_, wt) => t.skip(wt)?,
                    }
                }
                let i = *positions.entry(tenant).or_insert_with_key(|tenant| {
                    out.tenants.push((tenant.clone(), Decoded::default()));
                    out.tenants.len() - 1
                });
                let mut t = c.sub(r, "TimeSeriesTenantTuple");
                while t.more() {
                    match t.key()? {
                        (1, LEN) => {
                            let r = t.len_field()?;
                            decode_series(t.sub(r, "TimeSeries"), &mut out.tenants[i].1)?;
                        }
                        (_, wt) => t.skip(wt)?,
                    }
                }
            }
            (1 | 2 | 4, _) | (3, _) => return Err(wrong_type(&c, field, wt)),
            (_, wt) => c.skip(wt)?,
        }
    }
    if !tuples {
        out.tenants.push((legacy_tenant, legacy));
    }
    // A tenant without series has nothing to write: no TSDB is opened or created for it.
    out.tenants.retain(|(_, d)| !d.series.is_empty());
    Ok(out)
}

/// Appends to `out` the encoded `TimeSeries` `raw` without the samples whose timestamp `drop`
/// picks; every other field is copied as received.
pub fn series_without_samples(raw: &[u8], drop: impl Fn(i64) -> bool, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let mut c = Cursor { buf: raw, pos: 0, end: raw.len(), message: "TimeSeries" };
    while c.more() {
        let start = c.pos;
        let (field, wt) = c.key()?;
        if (field, wt) == (2, LEN) {
            let r = c.len_field()?;
            let (t, _) = decode_sample(c.sub(r, "Sample"))?;
            if drop(t) {
                continue;
            }
        } else {
            c.skip(wt)?;
        }
        out.extend_from_slice(&raw[start..c.pos]);
    }
    Ok(())
}

/// A field's key and its varint (a length, or the replica number), in `buf`.
fn field_key(buf: &mut Vec<u8>, tag: u8, n: u64) -> &[u8] {
    buf.clear();
    buf.push(tag);
    ringest_tsdb::encoding::put_uvarint(buf, n);
    buf
}

/// The `timeseries` fields of a `thanos.WriteRequest` in the form every Thanos version reads,
/// the series copied as they were received, as pieces handed to `put` (e.g. a compressor),
/// stopping at its first error. [`write_thanos_request_end`] ends the request; several
/// requests with the same series start with the same bytes (see `ringest_grpc::SharedStart`).
pub fn write_thanos_series<'a, E>(
    series: impl IntoIterator<Item = &'a [u8]>,
    put: &mut dyn FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(11);
    for s in series {
        put(field_key(&mut buf, 0x0a, s.len() as u64))?;
        put(s)?;
    }
    Ok(())
}

/// The `tenant` and `replica` fields that end a `thanos.WriteRequest`.
pub fn write_thanos_request_end<E>(
    tenant: &str,
    replica: i64,
    put: &mut dyn FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(11);
    if !tenant.is_empty() {
        put(field_key(&mut buf, 0x12, tenant.len() as u64))?;
        put(tenant.as_bytes())?;
    }
    if replica != 0 {
        put(field_key(&mut buf, 0x18, replica as u64))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use ringest_proto::prometheus as pb;

    fn encode_thanos_write_request<'a>(
        tenant: &str,
        replica: i64,
        series: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) {
        let put = &mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok::<(), std::convert::Infallible>(())
        };
        write_thanos_series(series, put).unwrap();
        write_thanos_request_end(tenant, replica, put).unwrap();
    }

    fn label(n: &str, v: &str) -> pb::Label {
        pb::Label { name: n.into(), value: v.into() }
    }

    fn request() -> pb::WriteRequest {
        pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "a")],
                    samples: vec![
                        pb::Sample { value: 1.0, timestamp: 1_700_000_000_000 },
                        pb::Sample { value: f64::from_bits(0x7ff0_0000_0000_0002), timestamp: -5 },
                    ],
                    exemplars: vec![pb::Exemplar { labels: vec![label("trace", "x")], value: 1.0, timestamp: 3 }],
                    histograms: vec![],
                },
                pb::TimeSeries {
                    labels: vec![label("__name__", "b")],
                    samples: vec![pb::Sample { value: 0.0, timestamp: 0 }],
                    exemplars: vec![],
                    histograms: vec![pb::Histogram::default()],
                },
            ],
            metadata: vec![pb::MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: "".into(),
            }],
        }
    }

    #[test]
    fn decodes_what_prost_encodes() {
        let buf = request().encode_to_vec();
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        assert_eq!(d.series.len(), 2);
        assert_eq!(d.metadata, 1);
        let s0 = d.series[0];
        assert_eq!((s0.exemplars, s0.histograms), (1, 0));
        let names: Vec<&[u8]> =
            d.labels[s0.labels_start as usize..s0.labels_end as usize].iter().map(|l| l.name(&buf)).collect();
        assert_eq!(names, vec![b"__name__".as_slice(), b"job"]);
        assert_eq!(d.labels[1].value(&buf), b"a");
        assert_eq!(d.samples[0], (1_700_000_000_000, 1.0));
        assert_eq!(d.samples[1].0, -5);
        assert_eq!(d.samples[1].1.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(d.series[1].histograms, 1);
        assert_eq!(d.samples[2], (0, 0.0));
    }

    #[test]
    fn truncations_and_garbage_are_errors_not_panics() {
        let buf = request().encode_to_vec();
        let mut d = Decoded::default();
        let mut errors = 0;
        for cut in 0..buf.len() {
            if decode_write_request(&buf[..cut], &mut d).is_err() {
                errors += 1;
            }
        }
        assert!(errors > buf.len() / 2);
        assert!(decode_write_request(b"\x00\x01", &mut d).unwrap_err().to_string().contains("illegal tag 0"));
        assert!(decode_write_request(b"\x08\x01", &mut d).unwrap_err().to_string().contains("wrong wire type"));
        assert!(decode_write_request(b"\x0a\x05ab", &mut d).unwrap_err().to_string().contains("unexpected EOF"));
        // Empty request and unknown fields are fine.
        decode_write_request(b"", &mut d).unwrap();
        decode_write_request(b"\x28\x05", &mut d).unwrap();
        assert!(d.series.is_empty());
    }

    /// Labels and samples encoded the unusual ways (fields reversed, long names, unknown fields)
    /// decode like the usual ones (the fast paths fall back to the general decoder).
    #[test]
    fn unusual_encodings_decode_the_same() {
        fn ld(field: u8, b: &[u8]) -> Vec<u8> {
            let mut v = vec![field << 3 | 2];
            let mut n = b.len();
            while n >= 0x80 {
                v.push((n as u8) | 0x80);
                n >>= 7;
            }
            v.push(n as u8);
            v.extend_from_slice(b);
            v
        }
        let long = "n".repeat(200);
        let mut label_rev = ld(2, b"value");
        label_rev.extend(ld(1, b"name"));
        let mut label_unknown = ld(1, b"name");
        label_unknown.extend(ld(2, b"value"));
        label_unknown.extend([0x18, 0x05]); // field 3 varint
        let mut label_long = ld(1, long.as_bytes());
        label_long.extend(ld(2, b"v"));
        let mut sample_rev = vec![0x10, 0xe8, 0x07, 0x09];
        sample_rev.extend(2.5f64.to_bits().to_le_bytes());
        let mut series = Vec::new();
        for l in [&label_rev, &label_unknown, &label_long] {
            series.extend(ld(1, l));
        }
        series.extend(ld(2, &sample_rev));
        let buf = ld(1, &series);
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        let labels: Vec<(Vec<u8>, Vec<u8>)> =
            d.labels.iter().map(|l| (l.name(&buf).to_vec(), l.value(&buf).to_vec())).collect();
        assert_eq!(
            labels,
            vec![
                (b"name".to_vec(), b"value".to_vec()),
                (b"name".to_vec(), b"value".to_vec()),
                (long.as_bytes().to_vec(), b"v".to_vec())
            ]
        );
        assert_eq!(d.samples, vec![(1000, 2.5)]);
    }

    /// The series key of the labels as decoded (copied into a key by the TSDB's hasher).
    fn hashed(buf: &[u8], d: &Decoded, s: &SeriesSpan) -> ringest_tsdb::labels::SeriesKey {
        let refs: Vec<ringest_tsdb::LabelRef<'_>> = d.labels[s.labels_start as usize..s.labels_end as usize]
            .iter()
            .map(|l| ringest_tsdb::LabelRef { name: l.name(buf), value: l.value(buf) })
            .collect();
        ringest_tsdb::labels::SeriesHasher::default().key(&refs, &mut Vec::new())
    }

    /// Labels as prost writes them, sorted, are hashed in place, to the key the TSDB's hasher
    /// gives the same labels; anything else is left to the hasher.
    #[test]
    fn sorted_labels_as_encoded_are_the_series_key() {
        let series = |labels: Vec<pb::Label>| pb::TimeSeries {
            labels,
            samples: vec![pb::Sample { value: 1.0, timestamp: 1 }],
            exemplars: vec![],
            histograms: vec![],
        };
        let long = "v".repeat(127);
        let longer = "v".repeat(128);
        let req = pb::WriteRequest {
            timeseries: vec![
                series(vec![label("__name__", "up"), label("job", "a")]),
                series(vec![label("a", &long), label("b", "")]),
                series(vec![label("a", "x"), label("b", &longer)]),
                series(vec![label("job", "a"), label("__name__", "up")]),
                series(vec![label("a", "1"), label("a", "2")]),
                series(vec![]),
            ],
            metadata: vec![],
        };
        let buf = req.encode_to_vec();
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        let encoded: Vec<bool> = d.series.iter().map(|s| s.labels_encoded.is_some()).collect();
        // In place: sorted, one-byte lengths. Not: an empty value (prost omits the field), a
        // 128-byte value, unsorted names, a duplicate name, no labels.
        assert_eq!(encoded, [true, false, false, false, false, false]);
        let s = &d.series[0];
        let key = ringest_tsdb::labels::SeriesKey::of_encoded(s.encoded_labels(&buf).unwrap());
        assert_eq!(key, hashed(&buf, &d, s));
        // The same labels unsorted, or a label written the long way, have the same key.
        assert_eq!(hashed(&buf, &d, &d.series[3]).hash, key.hash);
        // `__name__="up", job="a"` with the first name's length as a 2-byte varint.
        let two_byte_len = {
            let mut name = vec![0x0a, 0x88, 0x00];
            name.extend(b"__name__");
            name.extend([0x12, 0x02]);
            name.extend(b"up");
            let mut job = vec![0x0a, 0x03];
            job.extend(b"job");
            job.extend([0x12, 0x01, b'a']);
            let mut ts = vec![0x0a, name.len() as u8];
            ts.extend(&name);
            ts.extend([0x0a, job.len() as u8]);
            ts.extend(&job);
            let mut req = vec![0x0a, ts.len() as u8];
            req.extend(ts);
            req
        };
        let mut d2 = Decoded::default();
        decode_write_request(&two_byte_len, &mut d2).unwrap();
        assert_eq!(d2.series[0].labels_encoded, None);
        assert_eq!(hashed(&two_byte_len, &d2, &d2.series[0]), key);
        // A sample between two labels: not contiguous.
        let mut split = request().timeseries.remove(0);
        split.exemplars.clear();
        let mut body = Vec::new();
        for (i, l) in split.labels.iter().enumerate() {
            body.push(0x0a);
            l.encode_length_delimited(&mut body).unwrap();
            if i == 0 {
                body.push(0x12);
                split.samples[0].encode_length_delimited(&mut body).unwrap();
            }
        }
        let mut req = vec![0x0a];
        prost::encoding::encode_varint(body.len() as u64, &mut req);
        req.extend(body);
        let mut d3 = Decoded::default();
        decode_write_request(&req, &mut d3).unwrap();
        assert_eq!(d3.series[0].labels_end - d3.series[0].labels_start, 2);
        assert_eq!(d3.series[0].labels_encoded, None);
        assert_eq!(hashed(&req, &d3, &d3.series[0]), key);
    }

    #[test]
    fn series_are_counted_from_a_prefix_of_a_decode_bomb() {
        // 1,000 empty series, then more of the request still to come.
        let bomb = [0x0a, 0x00].repeat(1000);
        let mut p = SeriesPrefix::default();
        p.advance(&bomb[..1]);
        assert_eq!(p.series, 0, "a key without its length");
        p.advance(&bomb[..1001]);
        assert_eq!(p.series, 500);
        p.advance(&bomb);
        assert_eq!(p.series, 1000);
        // A series is counted from its key and length, and its contents skipped as they come.
        let mut p = SeriesPrefix::default();
        p.advance(&[0x0a, 0x03, 0x00]);
        assert_eq!(p.series, 1);
        p.advance(&[0x0a, 0x03, 0x00, 0x00, 0x00, 0x0a]);
        assert_eq!(p.series, 1);
        p.advance(&[0x0a, 0x03, 0x00, 0x00, 0x00, 0x0a, 0x00]);
        assert_eq!(p.series, 2);
        // A group (wire type 3) is malformed here: counting ends.
        let mut p = SeriesPrefix::default();
        p.advance(&[0x0a, 0x00, 0x0b, 0x0a, 0x00]);
        assert_eq!(p.series, 1);
        // A thanos.WriteRequest: a series, a tenant tuple (field 4) of a tenant name and two
        // series, its tenant (field 2), then one more series.
        let req = [0x0a, 0x00, 0x22, 0x07, 0x12, 0x01, b't', 0x0a, 0x00, 0x0a, 0x00, 0x12, 0x01, b'u', 0x0a, 0x00];
        let mut p = SeriesPrefix::thanos();
        for end in 0..=req.len() {
            p.advance(&req[..end]);
        }
        assert_eq!(p.series, 4);
        assert_eq!(outline(&req, true, u64::MAX).unwrap().series, 4, "as the outline counts them");
        // Not a thanos.WriteRequest: field 4 is skipped whole.
        let mut p = SeriesPrefix::default();
        p.advance(&req);
        assert_eq!(p.series, 2);
        // A tuple's field that runs past the tuple is malformed: counting ends.
        let mut p = SeriesPrefix::thanos();
        p.advance(&[0x22, 0x02, 0x0a, 0x05, 0x0a, 0x00]);
        assert_eq!(p.series, 0);
    }

    #[test]
    fn a_2_0_requests_series_are_counted_from_a_prefix_and_its_symbols_are_not() {
        use ringest_proto::write_v2 as v2;
        let ts = |refs: &[u32]| v2::TimeSeries { labels_refs: refs.to_vec(), ..Default::default() };
        let symbols =
            v2::Request { symbols: ["", "__name__", "up", "job", "a"].map(String::from).to_vec(), timeseries: vec![] };
        let symbols_end = symbols.encoded_len();
        let req = v2::Request { timeseries: vec![ts(&[1, 2]), ts(&[1, 2, 3, 4]), ts(&[])], ..symbols }.encode_to_vec();
        let mut p = SeriesPrefix::v2();
        let mut seen = Vec::new();
        for end in 0..=req.len() {
            p.advance(&req[..end]);
            seen.push(p.series);
        }
        assert_eq!(p.series, 3);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "the count only grows");
        // The five symbols (field 4) come first: nothing counted while they arrive.
        assert_eq!(seen[symbols_end], 0);
        // Read as a 1.0 request, it has no series (field 1) at all.
        let mut p = SeriesPrefix::default();
        p.advance(&req);
        assert_eq!(p.series, 0);
        // A 2.0 decode bomb: 1,000 empty series (field 5: key 0x2a).
        let mut p = SeriesPrefix::v2();
        p.advance(&[0x2a, 0x00].repeat(1000));
        assert_eq!(p.series, 1000);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut d = Decoded::default();
            let _ = decode_write_request(&bytes, &mut d);
            for mut p in [SeriesPrefix::default(), SeriesPrefix::thanos(), SeriesPrefix::v2()] {
                for end in 0..=bytes.len() {
                    p.advance(&bytes[..end]);
                }
            }
        }

        /// prost is the oracle: whatever `WriteRequest` it encodes (any label strings, any
        /// sample bits, exemplars, histograms, metadata), the hand-written decoder reads the same
        /// series, labels, samples and counts, and the counting passes agree with it.
        #[test]
        fn agrees_with_prost(req in arb_request()) {
            let buf = req.encode_to_vec();
            let mut d = Decoded::default();
            decode_write_request(&buf, &mut d).unwrap();
            proptest::prop_assert_eq!(d.series.len(), req.timeseries.len());
            proptest::prop_assert_eq!(d.metadata as usize, req.metadata.len());
            for (s, want) in d.series.iter().zip(&req.timeseries) {
                let labels = &d.labels[s.labels_start as usize..s.labels_end as usize];
                let got: Vec<(&[u8], &[u8])> = labels.iter().map(|l| (l.name(&buf), l.value(&buf))).collect();
                let exp: Vec<(&[u8], &[u8])> =
                    want.labels.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())).collect();
                proptest::prop_assert_eq!(got, exp);
                let samples = &d.samples[s.samples_start as usize..s.samples_end as usize];
                let got: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
                let exp: Vec<(i64, u64)> = want.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect();
                proptest::prop_assert_eq!(got, exp);
                proptest::prop_assert_eq!(s.exemplars as usize, want.exemplars.len());
                proptest::prop_assert_eq!(s.histograms as usize, want.histograms.len());
                proptest::prop_assert_eq!(s.raw(&buf), &want.encode_to_vec()[..]);
            }
            let shape = shape_of(&buf, false, &Shape::UNBOUNDED).unwrap();
            let exact = Shape { series: d.series.len() as u64, labels: d.labels.len() as u64, samples: d.samples.len() as u64, tuples: 0 };
            proptest::prop_assert_eq!(shape, exact);
            let o = outline(&buf, false, u64::MAX).unwrap();
            proptest::prop_assert_eq!(o.series, exact.series);
            // Counted from growing prefixes (as chunks are decompressed): never more, and in the
            // end all of them.
            let mut p = SeriesPrefix::default();
            for end in (0..buf.len()).step_by(buf.len() % 13 + 1).chain([buf.len()]) {
                p.advance(&buf[..end]);
                proptest::prop_assert!(p.series <= exact.series);
            }
            proptest::prop_assert_eq!(p.series, exact.series);
            proptest::prop_assert!(o.decoded_form_bound() >= exact.decoded_form_bytes());
            proptest::prop_assert!(Shape::decoded_form_bytes_at_most(buf.len() as u64, false) >= exact.decoded_form_bytes());
        }
    }

    fn arb_request() -> impl proptest::strategy::Strategy<Value = pb::WriteRequest> {
        use proptest::prelude::*;
        let label = (".{0,12}", ".{0,40}").prop_map(|(name, value)| pb::Label { name, value });
        let sample = (any::<u64>(), any::<i64>())
            .prop_map(|(bits, timestamp)| pb::Sample { value: f64::from_bits(bits), timestamp });
        let exemplar = (proptest::collection::vec(label.clone(), 0..2), any::<i64>())
            .prop_map(|(labels, timestamp)| pb::Exemplar { labels, value: 1.0, timestamp });
        let series = (
            proptest::collection::vec(label, 0..6),
            proptest::collection::vec(sample, 0..5),
            proptest::collection::vec(exemplar, 0..2),
            0..2usize,
        )
            .prop_map(|(labels, samples, exemplars, histograms)| pb::TimeSeries {
                labels,
                samples,
                exemplars,
                histograms: vec![pb::Histogram { timestamp: 5, ..Default::default() }; histograms],
            });
        (proptest::collection::vec(series, 0..8), 0..3usize).prop_map(|(timeseries, metadata)| pb::WriteRequest {
            timeseries,
            metadata: vec![pb::MetricMetadata { metric_family_name: "m".into(), ..Default::default() }; metadata],
        })
    }

    /// The counting pass agrees with the decoder, and counts a decode bomb (millions of empty
    /// series) without allocating anything for it.
    #[test]
    fn shapes_count_what_decoding_keeps() {
        let buf = request().encode_to_vec();
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        let shape = shape_of(&buf, false, &Shape::UNBOUNDED).unwrap();
        let want = Shape {
            series: d.series.len() as u64,
            labels: d.labels.len() as u64,
            samples: d.samples.len() as u64,
            tuples: 0,
        };
        assert_eq!(shape, want);
        let mut fwd = Vec::new();
        encode_thanos_write_request("team-a", 2, d.series.iter().map(|s| s.raw(&buf)), &mut fwd);
        assert_eq!(shape_of(&fwd, true, &Shape::UNBOUNDED).unwrap(), want);
        let mut tuple = Vec::new();
        encode_thanos_write_request("team-b", 0, d.series.iter().map(|s| s.raw(&buf)), &mut tuple);
        let mut multi = Vec::new();
        for _ in 0..2 {
            multi.push(0x22);
            ringest_tsdb::encoding::put_uvarint(&mut multi, tuple.len() as u64);
            multi.extend_from_slice(&tuple);
        }
        let got = shape_of(&multi, true, &Shape::UNBOUNDED).unwrap();
        assert_eq!(
            got,
            Shape { series: 2 * want.series, labels: 2 * want.labels, samples: 2 * want.samples, tuples: 2 }
        );
        assert!(got.decoded_form_bytes() > 2 * want.samples * 16);

        let bomb: Vec<u8> = [0x0a, 0x00].repeat(4 << 20);
        let shape = shape_of(&bomb, false, &Shape::UNBOUNDED).unwrap();
        assert_eq!(shape, Shape { series: 4 << 20, ..Default::default() });
        assert!(shape.decoded_form_bytes() >= 40 * (4 << 20), "{}", shape.decoded_form_bytes());
        assert!(shape_of(&[0x0a, 0x05, 0x0a], false, &Shape::UNBOUNDED).is_err(), "truncated");
        // Counting stops one past a maximum: a bomb is refused after reading a little of it.
        let max = Shape { series: 1000, ..Shape::UNBOUNDED };
        assert_eq!(shape_of(&bomb, false, &max).unwrap().series, 1001);
        let max = Shape { samples: 2, ..Shape::UNBOUNDED };
        assert_eq!(shape_of(&buf, false, &max).unwrap().samples, 3);
    }

    #[test]
    fn thanos_write_requests_carry_the_series_bytes_unchanged() {
        let buf = request().encode_to_vec();
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        let mut fwd = Vec::new();
        encode_thanos_write_request("team-a", 2, d.series.iter().map(|s| s.raw(&buf)), &mut fwd);
        let t = decode_thanos_write_request(&fwd, &Shape::default()).unwrap();
        assert_eq!(t.replica, 2);
        assert_eq!(t.tenants.len(), 1);
        let (tenant, got) = &t.tenants[0];
        assert_eq!(tenant, "team-a");
        let bits = |d: &Decoded| -> Vec<(i64, u64)> { d.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect() };
        assert_eq!(bits(got), bits(&d));
        let names = |d: &Decoded, b: &[u8]| -> Vec<Vec<u8>> { d.labels.iter().map(|l| l.value(b).to_vec()).collect() };
        assert_eq!(names(got, &fwd), names(&d, &buf));
        assert_eq!(got.series[1].raw(&fwd), d.series[1].raw(&buf));

        // Field 4 (timeseriesTenantData) wins over the legacy fields.
        let mut tuple = Vec::new();
        encode_thanos_write_request("team-b", 0, [d.series[0].raw(&buf)], &mut tuple);
        let mut multi = vec![0x22, tuple.len() as u8];
        multi.extend_from_slice(&tuple);
        multi.extend_from_slice(&[0x18, 0x01]);
        let t = decode_thanos_write_request(&multi, &Shape::default()).unwrap();
        assert_eq!((t.replica, t.tenants.len(), t.tenants[0].0.as_str()), (1, 1, "team-b"));
        assert_eq!(t.tenants[0].1.series.len(), 1);
        assert!(decode_thanos_write_request(&[0x1a, 0x00], &Shape::default()).is_err(), "replica must be a varint");
    }

    /// Per-tenant tuples: a tenant's tuples make one entry (series in order, tenant field
    /// before or after them), tuples without series make none (no TSDB is opened for them),
    /// and legacy fields are ignored once tuples are present.
    #[test]
    fn tenant_tuples_are_merged_per_tenant_and_empty_ones_dropped() {
        let series = |name: &str| {
            pb::TimeSeries {
                labels: vec![label("__name__", name)],
                samples: vec![pb::Sample { value: 1.0, timestamp: 5 }],
                ..Default::default()
            }
            .encode_to_vec()
        };
        let field = |tag: u8, body: &[u8], out: &mut Vec<u8>| {
            out.push(tag);
            prost::encoding::encode_varint(body.len() as u64, out);
            out.extend_from_slice(body);
        };
        let tuple = |tenant: Option<&str>, names: &[&str], tenant_first: bool| {
            let mut t = Vec::new();
            if tenant_first && let Some(name) = tenant {
                field(0x12, name.as_bytes(), &mut t);
            }
            for n in names {
                field(0x0a, &series(n), &mut t);
            }
            if !tenant_first && let Some(name) = tenant {
                field(0x12, name.as_bytes(), &mut t);
            }
            t
        };
        let mut req = Vec::new();
        field(0x0a, &series("legacy"), &mut req);
        for t in [
            tuple(Some("a"), &["m1"], true),
            tuple(Some("b"), &[], true),
            tuple(Some("a"), &["m2", "m3"], false),
            tuple(Some("c"), &[], false),
            tuple(None, &[], true),
        ]
        .into_iter()
        .chain((0..1000).map(|_| tuple(Some("a"), &[], true)))
        {
            field(0x22, &t, &mut req);
        }
        let w = decode_thanos_write_request(&req, &Shape::default()).unwrap();
        assert_eq!(w.tenants.len(), 1, "{:?}", w.tenants.iter().map(|t| &t.0).collect::<Vec<_>>());
        let (tenant, d) = &w.tenants[0];
        assert_eq!(tenant, "a");
        let names: Vec<&[u8]> = d.series.iter().map(|s| d.labels[s.labels_start as usize].value(&req)).collect();
        assert_eq!(names, [&b"m1"[..], b"m2", b"m3"]);
        // Without tuples, the legacy fields are the request.
        let mut legacy = Vec::new();
        field(0x0a, &series("legacy"), &mut legacy);
        let w = decode_thanos_write_request(&legacy, &Shape::default()).unwrap();
        assert_eq!((w.tenants.len(), w.tenants[0].1.series.len()), (1, 1));
        assert!(
            decode_thanos_write_request(&[], &Shape::default()).unwrap().tenants.is_empty(),
            "an empty request writes nothing"
        );
    }
}
