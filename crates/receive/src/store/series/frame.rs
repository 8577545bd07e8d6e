//! `thanos.SeriesResponse` frames written straight into protobuf bytes: a series' labels from
//! the selection's table of strings and its chunks from their raw bytes, with no message values
//! built first (they cost a string per label name and value per series). The bytes are those
//! prost writes for the same messages (proto3: fields at their default value are left out); a
//! test holds the two together.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use ringest_tsdb::RawChunk;
use ringest_tsdb::labels::Pairs;

/// `SeriesResponse.series`, `.warning` and `.batch`; `SeriesBatch.series`.
pub(super) const RESPONSE_SERIES: u32 = 1;
pub(super) const RESPONSE_WARNING: u32 = 2;
pub(super) const RESPONSE_BATCH: u32 = 4;
pub(super) const BATCH_SERIES: u32 = 1;

/// Length of a length-delimited field of `len` bytes, key included (field numbers below 16).
fn delimited(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Length of a string or bytes field, left out when empty.
fn bytes_field(len: usize) -> usize {
    if len == 0 { 0 } else { delimited(len) }
}

/// Length of an int64/uint64 field, left out when zero.
fn varint_field(v: u64) -> usize {
    if v == 0 { 0 } else { 1 + encoded_len_varint(v) }
}

fn put_delimited_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes(tag: u32, b: &[u8], buf: &mut Vec<u8>) {
    if !b.is_empty() {
        put_delimited_header(tag, b.len(), buf);
        buf.extend_from_slice(b);
    }
}

fn put_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

/// Size of a `Label` message (no key or length) with a name and value of these lengths.
fn label_len(name: usize, value: usize) -> usize {
    bytes_field(name) + bytes_field(value)
}

/// Sizes of a series' labels: of their `Label` messages without keys and lengths (what Thanos
/// counts of a frame's labels against its size limit), and of their fields in a `Series`
/// message.
pub(super) fn labels_sizes(labels: Pairs<'_>) -> (usize, usize) {
    labels.fold((0, 0), |(budget, fields), (n, v)| {
        let len = label_len(n.len(), v.len());
        (budget + len, fields + delimited(len))
    })
}

/// Size of the `Chunk` message of `c` (XOR, the default encoding, is left out).
fn raw_len(c: &RawChunk, hash: u64) -> usize {
    bytes_field(c.data.len()) + varint_field(hash)
}

/// Size of an `AggrChunk` message holding `c` raw.
pub(super) fn aggr_len(c: &RawChunk, hash: u64) -> usize {
    varint_field(c.min_time as u64) + varint_field(c.max_time as u64) + delimited(raw_len(c, hash))
}

/// Size of a `Series` message of labels whose fields take `labels_len` bytes and `chunks`.
pub(super) fn series_len(labels_len: usize, chunks: &[(RawChunk, u64)]) -> usize {
    labels_len + chunks.iter().map(|(c, h)| delimited(aggr_len(c, *h))).sum::<usize>()
}

/// Writes a `Series` message's fields.
pub(super) fn put_series(labels: Pairs<'_>, chunks: &[(RawChunk, u64)], buf: &mut Vec<u8>) {
    for (n, v) in labels {
        put_delimited_header(1, label_len(n.len(), v.len()), buf);
        put_bytes(1, n.as_bytes(), buf);
        put_bytes(2, v.as_bytes(), buf);
    }
    for (c, hash) in chunks {
        put_delimited_header(2, aggr_len(c, *hash), buf);
        put_varint(1, c.min_time as u64, buf);
        put_varint(2, c.max_time as u64, buf);
        put_delimited_header(3, raw_len(c, *hash), buf);
        put_bytes(2, &c.data, buf);
        put_varint(3, *hash, buf);
    }
}

/// Writes a length-delimited field `tag` holding a message of `len` bytes that `body` writes.
pub(super) fn put_message(tag: u32, len: usize, buf: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    put_delimited_header(tag, len, buf);
    let start = buf.len();
    body(buf);
    debug_assert_eq!(buf.len() - start, len, "message length");
}

/// The most bytes a field's key and length take (field numbers below 16, lengths below 2^35).
pub(super) const MAX_HEADER: usize = 6;

/// Writes the key and length of field `tag` into the end of the first [`MAX_HEADER`] bytes of
/// `buf`, for the message in the rest of it; returns where the field now starts.
pub(super) fn put_header_before(tag: u32, buf: &mut [u8]) -> usize {
    let len = buf.len() - MAX_HEADER;
    let start = MAX_HEADER - (1 + encoded_len_varint(len as u64));
    let mut header = &mut buf[start..MAX_HEADER];
    encode_key(tag, WireType::LengthDelimited, &mut header);
    encode_varint(len as u64, &mut header);
    start
}

/// A `SeriesResponse` with a warning.
pub(super) fn warning(text: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(delimited(text.len()));
    put_delimited_header(RESPONSE_WARNING, text.len(), &mut buf);
    buf.extend_from_slice(text.as_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use ringest_proto::thanos::{AggrChunk, Chunk, Label, Series, SeriesBatch, SeriesResponse, series_response};

    use ringest_tsdb::LabelTable;
    use ringest_tsdb::labels::SetRef;

    use super::*;

    fn chunk(min_time: i64, max_time: i64, data: &[u8]) -> RawChunk {
        RawChunk { min_time, max_time, data: data.to_vec() }
    }

    fn message(labels: Pairs<'_>, chunks: &[(RawChunk, u64)]) -> Series {
        Series {
            labels: labels.map(|(n, v)| Label { name: n.into(), value: v.into() }).collect(),
            chunks: chunks
                .iter()
                .map(|(c, hash)| AggrChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    raw: Some(Chunk { r#type: 0, data: c.data.clone(), hash: *hash }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Frames written by hand are byte for byte what prost writes for the same messages, with
    /// empty values, zero and negative times, a zero hash and long chunks.
    #[test]
    fn frames_are_the_bytes_prost_writes() {
        let long = vec![7u8; 300];
        let mut table = LabelTable::default();
        let mut set = |pairs: &[(&str, &str)]| {
            let ids: Vec<u32> = pairs.iter().flat_map(|(n, v)| [table.intern(n), table.intern(v)]).collect();
            table.push(&ids)
        };
        let cases: Vec<(SetRef, Vec<(RawChunk, u64)>)> = vec![
            (set(&[("__name__", "up"), ("job", "")]), vec![]),
            (
                set(&[("a", "1"), ("é", "ü")]),
                vec![(chunk(0, 0, &[1, 2]), 0), (chunk(-5, 1_700_000_000_000, &long), u64::MAX)],
            ),
            (set(&[]), vec![(chunk(1, 2, &[]), 42)]),
        ];
        let mut batch = Vec::new();
        let mut want_batch = SeriesBatch::default();
        for &(labels, ref chunks) in &cases {
            let labels = || table.pairs(labels);
            let want = message(labels(), chunks);
            let len = series_len(labels_sizes(labels()).1, chunks);
            assert_eq!(len, want.encoded_len(), "{want:?}");
            let mut got = Vec::new();
            put_message(RESPONSE_SERIES, len, &mut got, |b| put_series(labels(), chunks, b));
            let resp = SeriesResponse { result: Some(series_response::Result::Series(want.clone())) };
            assert_eq!(got, resp.encode_to_vec(), "{want:?}");
            put_message(BATCH_SERIES, len, &mut batch, |b| put_series(labels(), chunks, b));
            want_batch.series.push(want);
        }
        let mut got = vec![0; MAX_HEADER];
        got.extend_from_slice(&batch);
        let start = put_header_before(RESPONSE_BATCH, &mut got);
        let want = SeriesResponse { result: Some(series_response::Result::Batch(want_batch)) };
        assert_eq!(got[start..], want.encode_to_vec());
        let want = SeriesResponse { result: Some(series_response::Result::Warning("careful".into())) };
        assert_eq!(warning("careful"), want.encode_to_vec());
        for &(labels, _) in &cases {
            for (n, v) in table.pairs(labels) {
                assert_eq!(label_len(n.len(), v.len()), Label { name: n.into(), value: v.into() }.encoded_len());
            }
        }
    }
}
