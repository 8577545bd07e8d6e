//! Remote write request decoding: the snappy block body and the protobuf
//! `prometheus.WriteRequest` (1.0), decoded without copying label bytes; a 2.0
//! `io.prometheus.write.v2.Request` is first translated into a 1.0 request ([`v2`]).
//!
//! The snappy header's declared length is read before anything is allocated, so that a
//! 20-byte "decompression bomb" is refused for nothing: a length the body cannot decode to is
//! corrupt input, and one over the bounds is too large ([`crate::admission`]). A large body is
//! decompressed by [`block`], which shows its output as it grows, so that a request over the
//! series bound is refused from its first bytes. The protobuf decoder records
//! label offsets into the decompressed buffer and samples into reusable vectors; nothing is
//! allocated per series or per sample once the buffers have grown.

pub mod block;
pub mod decode;
pub mod v2;

pub use decode::{
    DecodeError, Decoded, LabelSpan, Outline, SeriesPrefix, SeriesSpan, Shape, ThanosWrite,
    decode_thanos_write_request, decode_write_request, outline, reserve, series_without_samples, shape_of,
    write_thanos_request_end, write_thanos_series,
};

/// The body is not a valid snappy block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snappy decode error: {0}")]
pub struct SnappyError(String);

/// The decoded length a snappy block body declares, read from its header alone (check it
/// against the limits before calling [`decompress`]). A length the rest of the body cannot
/// decode to is corrupt input, as the decoder would find, only found without allocating it:
/// the densest snappy element is a 3-byte copy of 64 bytes.
pub fn decompressed_len(body: &[u8]) -> Result<usize, SnappyError> {
    let declared = snap::raw::decompress_len(body).map_err(|e| SnappyError(e.to_string()))?;
    let header = body.iter().position(|b| b & 0x80 == 0).map_or(body.len(), |i| i + 1);
    let most = (body.len() - header).saturating_mul(64) / 3;
    if declared > most {
        return Err(SnappyError(format!(
            "corrupt input: the header declares {declared} bytes, more than the {}-byte body can decode to",
            body.len()
        )));
    }
    Ok(declared)
}

/// Decompresses a snappy block body into `out` (reused): as many bytes as its header declares.
pub fn decompress(body: &[u8], out: &mut Vec<u8>) -> Result<(), SnappyError> {
    let declared = decompressed_len(body)?;
    // Resizing without clearing first: the decompressor overwrites every byte it reports, and
    // a reused buffer is then only zero-filled where it grows.
    out.resize(declared, 0);
    let n = snap::raw::Decoder::new().decompress(body, out).map_err(|e| SnappyError(e.to_string()))?;
    out.truncate(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_is_read_from_the_header_alone() {
        let zeros = snap::raw::Encoder::new().compress_vec(&vec![0u8; 32 << 20]).unwrap();
        assert_eq!(decompressed_len(&zeros), Ok(32 << 20));
        // The densest body there is: ratios up to 64/3 are possible, and allowed.
        let ratio = (32 << 20) as f64 / zeros.len() as f64;
        assert!(ratio > 21.0, "{ratio}");
        assert_eq!(decompressed_len(&[0]), Ok(0));
    }

    #[test]
    fn a_length_the_body_cannot_decode_to_is_corrupt() {
        // A snappy header declaring 4 GiB - 1 followed by 15 bytes: a decompression bomb.
        let mut body = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        body.extend([0; 15]);
        let err = decompressed_len(&body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "snappy decode error: corrupt input: the header declares 4294967295 bytes, more than the 20-byte body can decode to"
        );
        // One byte past the most that 3 bytes can hold.
        assert!(decompressed_len(&[64, 0xfe, 0, 0]).is_ok());
        assert!(decompressed_len(&[65, 0xfe, 0, 0]).is_err());
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        assert!(decompress(b"\x05not snappy", &mut out).is_err());
        let ok = snap::raw::Encoder::new().compress_vec(b"hello hello hello").unwrap();
        decompress(&ok, &mut out).unwrap();
        assert_eq!(out, b"hello hello hello");
    }
}
