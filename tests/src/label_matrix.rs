//! The label validation matrix (shared spec reliability-security §7 item 34): one series per
//! row with the label set under test, the answer the real Thanos Receive gives it (found by
//! running the pinned release, `tests/thanos_ring.rs` checks it still does) and ringest's
//! answer, which is Thanos' except where the README lists a difference on purpose.
//!
//! Labels are raw bytes, so that a row can carry invalid UTF-8 (prost refuses to build it).

use crate::client::{put_len, put_varint};

/// Labels as raw bytes: (name, value), in the order sent.
pub type RawLabels = Vec<(Vec<u8>, Vec<u8>)>;

/// A series to send: its labels and its samples `(timestamp, value)`.
pub type RawSeries<'a> = (&'a RawLabels, &'a [(i64, f64)]);

/// One row: a series whose labels are sent exactly as given (order, duplicates, bytes).
#[derive(Debug, Clone)]
pub struct Row {
    /// What the row tries.
    pub case: &'static str,
    /// The labels, in the order sent.
    pub labels: RawLabels,
    /// Status Thanos Receive v0.42.5 answers for a request holding this series and valid ones.
    pub thanos: u16,
    /// Status ringest answers (the same as Thanos but for the README's differences).
    pub ringest: u16,
    /// The reason in ringest's message when it refuses the series (empty when it stores it).
    pub reason: &'static str,
}

impl Row {
    /// Whether ringest stores the series.
    pub fn ringest_stores(&self) -> bool {
        self.reason.is_empty()
    }

    /// The series as ringest's error message shows it: labels in the order sent,
    /// `{name="value", ...}` (invalid UTF-8 replaced by U+FFFD).
    pub fn shown(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .map(|(n, v)| format!("{}={:?}", String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// The series as promtool prints it (labels sorted by name; UTF-8 labels only).
    pub fn sorted_string(&self) -> String {
        labels_string(&self.labels)
    }
}

/// A UTF-8 label set as promtool prints it (sorted by name).
pub fn labels_string(labels: &[(Vec<u8>, Vec<u8>)]) -> String {
    let l: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    crate::oracle::labels_string(&l)
}

fn row(case: &'static str, labels: &[(&[u8], &[u8])], thanos: u16, ringest: u16, reason: &'static str) -> Row {
    Row { case, labels: labels.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(), thanos, ringest, reason }
}

/// Longest label value in the matrix: one byte over Mimir's default limit (2048).
pub const LONG_VALUE: usize = 2049;

/// Labels on the "31 labels" row: one over Mimir's default limit (30).
pub const MANY_LABELS: usize = 31;

/// The rows, each series made unique by `tag` (a `via` label) so that every node of a ring,
/// or every run, sees it for the first time. `{}` (no label at all) cannot be tagged.
pub fn rows(tag: &str) -> Vec<Row> {
    let t = tag.as_bytes();
    let long = vec![b'x'; LONG_VALUE];
    let names: Vec<String> = (1..MANY_LABELS - 1).map(|i| format!("l{i:02}")).collect();
    let mut many: Vec<(&[u8], &[u8])> = vec![(b"__name__", b"m_many_labels")];
    many.extend(names.iter().map(|n| (n.as_bytes(), b"v".as_slice())));
    many.push((b"via", t));
    const EMPTY: &str = "label set contains a label with empty name or value";
    const UTF8: &str = "label set contains a label name or value that is not valid UTF-8";
    vec![
        row("empty label name", &[(b"__name__", b"m_empty_name"), (b"", b"x"), (b"via", t)], 409, 409, EMPTY),
        row("empty label value", &[(b"__name__", b"m_empty_value"), (b"a", b""), (b"via", t)], 409, 409, EMPTY),
        row(
            "duplicate label names",
            &[(b"__name__", b"m_duplicate"), (b"via", t), (b"via", b"again")],
            409,
            409,
            "label set contains duplicate label names",
        ),
        row(
            "unsorted labels",
            &[(b"__name__", b"m_unsorted"), (b"z", b"1"), (b"a", t)],
            409,
            409,
            "out of order labels",
        ),
        row("no label at all", &[], 409, 409, "label set is empty"),
        row(
            "invalid UTF-8 in a name",
            &[(b"__name__", b"m_utf8_name"), (b"a\xc3\x28", b"1"), (b"via", t)],
            200,
            400,
            UTF8,
        ),
        row(
            "invalid UTF-8 in a value",
            &[(b"__name__", b"m_utf8_value"), (b"a", b"\xc3\x28"), (b"via", t)],
            200,
            400,
            UTF8,
        ),
        row("missing __name__", &[(b"job", b"no_metric_name"), (b"via", t)], 200, 200, ""),
        row("31 labels", &many, 200, 200, ""),
        row("2049-byte label value", &[(b"__name__", b"m_long_value"), (b"long", &long), (b"via", t)], 200, 200, ""),
    ]
}

/// A remote-write 1.0 `WriteRequest` (protobuf, not compressed) holding `series`, each with
/// raw-byte labels and one sample per `(timestamp, value)`.
pub fn write_request(series: &[RawSeries<'_>]) -> Vec<u8> {
    let (mut out, mut ts, mut tmp) = (Vec::new(), Vec::new(), Vec::new());
    for (labels, samples) in series {
        ts.clear();
        for (n, v) in labels.iter() {
            tmp.clear();
            put_len(&mut tmp, 1, n);
            put_len(&mut tmp, 2, v);
            put_len(&mut ts, 1, &tmp);
        }
        for (t, v) in samples.iter() {
            tmp.clear();
            tmp.push(1 << 3 | 1);
            tmp.extend_from_slice(&v.to_bits().to_le_bytes());
            put_varint(&mut tmp, 2 << 3);
            put_varint(&mut tmp, *t as u64);
            put_len(&mut ts, 2, &tmp);
        }
        put_len(&mut out, 1, &ts);
    }
    out
}

/// [`write_request`] snappy-compressed, as an HTTP body.
pub fn body(series: &[RawSeries<'_>]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&write_request(series)).expect("snappy compress")
}

/// Raw labels from string pairs.
pub fn raw(labels: &[(&str, &str)]) -> RawLabels {
    labels.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}
