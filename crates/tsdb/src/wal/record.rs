//! WAL record payloads (Prometheus `tsdb/record`): series (1) and float samples (2).
//!
//! Series: repeated `ref BE64, nLabels uvarint, (uvarint len, name, uvarint len, value)*`.
//! Samples: `baseRef BE64, baseT BE64`, then per sample `ref−baseRef varint, t−baseT varint,
//! value BE64`, with the first sample as the base. Other record types are recognised by their
//! type byte and skipped on replay.

use crate::encoding::{Decoder, put_be64, put_uvarint, put_varint};
use crate::labels::LabelRef;

/// Record type bytes.
pub mod kind {
    /// Series definitions.
    pub const SERIES: u8 = 1;
    /// Float samples.
    pub const SAMPLES: u8 = 2;
    /// Tombstones.
    pub const TOMBSTONES: u8 = 3;
    /// Exemplars.
    pub const EXEMPLARS: u8 = 4;
    /// Mmap markers (WBL).
    pub const MMAP_MARKERS: u8 = 5;
    /// Metadata.
    pub const METADATA: u8 = 6;
    /// Integer native histograms.
    pub const HISTOGRAM_SAMPLES: u8 = 7;
    /// Float native histograms.
    pub const FLOAT_HISTOGRAM_SAMPLES: u8 = 8;
}

/// A record payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The payload ended early or a varint was malformed.
    #[error("{0} record is truncated or malformed")]
    Malformed(&'static str),
    /// Bytes remained after the last entry.
    #[error("unexpected {0} bytes left in entry")]
    Trailing(usize),
    /// The record is empty (no type byte).
    #[error("empty record")]
    Empty,
}

/// Starts a series record in `buf` (cleared first).
pub fn begin_series(buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(kind::SERIES);
}

/// Appends one series entry to a series record.
pub fn push_series<'a>(buf: &mut Vec<u8>, series_ref: u64, labels: impl ExactSizeIterator<Item = LabelRef<'a>>) {
    put_be64(buf, series_ref);
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_uvarint(buf, l.name.len() as u64);
        buf.extend_from_slice(l.name);
        put_uvarint(buf, l.value.len() as u64);
        buf.extend_from_slice(l.value);
    }
}

/// Encodes a samples record into `buf` (cleared first). `samples` yields `(ref, t, value)`.
pub fn encode_samples(buf: &mut Vec<u8>, samples: impl IntoIterator<Item = (u64, i64, f64)>) {
    buf.clear();
    buf.push(kind::SAMPLES);
    let mut base: Option<(u64, i64)> = None;
    for (r, t, v) in samples {
        let (br, bt) = *base.get_or_insert_with(|| {
            put_be64(buf, r);
            put_be64(buf, t as u64);
            (r, t)
        });
        put_varint(buf, r.wrapping_sub(br) as i64);
        put_varint(buf, t.wrapping_sub(bt));
        put_be64(buf, v.to_bits());
    }
}

