//! Thanos Receive compatible hashrings for ringest.
//!
//! This crate is a synchronous, pure library that decides which receiver owns
//! which series:
//!
//! * [`parse_config`] reads the hashring JSON file (`--receive.hashrings-file`)
//!   with the same lenient decoding rules as Thanos and reports everything it
//!   ignored as warnings.
//! * [`series_hash`] computes the 64-bit series hash Thanos uses for
//!   placement (XXH64 over the tenant and the labels in request order).
//! * [`HashmodRing`] and [`KetamaRing`] implement the two placement
//!   algorithms; [`MultiHashring`] selects the ring for a tenant and answers
//!   "which endpoint holds replica `n` of this series".
//! * [`write_quorum`] is the replication quorum used by the write path.
//!
//! Everything on the hot path ([`MultiHashring::get_n`]) is allocation free
//! and lock free apart from a read lock on the tenant → ring cache when glob
//! tenant patterns are configured.
//!
//! ```
//! use ringest_hashring::{Algorithm, MultiHashring, parse_config, series_hash, write_quorum};
//!
//! let cfg = parse_config(r#"[{"hashring":"default","algorithm":"ketama",
//!     "endpoints":["receive-0:10901","receive-1:10901","receive-2:10901"]}]"#)?;
//! for warning in &cfg.warnings {
//!     eprintln!("hashring config: {warning}");
//! }
//! let ring = MultiHashring::new(&cfg.rings, Algorithm::Hashmod, 3)?;
//! let labels: [(&[u8], &[u8]); 1] = [(b"__name__", b"up")];
//! let h = series_hash(b"default-tenant", labels);
//! for n in 0..3 {
//!     let endpoint = ring.get_n("default-tenant", h, n)?;
//!     assert!(endpoint.address.starts_with("receive-"));
//! }
//! assert_eq!(write_quorum(3), 2);
//! # Ok::<(), ringest_hashring::HashringError>(())
//! ```

mod config;
mod error;
mod glob;
mod hash;
mod hashmod;
mod ketama;
mod multi;

pub use config::{DEFAULT_CAPNPROTO_PORT, Endpoint, HashringConfig, ParsedConfig, TenantMatcher, parse_config};
pub use error::HashringError;
pub use glob::{glob_match, validate_glob};
pub use hash::{SeriesHasher, section_hash, series_hash};
pub use hashmod::HashmodRing;
pub use ketama::KetamaRing;
pub use multi::{MultiHashring, TenantRing};

use std::fmt;
use std::str::FromStr;

/// The placement algorithm of a hashring (`--receive.hashrings-algorithm` or
/// the per-ring `algorithm` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `sorted_endpoints[(hash + n) % len]`; not consistent.
    #[default]
    Hashmod,
    /// Consistent hashing with 1000 sections per endpoint.
    Ketama,
}

impl Algorithm {
    /// The name used in flags and in the JSON file.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hashmod => "hashmod",
            Algorithm::Ketama => "ketama",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = HashringError;

    /// Accepts exactly `hashmod` and `ketama` (case-sensitive, like Thanos).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hashmod" => Ok(Algorithm::Hashmod),
            "ketama" => Ok(Algorithm::Ketama),
            other => Err(HashringError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// Number of successful replica writes needed for a write to succeed.
///
/// Thanos' `writeQuorum()`: a replication factor of 2 needs a single success
/// (special case), otherwise a strict majority `rf / 2 + 1`
/// (1 → 1, 3 → 2, 4 → 3, 5 → 3).
pub fn write_quorum(replication_factor: usize) -> usize {
    if replication_factor == 2 { 1 } else { replication_factor / 2 + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_table() {
        assert_eq!(write_quorum(1), 1);
        assert_eq!(write_quorum(2), 1);
        assert_eq!(write_quorum(3), 2);
        assert_eq!(write_quorum(4), 3);
        assert_eq!(write_quorum(5), 3);
        assert_eq!(write_quorum(6), 4);
    }

    #[test]
    fn algorithm_from_str() {
        assert_eq!("hashmod".parse::<Algorithm>().unwrap(), Algorithm::Hashmod);
        assert_eq!("ketama".parse::<Algorithm>().unwrap(), Algorithm::Ketama);
        assert!("Ketama".parse::<Algorithm>().is_err());
        assert!("".parse::<Algorithm>().is_err());
        assert_eq!(Algorithm::Ketama.to_string(), "ketama");
        assert_eq!(Algorithm::default(), Algorithm::Hashmod);
    }
}
