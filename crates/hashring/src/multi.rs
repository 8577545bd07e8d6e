//! Several hashrings behind one tenant → ring selection (Thanos'
//! `multiHashring`).
//!
//! Rings are tried in file order; the first ring whose tenant set matches
//! wins: a ring without tenants matches every tenant, an exact ring matches
//! tenants listed verbatim, a glob ring matches Go `filepath.Match` patterns,
//! a ring with an unknown matcher type never matches. No match ⇒
//! [`HashringError::NoMatchingHashring`]. With glob rings the decision is
//! cached per tenant (bounded) behind a read-mostly lock; otherwise the
//! decision is cheap and made directly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

use serde::Serialize;
use serde_json::Value;

use crate::Algorithm;
use crate::config::{Endpoint, HashringConfig, TenantMatcher};
use crate::error::{HashringError, ring_ref};
use crate::glob::{glob_match, validate_glob};
use crate::hashmod::HashmodRing;
use crate::ketama::KetamaRing;

/// Tenants beyond this many are matched without being cached.
const MAX_CACHED_TENANTS: usize = 100_000;

#[derive(Debug)]
enum Ring {
    Hashmod(HashmodRing),
    Ketama(KetamaRing),
    /// IngestorOnly: one endpoint, replica 0 only.
    Single(Endpoint),
}

impl Ring {
    #[inline]
    fn get_n(&self, hash: u64, n: usize) -> Result<&Endpoint, HashringError> {
        Ok(&self.endpoints()[self.get_n_index(hash, n)?])
    }

    #[inline]
    fn get_n_index(&self, hash: u64, n: usize) -> Result<usize, HashringError> {
        match self {
            Ring::Hashmod(r) => r.get_n_index(hash, n),
            Ring::Ketama(r) => r.get_n_index(hash, n),
            Ring::Single(_) if n > 0 => Err(HashringError::InsufficientNodes { have: 1, want: n as u64 + 1 }),
            Ring::Single(_) => Ok(0),
        }
    }

    fn endpoints(&self) -> &[Endpoint] {
        match self {
            Ring::Hashmod(r) => r.endpoints(),
            Ring::Ketama(r) => r.endpoints(),
            Ring::Single(e) => std::slice::from_ref(e),
        }
    }
}

#[derive(Debug)]
enum TenantSet {
    All,
    Exact(HashSet<String>),
    Glob(Vec<String>),
    Never,
}

impl TenantSet {
    fn matches(&self, tenant: &str) -> bool {
        match self {
            TenantSet::All => true,
            TenantSet::Exact(set) => set.contains(tenant),
            // Patterns were validated when the ring was built.
            TenantSet::Glob(patterns) => patterns.iter().any(|p| glob_match(p, tenant).unwrap_or(false)),
            TenantSet::Never => false,
        }
    }
}

/// The ring of one tenant (see [`MultiHashring::for_tenant`]).
#[derive(Debug, Clone, Copy)]
pub struct TenantRing<'a> {
    ring: &'a Ring,
}

impl<'a> TenantRing<'a> {
    /// The ring's endpoints; [`get_n_index`](Self::get_n_index) indexes them.
    pub fn endpoints(&self) -> &'a [Endpoint] {
        self.ring.endpoints()
    }

    /// Index in [`endpoints`](Self::endpoints) of the endpoint for replica `n` (0-based) of
    /// the series whose [`series_hash`](crate::series_hash) is `hash`: the endpoint
    /// [`MultiHashring::get_n`] returns.
    #[inline]
    pub fn get_n_index(&self, hash: u64, n: usize) -> Result<usize, HashringError> {
        self.ring.get_n_index(hash, n)
    }
}

#[derive(Debug)]
struct Entry {
    tenants: TenantSet,
    ring: Ring,
    /// `None` for the single-node ring.
    config: Option<HashringConfig>,
    algorithm: Algorithm,
}

/// The loaded hashring configuration: tenant → ring selection plus the rings.
#[derive(Debug)]
pub struct MultiHashring {
    entries: Vec<Entry>,
    /// Whether any ring uses glob patterns (then selections are cached).
    cache_enabled: bool,
    cache: RwLock<HashMap<String, usize>>,
    endpoints: Vec<Endpoint>,
}