/// Calls `f(ref, labels)` for every entry of a series record (type byte included in `rec`).
pub fn decode_series<'a>(
    rec: &'a [u8],
    labels: &mut Vec<LabelRef<'a>>,
    mut f: impl FnMut(u64, &[LabelRef<'a>]),
) -> Result<(), RecordError> {
    let mut d = Decoder::new(rec.get(1..).ok_or(RecordError::Empty)?);
    while d.remaining() > 0 {
        let r = d.be64().ok_or(RecordError::Malformed("series"))?;
        let n = d.uvarint().ok_or(RecordError::Malformed("series"))? as usize;
        labels.clear();
        for _ in 0..n {
            let name = d.uvarint_bytes().ok_or(RecordError::Malformed("series"))?;
            let value = d.uvarint_bytes().ok_or(RecordError::Malformed("series"))?;
            labels.push(LabelRef { name, value });
        }
        f(r, labels);
    }
    Ok(())
}

/// Decodes a samples record (type byte included) into `out`. Nothing is left in `out` for a
/// malformed record.
pub fn decode_samples(rec: &[u8], out: &mut Vec<(u64, i64, f64)>) -> Result<(), RecordError> {
    out.clear();
    let res = for_each_sample(rec, |r, t, v| out.push((r, t, v)));
    if res.is_err() {
        out.clear();
    }
    res
}

/// Calls `f(ref, t, value)` for every sample of a samples record (type byte included), in
/// order. On a malformed record it stops with the error after the samples before the fault:
/// callers that must not apply part of a record undo what `f` did.
#[inline]
pub fn for_each_sample(rec: &[u8], mut f: impl FnMut(u64, i64, f64)) -> Result<(), RecordError> {
    let mut d = Decoder::new(rec.get(1..).ok_or(RecordError::Empty)?);
    if d.remaining() == 0 {
        return Ok(());
    }
    let base_ref = d.be64().ok_or(RecordError::Malformed("samples"))?;
    let base_t = d.be64().ok_or(RecordError::Malformed("samples"))? as i64;
    while d.remaining() > 0 {
        let dr = d.varint().ok_or(RecordError::Malformed("samples"))?;
        let dt = d.varint().ok_or(RecordError::Malformed("samples"))?;
        let v = d.be64().ok_or(RecordError::Malformed("samples"))?;
        f(base_ref.wrapping_add(dr as u64), base_t.wrapping_add(dt), f64::from_bits(v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr<'a>(n: &'a str, v: &'a str) -> LabelRef<'a> {
        LabelRef { name: n.as_bytes(), value: v.as_bytes() }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Golden records written by Prometheus 2.42 (spec prometheus-formats §6.3).
    #[test]
    fn golden_records() {
        let mut buf = Vec::new();
        begin_series(&mut buf);
        push_series(&mut buf, 1, [lr("__name__", "up"), lr("job", "a")].into_iter());
        push_series(&mut buf, 2, [lr("__name__", "up"), lr("job", "b")].into_iter());
        let want = hex("01 0000000000000001 02 08 5f5f6e616d655f5f 02 7570 03 6a6f62 01 61
                0000000000000002 02 08 5f5f6e616d655f5f 02 7570 03 6a6f62 01 62");
        assert_eq!(buf, want);
        assert_eq!(buf.len(), 55);

        let mut s = Vec::new();
        encode_samples(&mut s, [(1, 1795236000000, 1.0), (1, 1795236015000, 0.0), (2, 1795236000000, 1.0)]);
        let want = hex("02 0000000000000001 000001a1fc677100
                00 00 3ff0000000000000
                00 b0ea01 0000000000000000
                02 00 3ff0000000000000");
        assert_eq!(s, want);
        assert_eq!(s.len(), 49);

        let mut got = Vec::new();
        decode_samples(&s, &mut got).unwrap();
        assert_eq!(got, vec![(1, 1795236000000, 1.0), (1, 1795236015000, 0.0), (2, 1795236000000, 1.0)]);
        let mut seen = Vec::new();
        let mut scratch = Vec::new();
        decode_series(&buf, &mut scratch, |r, l| seen.push((r, l.len(), l[1].value.to_vec()))).unwrap();
        assert_eq!(seen, vec![(1, 2, b"a".to_vec()), (2, 2, b"b".to_vec())]);
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut s = Vec::new();
        encode_samples(&mut s, [(1, 5, 1.0), (2, 6, 2.0)]);
        let mut out = Vec::new();
        for cut in 2..s.len() {
            if cut == 17 || cut == 27 {
                continue; // cut at a sample boundary: a valid, shorter record
            }
            assert!(decode_samples(&s[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut buf = Vec::new();
        begin_series(&mut buf);
        push_series(&mut buf, 7, [lr("a", "b")].into_iter());
        let mut scratch = Vec::new();
        for cut in 2..buf.len() {
            assert!(decode_series(&buf[..cut], &mut scratch, |_, _| {}).is_err(), "cut at {cut}");
        }
        // An empty samples record (type byte only) is valid.
        assert!(decode_samples(&[kind::SAMPLES], &mut out).is_ok());
    }
}
