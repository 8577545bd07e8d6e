//! Remote write request decoding: the snappy block body and the protobuf
//! `prometheus.WriteRequest` (1.0), decoded without copying label bytes; a 2.0
//! `io.prometheus.write.v2.Request` is first translated into a 1.0 request ([`v2`]).
//!
//! The snappy header's declared length is read before anything is allocated, so that a
//! 20-byte "decompression bomb" is refused for nothing (the admission module bounds it). The protobuf decoder records
//! label offsets into the decompressed buffer and samples into reusable vectors; nothing is
//! allocated per series or per sample once the buffers have grown.

pub mod decode;
pub mod v2;

pub use decode::{
    DecodeError, Decoded, LabelSpan, Outline, SeriesSpan, Shape, ThanosWrite, decode_thanos_write_request,
    decode_write_request, outline, reserve, series_without_samples, shape_of, write_thanos_request_end,
    write_thanos_series,
};

/// The body is not a valid snappy block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snappy decode error: {0}")]
pub struct SnappyError(String);

/// The decoded length a snappy block body declares, read from its header alone (check it
/// against the limits before calling [`decompress`]).
pub fn decompressed_len(body: &[u8]) -> Result<usize, SnappyError> {
    snap::raw::decompress_len(body).map_err(|e| SnappyError(e.to_string()))
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
        // A snappy header declaring 4 GiB - 1 followed by nothing.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert_eq!(decompressed_len(&body), Ok(u32::MAX as usize));
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
