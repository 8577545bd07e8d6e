//! A snappy block decoder that shows its output as it grows, for large bodies only.
//!
//! snap's decoder writes a whole block or nothing, so a request over a count bound is known to
//! be only after all of it is decompressed: a decode bomb of 16M empty series costs 32 MiB and
//! a core's tens of milliseconds before its first 400 KiB show that it is over
//! `--ringest.write.max-series`. This decoder stops when its caller has seen enough. It is
//! used for bodies that run on the bulk lane ([`crate::lane`]); snap, faster, for the rest.
//! snap is its oracle in the tests: the same output for what snap's encoder writes, and an
//! error wherever snap's decoder finds one.

use super::{SnappyError, decompressed_len};

/// How much output is decoded between two looks by the caller.
const STEP: usize = 64 << 10;

fn corrupt(what: &str) -> SnappyError {
    SnappyError(format!("snappy: corrupt input ({what})"))
}

/// Decodes the snappy block `body` into `out` (cleared first), showing `go_on` what is decoded
/// so far after every 64 KiB or so; `Ok(false)` as soon as it answers `false`, `Ok(true)` when
/// the whole block is decoded.
pub fn decompress_while(
    body: &[u8],
    out: &mut Vec<u8>,
    mut go_on: impl FnMut(&[u8]) -> bool,
) -> Result<bool, SnappyError> {
    if body.is_empty() {
        return Err(corrupt("empty body"));
    }
    let declared = decompressed_len(body)?;
    let header = body.iter().position(|b| b & 0x80 == 0).map_or(body.len(), |i| i + 1);
    out.clear();
    // Reserved, not touched: pages are paid for as the output reaches them.
    out.reserve(declared);
    let mut i = header;
    let mut next_look = STEP;
    while i < body.len() {
        let tag = body[i];
        i += 1;
        if tag & 3 == 0 {
            let mut len = usize::from(tag >> 2);
            if len >= 60 {
                let n = len - 59;
                let bytes = body.get(i..i + n).ok_or_else(|| corrupt("truncated literal length"))?;
                len = bytes.iter().rev().fold(0, |acc, &b| acc << 8 | usize::from(b));
                i += n;
            }
            let len = len.checked_add(1).ok_or_else(|| corrupt("literal too long"))?;
            let literal =
                i.checked_add(len).and_then(|end| body.get(i..end)).ok_or_else(|| corrupt("truncated literal"))?;
            if out.len() + len > declared {
                return Err(corrupt("literal past the declared length"));
            }
            out.extend_from_slice(literal);
            i += len;
        } else {
            let (len, offset, n) = match tag & 3 {
                1 => (
                    4 + usize::from((tag >> 2) & 7),
                    body.get(i).map(|&b| usize::from(tag >> 5) << 8 | usize::from(b)),
                    1,
                ),
                2 => (
                    usize::from(tag >> 2) + 1,
                    body.get(i..i + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
                    2,
                ),
                _ => (
                    usize::from(tag >> 2) + 1,
                    body.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
                    4,
                ),
            };
            let offset = offset.ok_or_else(|| corrupt("truncated copy"))?;
            i += n;
            if offset == 0 || offset > out.len() {
                return Err(corrupt("copy offset out of range"));
            }
            if out.len() + len > declared {
                return Err(corrupt("copy past the declared length"));
            }
            // An overlapping copy repeats the last `offset` bytes. From `start` on, the output
            // repeats with that period, so each pass may copy all of it: the run doubles.
            let start = out.len() - offset;
            let mut left = len;
            while left > 0 {
                let n = left.min(out.len() - start);
                out.extend_from_within(start..start + n);
                left -= n;
            }
        }
        if out.len() >= next_look {
            if !go_on(out) {
                return Ok(false);
            }
            next_look = out.len() + STEP;
        }
    }
    if out.len() != declared {
        return Err(corrupt("shorter than the declared length"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(body: &[u8]) -> Result<Vec<u8>, SnappyError> {
        let mut out = Vec::new();
        decompress_while(body, &mut out, |_| true).map(|_| out)
    }

    fn compress(data: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(data).unwrap()
    }

    #[test]
    fn decodes_what_snap_encodes_and_stops_when_told() {
        let text: Vec<u8> = (0..300_000u32).flat_map(|i| format!("series_{} ", i % 977).into_bytes()).collect();
        // Bytes that hardly repeat: mostly literals.
        let noise: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for data in [Vec::new(), b"a".to_vec(), vec![0; 1 << 20], text.clone(), noise] {
            assert_eq!(ours(&compress(&data)).unwrap(), data);
        }
        let mut looks = Vec::new();
        let mut out = Vec::new();
        let whole = decompress_while(&compress(&text), &mut out, |p| {
            looks.push(p.len());
            looks.len() < 3
        });
        assert_eq!(whole, Ok(false));
        assert_eq!(looks.len(), 3, "stopped at the third look");
        assert!(looks.windows(2).all(|w| w[1] >= w[0] + STEP), "{looks:?}");
        assert_eq!(&out[..], &text[..out.len()], "what was decoded is the block's start");
    }

    #[test]
    fn copies_of_every_offset_width_as_snap_reads_them() {
        // "abcd", then copies of 4 bytes at offset 4 with 1-, 2- and 4-byte offsets, and an
        // overlapping copy of 6 at offset 2.
        let body = [22, 0x0c, b'a', b'b', b'c', b'd', 0x01, 4, 0x0e, 4, 0, 0x0f, 4, 0, 0, 0, 0x09, 2];
        let theirs = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(theirs, b"abcdabcdabcdabcdcdcdcd");
        assert_eq!(ours(&body).unwrap(), theirs);
    }

    #[test]
    fn literals_of_every_length_width_as_snap_reads_them() {
        // A literal of 70 bytes with its length (69) in 1, 2, 3 and 4 bytes (tags 60-63).
        let lit: Vec<u8> = (0..70u8).collect();
        for width in 1..=4usize {
            let mut body = vec![70, ((59 + width) << 2) as u8];
            body.extend(&69u32.to_le_bytes()[..width]);
            body.extend(&lit);
            assert_eq!(snap::raw::Decoder::new().decompress_vec(&body).unwrap(), lit, "width {width}");
            assert_eq!(ours(&body).unwrap(), lit, "width {width}");
            // Its length cut short, its bytes cut short, or declared longer than the block.
            for bad in [body[..2 + width - 1].to_vec(), body[..body.len() - 1].to_vec()] {
                assert!(snap::raw::Decoder::new().decompress_vec(&bad).is_err());
                assert!(ours(&bad).is_err(), "width {width}: {bad:?}");
            }
            let mut short = body.clone();
            short[0] = 69;
            assert!(snap::raw::Decoder::new().decompress_vec(&short).is_err());
            assert!(ours(&short).is_err(), "width {width}: declared 69");
        }
    }

    #[test]
    fn a_long_run_is_copied_in_doubling_passes() {
        // 8 MiB of zeros: one literal byte, then copies at offset 1 (snap writes 64-byte ones).
        let zeros = vec![0u8; 8 << 20];
        assert_eq!(ours(&compress(&zeros)).unwrap(), zeros);
        // One copy of 64 bytes at offset 1 after a literal "x".
        let body = [65, 0x00, b'x', 0xfe, 1, 0];
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&body).unwrap(), vec![b'x'; 65]);
        assert_eq!(ours(&body).unwrap(), vec![b'x'; 65]);
    }

    proptest::proptest! {
        /// Whatever snap's encoder writes, the same bytes back.
        #[test]
        fn agrees_with_snap_on_its_output(data in proptest::collection::vec(0u8..4, 0..5000)) {
            proptest::prop_assert_eq!(ours(&compress(&data)).unwrap(), data);
        }

        /// Random bodies: an error wherever snap finds one, else the same bytes; never a panic.
        #[test]
        fn agrees_with_snap_on_any_input(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let theirs = snap::raw::Decoder::new().decompress_vec(&body);
            match (ours(&body), theirs) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "ours {:?}, snap's {:?}", a, b),
            }
        }

        /// Bodies edited from valid ones (a byte changed): the same agreement.
        #[test]
        fn agrees_with_snap_on_damaged_blocks(
            data in proptest::collection::vec(0u8..4, 1..2000),
            at in proptest::num::usize::ANY,
            to in proptest::num::u8::ANY,
        ) {
            let mut body = compress(&data);
            let at = at % body.len();
            body[at] = to;
            let theirs = snap::raw::Decoder::new().decompress_vec(&body);
            match (ours(&body), theirs) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "ours {:?}, snap's {:?}", a, b),
            }
        }
    }
}
