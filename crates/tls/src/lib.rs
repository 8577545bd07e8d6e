//! TLS for ringest's listeners and peer links, with rustls (no OpenSSL), configured as Thanos'
//! `--*-tls-*` flags configure Go's `crypto/tls` (Thanos' `pkg/tls`):
//!
//! - a server takes a certificate and key (both or neither), an optional client CA (client
//!   certificates then required and verified), a minimum version, TLS 1.2 cipher suites and
//!   curves by their Go names;
//! - a client takes an optional certificate and key, a CA (else the system's roots), a server
//!   name, skip-verify and a minimum version.
//!
//! A key pair is read again when its files' modification times change, checked at each
//! handshake as Thanos does, so renewed certificates apply to new connections without a restart
//! and without touching open ones. A renewal that cannot be read (a half-written file) keeps the
//! previous pair and is logged, where Thanos would fail the handshakes.
//!
//! What rustls cannot offer is refused by name when the configuration is made: TLS 1.0 and 1.1,
//! cipher suites other than the ECDHE AEAD ones, the P-521 curve.

mod client;
mod identity;
mod keypair;
mod names;
mod server;

use std::path::PathBuf;

pub use client::{ClientOptions, Connector};
pub use identity::Identity;
pub use server::{Acceptor, ServerOptions};

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of a certificate and its key.
    #[error("both {side} key and certificate must be provided")]
    HalfPair {
        /// `server` or `client`.
        side: &'static str,
    },
    /// A client CA without a server certificate.
    #[error("when a client CA is used a server key and certificate must also be provided")]
    CaWithoutPair,
    /// Not one of Thanos' version names.
    #[error("invalid TLS version: {0}, valid values are 1.0, 1.1, 1.2, 1.3")]
    UnknownVersion(String),
    /// A version rustls does not speak.
    #[error(
        "TLS {0} cannot be offered by ringest (rustls speaks TLS 1.2 and 1.3): set the minimum version to 1.2 or 1.3"
    )]
    Version(String),
    /// A maximum version below the minimum.
    #[error("TLS maximum version {max} is below the minimum version {min}")]
    VersionRange {
        /// The minimum.
        min: String,
        /// The maximum.
        max: String,
    },
    /// Not one of Go's cipher suite names.
    #[error("invalid cipher suite: {name}, valid values are {valid}")]
    UnknownCipher {
        /// The name given.
        name: String,
        /// Every name Go knows, comma separated.
        valid: String,
    },
    /// A cipher suite Go knows and rustls does not offer.
    #[error("cipher suite {name} cannot be offered by ringest; it offers {offered}")]
    Cipher {
        /// The name given.
        name: String,
        /// The names ringest offers, comma separated.
        offered: String,
    },
    /// Not one of Thanos' curve names.
    #[error("invalid curve: {name}, valid values are {valid}")]
    UnknownCurve {
        /// The name given.
        name: String,
        /// Every name Thanos knows, comma separated.
        valid: String,
    },
    /// A curve Thanos knows and rustls does not offer.
    #[error("curve {name} cannot be offered by ringest; it offers {offered}")]
    Curve {
        /// The name given.
        name: String,
        /// The names ringest offers, comma separated.
        offered: String,
    },
    /// A file that cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that holds no usable PEM.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Not a DNS name or IP address.
    #[error("invalid TLS server name {name:?}: {reason}")]
    ServerName {
        /// The name given.
        name: String,
        /// Why it is not one.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being made.
        what: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client CA cannot verify certificates.
    #[error("client CA: {0}")]
    ClientCa(String),
}

/// The versions from `min` (one of Thanos' names, `1.0` to `1.3`) on that ringest offers.
fn versions(min: &str) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    versions_between(min, "")
}

/// The versions from `min` to `max` (empty: 1.3).
fn versions_between(min: &str, max: &str) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    static FROM_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static FROM_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    static ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let rank = |v: &str| match v {
        "1.2" => Ok(2),
        "1.3" => Ok(3),
        "1.0" | "1.1" => Err(TlsError::Version(v.to_string())),
        other => Err(TlsError::UnknownVersion(other.to_string())),
    };
    let (lo, hi) = (rank(min)?, if max.is_empty() { 3 } else { rank(max)? });
    match (lo, hi) {
        (2, 3) => Ok(FROM_12),
        (3, 3) => Ok(FROM_13),
        (2, 2) => Ok(ONLY_12),
        _ => Err(TlsError::VersionRange { min: min.to_string(), max: max.to_string() }),
    }
}
