//! Label sets: borrowed request labels, owned label sets, validation and the series identity.
//!
//! A series is identified by the XXH3-128 hash of its canonical (name-sorted) label bytes,
//! `name ‖ 0xff ‖ value ‖ 0xff` per label (0xff never occurs in UTF-8, so the encoding is
//! unambiguous). The hot path hashes the raw request labels once; labels are validated, sorted
//! and interned only when a series is created. Two different label sets would have to collide on
//! all 128 bits to be confused, which is not a practical concern (birthday bound ≈ 2^64 series).

use std::fmt;

use crate::encoding::put_uvarint;

mod strings;
mod table;

pub use strings::StringList;
pub use table::{LabelTable, Pairs, SetRef};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// A label borrowed from a request or a WAL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    /// Label name bytes (UTF-8 once validated).
    pub name: &'a [u8],
    /// Label value bytes (UTF-8 once validated).
    pub value: &'a [u8],
}

/// An owned label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
}

/// An owned label set, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(pub Vec<Label>);

impl Labels {
    /// Builds a label set from pairs, sorting by name.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut v: Vec<Label> = pairs.into_iter().map(|(n, v)| Label { name: n.into(), value: v.into() }).collect();
        v.sort();
        Labels(v)
    }

    /// Value of the label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }

    /// Iterates over the labels.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }
}

/// Writes `s` quoted the way Go's `strconv.Quote` does for the characters that matter here.
pub fn write_go_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\u{07}' => f.write_str("\\a")?,
            '\u{08}' => f.write_str("\\b")?,
            '\u{0c}' => f.write_str("\\f")?,
            '\u{0b}' => f.write_str("\\v")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Prometheus' `labels.String()` form: `{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&l.name)?;
            f.write_str("=")?;
            write_go_quoted(f, &l.value)?;
        }
        f.write_str("}")
    }
}

/// Why a label set cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A label has an empty name.
    #[error("label set contains a label with empty name")]
    EmptyName,
    /// A label has an empty value.
    #[error("label set contains a label with empty value (label {0:?})")]
    EmptyValue(String),
    /// Two labels share a name.
    #[error("label set contains duplicate label names ({0:?})")]
    DuplicateName(String),
    /// A name or value is not valid UTF-8.
    #[error("label set contains a label name or value that is not valid UTF-8")]
    InvalidUtf8,
    /// The series has no labels at all.
    #[error("label set is empty")]
    Empty,
    /// A label name is smaller than the one before it (remote write sends names sorted).
    #[error("label set contains labels out of order ({0:?} after {1:?})")]
    OutOfOrder(String, String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Validates a name-sorted label set: non-empty, non-empty names and values, UTF-8, no
/// duplicate names (callers sort first, so duplicates are adjacent). `strictly_sorted` (names
/// already known to be strictly increasing, as [`SeriesKey::sorted`] reports) skips the
/// duplicate check, which cannot fail then.
pub fn validate_sorted(labels: &[LabelRef<'_>], strictly_sorted: bool) -> Result<(), LabelError> {
    if labels.is_empty() {
        return Err(LabelError::Empty);
    }
    for (i, l) in labels.iter().enumerate() {
        if l.name.is_empty() {
            return Err(LabelError::EmptyName);
        }
        let utf8 = |b: &[u8]| b.is_ascii() || std::str::from_utf8(b).is_ok();
        if !utf8(l.name) || !utf8(l.value) {
            return Err(LabelError::InvalidUtf8);
        }
        if l.value.is_empty() {
            return Err(LabelError::EmptyValue(lossy(l.name)));
        }
        if !strictly_sorted && i > 0 && labels[i - 1].name == l.name {
            return Err(LabelError::DuplicateName(lossy(l.name)));
        }
    }
    Ok(())
}

/// Why labels that are not strictly sorted by name (in the order a request gave them) cannot
/// be stored, checked as Thanos' receiver checks them: an empty name or value (or invalid
/// UTF-8) first, then a name equal to the one before it (duplicate), then one smaller than it
/// (out of order). Returns `None` for labels that are strictly sorted and valid.
pub fn validate_request_order(labels: &[LabelRef<'_>]) -> Option<LabelError> {
    let mut sorted = Vec::with_capacity(labels.len());
    sort_by_name(labels, &mut sorted);
    if let Err(e @ (LabelError::Empty | LabelError::EmptyName | LabelError::EmptyValue(_) | LabelError::InvalidUtf8)) =
        validate_sorted(&sorted, true)
    {
        return Some(e);
    }
    labels.windows(2).find(|w| !name_lt(w[0].name, w[1].name)).map(|w| {
        if w[0].name == w[1].name {
            LabelError::DuplicateName(lossy(w[1].name))
        } else {
            LabelError::OutOfOrder(lossy(w[1].name), lossy(w[0].name))
        }
    })
}

/// `a < b` bytewise, eight bytes at a time without a `memcmp` call: every series' names are
/// checked for order on every write, and they are short and often share long prefixes.
#[inline]
pub fn name_lt(a: &[u8], b: &[u8]) -> bool {
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut a8).zip(&mut b8) {
        let (x, y) = (u64::from_be_bytes(x.try_into().unwrap()), u64::from_be_bytes(y.try_into().unwrap()));
        if x != y {
            return x < y;
        }
    }
    let n = a.len().min(b.len()) / 8 * 8;
    for (x, y) in a[n..].iter().zip(&b[n..]) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// Leaves `labels` in `sorted`, ordered by name (stable: duplicate names keep their order).
pub(crate) fn sort_by_name<'a>(labels: &[LabelRef<'a>], sorted: &mut Vec<LabelRef<'a>>) {
    sorted.clear();
    sorted.extend_from_slice(labels);
    sorted.sort_by(|a, b| a.name.cmp(b.name));
}

/// An XOR chunk as stored, with the times of its first and last sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    /// Time of the first sample.
    pub min_time: i64,
    /// Time of the last sample.
    pub max_time: i64,
    /// The chunk's bytes (Prometheus' XOR encoding, header included).
    pub data: Vec<u8>,
}

