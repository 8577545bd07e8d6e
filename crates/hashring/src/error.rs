//! The error type of the hashring crate.
//!
//! Load-time errors that concern one hashring of the file are wrapped in
//! [`HashringError::Ring`], which names the ring by position and name; use
//! [`HashringError::root`] to look at the underlying problem. Lookup errors
//! ([`HashringError::InsufficientNodes`], [`HashringError::NoMatchingHashring`],
//! [`HashringError::ReplicaOutOfRange`]) carry no heap data so they are cheap
//! on the hot path.

use thiserror::Error;

/// Everything that can go wrong while loading a hashring file, building the
/// rings or looking up an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HashringError {
    /// The file is not valid JSON or a field has the wrong type.
    #[error("failed to parse configuration file: {0}")]
    Parse(String),

    /// The file holds an empty array (or `null`).
    #[error("configuration file is empty")]
    Empty,

    /// A problem in one hashring of the configuration; `ring` is
    /// `#<index> "<name>"` (or `#<index>` for an unnamed ring).
    #[error("hashring {ring}: {source}")]
    Ring {
        /// Position and name of the ring in the file.
        ring: String,
        /// The problem itself.
        #[source]
        source: Box<HashringError>,
    },

    /// An endpoint without `address` (or an empty string endpoint).
    #[error("endpoint #{index}: endpoint address must be set")]
    MissingAddress {
        /// Position of the endpoint in the ring's `endpoints`.
        index: usize,
    },

    /// A glob tenant pattern that Go's `filepath.Match` rejects.
    #[error("invalid glob tenant pattern {pattern:?}: syntax error in pattern")]
    BadPattern {
        /// The offending pattern.
        pattern: String,
    },

    /// Shuffle sharding (`shuffle_sharding_config.shard_size > 0`) is not
    /// implemented.
    #[error("shuffle_sharding_config is not supported by ringest yet (hashring {ring})")]
    ShuffleShardingUnsupported {
        /// Position and name of the ring in the file.
        ring: String,
    },

    /// `az` was set on an endpoint of a hashmod ring (Thanos' wording).
    #[error(
        "Hashmod algorithm does not support AZ aware hashring configuration. Either use Ketama or remove AZ configuration."
    )]
    HashmodAz,

    /// A ketama ring needs at least `replication_factor` endpoints.
    #[error(
        "ketama: amount of endpoints needs to be larger than replication factor \
         (have {endpoints} endpoints, replication factor {replication_factor})"
    )]
    KetamaTooFewEndpoints {
        /// Endpoints in the ring.
        endpoints: usize,
        /// Configured replication factor.
        replication_factor: usize,
    },

    /// The availability zones are so unbalanced that the zone-spreading rule
    /// can never place `replication_factor` replicas (Thanos loops forever
    /// on such a ring).
    #[error(
        "ketama: cannot place {replication_factor} replicas while spreading them evenly over \
         availability zones (endpoints per zone: {zones}); add endpoints to the smallest zones \
         or lower the replication factor"
    )]
    KetamaAzImbalance {
        /// Configured replication factor.
        replication_factor: usize,
        /// `az=count` list of endpoints per zone.
        zones: String,
    },

    /// The replication factor must be at least 1.
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,

    /// `--receive.hashrings-algorithm` or similar named an unknown algorithm.
    #[error("unknown hashring algorithm {0:?} (expected \"hashmod\" or \"ketama\")")]
    UnknownAlgorithm(String),

    /// Replica `want - 1` was asked for but the ring has only `have` nodes.
    #[error("insufficient nodes; have {have}, want {want}")]
    InsufficientNodes {
        /// Nodes in the ring.
        have: u64,
        /// Nodes needed (`n + 1`).
        want: u64,
    },

    /// A ketama replica index at or beyond the replication factor the ring
    /// was built with (Thanos would panic here).
    #[error("replica index {replica} is out of range for replication factor {replication_factor}")]
    ReplicaOutOfRange {
        /// Requested replica index (0-based).
        replica: usize,
        /// Replication factor the ring was built for.
        replication_factor: usize,
    },

    /// No hashring matches the tenant.
    #[error("no matching hashring to handle tenant")]
    NoMatchingHashring,
}

impl HashringError {
    /// The innermost error, skipping [`HashringError::Ring`] wrappers.
    pub fn root(&self) -> &HashringError {
        match self {
            HashringError::Ring { source, .. } => source.root(),
            other => other,
        }
    }

    pub(crate) fn in_ring(self, ring: &str) -> HashringError {
        HashringError::Ring { ring: ring.to_owned(), source: Box::new(self) }
    }
}

/// `#<index> "<name>"`, or `#<index>` when the ring has no name.
pub(crate) fn ring_ref(index: usize, name: &str) -> String {
    if name.is_empty() { format!("#{index}") } else { format!("#{index} {name:?}") }
}
