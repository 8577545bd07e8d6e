//! XOR chunk (encoding 1): Prometheus' float chunk format, byte for byte.
//!
//! Layout: 2-byte big-endian sample count, then the first sample as a zig-zag varint timestamp
//! and 64 raw value bits, the second as a uvarint time delta and an XOR value block, and every
//! later sample as a delta-of-delta bucket (`0`, `10`+14, `110`+17, `1110`+20, `1111`+64 bits)
//! and an XOR value block. See shared spec prometheus-formats §3.2.

use super::bstream::{BitReader, BitWriter};

/// Length of the sample-count header.
const HEADER: usize = 2;

/// A complete XOR chunk: its encoded bytes (header included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorChunk {
    bytes: Vec<u8>,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk (sample count 0).
    pub fn new() -> Self {
        XorChunk { bytes: vec![0, 0] }
    }

    /// Wraps encoded chunk bytes (as read from a chunk file).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        XorChunk { bytes }
    }

    /// Number of samples, from the header.
    pub fn num_samples(&self) -> u16 {
        num_samples(&self.bytes)
    }

    /// The encoded bytes, header included.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Mutable access to the encoded bytes, for an appender.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Decodes the samples.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(&self.bytes)
    }
}

/// Sample count of encoded XOR chunk bytes.
pub fn num_samples(bytes: &[u8]) -> u16 {
    if bytes.len() < HEADER {
        return 0;
    }
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// Appender state for one XOR chunk. The bytes live with the caller, so a head series can keep
/// the state and the open chunk's bytes side by side without an extra allocation. `repr(C)`:
/// the latest sample's time and value come first (the head reads them on every append).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct XorAppender {
    t: i64,
    v: u64,
    t_delta: u64,
    /// Samples appended (mirrors the chunk header, which is only written, never read back:
    /// reading right after writing it stalls store forwarding).
    num: u16,
    leading: u8,
    trailing: u8,
    w: BitWriter,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn put_uvarint(buf: &mut [u8; 10], mut x: u64) -> usize {
    let mut i = 0;
    while x >= 0x80 {
        buf[i] = (x as u8) | 0x80;
        x >>= 7;
        i += 1;
    }
    buf[i] = x as u8;
    i + 1
}

/// `bitRange` of Prometheus: fits in `nbits` with the range shifted one towards positive.
#[inline]
fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

impl XorAppender {
    /// State for a new, empty chunk.
    pub fn new() -> Self {
        XorAppender { t: 0, v: 0, t_delta: 0, num: 0, leading: 0xff, trailing: 0, w: BitWriter::new(0) }
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Timestamp of the last appended sample.
    pub fn last_t(&self) -> i64 {
        self.t
    }

    /// Bits of the last appended value.
    pub fn last_v_bits(&self) -> u64 {
        self.v
    }

    /// Appends a sample to `bytes`, which must hold the chunk this state belongs to.
    pub fn append(&mut self, bytes: &mut Vec<u8>, t: i64, v: f64) {
        let num = self.num;
        let vbits = v.to_bits();
        let mut tmp = [0u8; 10];
        let mut t_delta = 0u64;
        match num {
            0 => {
                let zz = ((t << 1) ^ (t >> 63)) as u64;
                let n = put_uvarint(&mut tmp, zz);
                for &b in &tmp[..n] {
                    self.w.write_byte(bytes, b);
                }
                self.w.write_bits(bytes, vbits, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let n = put_uvarint(&mut tmp, t_delta);
                for &b in &tmp[..n] {
                    self.w.write_byte(bytes, b);
                }
                self.write_vdelta(bytes, vbits);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                // The delta-of-delta bucket, as (bits, width) with its prefix.
                let (dbits, dlen): (u64, u32) = if dod == 0 {
                    (0, 1)
                } else if bit_range(dod, 14) {
                    (0b10 << 14 | (dod as u64 & 0x3fff), 16)
                } else if bit_range(dod, 17) {
                    (0b110 << 17 | (dod as u64 & 0x1_ffff), 20)
                } else if bit_range(dod, 20) {
                    (0b1110 << 20 | (dod as u64 & 0xf_ffff), 24)
                } else {
                    self.w.write_bits(bytes, 0b1111, 4);
                    (dod as u64, 64)
                };
                let delta = vbits ^ self.v;
                if delta == 0 && dlen < 64 {
                    // The common steady case: one write for timestamp and value.
                    self.w.write_bits(bytes, dbits << 1, dlen + 1);
                } else {
                    self.w.write_bits(bytes, dbits, dlen);
                    self.write_vdelta(bytes, vbits);
                }
            }
        }
        self.t = t;
        self.v = vbits;
        self.t_delta = t_delta;
        self.num = num + 1;
        bytes[..HEADER].copy_from_slice(&self.num.to_be_bytes());
    }

    #[inline]
    fn write_vdelta(&mut self, bytes: &mut Vec<u8>, vbits: u64) {
        let delta = vbits ^ self.v;
        if delta == 0 {
            self.w.write_bit(bytes, false);
            return;
        }
        let new_leading = (delta.leading_zeros() as u8).min(31);
        let new_trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xff && new_leading >= self.leading && new_trailing >= self.trailing {
            // '10' and the significant bits in the previous window.
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            let bits = delta >> self.trailing;
            if sig <= 62 {
                self.w.write_bits(bytes, 0b10 << sig | bits, sig + 2);
            } else {
                self.w.write_bits(bytes, 0b10, 2);
                self.w.write_bits(bytes, bits, sig);
            }
            return;
        }
        self.leading = new_leading;
        self.trailing = new_trailing;
        let sig = 64 - new_leading as u32 - new_trailing as u32;
        // '11', 5 bits of leading zeros, 6 bits of significant-bit count (64 written as 0).
        self.w.write_bits(bytes, 0b11 << 11 | (new_leading as u64) << 6 | (sig & 63) as u64, 13);
        self.w.write_bits(bytes, delta >> new_trailing, sig);
    }
}

/// Decodes the samples of an XOR chunk.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    corrupt: bool,
}

impl<'a> XorIter<'a> {
    /// Iterates over encoded chunk bytes (header included).
    pub fn new(bytes: &'a [u8]) -> Self {
        XorIter {
            r: BitReader::new(bytes, HEADER.min(bytes.len())),
            total: num_samples(bytes),
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            corrupt: false,
        }
    }

    /// True if decoding stopped early because the bytes ended before the declared count.
    pub fn is_corrupt(&self) -> bool {
        self.corrupt
    }

    fn next_sample(&mut self) -> Option<(i64, f64)> {
        if self.read == 0 {
            self.t = self.r.read_varint()?;
            self.v = self.r.read_bits(64)?;
        } else if self.read == 1 {
            self.t_delta = self.r.read_uvarint()?;
            self.t = self.t.wrapping_add(self.t_delta as i64);
            self.read_value()?;
        } else {
            let mut d = 0u8;
            for _ in 0..4 {
                d <<= 1;
                if !self.r.read_bit()? {
                    break;
                }
                d |= 1;
            }
            let dod: i64 = match d {
                0b0 => 0,
                0b10 => self.read_dod(14)?,
                0b110 => self.read_dod(17)?,
                0b1110 => self.read_dod(20)?,
                _ => self.r.read_bits(64)? as i64,
            };
            self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
            self.t = self.t.wrapping_add(self.t_delta as i64);
            self.read_value()?;
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }

    fn read_dod(&mut self, sz: u32) -> Option<i64> {
        let mut bits = self.r.read_bits(sz)?;
        if bits > 1 << (sz - 1) {
            bits = bits.wrapping_sub(1 << sz);
        }
        Some(bits as i64)
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        let (leading, trailing, sig) = if !self.r.read_bit()? {
            (self.leading, self.trailing, 64 - self.leading as u32 - self.trailing as u32)
        } else {
            let leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u32;
            if sig == 0 {
                sig = 64;
            }
            let trailing = (64 - leading as u32).checked_sub(sig)? as u8;
            self.leading = leading;
            self.trailing = trailing;
            (leading, trailing, sig)
        };
        let _ = leading;
        let bits = self.r.read_bits(sig)?;
        self.v ^= bits << trailing;
        Some(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.total || self.corrupt {
            return None;
        }
        let s = self.next_sample();
        if s.is_none() {
            self.corrupt = true;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut bytes = vec![0, 0];
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(&mut bytes, t, v);
        }
        bytes
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Golden vector from Prometheus 2.42 (spec prometheus-formats §3.2).
    #[test]
    fn golden_four_samples() {
        let t0 = 1_700_000_000_000;
        let bytes = encode(&[(t0, 1.0), (t0 + 15000, 2.0), (t0 + 30000, 2.0), (t0 + 45000, 3.5)]);
        assert_eq!(bytes, hex("0004 80a0abfef962 3ff0000000000000 9875 c25fff1b02c0"));
    }

    /// Golden vector: one sample (spec §2, without the 2.x spare byte).
    #[test]
    fn golden_one_sample() {
        let bytes = encode(&[(1_700_000_000_000, 5.0)]);
        assert_eq!(bytes, hex("0001 80a0abfef962 4014000000000000"));
    }

    #[test]
    fn round_trip_edge_values() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            stale,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE / 4.0,
            1.5,
            1.5,
            -123456.789,
            f64::MAX,
            f64::from_bits(1),
        ];
        // Delta-of-delta bucket edges.
        let dods = [0i64, 8192, -8191, 8193, -8192, 65536, -65535, 65537, 524288, -524287, 524289, 1_000_000_000];
        let mut samples = vec![(1000i64, 1.0), (2000, 2.0)];
        let mut delta = 1000i64;
        let mut t = 2000i64;
        for (i, dod) in dods.iter().enumerate() {
            delta += dod;
            t += delta;
            samples.push((t, values[i % values.len()]));
        }
        for (i, v) in values.iter().enumerate() {
            t += 1 + i as i64;
            samples.push((t, *v));
        }
        let bytes = encode(&samples);
        let decoded: Vec<(i64, u64)> = XorIter::new(&bytes).map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(decoded, want);
    }

    #[test]
    fn negative_and_extreme_timestamps() {
        let samples = [(-5_000i64, 1.0), (i64::MIN / 4, 2.0), (i64::MAX / 4, 3.0), (i64::MAX / 4 + 1, 4.0)];
        let bytes = encode(&samples);
        let decoded: Vec<_> = XorIter::new(&bytes).collect();
        assert_eq!(decoded, samples.to_vec());
    }

    #[test]
    fn truncated_chunk_is_reported() {
        let bytes = encode(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let mut it = XorIter::new(&bytes[..bytes.len() - 2]);
        let got: Vec<_> = it.by_ref().collect();
        assert!(got.len() < 3);
        assert!(it.is_corrupt());
    }

    proptest::proptest! {
        #[test]
        fn prop_round_trip(start in -1_000_000_000_000i64..4_000_000_000_000i64,
                           deltas in proptest::collection::vec(0i64..10_000_000, 0..300),
                           vals in proptest::collection::vec(proptest::num::u64::ANY, 301)) {
            let mut samples = vec![(start, f64::from_bits(vals[0]))];
            let mut t = start;
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                samples.push((t, f64::from_bits(vals[i + 1])));
            }
            let bytes = encode(&samples);
            let decoded: Vec<(i64, u64)> = XorIter::new(&bytes).map(|(t, v)| (t, v.to_bits())).collect();
            let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            proptest::prop_assert_eq!(decoded, want);
        }
    }
}
