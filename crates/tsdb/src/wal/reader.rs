//! Reads records back from a segment and reports the first corruption precisely.
//!
//! The reader validates the fragment sequence (`full` or `first middle* last`), lengths, CRC32C,
//! zero padding and snappy payloads. On the first problem it yields a [`Corruption`] whose
//! `offset` is the start of the record that could not be read; every record yielded before it
//! ends at or before that offset, which is what repair relies on.

use super::{HEADER_SIZE, PAGE_SIZE, frag};

/// Where and why a segment stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Segment number.
    pub segment: u32,
    /// Byte offset of the first unreadable record in that segment.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corruption in segment {:08} at offset {}: {}", self.segment, self.offset, self.reason)
    }
}

/// One record read from a segment.
#[derive(Debug)]
pub struct Record<'r> {
    /// Offset of the record's first fragment.
    pub offset: usize,
    /// Offset just past the record's last fragment.
    pub end: usize,
    /// The (decompressed) payload.
    pub data: &'r [u8],
}

/// Iterates over the records of one segment held in memory.
pub struct SegmentReader<'a> {
    segment: u32,
    data: &'a [u8],
    pos: usize,
    assembled: Vec<u8>,
    decompressed: Vec<u8>,
    decoder: snap::raw::Decoder,
    done: bool,
}

impl std::fmt::Debug for SegmentReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader").field("segment", &self.segment).field("pos", &self.pos).finish()
    }
}

/// Reads a whole segment file.
pub fn read_segment_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

impl<'a> SegmentReader<'a> {
    /// A reader over the bytes of segment number `segment`.
    pub fn new(segment: u32, data: &'a [u8]) -> Self {
        SegmentReader {
            segment,
            data,
            pos: 0,
            assembled: Vec::new(),
            decompressed: Vec::new(),
            decoder: snap::raw::Decoder::new(),
            done: false,
        }
    }

    fn corrupt<T>(&mut self, offset: usize, reason: impl Into<String>) -> Option<Result<T, Corruption>> {
        self.done = true;
        Some(Err(Corruption { segment: self.segment, offset, reason: reason.into() }))
    }

    /// The next record, `None` at the clean end of the segment, or the corruption that stops it.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Record<'_>, Corruption>> {
        let f = match self.next_frame()? {
            Ok(f) => f,
            Err(c) => return Some(Err(c)),
        };
        if !f.compressed {
            let data = f.payload(self.data, &self.assembled);
            return Some(Ok(Record { offset: f.offset, end: f.end, data }));
        }
        let mut out = std::mem::take(&mut self.decompressed);
        let res = self.decompress_into(&f, &mut out, 0);
        self.decompressed = out;
        match res {
            Ok(to) => Some(Ok(Record { offset: f.offset, end: f.end, data: &self.decompressed[..to] })),
            Err(c) => Some(Err(c)),
        }
    }

    /// Like [`next`](Self::next), but writes the record's (decompressed) payload into `buf`
    /// from `at` instead of lending it, and returns the record's offset, its end and the end
    /// of its payload in `buf`: a compressed record is decompressed straight into `buf`, with
    /// no copy. `buf` only grows (zero-filled) where it is too short: a buffer kept at its full
    /// length is written over and never cleared.
    pub fn next_into(&mut self, buf: &mut Vec<u8>, at: usize) -> Option<Result<(usize, usize, usize), Corruption>> {
        let f = match self.next_frame()? {
            Ok(f) => f,
            Err(c) => return Some(Err(c)),
        };
        if !f.compressed {
            let payload = f.payload(self.data, &self.assembled);
            let to = at + payload.len();
            if buf.len() < to {
                buf.resize(to, 0);
            }
            buf[at..to].copy_from_slice(payload);
            return Some(Ok((f.offset, f.end, to)));
        }
        Some(self.decompress_into(&f, buf, at).map(|to| (f.offset, f.end, to)))
    }

    /// Decompresses the payload of the compressed record `f` into `buf` from `at` (growing it
    /// if too short); returns the payload's end.
    fn decompress_into(&mut self, f: &Frame, buf: &mut Vec<u8>, at: usize) -> Result<usize, Corruption> {
        let raw = f.payload(self.data, &self.assembled);
        let corrupt = |reason: String| Corruption { segment: self.segment, offset: f.offset, reason };
        let res = snappy_len(raw).map_err(corrupt).and_then(|n| {
            if buf.len() < at + n {
                buf.resize(at + n, 0);
            }
            match self.decoder.decompress(raw, &mut buf[at..at + n]) {
                Ok(m) => Ok(at + m),
                Err(e) => Err(corrupt(format!("snappy: {e}"))),
            }
        });
        if res.is_err() {
            self.done = true;
        }
        res
    }

    /// Reads the fragments of the next record and checks them; its payload is left in place (a
    /// single fragment) or in `assembled`.
    fn next_frame(&mut self) -> Option<Result<Frame, Corruption>> {
        if self.done {
            return None;
        }
        let data = self.data;
        let mut start: Option<usize> = None;
        let mut compressed = false;
        let mut single: Option<(usize, usize)> = None;
        self.assembled.clear();
        loop {
            let pos = self.pos;
            if pos >= data.len() {
                self.done = true;
                return match start {
                    Some(s) => self.corrupt(s, "last record is torn"),
                    None => None,
                };
            }
            let page_left = PAGE_SIZE - pos % PAGE_SIZE;
            let page_end = (pos + page_left).min(data.len());
            if page_left < HEADER_SIZE || data[pos] & frag::TYPE_MASK == frag::PAGE_TERM {
                // The rest of the page is padding and must be zero.
                if data[pos..page_end].iter().any(|&b| b != 0) {
                    return self.corrupt(start.unwrap_or(pos), "unexpected non-zero byte in padded page");
                }
                self.pos = page_end;
                continue;
            }
            let hdr = data[pos];
            let typ = hdr & frag::TYPE_MASK;
            if hdr & !(frag::TYPE_MASK | frag::SNAPPY | frag::ZSTD) != 0 || typ > frag::LAST {
                return self.corrupt(start.unwrap_or(pos), format!("invalid record type byte {hdr:#04x}"));
            }
            if hdr & frag::ZSTD != 0 {
                return self.corrupt(start.unwrap_or(pos), "zstd-compressed record (not supported)");
            }
            if pos + HEADER_SIZE > data.len() {
                return self.corrupt(start.unwrap_or(pos), "last record is torn");
            }
            let len = u16::from_be_bytes([data[pos + 1], data[pos + 2]]) as usize;
            let crc = u32::from_be_bytes([data[pos + 3], data[pos + 4], data[pos + 5], data[pos + 6]]);
            if pos % PAGE_SIZE + HEADER_SIZE + len > PAGE_SIZE {
                return self.corrupt(start.unwrap_or(pos), format!("invalid record size {len}"));
            }
            let body_end = pos + HEADER_SIZE + len;
            if body_end > data.len() {
                return self.corrupt(start.unwrap_or(pos), "last record is torn");
            }
            let body = &data[pos + HEADER_SIZE..body_end];
            if crc32c::crc32c(body) != crc {
                return self.corrupt(start.unwrap_or(pos), "unexpected checksum");
            }
            match (start.is_some(), typ) {
                (false, frag::FULL) | (false, frag::FIRST) => {
                    start = Some(pos);
                    compressed = hdr & frag::SNAPPY != 0;
                }
                (true, frag::MIDDLE) | (true, frag::LAST) => {}
                _ => {
                    return self.corrupt(start.unwrap_or(pos), format!("unexpected fragment type {typ} in sequence"));
                }
            }
            self.pos = body_end;
            if typ == frag::FULL {
                single = Some((pos + HEADER_SIZE, body_end));
            } else {
                self.assembled.extend_from_slice(body);
            }
            if typ == frag::FULL || typ == frag::LAST {
                return Some(Ok(Frame { offset: start.unwrap_or(pos), end: body_end, single, compressed }));
            }
        }
    }
}