/// One series with its chunks, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesChunks {
    /// The labels.
    pub labels: Labels,
    /// The chunks, by first sample time.
    pub chunks: Vec<RawChunk>,
}

/// One series with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The labels.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<(i64, f64)>,
}

/// Computes series identities, reusing its buffers across calls.
///
/// A series' identity is the XXH3-128 of its labels, sorted by name, in protobuf's encoding of
/// `repeated Label labels = 1` (`Label{name = 1, value = 2}`, both fields always written, minimal
/// varints): the bytes a remote-write or Thanos `TimeSeries` already holds when its sender
/// wrote sorted labels the usual way. A decoder that finds such bytes hashes them in place
/// ([`SeriesKey::of_encoded`]) instead of copying every label into a key first.
#[derive(Debug, Default)]
pub struct SeriesHasher {
    key: Vec<u8>,
}

/// The result of hashing a request's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesKey {
    /// XXH3-128 of the canonical label bytes.
    pub hash: u128,
    /// Whether the request labels were already strictly sorted by name.
    pub sorted: bool,
}

impl SeriesKey {
    /// The key of labels strictly sorted by name whose canonical encoding (see
    /// [`SeriesHasher`]) is `encoded`, e.g. the label fields of a `TimeSeries` as received.
    #[inline]
    pub fn of_encoded(encoded: &[u8]) -> SeriesKey {
        SeriesKey { hash: xxhash_rust::xxh3::xxh3_128(encoded), sorted: true }
    }
}

fn uvarint_len(x: usize) -> usize {
    (usize::BITS - (x | 1).leading_zeros()).div_ceil(7) as usize
}