impl MultiHashring {
    /// Builds every ring of `rings`. A ring's own `algorithm` overrides
    /// `default_algorithm`. Errors name the ring: hashmod with `az`, ketama
    /// with fewer endpoints than `replication_factor` or unbalanced AZs,
    /// malformed glob patterns. A `replication_factor` of 0 is rejected.
    pub fn new(
        rings: &[HashringConfig],
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<MultiHashring, HashringError> {
        if replication_factor == 0 {
            return Err(HashringError::ZeroReplicationFactor);
        }
        let mut entries = Vec::with_capacity(rings.len());
        for (index, cfg) in rings.iter().enumerate() {
            let rref = ring_ref(index, &cfg.name);
            let algorithm = cfg.algorithm.unwrap_or(default_algorithm);
            let ring = match algorithm {
                Algorithm::Hashmod => HashmodRing::new(cfg.endpoints.clone()).map(Ring::Hashmod),
                Algorithm::Ketama => KetamaRing::new(cfg.endpoints.clone(), replication_factor).map(Ring::Ketama),
            }
            .map_err(|e| e.in_ring(&rref))?;
            let tenants = if cfg.tenants.is_empty() {
                TenantSet::All
            } else {
                match &cfg.tenant_matcher {
                    TenantMatcher::Exact => TenantSet::Exact(cfg.tenants.iter().cloned().collect()),
                    TenantMatcher::Glob => {
                        for p in &cfg.tenants {
                            validate_glob(p).map_err(|e| e.in_ring(&rref))?;
                        }
                        TenantSet::Glob(cfg.tenants.clone())
                    }
                    TenantMatcher::Unknown(_) => TenantSet::Never,
                }
            };
            entries.push(Entry { tenants, ring, config: Some(cfg.clone()), algorithm });
        }
        Ok(Self::from_entries(entries))
    }

    /// The IngestorOnly ring: every tenant, one endpoint whose gRPC and
    /// Cap'n Proto addresses are both `endpoint`; replica `n > 0` fails with
    /// "insufficient nodes".
    pub fn single_node(endpoint: &str) -> MultiHashring {
        let e = Endpoint { address: endpoint.to_owned(), capnproto_address: endpoint.to_owned(), az: String::new() };
        Self::from_entries(vec![Entry {
            tenants: TenantSet::All,
            ring: Ring::Single(e),
            config: None,
            algorithm: Algorithm::Hashmod,
        }])
    }

    fn from_entries(entries: Vec<Entry>) -> MultiHashring {
        let cache_enabled = entries.iter().any(|e| matches!(e.tenants, TenantSet::Glob(_)));
        let mut endpoints: Vec<Endpoint> = entries.iter().flat_map(|e| e.ring.endpoints().iter().cloned()).collect();
        endpoints.sort();
        endpoints.dedup();
        MultiHashring { entries, cache_enabled, cache: RwLock::new(HashMap::new()), endpoints }
    }

    /// Index of the ring serving `tenant`.
    fn ring_index(&self, tenant: &str) -> Result<usize, HashringError> {
        if !self.cache_enabled {
            return self.select(tenant);
        }
        if let Some(&i) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(tenant) {
            return Ok(i);
        }
        let i = self.select(tenant)?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() < MAX_CACHED_TENANTS {
            cache.insert(tenant.to_owned(), i);
        }
        Ok(i)
    }

    fn select(&self, tenant: &str) -> Result<usize, HashringError> {
        self.entries.iter().position(|e| e.tenants.matches(tenant)).ok_or(HashringError::NoMatchingHashring)
    }

    /// The endpoint for replica `n` (0-based) of a series of `tenant` whose
    /// [`series_hash`](crate::series_hash) is `hash`.
    #[inline]
    pub fn get_n(&self, tenant: &str, hash: u64, n: usize) -> Result<&Endpoint, HashringError> {
        let i = self.ring_index(tenant)?;
        self.entries[i].ring.get_n(hash, n)
    }

    /// The ring serving `tenant`, resolved once for all of a request's series.
    pub fn for_tenant(&self, tenant: &str) -> Result<TenantRing<'_>, HashringError> {
        Ok(TenantRing { ring: &self.entries[self.ring_index(tenant)?].ring })
    }