/// Where a record's checked fragments are.
struct Frame {
    offset: usize,
    end: usize,
    /// The payload's span in the segment, for a record of one fragment (else `assembled`).
    single: Option<(usize, usize)>,
    compressed: bool,
}

impl Frame {
    /// The record's payload as stored (compressed or not), given the segment's bytes and the
    /// reader's `assembled` buffer.
    fn payload<'s>(&self, segment: &'s [u8], assembled: &'s [u8]) -> &'s [u8] {
        match self.single {
            Some((a, b)) => &segment[a..b],
            None => assembled,
        }
    }
}

/// The length a snappy block declares, if its bytes can decode to that much (the densest
/// element is a 3-byte copy of 64 bytes): a record whose checksum passes by chance, or a crafted
/// segment, is corrupt rather than an allocation of up to 4 GiB.
fn snappy_len(raw: &[u8]) -> Result<usize, String> {
    let n = snap::raw::decompress_len(raw).map_err(|e| format!("snappy: {e}"))?;
    let header = raw.iter().position(|b| b & 0x80 == 0).map_or(raw.len(), |i| i + 1);
    if n > (raw.len() - header).saturating_mul(64) / 3 {
        return Err(format!("snappy: a {}-byte record declares {n} bytes decompressed", raw.len()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{WalOptions, WalWriter, segment_path};

    /// Three segments of three records each, like Prometheus' `TestWALRepair_ReadingError`.
    fn write_wal(dir: &std::path::Path, compress: bool) -> Vec<Vec<u8>> {
        let mut w = WalWriter::create(dir, 0, WalOptions { compress, segment_size: 3 * PAGE_SIZE }, Default::default())
            .unwrap();
        let mut recs = Vec::new();
        for i in 0..9u8 {
            // Each record a little less than a page so every segment holds three.
            let rec: Vec<u8> = (0..(PAGE_SIZE / 2)).map(|j| (j as u8).wrapping_mul(i + 1)).collect();
            w.log(&[&rec]).unwrap();
            recs.push(rec);
        }
        w.close().unwrap();
        recs
    }

    /// The records of a segment and the corruption that stopped it, read with `next` and with
    /// `next_into` (into a buffer full of old bytes, written over): both must agree.
    fn read_segment(i: u32, data: &[u8]) -> (Vec<Vec<u8>>, Option<Corruption>) {
        let mut r = SegmentReader::new(i, data);
        let mut out = Vec::new();
        let mut corruption = None;
        while let Some(rec) = r.next() {
            match rec {
                Ok(rec) => out.push(rec.data.to_vec()),
                Err(c) => {
                    corruption = Some(c);
                    break;
                }
            }
        }
        let mut r = SegmentReader::new(i, data);
        let (mut into, mut buf, mut at) = (Vec::new(), vec![0xa5u8; 3 * PAGE_SIZE], 0);
        let mut into_corruption = None;
        while let Some(rec) = r.next_into(&mut buf, at) {
            match rec {
                Ok((_, _, end)) => {
                    into.push(buf[at..end].to_vec());
                    // Sometimes the next record goes over this one's bytes, sometimes after them.
                    at = if into.len() % 2 == 0 { 0 } else { end };
                }
                Err(c) => {
                    into_corruption = Some(c);
                    break;
                }
            }
        }
        assert_eq!((&into, &into_corruption), (&out, &corruption), "next_into reads what next reads");
        (out, corruption)
    }

    #[test]
    fn a_snappy_record_declaring_more_than_it_can_hold_is_corrupt() {
        // Found by the fuzzer: a full snappy record of 6 bytes whose checksum passes, declaring
        // 256 MiB (it was allocated and zero-filled: 283 MiB of RSS, 123 ms).
        let body = [0xff, 0xff, 0xff, 0xff, 0x00, 0x00];
        assert_eq!(crc32c::crc32c(&body), 0xffff_ffff);
        let mut seg = vec![frag::FULL | frag::SNAPPY, 0x00, 0x06, 0xff, 0xff, 0xff, 0xff];
        seg.extend(body);
        let (recs, c) = read_segment(0, &seg);
        assert!(recs.is_empty());
        let c = c.expect("corrupt");
        assert_eq!(c.offset, 0);
        assert!(c.to_string().contains("a 6-byte record declares 268435455 bytes decompressed"), "{c}");
    }

    #[test]
    fn clean_segments_read_back() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let recs = write_wal(dir.path(), compress);
            let mut all = Vec::new();
            for i in crate::wal::list_segments(dir.path()).unwrap() {
                let data = std::fs::read(segment_path(dir.path(), i)).unwrap();
                let (r, c) = read_segment(i, &data);
                assert_eq!(c, None);
                all.extend(r);
            }
            assert_eq!(all, recs);
        }
    }

    #[test]
    fn every_damage_is_detected_at_the_right_record() {
        let dir = tempfile::tempdir().unwrap();
        write_wal(dir.path(), false);
        let clean = std::fs::read(segment_path(dir.path(), 1)).unwrap();
        let (good, _) = read_segment(1, &clean);
        assert!(good.len() >= 2);
        // Offsets of each record in the clean segment.
        let mut r = SegmentReader::new(1, &clean);
        let mut starts = Vec::new();
        while let Some(Ok(rec)) = r.next() {
            starts.push((rec.offset, rec.end));
        }
        let (s1, e1) = starts[1];
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Damage)> = vec![
            ("torn last record", Box::new(move |d: &mut Vec<u8>| d.truncate(s1 + HEADER_SIZE + 10))),
            ("bad header", Box::new(move |d: &mut Vec<u8>| d[s1] = 0xe7)),
            ("bad fragment sequence", Box::new(move |d: &mut Vec<u8>| d[s1] = frag::LAST)),
            ("bad checksum", Box::new(move |d: &mut Vec<u8>| d[s1 + 3] ^= 0x01)),
            ("bad length", Box::new(move |d: &mut Vec<u8>| d[s1 + 1] = 0xff)),
            ("bad content", Box::new(move |d: &mut Vec<u8>| d[s1 + 100] ^= 0x40)),
            ("non-zero padding", Box::new(move |d: &mut Vec<u8>| d[e1 + 1] = 1)),
        ];
        for (name, damage) in cases {
            let mut d = clean.clone();
            damage(&mut d);
            let (recs, c) = read_segment(1, &d);
            let c = c.unwrap_or_else(|| panic!("{name}: not detected"));
            assert_eq!(c.offset, if name == "non-zero padding" { e1 } else { s1 }, "{name}: {c}");
            assert_eq!(recs, good[..recs.len()].to_vec(), "{name}");
            assert!(recs.len() <= 1 || name == "non-zero padding", "{name}: read {} records", recs.len());
        }
    }

    #[test]
    fn eof_in_mid_page_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(
            dir.path(),
            0,
            WalOptions { compress: false, segment_size: 4 * PAGE_SIZE },
            Default::default(),
        )
        .unwrap();
        w.log(&[b"a", b"bc"]).unwrap();
        let data = std::fs::read(segment_path(dir.path(), 0)).unwrap();
        assert_eq!(data.len(), 2 * HEADER_SIZE + 3);
        let (recs, c) = read_segment(0, &data);
        assert_eq!(c, None);
        assert_eq!(recs, vec![b"a".to_vec(), b"bc".to_vec()]);
    }
}
