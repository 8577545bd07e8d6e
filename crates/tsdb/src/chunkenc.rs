//! Chunk encodings in Prometheus' exact byte format.
//!
//! Only the XOR float encoding (encoding 1) exists so far: the Gorilla-style delta-of-delta
//! timestamps and XOR'd values that Prometheus, promtool and Thanos read from blocks. The bit
//! stream is MSB-first, like Prometheus' `bstream`. Values are compared and stored as IEEE-754
//! bit patterns, so NaN payloads (stale markers) survive bit-exactly.

mod bstream;
mod xor;

pub use bstream::{BitReader, BitWriter};
pub use xor::{XorAppender, XorChunk, XorIter, num_samples as xor_num_samples};

/// Chunk encoding byte used in block chunk files and `chunks_head` files.
pub const ENCODING_XOR: u8 = 1;
