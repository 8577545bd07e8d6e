//! A request body's buffer, charged to the in-flight budget for exactly the memory it makes
//! resident.
//!
//! The allocator may hand back memory that is resident already (freed by an earlier request,
//! not yet given back to the system), so a buffer from it costs its whole capacity at once
//! however little is written. A small body (under [`MAPPED_FROM`] bytes declared) is therefore
//! charged its whole declared size before it is read. A larger one, or one of unknown length,
//! is read into an anonymous mapping of its declared size (of the largest size allowed when
//! none is declared): its pages become resident only as the body fills them, each is charged
//! before it is written, and unmapping gives them back at once, from any thread. A client
//! that declares a large body and sends it slowly holds only what it sent.

use bytes::{Bytes, BytesMut};

use crate::admission::{Permit, Refusal};

/// Bodies declaring at least this many bytes (or no length) are read into a mapping.
pub const MAPPED_FROM: usize = 256 << 10;

const PAGE: usize = 4096;

/// A body being read.
pub enum BodyBuf {
    /// In the allocator's memory, charged whole.
    Small(BytesMut),
    /// In an anonymous mapping, charged by the page as it fills.
    Mapped { map: memmap2::MmapMut, len: usize },
}

/// A body read into a mapping, handed out as [`Bytes`].
struct MappedBody {
    map: memmap2::MmapMut,
    len: usize,
}

impl AsRef<[u8]> for MappedBody {
    fn as_ref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

/// Why a body could not be buffered.
#[derive(Debug, thiserror::Error)]
pub enum BufError {
    /// The budget refused its memory.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The mapping could not be made.
    #[error("mapping memory for the request body: {0}")]
    Map(#[from] std::io::Error),
}

impl BodyBuf {
    /// A buffer for a body of `declared` bytes (`None`: unknown), at most `limit`, charging
    /// `permit` for a small one now.
    pub fn new(declared: Option<u64>, limit: usize, permit: &Permit) -> Result<BodyBuf, BufError> {
        let size = declared.map_or(limit, |d| usize::try_from(d).unwrap_or(usize::MAX).min(limit));
        if declared.is_some() && size < MAPPED_FROM {
            permit.charge(size)?;
            return Ok(BodyBuf::Small(BytesMut::with_capacity(size)));
        }
        let map = memmap2::MmapMut::map_anon(size.max(1))?;
        #[cfg(target_os = "linux")]
        // Huge pages would make 2 MiB resident for the first byte written.
        let _ = map.advise(memmap2::Advice::NoHugePage);
        Ok(BodyBuf::Mapped { map, len: 0 })
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        match self {
            BodyBuf::Small(b) => b.len(),
            BodyBuf::Mapped { len, .. } => *len,
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`, charging `permit` first for what it makes resident beyond what was
    /// charged. The caller keeps the total within the limit the buffer was made for.
    pub fn push(&mut self, data: &[u8], permit: &Permit) -> Result<(), Refusal> {
        match self {
            BodyBuf::Small(b) => {
                if b.len() + data.len() > b.capacity() {
                    // More than declared (not sent by a conforming client): grown and charged.
                    let grown = (b.len() + data.len()).max(2 * b.capacity());
                    permit.charge(grown - b.capacity())?;
                    b.reserve(grown - b.len());
                }
                b.extend_from_slice(data);
            }
            BodyBuf::Mapped { map, len } => {
                let end = *len + data.len();
                assert!(end <= map.len(), "body of {end} bytes past its mapping of {}", map.len());
                permit.charge(end.div_ceil(PAGE) * PAGE - len.div_ceil(PAGE) * PAGE)?;
                map[*len..end].copy_from_slice(data);
                *len = end;
            }
        }
        Ok(())
    }

    /// The body read.
    pub fn freeze(self) -> Bytes {
        match self {
            BodyBuf::Small(b) => b.freeze(),
            BodyBuf::Mapped { map, len } => Bytes::from_owner(MappedBody { map, len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Budget, WriteLimits};

    fn permit(bytes: usize) -> (std::sync::Arc<Budget>, Permit) {
        let limits = WriteLimits { max_inflight_bytes: bytes, ..Default::default() };
        let b = Budget::new(limits, &prometheus::Registry::new()).unwrap();
        let p = b.admit().unwrap();
        (b, p)
    }

    #[test]
    fn a_small_body_is_charged_whole_at_once() {
        let (_b, p) = permit(1 << 20);
        let mut buf = BodyBuf::new(Some(1000), 1 << 20, &p).unwrap();
        assert_eq!(p.charged(), 1000);
        buf.push(b"abc", &p).unwrap();
        assert_eq!(p.charged(), 1000);
        assert_eq!(&buf.freeze()[..], b"abc");
    }

    #[test]
    fn a_large_body_is_charged_by_the_page_as_it_fills() {
        let (_b, p) = permit(1 << 20);
        let mut buf = BodyBuf::new(Some(600 << 10), 1 << 20, &p).unwrap();
        assert_eq!(p.charged(), 0, "nothing resident yet");
        buf.push(&[7; 10], &p).unwrap();
        assert_eq!(p.charged(), PAGE);
        buf.push(&[8; PAGE], &p).unwrap();
        assert_eq!(p.charged(), 2 * PAGE);
        let body = buf.freeze();
        assert_eq!(body.len(), 10 + PAGE);
        assert_eq!((body[9], body[10], body[PAGE + 9]), (7, 8, 8));
    }

    #[test]
    fn a_body_of_unknown_length_is_mapped_up_to_the_limit_and_refused_past_the_budget() {
        // Writes may be charged 15/16 of the budget: three pages here.
        let (_b, p) = permit(3 * PAGE * 16 / 15);
        let mut buf = BodyBuf::new(None, 1 << 20, &p).unwrap();
        buf.push(&[1; 3 * PAGE], &p).unwrap();
        assert!(buf.push(&[1], &p).is_err(), "a fourth page is over the budget");
        assert_eq!(buf.len(), 3 * PAGE);
    }

    #[test]
    fn more_than_declared_is_charged_as_it_grows() {
        let (_b, p) = permit(1 << 20);
        let mut buf = BodyBuf::new(Some(4), 1 << 20, &p).unwrap();
        buf.push(b"0123456789", &p).unwrap();
        assert!(p.charged() >= 10);
        assert_eq!(&buf.freeze()[..], b"0123456789");
    }
}
