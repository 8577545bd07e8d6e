//! The snappy *framing* format (what `grpc-encoding: snappy` carries between Thanos receivers):
//! a stream identifier chunk, then chunks of at most 64 KiB of input, each compressed with the
//! snappy block format (or stored when that does not save an eighth) and checksummed with a
//! masked CRC32C of its uncompressed bytes.
//!
//! Written here rather than through `snap`'s stream adapters because every replicated write
//! goes through it twice: the checksum uses the three-way hardware CRC32C of the `crc32c`
//! crate (`snap`'s serial one was a third of the codec's time) and chunks are compressed into
//! and decompressed straight out of one output buffer, without the adapters' staging copies.

use snap::raw::{Decoder, Encoder, decompress_len, max_compress_len};

/// The stream identifier chunk that starts every stream.
const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// Most input bytes one chunk may hold.
const MAX_CHUNK_INPUT: usize = 1 << 16;
const COMPRESSED: u8 = 0x00;
const UNCOMPRESSED: u8 = 0x01;
const PADDING: u8 = 0xfe;

/// Why a framed-snappy stream could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The stream is not valid framed snappy.
    #[error("snappy: corrupt input ({0})")]
    Corrupt(&'static str),
    /// The decoded stream would be longer than allowed.
    #[error("snappy: decoded stream longer than {0} bytes")]
    TooLarge(usize),
    /// The reader of [`decompress_into_while`] stopped it.
    #[error("snappy: decoding stopped by its reader")]
    Stopped,
}

/// The checksum the format stores: CRC32C, rotated and offset so that checksumming data that
/// holds checksums stays well distributed.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends the framed-snappy encoding of `data` to `out` (nothing for no data, as Go's and
/// `snap`'s writers, which write the stream identifier with the first chunk).
pub fn compress_into(data: &[u8], out: &mut Vec<u8>) -> Result<(), snap::Error> {
    if data.is_empty() {
        return Ok(());
    }
    out.reserve(STREAM_IDENTIFIER.len() + data.len() / 2 + 64);
    let mut enc = Encoder::new();
    for (i, chunk) in data.chunks(MAX_CHUNK_INPUT).enumerate() {
        put_chunk(&mut enc, chunk, i == 0, out)?;
    }
    Ok(())
}

/// Appends one chunk (after the stream identifier if `first`).
fn put_chunk(enc: &mut Encoder, chunk: &[u8], first: bool, out: &mut Vec<u8>) -> Result<(), snap::Error> {
    if first {
        out.extend_from_slice(STREAM_IDENTIFIER);
    }
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.is_empty() {
            scratch.resize(max_compress_len(MAX_CHUNK_INPUT), 0);
        }
        let n = enc.compress(chunk, scratch)?;
        // Same rule as Go's and snap's writers: store the chunk if compression saves less than
        // an eighth.
        let (kind, body) =
            if n >= chunk.len() - chunk.len() / 8 { (UNCOMPRESSED, chunk) } else { (COMPRESSED, &scratch[..n]) };
        let len = (body.len() + 4) as u32;
        out.push(kind);
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.extend_from_slice(&masked_crc(chunk).to_le_bytes());
        out.extend_from_slice(body);
        Ok(())
    })
}

/// Compresses a stream written in pieces: the pieces gather in a 64 KiB window that is
/// compressed as soon as it is full, while it is still in cache. The output is the same as
/// [`compress_into`] of the pieces joined.
#[derive(Default)]
pub struct Compressor {
    window: Vec<u8>,
    out: Vec<u8>,
    enc: Option<Encoder>,
    chunks: usize,
}

