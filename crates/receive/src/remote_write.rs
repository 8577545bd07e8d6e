//! Remote write 1.0 request decoding: the snappy block body and the protobuf
//! `prometheus.WriteRequest`, decoded without copying label bytes.
//!
//! The snappy header's declared length is checked against the size limit before anything is
//! allocated, so a 20-byte "decompression bomb" costs nothing. The protobuf decoder records
//! label offsets into the decompressed buffer and samples into reusable vectors; nothing is
//! allocated per series or per sample once the buffers have grown.

pub mod decode;

pub use decode::{
    DecodeError, Decoded, LabelSpan, SeriesSpan, ThanosWrite, decode_thanos_write_request, decode_write_request,
    write_thanos_request_end, write_thanos_series,
};

/// Why a body cannot be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnappyError {
    /// The declared decoded length is over the limit.
    #[error("write request too large: decoded size {declared} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared decoded length.
        declared: u64,
        /// The limit.
        limit: usize,
    },
    /// The body is not a valid snappy block.
    #[error("snappy decode error: {0}")]
    Corrupt(String),
}

/// Decompresses a snappy block body into `out` (reused), refusing declared lengths over
/// `limit` before allocating.
pub fn decompress(body: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), SnappyError> {
    let declared = snap::raw::decompress_len(body).map_err(|e| SnappyError::Corrupt(e.to_string()))?;
    if declared > limit {
        return Err(SnappyError::TooLarge { declared: declared as u64, limit });
    }
    // Resizing without clearing first: the decompressor overwrites every byte it reports, and
    // a reused buffer is then only zero-filled where it grows.
    out.resize(declared, 0);
    let n = snap::raw::Decoder::new().decompress(body, out).map_err(|e| SnappyError::Corrupt(e.to_string()))?;
    out.truncate(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bomb_is_refused_before_allocation() {
        // A snappy header declaring 4 GiB - 1 followed by nothing.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut out = Vec::new();
        match decompress(&body, &mut out, 32 << 20) {
            Err(SnappyError::TooLarge { declared, .. }) => assert_eq!(declared, u32::MAX as u64),
            other => panic!("{other:?}"),
        }
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        assert!(matches!(decompress(b"\x05not snappy", &mut out, 1 << 20), Err(SnappyError::Corrupt(_))));
        let ok = snap::raw::Encoder::new().compress_vec(b"hello hello hello").unwrap();
        decompress(&ok, &mut out, 1 << 20).unwrap();
        assert_eq!(out, b"hello hello hello");
    }
}
