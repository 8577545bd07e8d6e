//! Go `encoding/binary` varints and a bounds-checked decoder for record payloads.

/// Appends a Go `binary.PutUvarint`.
#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

/// Appends a Go `binary.PutVarint` (zig-zag).
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

/// Appends a big-endian u64.
#[inline]
pub fn put_be64(buf: &mut Vec<u8>, x: u64) {
    buf.extend_from_slice(&x.to_be_bytes());
}

/// A cursor over a byte slice; every read is bounds-checked and returns `None` past the end.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// A decoder over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads one byte.
    #[inline]
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    /// Reads a big-endian u32.
    pub fn be32(&mut self) -> Option<u32> {
        if self.buf.len() < 4 {
            return None;
        }
        let (a, rest) = self.buf.split_at(4);
        self.buf = rest;
        Some(u32::from_be_bytes(a.try_into().ok()?))
    }

    /// Reads a big-endian u64.
    #[inline]
    pub fn be64(&mut self) -> Option<u64> {
        if self.buf.len() < 8 {
            return None;
        }
        let (a, rest) = self.buf.split_at(8);
        self.buf = rest;
        Some(u64::from_be_bytes(a.try_into().ok()?))
    }

    /// Reads a Go uvarint.
    #[inline(always)]
    pub fn uvarint(&mut self) -> Option<u64> {
        if let Some(&b) = self.buf.first()
            && b < 0x80
        {
            self.buf = &self.buf[1..];
            return Some(b as u64);
        }
        self.uvarint_slow()
    }

    #[inline(never)]
    fn uvarint_slow(&mut self) -> Option<u64> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None;
                }
                self.buf = &self.buf[i + 1..];
                return Some(x | (b as u64) << shift);
            }
            x |= ((b & 0x7f) as u64) << shift;
            shift += 7;
        }
        None
    }

    /// Reads a Go varint (zig-zag).
    #[inline(always)]
    pub fn varint(&mut self) -> Option<i64> {
        let ux = self.uvarint()?;
        let x = (ux >> 1) as i64;
        Some(if ux & 1 != 0 { !x } else { x })
    }

    /// Reads a uvarint length and that many bytes.
    #[inline]
    pub fn uvarint_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.uvarint()? as usize;
        if self.buf.len() < n {
            return None;
        }
        let (a, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_go() {
        let mut b = Vec::new();
        put_varint(&mut b, 30000 / 2);
        assert_eq!(b, vec![0xb0, 0xea, 0x01]);
        for x in [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, x);
            assert_eq!(Decoder::new(&b).varint(), Some(x));
        }
        for x in [0u64, 127, 128, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, x);
            assert_eq!(Decoder::new(&b).uvarint(), Some(x));
        }
        assert_eq!(Decoder::new(&[0x80]).uvarint(), None);
    }
}