    /// `(name, endpoints, tenants listed)` per configured ring, in file order,
    /// for `thanos_receive_hashring_nodes` / `thanos_receive_hashring_tenants`.
    /// Empty for [`MultiHashring::single_node`].
    pub fn rings(&self) -> impl Iterator<Item = (&str, usize, usize)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.config.as_ref())
            .map(|c| (c.name.as_str(), c.endpoints.len(), c.tenants.len()))
    }

    /// The configured `external_labels` for `tenant`: those of the first ring
    /// (file order) whose `tenants` list contains `tenant` verbatim — even for
    /// glob rings, and even when that ring's labels are empty or the tenant
    /// is routed to another ring. Tenants only matched by a pattern or by a
    /// catch-all ring get none.
    ///
    /// Thanos then overlays `--label` flags and the tenant label on top of
    /// these (they win on conflicts).
    pub fn external_labels(&self, tenant: &str) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter_map(|e| e.config.as_ref())
            .find(|c| c.tenants.iter().any(|t| t == tenant))
            .map(|c| c.external_labels.clone())
            .unwrap_or_default()
    }

    /// Every distinct endpoint of every ring, sorted by address.
    pub fn endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints.iter().collect()
    }

    /// The loaded configuration in the file format, with each ring's
    /// effective algorithm; `[]` for [`MultiHashring::single_node`].
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .filter_map(|e| e.config.as_ref().map(|c| c.to_json_with_algorithm(Some(e.algorithm))))
                .collect(),
        )
    }
}

impl Serialize for MultiHashring {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node() {
        let m = MultiHashring::single_node("127.0.0.1:10901");
        let e = m.get_n("any", 42, 0).unwrap();
        assert_eq!(e.address, "127.0.0.1:10901");
        assert_eq!(e.capnproto_address, "127.0.0.1:10901");
        assert_eq!(m.get_n("any", 42, 1).unwrap_err().to_string(), "insufficient nodes; have 1, want 2");
        assert_eq!(m.rings().count(), 0);
        assert_eq!(m.endpoints().len(), 1);
        assert_eq!(m.to_json(), serde_json::json!([]));
        assert!(m.external_labels("any").is_empty());
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MultiHashring>();
    }

    #[test]
    fn zero_rf() {
        assert_eq!(MultiHashring::new(&[], Algorithm::Hashmod, 0).unwrap_err(), HashringError::ZeroReplicationFactor);
    }

    #[test]
    fn empty_multi_ring_has_no_match() {
        let m = MultiHashring::new(&[], Algorithm::Hashmod, 1).unwrap();
        assert_eq!(m.get_n("t", 1, 0).unwrap_err(), HashringError::NoMatchingHashring);
    }

    #[test]
    fn tenant_ring_indexes_the_endpoints_get_n_returns() {
        let json = r#"[
            {"hashring": "a", "tenants": ["t1"], "endpoints": ["h:1", "h:2", "h:3", "h:4"]},
            {"hashring": "b", "algorithm": "ketama", "endpoints": ["k:1", "k:2", "k:3", "k:4", "k:5"]}
        ]"#;
        let parsed = crate::parse_config(json).unwrap();
        let m = MultiHashring::new(&parsed.rings, Algorithm::Hashmod, 3).unwrap();
        for tenant in ["t1", "other"] {
            let r = m.for_tenant(tenant).unwrap();
            let mut seen = HashSet::new();
            for k in 0..2000u64 {
                let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                for n in 0..3 {
                    let i = r.get_n_index(h, n).unwrap();
                    assert_eq!(&r.endpoints()[i], m.get_n(tenant, h, n).unwrap(), "{tenant} {h} {n}");
                    seen.insert(r.endpoints()[i].address.clone());
                }
            }
            assert_eq!(seen.len(), if tenant == "t1" { 4 } else { 5 });
        }
        let single = MultiHashring::single_node("s:1");
        assert_eq!(single.for_tenant("x").unwrap().get_n_index(7, 0), Ok(0));
        assert!(single.for_tenant("x").unwrap().get_n_index(7, 1).is_err());
    }
}
