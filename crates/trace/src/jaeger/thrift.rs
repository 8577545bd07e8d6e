//! The two Thrift encodings Jaeger takes: compact (the agent's UDP port, a one-way
//! `Agent.emitBatch` message) and binary (a collector's `/api/traces`, the bare `Batch`).
//! Only what writing `jaeger.thrift`'s structs needs: fields, integers, doubles, booleans,
//! strings, lists and nested structs.

/// A Thrift value type, named once and coded per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `bool`.
    Bool,
    /// `i32` (and enums).
    I32,
    /// `i64`.
    I64,
    /// `double`.
    Double,
    /// `string` and `binary`.
    Binary,
    /// `list<_>`.
    List,
    /// A struct.
    Struct,
}

/// A Thrift writer.
pub trait Protocol {
    /// A field of `ty` numbered `id`; a `bool` field's value follows with [`Protocol::bool`].
    fn field(&mut self, ty: Ty, id: i16);
    /// Starts writing a nested struct's fields.
    fn struct_begin(&mut self);
    /// Ends the struct being written (its STOP).
    fn struct_end(&mut self);
    /// A boolean value (after its field header, or as a list element).
    fn bool(&mut self, v: bool);
    /// An `i32`.
    fn i32(&mut self, v: i32);
    /// An `i64`.
    fn i64(&mut self, v: i64);
    /// A `double`.
    fn double(&mut self, v: f64);
    /// A string or binary.
    fn binary(&mut self, v: &[u8]);
    /// The header of a list of `n` elements of `elem`.
    fn list(&mut self, elem: Ty, n: usize);
    /// The bytes written.
    fn bytes(&self) -> &[u8];
}

/// Thrift's binary protocol (big-endian, fixed widths).
#[derive(Debug, Default)]
pub struct Binary {
    out: Vec<u8>,
}

impl Binary {
    fn code(ty: Ty) -> u8 {
        match ty {
            Ty::Bool => 2,
            Ty::Double => 4,
            Ty::I32 => 8,
            Ty::I64 => 10,
            Ty::Binary => 11,
            Ty::Struct => 12,
            Ty::List => 15,
        }
    }
}

impl Protocol for Binary {
    fn field(&mut self, ty: Ty, id: i16) {
        self.out.push(Self::code(ty));
        self.out.extend_from_slice(&id.to_be_bytes());
    }
    fn struct_begin(&mut self) {}
    fn struct_end(&mut self) {
        self.out.push(0);
    }
    fn bool(&mut self, v: bool) {
        self.out.push(v as u8);
    }
    fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn double(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    fn binary(&mut self, v: &[u8]) {
        self.i32(v.len() as i32);
        self.out.extend_from_slice(v);
    }
    fn list(&mut self, elem: Ty, n: usize) {
        self.out.push(Self::code(elem));
        self.i32(n as i32);
    }
    fn bytes(&self) -> &[u8] {
        &self.out
    }
}

/// Thrift's compact protocol (zigzag varints, field id deltas, booleans in the field type).
#[derive(Debug, Default)]
pub struct Compact {
    out: Vec<u8>,
    /// The last field id of each struct being written.
    last: Vec<i16>,
    /// A bool field whose value is written into its header.
    pending_bool: Option<i16>,
}

impl Compact {
    fn code(ty: Ty) -> u8 {
        match ty {
            Ty::Bool => 1,
            Ty::I32 => 5,
            Ty::I64 => 6,
            Ty::Double => 7,
            Ty::Binary => 8,
            Ty::List => 9,
            Ty::Struct => 12,
        }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn header(&mut self, code: u8, id: i16) {
        let last = self.last.last().copied().unwrap_or(0);
        let delta = id as i32 - last as i32;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | code);
        } else {
            self.out.push(code);
            self.varint(zigzag32(id as i32) as u64);
        }
        if let Some(l) = self.last.last_mut() {
            *l = id;
        }
    }

    /// A one-way call's message header (`name`, sequence number `seq`).
    pub fn oneway(&mut self, name: &str, seq: i32) {
        const PROTOCOL_ID: u8 = 0x82;
        const VERSION: u8 = 1;
        const ONEWAY: u8 = 4;
        self.out.push(PROTOCOL_ID);
        self.out.push((ONEWAY << 5) | VERSION);
        self.varint(zigzag32(seq) as u64 & 0xffff_ffff);
        self.binary(name.as_bytes());
    }
}

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

impl Protocol for Compact {
    fn field(&mut self, ty: Ty, id: i16) {
        if ty == Ty::Bool {
            self.pending_bool = Some(id);
        } else {
            self.header(Self::code(ty), id);
        }
    }
    fn struct_begin(&mut self) {
        self.last.push(0);
    }
    fn struct_end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }
    fn bool(&mut self, v: bool) {
        let code = if v { 1 } else { 2 };
        match self.pending_bool.take() {
            Some(id) => self.header(code, id),
            None => self.out.push(code),
        }
    }
    fn i32(&mut self, v: i32) {
        self.varint(zigzag32(v) as u64);
    }
    fn i64(&mut self, v: i64) {
        self.varint(zigzag64(v));
    }
    fn double(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn binary(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v);
    }
    fn list(&mut self, elem: Ty, n: usize) {
        if n < 15 {
            self.out.push(((n as u8) << 4) | Self::code(elem));
        } else {
            self.out.push(0xf0 | Self::code(elem));
            self.varint(n as u64);
        }
    }
    fn bytes(&self) -> &[u8] {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte layouts from the Thrift specification, written out by hand.
    #[test]
    fn compact_layout() {
        let mut c = Compact::default();
        c.struct_begin();
        c.field(Ty::I64, 1);
        c.i64(-1);
        c.field(Ty::Binary, 5);
        c.binary(b"ab");
        c.field(Ty::Bool, 6);
        c.bool(true);
        c.field(Ty::I32, 40);
        c.i32(300);
        c.field(Ty::List, 41);
        c.list(Ty::I32, 2);
        c.i32(1);
        c.i32(-1);
        c.struct_end();
        // i64 -1 zigzags to 1; delta 4 for the string; the bool's value is its type; field 40
        // takes the long form (type, then zigzag 40 = 80); 300 zigzags to 600 = 0xd8 0x04.
        let want = [0x16, 0x01, 0x48, 0x02, b'a', b'b', 0x11, 0x05, 0x50, 0xd8, 0x04, 0x19, 0x25, 0x02, 0x01, 0x00];
        assert_eq!(c.bytes(), want);
    }

    #[test]
    fn binary_layout() {
        let mut b = Binary::default();
        b.field(Ty::I32, 7);
        b.i32(1);
        b.field(Ty::Binary, 5);
        b.binary(b"x");
        b.struct_end();
        assert_eq!(b.bytes(), [8, 0, 7, 0, 0, 0, 1, 11, 0, 5, 0, 0, 0, 1, b'x', 0]);
    }
}