impl Compressor {
    /// Appends `data` to the stream.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), snap::Error> {
        while !data.is_empty() {
            if self.window.capacity() == 0 {
                self.window.reserve_exact(MAX_CHUNK_INPUT);
            }
            let take = data.len().min(MAX_CHUNK_INPUT - self.window.len());
            self.window.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.window.len() == MAX_CHUNK_INPUT {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), snap::Error> {
        let enc = self.enc.get_or_insert_with(Encoder::new);
        put_chunk(enc, &self.window, self.chunks == 0, &mut self.out)?;
        self.chunks += 1;
        self.window.clear();
        Ok(())
    }

    /// Ends every chunk written so far and hands them out: the stream so far. Later writes
    /// continue the same stream (without a second stream identifier), so the bytes returned
    /// here followed by those of [`Compressor::finish`] are one valid stream, as are the same
    /// bytes followed by the output of any [`Compressor::continuing`] it.
    pub fn split(&mut self) -> Result<Vec<u8>, snap::Error> {
        if !self.window.is_empty() {
            self.flush()?;
        }
        Ok(std::mem::take(&mut self.out))
    }

    /// Whether the stream has started (its identifier is written).
    pub fn started(&self) -> bool {
        self.chunks > 0
    }

    /// A compressor for what follows a [`Compressor::split`] of a stream that has `started`,
    /// on its own.
    pub fn continuing(started: bool) -> Compressor {
        Compressor { chunks: usize::from(started), ..Compressor::default() }
    }

    /// The compressed stream.
    pub fn finish(mut self) -> Result<Vec<u8>, snap::Error> {
        if !self.window.is_empty() {
            self.flush()?;
        }
        Ok(self.out)
    }
}

thread_local! {
    /// Compressed chunks are written here first: a small buffer that stays in cache, where
    /// compressing straight into the output would zero its worst-case size chunk by chunk.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes a framed-snappy stream, refusing (before allocating for it) output over `max` bytes.
pub fn decompress(data: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    let n = decompress_into(data, max, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// [`decompress`] into the front of `out`, which is lengthened if it is too short (and never
/// shortened, so a buffer kept across calls is zeroed only when it grows); returns how many
/// bytes of `out` the stream decoded to.
pub fn decompress_into(data: &[u8], max: usize, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    decompress_into_while(data, max, out, |_| true)
}

/// [`decompress_into`], showing `go_on` what is decoded so far after each chunk; when it
/// answers `false`, decoding stops with [`FrameError::Stopped`] (a reader that finds the start
/// of a message unacceptable need not pay for decoding the rest).
pub fn decompress_into_while(
    data: &[u8],
    max: usize,
    out: &mut Vec<u8>,
    mut go_on: impl FnMut(&[u8]) -> bool,
) -> Result<usize, FrameError> {
    let total = declared_len(data)?;
    if total > max {
        return Err(FrameError::TooLarge(max));
    }
    // Reserved but not touched: pages are written (and so paid for) chunk by chunk, as each
    // chunk is found valid, never zero-filled up front for a stream that fails early.
    out.reserve(total.saturating_sub(out.len()));
    let mut end = 0;
    let mut dec = Decoder::new();
    let mut started = false;
    for chunk in chunks(data) {
        let (kind, body) = chunk?;
        if kind == 0xff {
            if body != &STREAM_IDENTIFIER[4..] {
                return Err(FrameError::Corrupt("bad stream identifier"));
            }
            started = true;
            continue;
        }
        if !started {
            return Err(FrameError::Corrupt("missing stream identifier"));
        }
        match kind {
            COMPRESSED | UNCOMPRESSED => {
                if body.len() < 4 {
                    return Err(FrameError::Corrupt("chunk shorter than its checksum"));
                }
                let want = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                let body = &body[4..];
                let n = if kind == COMPRESSED {
                    decompress_len(body).map_err(|_| FrameError::Corrupt("bad compressed chunk"))?
                } else {
                    body.len()
                };
                if n > MAX_CHUNK_INPUT {
                    return Err(FrameError::Corrupt("chunk longer than 64 KiB"));
                }
                // Within `total`: `declared_len` counted this chunk.
                if out.len() < end + n {
                    out.resize(end + n, 0);
                }
                let (start, dst) = (end, &mut out[end..end + n]);
                if kind == COMPRESSED {
                    dec.decompress(body, dst).map_err(|_| FrameError::Corrupt("bad compressed chunk"))?;
                } else {
                    dst.copy_from_slice(body);
                }
                end += n;
                if masked_crc(&out[start..end]) != want {
                    return Err(FrameError::Corrupt("checksum mismatch"));
                }
                if !go_on(&out[..end]) {
                    return Err(FrameError::Stopped);
                }
            }
            // Padding and reserved skippable chunks carry nothing.
            PADDING | 0x80..=0xfd => {}
            _ => return Err(FrameError::Corrupt("reserved unskippable chunk")),
        }
    }
    Ok(end)
}

/// The chunks of a stream as (type, body), ending with an error at a truncated chunk.
fn chunks(mut data: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), FrameError>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let len = match data.get(1..4) {
            Some(l) => u32::from_le_bytes([l[0], l[1], l[2], 0]) as usize,
            None => {
                data = &[];
                return Some(Err(FrameError::Corrupt("truncated chunk header")));
            }
        };
        let Some(body) = data.get(4..4 + len) else {
            data = &[];
            return Some(Err(FrameError::Corrupt("truncated chunk")));
        };
        let kind = data[0];
        data = &data[4 + len..];
        Some(Ok((kind, body)))
    })
}

/// The output length the chunk headers of a stream announce, for sizing the output once
/// (truncated chunks count as nothing here; decoding reports them). A chunk announcing more
/// than the format's 64 KiB is corrupt: so a small stream cannot announce a large output.
pub fn declared_len(data: &[u8]) -> Result<usize, FrameError> {
    let mut total = 0usize;
    for (kind, body) in chunks(data).map_while(Result::ok) {
        let n = match (kind, body.get(4..)) {
            (COMPRESSED, Some(b)) => decompress_len(b).map_err(|_| FrameError::Corrupt("bad compressed chunk"))?,
            (UNCOMPRESSED, Some(b)) => b.len(),
            _ => 0,
        };
        if n > MAX_CHUNK_INPUT {
            return Err(FrameError::Corrupt("chunk longer than 64 KiB"));
        }
        total = total.saturating_add(n);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    //! `snap`'s own stream reader and writer are the oracle: both directions must agree with them.

    use std::io::{Read, Write};

    use super::*;

    fn ours(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress_into(data, &mut out).unwrap();
        out
    }

    fn theirs(data: &[u8]) -> Vec<u8> {
        let mut enc = snap::write::FrameEncoder::new(Vec::new());
        enc.write_all(data).unwrap();
        enc.into_inner().unwrap()
    }

    fn inputs() -> Vec<Vec<u8>> {
        let text: Vec<u8> = (0..300_000u32).flat_map(|i| format!("series_{} ", i % 977).into_bytes()).collect();
        let mut noise = vec![0u8; 200_000];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut mixed = text[..70_000].to_vec();
        mixed.extend_from_slice(&noise[..70_000]);
        vec![Vec::new(), b"a".to_vec(), text[..MAX_CHUNK_INPUT].to_vec(), text, noise, mixed]
    }

    #[test]
    fn same_bytes_as_snap_and_readable_both_ways() {
        for data in inputs() {
            let enc = ours(&data);
            // Same chunking, same compressor, same stored-chunk rule: byte-identical streams.
            assert_eq!(enc, theirs(&data), "{} bytes", data.len());
            let mut back = Vec::new();
            snap::read::FrameDecoder::new(&enc[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
            assert_eq!(decompress(&theirs(&data), data.len()).unwrap(), data);
        }
    }

    #[test]
    fn skippable_chunks_and_repeated_identifiers() {
        let mut s = ours(b"hello, ");
        s.extend_from_slice(&[PADDING, 3, 0, 0, 0, 0, 0]);
        s.extend_from_slice(&[0x80, 1, 0, 0, 9]);
        s.extend_from_slice(&ours(b"world"));
        assert_eq!(decompress(&s, 100).unwrap(), b"hello, world");
    }

    #[test]
    fn corrupt_streams_are_refused() {
        let good = ours(b"some bytes that compress: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let corrupt = |s: &[u8]| matches!(decompress(s, 1 << 20), Err(FrameError::Corrupt(_)));
        assert!(corrupt(&good[STREAM_IDENTIFIER.len()..]), "no stream identifier");
        assert!(corrupt(&good[..good.len() - 1]), "truncated");
        assert!(corrupt(&good[..STREAM_IDENTIFIER.len() + 2]), "truncated header");
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(corrupt(&flipped), "checksum");
        let mut bad_crc = good.clone();
        bad_crc[STREAM_IDENTIFIER.len() + 4] ^= 1;
        assert!(corrupt(&bad_crc), "stored checksum");
        let mut reserved = good.clone();
        reserved.extend_from_slice(&[0x02, 0, 0, 0]);
        assert!(corrupt(&reserved), "reserved unskippable chunk");
        assert!(corrupt(b"not snappy at all"));
        // Raw (block-format) snappy is not the framing format.
        assert!(corrupt(&snap::raw::Encoder::new().compress_vec(b"abcabcabc").unwrap()));
    }

    #[test]
    fn output_limit_is_checked_before_decoding() {
        let bomb = ours(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(decompress(&bomb, 1 << 20), Err(FrameError::TooLarge(1 << 20)));
        let out = decompress(&bomb, 8 << 20).unwrap();
        assert_eq!(out.len(), 8 << 20);
        assert_eq!(out.capacity(), 8 << 20, "the output is sized once, from the chunk headers");
    }

    #[test]
    fn a_chunk_announcing_more_than_64_kib_is_corrupt_not_large() {
        // One compressed chunk: checksum, then a block header declaring 4 GiB - 1 and 15 bytes.
        let mut block = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        block.extend([0; 15]);
        let mut stream = STREAM_IDENTIFIER.to_vec();
        stream.push(COMPRESSED);
        stream.extend(&((block.len() + 4) as u32).to_le_bytes()[..3]);
        stream.extend([0; 4]);
        stream.extend(&block);
        assert_eq!(declared_len(&stream), Err(FrameError::Corrupt("chunk longer than 64 KiB")));
        assert_eq!(decompress(&stream, 64 << 20), Err(FrameError::Corrupt("chunk longer than 64 KiB")));
    }

    #[test]
    fn decompress_into_while_shows_each_chunk_and_stops_when_told() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut seen = Vec::new();
        let mut out = Vec::new();
        let n = decompress_into_while(&ours(&data), usize::MAX, &mut out, |p| {
            seen.push(p.len());
            true
        })
        .unwrap();
        assert_eq!(&out[..n], &data[..]);
        assert_eq!(seen, [65_536, 131_072, 196_608, 262_144, 300_000], "the prefix after each chunk");
        let mut calls = 0;
        let r = decompress_into_while(&ours(&data), usize::MAX, &mut out, |p| {
            calls += 1;
            p.len() < 100_000
        });
        assert!(matches!(r, Err(FrameError::Stopped)), "{r:?}");
        assert_eq!(calls, 2, "nothing decoded after the answer was no");
    }

    #[test]
    fn decompress_into_reuses_a_longer_buffer() {
        let a: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let b = b"short message, short message, short message".to_vec();
        let mut buf = Vec::new();
        let n = decompress_into(&ours(&a), usize::MAX, &mut buf).unwrap();
        assert_eq!(&buf[..n], &a[..]);
        let (len, ptr) = (buf.len(), buf.as_ptr());
        // A shorter stream decodes into the front; the buffer is neither shortened nor moved.
        let n = decompress_into(&ours(&b), usize::MAX, &mut buf).unwrap();
        assert_eq!(&buf[..n], &b[..]);
        assert_eq!((buf.len(), buf.as_ptr()), (len, ptr));
        // Stored (uncompressed) chunks from snap's writer, and errors, through the same path.
        let n = decompress_into(&theirs(&a), usize::MAX, &mut buf).unwrap();
        assert_eq!(&buf[..n], &a[..]);
        let mut bad = ours(&b);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decompress_into(&bad, usize::MAX, &mut buf).is_err());
        assert_eq!(decompress_into(&ours(&a), 1000, &mut buf), Err(FrameError::TooLarge(1000)));
    }

    #[test]
    fn compressor_matches_the_joined_stream() {
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| ((i / 7) % 1013).to_le_bytes()).collect();
        let random: Vec<u8> = (0..70_000u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect();
        for input in [&data[..], &random[..], b"tiny", &data[..MAX_CHUNK_INPUT], &[][..]] {
            for piece in [1, 7, 333, 4096, MAX_CHUNK_INPUT, MAX_CHUNK_INPUT + 1, 1 << 20] {
                let mut c = Compressor::default();
                for p in input.chunks(piece) {
                    c.write(p).unwrap();
                }
                assert_eq!(c.finish().unwrap(), ours(input), "{} bytes in pieces of {piece}", input.len());
            }
        }
        assert_eq!(ours(&random), theirs(&random));
    }

    /// A stream split after a shared start, continued by several tails: each joined stream is
    /// read back by snap's reader and ours, whatever the split point (none written yet, inside
    /// a chunk, on a chunk boundary).
    #[test]
    fn split_streams_continue_with_any_tail() {
        let data: Vec<u8> = (0..150_000u32).flat_map(|i| ((i / 5) % 877).to_le_bytes()).collect();
        for shared in [0, 10, MAX_CHUNK_INPUT, MAX_CHUNK_INPUT + 3, data.len()] {
            let mut c = Compressor::default();
            c.write(&data[..shared]).unwrap();
            let head = c.split().unwrap();
            for tail in [&b""[..], b"\x12\x04abcd\x18\x02", &data[..70_000]] {
                let mut t = Compressor::continuing(c.started());
                t.write(tail).unwrap();
                let stream = [head.clone(), t.finish().unwrap()].concat();
                let want = [&data[..shared], tail].concat();
                let mut theirs = Vec::new();
                snap::read::FrameDecoder::new(&stream[..]).read_to_end(&mut theirs).unwrap();
                assert_eq!(theirs, want, "snap reads a split at {shared} + {} bytes", tail.len());
                assert_eq!(decompress(&stream, usize::MAX).unwrap(), want, "we read it too");
            }
        }
    }
}
