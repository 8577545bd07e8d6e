//! The `hashmod` hashring (Thanos' `simpleHashring`).
//!
//! Endpoints are sorted by address (byte-wise); replica `n` of a series with
//! hash `h` goes to `sorted[(h + n) mod len]` (wrapping 64-bit addition).
//! It is not consistent: adding or removing a node remaps almost every
//! series. Endpoints with an availability zone are rejected.

use crate::config::Endpoint;
use crate::error::HashringError;

/// A hashmod ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashmodRing {
    endpoints: Vec<Endpoint>,
}

impl HashmodRing {
    /// Builds the ring; fails with [`HashringError::HashmodAz`] when an
    /// endpoint has an `az`.
    pub fn new(mut endpoints: Vec<Endpoint>) -> Result<HashmodRing, HashringError> {
        if endpoints.iter().any(|e| !e.az.is_empty()) {
            return Err(HashringError::HashmodAz);
        }
        // Stable, so that duplicate addresses keep file order.
        endpoints.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(HashmodRing { endpoints })
    }

    /// The endpoint for replica `n` of the series with hash `hash`.
    #[inline]
    pub fn get_n(&self, hash: u64, n: usize) -> Result<&Endpoint, HashringError> {
        Ok(&self.endpoints[self.get_n_index(hash, n)?])
    }

    /// [`get_n`](Self::get_n) as an index into [`endpoints`](Self::endpoints).
    #[inline]
    pub fn get_n_index(&self, hash: u64, n: usize) -> Result<usize, HashringError> {
        let len = self.endpoints.len();
        if n >= len {
            return Err(HashringError::InsufficientNodes { have: len as u64, want: n as u64 + 1 });
        }
        Ok((hash.wrapping_add(n as u64) % len as u64) as usize)
    }

    /// The endpoints, sorted by address.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_errors() {
        let ring = HashmodRing::new(vec![Endpoint::new("c"), Endpoint::new("a"), Endpoint::new("b")]).unwrap();
        let addrs: Vec<_> = ring.endpoints().iter().map(|e| e.address.as_str()).collect();
        assert_eq!(addrs, ["a", "b", "c"]);
        assert_eq!(ring.get_n(0, 0).unwrap().address, "a");
        assert_eq!(ring.get_n(4, 1).unwrap().address, "c");
        // u64::MAX % 3 == 0; +1 wraps to 0.
        assert_eq!(ring.get_n(u64::MAX, 0).unwrap().address, "a");
        assert_eq!(ring.get_n(u64::MAX, 1).unwrap().address, "a");
        assert_eq!(ring.get_n(u64::MAX, 2).unwrap().address, "b");
        let err = ring.get_n(1, 3).unwrap_err();
        assert_eq!(err.to_string(), "insufficient nodes; have 3, want 4");
    }

    #[test]
    fn empty_ring() {
        let ring = HashmodRing::new(vec![]).unwrap();
        assert_eq!(ring.get_n(7, 0).unwrap_err().to_string(), "insufficient nodes; have 0, want 1");
    }

    #[test]
    fn rejects_az() {
        let e = Endpoint::new("a").with_az("z");
        assert_eq!(HashmodRing::new(vec![e]).unwrap_err(), HashringError::HashmodAz);
    }
}
