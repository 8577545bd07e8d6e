//! MSB-first bit stream writer and reader, the layout of Prometheus' `bstream`.
//!
//! The writer appends to a byte vector and tracks how many low bits of the last byte are still
//! free; a partially written last byte is zero in its free bits, which is also the chunk padding.

/// Appends bits to a byte vector, most significant bit first.
#[derive(Debug, Clone, Copy, Default)]
pub struct BitWriter {
    /// Number of low bits still free in the last byte (0 means a new byte is needed).
    free: u8,
}

#[inline]
fn low_mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

impl BitWriter {
    /// A writer positioned at the end of `buf`, whose last byte has `free` unused low bits.
    pub fn new(free: u8) -> Self {
        debug_assert!(free <= 8);
        BitWriter { free }
    }

    /// Number of free low bits in the last byte of the stream.
    pub fn free_bits(&self) -> u8 {
        self.free
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, buf: &mut Vec<u8>, bit: bool) {
        if self.free == 0 {
            buf.push(0);
            self.free = 8;
        }
        if bit {
            let last = buf.len() - 1;
            buf[last] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// Writes the low `nbits` bits of `value` (1 ≤ nbits ≤ 64), most significant first.
    #[inline(always)]
    pub fn write_bits(&mut self, buf: &mut Vec<u8>, value: u64, nbits: u32) {
        debug_assert!((1..=64).contains(&nbits));
        if nbits > 56 {
            self.write_short(buf, value >> 32, nbits - 32);
            self.write_short(buf, value, 32);
        } else {
            self.write_short(buf, value, nbits);
        }
    }

    /// Writes up to 56 bits: the partial last byte and the new bits are joined in one 64-bit
    /// word, stored with a single unaligned 8-byte write over the last byte, and the length is
    /// set to the bytes that word completes (the hot path of chunk encoding).
    #[inline(always)]
    fn write_short(&mut self, buf: &mut Vec<u8>, value: u64, nbits: u32) {
        debug_assert!((1..=56).contains(&nbits));
        let v = value & low_mask(nbits);
        let used = (8 - self.free as u32) & 7;
        let len = buf.len();
        let start = len - (used > 0) as usize;
        let head = if used > 0 { buf[start] as u64 } else { 0 };
        let total = used + nbits;
        let word = (head << 56) | ((v << (64 - nbits)) >> used);
        let nbytes = total.div_ceil(8) as usize;
        buf.reserve(8);
        // SAFETY: `start + 8 <= len + 8 <= capacity` after the reserve, so the 8-byte write
        // stays inside the allocation; the bytes up to `start + nbytes` (at least `len`) are
        // initialized by it or before it.
        unsafe {
            buf.as_mut_ptr().add(start).cast::<[u8; 8]>().write_unaligned(word.to_be_bytes());
            buf.set_len(start + nbytes);
        }
        self.free = (nbytes as u32 * 8 - total) as u8;
    }

    /// Writes a whole byte at the current (possibly unaligned) bit position.
    #[inline]
    pub fn write_byte(&mut self, buf: &mut Vec<u8>, byte: u8) {
        self.write_bits(buf, byte as u64, 8);
    }
}

/// Reads bits MSB-first from a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    /// Absolute bit position of the next bit to read.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader over `buf` starting at byte offset `start`.
    pub fn new(buf: &'a [u8], start: usize) -> Self {
        BitReader { buf, pos: start * 8 }
    }

    /// Reads one bit; `None` at the end of the stream.
    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    /// Reads `nbits` bits (1 ≤ nbits ≤ 64) as an unsigned integer; `None` past the end.
    #[inline]
    pub fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&nbits));
        if self.pos + nbits as usize > self.buf.len() * 8 {
            return None;
        }
        let mut out: u64 = 0;
        let mut n = nbits;
        while n > 0 {
            let byte = self.buf[self.pos / 8];
            let offset = (self.pos % 8) as u32;
            let avail = 8 - offset;
            let take = avail.min(n);
            let bits = ((byte as u32) >> (avail - take)) & ((1u32 << take) - 1);
            out = (out << take) | bits as u64;
            self.pos += take as usize;
            n -= take;
        }
        Some(out)
    }

    /// Reads a byte at the current bit position.
    #[inline]
    pub fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(|b| b as u8)
    }

    /// Reads a Go `binary.Uvarint` at the current bit position.
    pub fn read_uvarint(&mut self) -> Option<u64> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for i in 0..10 {
            let b = self.read_byte()?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None;
                }
                return Some(x | (b as u64) << shift);
            }
            x |= ((b & 0x7f) as u64) << shift;
            shift += 7;
        }
        None
    }

    /// Reads a Go `binary.Varint` (zig-zag) at the current bit position.
    pub fn read_varint(&mut self) -> Option<i64> {
        let ux = self.read_uvarint()?;
        let x = (ux >> 1) as i64;
        Some(if ux & 1 != 0 { !x } else { x })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let mut buf = Vec::new();
        let mut w = BitWriter::default();
        let items: Vec<(u64, u32)> =
            vec![(1, 1), (0b101, 3), (0xdead_beef, 32), (u64::MAX, 64), (0, 7), (0x3fff, 14), (0xab, 8)];
        for &(v, n) in &items {
            w.write_bits(&mut buf, v, n);
        }
        let mut r = BitReader::new(&buf, 0);
        for &(v, n) in &items {
            assert_eq!(r.read_bits(n), Some(v & low_mask(n)), "{n} bits");
        }
    }

    #[test]
    fn partial_byte_is_zero_padded() {
        let mut buf = Vec::new();
        let mut w = BitWriter::default();
        w.write_bit(&mut buf, true);
        w.write_bit(&mut buf, true);
        assert_eq!(buf, vec![0b1100_0000]);
        assert_eq!(w.free_bits(), 6);
    }
}