impl SeriesHasher {
    /// Hashes `labels` in canonical order. When they are not strictly sorted by name, a sorted
    /// copy is left in `sorted` (which callers then use to create the series).
    pub fn key<'a>(&mut self, labels: &[LabelRef<'a>], sorted: &mut Vec<LabelRef<'a>>) -> SeriesKey {
        let in_order = labels.windows(2).all(|w| name_lt(w[0].name, w[1].name));
        let canonical: &[LabelRef<'a>] = if in_order {
            labels
        } else {
            sort_by_name(labels, sorted);
            sorted
        };
        self.key.clear();
        for l in canonical {
            let (n, v) = (l.name.len(), l.value.len());
            let inner = 2 + uvarint_len(n) + n + uvarint_len(v) + v;
            if inner < 0x80 {
                // Every length one byte: the common case, without varint loops.
                self.key.extend_from_slice(&[0x0a, inner as u8, 0x0a, n as u8]);
                self.key.extend_from_slice(l.name);
                self.key.extend_from_slice(&[0x12, v as u8]);
            } else {
                self.key.push(0x0a);
                put_uvarint(&mut self.key, inner as u64);
                self.key.push(0x0a);
                put_uvarint(&mut self.key, n as u64);
                self.key.extend_from_slice(l.name);
                self.key.push(0x12);
                put_uvarint(&mut self.key, v as u64);
            }
            self.key.extend_from_slice(l.value);
        }
        SeriesKey { hash: SeriesKey::of_encoded(&self.key).hash, sorted: in_order }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr<'a>(n: &'a str, v: &'a str) -> LabelRef<'a> {
        LabelRef { name: n.as_bytes(), value: v.as_bytes() }
    }

    #[test]
    fn name_order_matches_slice_order() {
        let names: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefgh0",
            b"abcdefgi",
            b"abcdefghabcdefgh",
            b"abcdefghabcdefgg",
            b"label_key_kkkkk_0",
            b"label_key_kkkkk_1",
            b"label_key_kkkkk_10",
            b"__name__",
            b"\xff\x00",
            b"\xff",
        ];
        for a in &names {
            for b in &names {
                assert_eq!(name_lt(a, b), a < b, "{a:?} < {b:?}");
            }
        }
    }

    #[test]
    fn order_does_not_change_identity() {
        let mut h = SeriesHasher::default();
        let mut s = Vec::new();
        let a = h.key(&[lr("__name__", "up"), lr("job", "x")], &mut s);
        assert!(a.sorted);
        let b = h.key(&[lr("job", "x"), lr("__name__", "up")], &mut s);
        assert!(!b.sorted);
        assert_eq!(a.hash, b.hash);
        assert_eq!(s, vec![lr("__name__", "up"), lr("job", "x")]);
        let c = h.key(&[lr("__name__", "up"), lr("job", "y")], &mut s);
        assert_ne!(a.hash, c.hash);
        // Boundaries between names and values matter.
        let d = h.key(&[lr("a", "bc")], &mut s);
        let e = h.key(&[lr("ab", "c")], &mut s);
        assert_ne!(d.hash, e.hash);
    }

    #[test]
    fn validation() {
        assert_eq!(validate_sorted(&[], false), Err(LabelError::Empty));
        assert_eq!(validate_sorted(&[lr("", "x")], false), Err(LabelError::EmptyName));
        assert_eq!(validate_sorted(&[lr("a", "")], false), Err(LabelError::EmptyValue("a".into())));
        assert_eq!(validate_sorted(&[lr("a", "1"), lr("a", "2")], false), Err(LabelError::DuplicateName("a".into())));
        let bad = [LabelRef { name: b"a", value: b"\xff\xfe" }];
        assert_eq!(validate_sorted(&bad, true), Err(LabelError::InvalidUtf8));
        assert!(validate_sorted(&[lr("__name__", "up"), lr("job", "x")], true).is_ok());
        assert_eq!(validate_request_order(&[lr("__name__", "up"), lr("job", "x")]), None);
        assert_eq!(
            validate_request_order(&[lr("job", "x"), lr("__name__", "up")]),
            Some(LabelError::OutOfOrder("__name__".into(), "job".into()))
        );
        assert_eq!(
            validate_request_order(&[lr("a", "1"), lr("b", "2"), lr("a", "3")]),
            Some(LabelError::OutOfOrder("a".into(), "b".into())),
            "only adjacent names are compared, as Thanos does"
        );
        assert_eq!(validate_request_order(&[lr("a", "1"), lr("a", "2")]), Some(LabelError::DuplicateName("a".into())));
        assert_eq!(validate_request_order(&[lr("b", "1"), lr("a", "")]), Some(LabelError::EmptyValue("a".into())));
        // Prometheus 3 accepts any UTF-8 in names.
        assert!(validate_sorted(&[lr("resource cpu.usage", "é")], true).is_ok());
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::from_pairs([("job", "a\"b"), ("__name__", "up")]);
        assert_eq!(l.to_string(), r#"{__name__="up", job="a\"b"}"#);
    }
}
