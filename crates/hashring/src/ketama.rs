//! The `ketama` consistent hashring.
//!
//! Every endpoint owns `sections_per_node` (1000) points on a 64-bit circle;
//! the point `i` (1-based) of an endpoint is `XXH64(address ":" i)`. A series
//! with hash `h` belongs to the first section whose hash is `>= h` (wrapping
//! to the first section). The `replication_factor` replicas of each section
//! are precomputed by walking clockwise from it and taking endpoints not yet
//! chosen, so adding a node only moves the series that now fall on its
//! sections and replicas are always ring successors.
//!
//! Availability zones: when the ring has more than one AZ value (an empty AZ
//! counts as a value), a candidate is skipped while its AZ already holds a
//! replica and more replicas than the least occupied AZ, which spreads
//! replicas evenly over zones. If zones are so unbalanced that this rule can
//! never complete (Thanos would loop forever), the build fails with
//! [`HashringError::KetamaAzImbalance`].
//!
//! Lookups are a binary search over a flat array of section hashes plus one
//! index into a flat replica table: no allocation, no locking.

use std::collections::BTreeMap;

use crate::config::Endpoint;
use crate::error::HashringError;
use crate::hash::section_hash_with;

/// A ketama ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KetamaRing {
    endpoints: Vec<Endpoint>,
    /// Section hashes, ascending.
    hashes: Vec<u64>,
    /// `replicas[k * rf + n]` = endpoint index of replica `n` of section `k`.
    replicas: Vec<u32>,
    replication_factor: usize,
    /// `bucket_start[b]` = first section whose hash is `>= b << bucket_shift`
    /// (plus a final entry = number of sections). Section hashes are uniform,
    /// so a bucket holds about one section and the search is O(1).
    bucket_start: Vec<u32>,
    bucket_shift: u32,
}

impl KetamaRing {
    /// Sections per endpoint used by Thanos.
    pub const SECTIONS_PER_NODE: usize = 1000;

    /// Builds a ring with [`KetamaRing::SECTIONS_PER_NODE`] sections per
    /// endpoint. Fails when there are fewer endpoints than the replication
    /// factor, or when the AZs cannot hold the replicas.
    pub fn new(endpoints: Vec<Endpoint>, replication_factor: usize) -> Result<KetamaRing, HashringError> {
        Self::with_sections_per_node(endpoints, Self::SECTIONS_PER_NODE, replication_factor)
    }

    /// Like [`KetamaRing::new`] with a custom number of sections per endpoint
    /// (upstream's unit tests use 10).
    ///
    /// # Panics
    ///
    /// If `sections_per_node` is 0 or the ring would have 2³² sections or more.
    pub fn with_sections_per_node(
        endpoints: Vec<Endpoint>,
        sections_per_node: usize,
        replication_factor: usize,
    ) -> Result<KetamaRing, HashringError> {
        if endpoints.len() < replication_factor {
            return Err(HashringError::KetamaTooFewEndpoints { endpoints: endpoints.len(), replication_factor });
        }
        assert!(sections_per_node > 0, "ketama: sections_per_node must be positive");
        assert!(
            u32::try_from(endpoints.len().saturating_mul(sections_per_node)).is_ok(),
            "ketama: too many sections ({} endpoints x {sections_per_node})",
            endpoints.len()
        );

        // Zone index per endpoint.
        let mut zone_ids: BTreeMap<&str, u32> = BTreeMap::new();
        for e in &endpoints {
            let next = zone_ids.len() as u32;
            zone_ids.entry(e.az.as_str()).or_insert(next);
        }
        let zone_of: Vec<u32> = endpoints.iter().map(|e| zone_ids[e.az.as_str()]).collect();
        let num_zones = zone_ids.len();

        let mut sections: Vec<(u64, u32)> = Vec::with_capacity(endpoints.len() * sections_per_node);
        let mut buf = Vec::new();
        for (idx, e) in endpoints.iter().enumerate() {
            for i in 1..=sections_per_node {
                sections.push((section_hash_with(&mut buf, &e.address, i), idx as u32));
            }
        }
        // Ties (only possible for duplicate addresses) are broken by endpoint
        // index so the ring is deterministic.
        sections.sort_unstable();

        let rf = replication_factor;
        let total = sections.len();
        let mut replicas = Vec::with_capacity(total * rf);
        let mut chosen: Vec<u32> = Vec::with_capacity(rf);
        let mut zone_count = vec![0usize; num_zones];
        for start in 0..total {
            chosen.clear();
            zone_count.iter_mut().for_each(|c| *c = 0);
            let mut j = start;
            let mut since_last_pick = 0usize;
            while chosen.len() < rf {
                if since_last_pick > total {
                    return Err(az_imbalance(&endpoints, rf));
                }
                let candidate = sections[j].1;
                j += 1;
                if j == total {
                    j = 0;
                }
                since_last_pick += 1;
                if chosen.contains(&candidate) {
                    continue;
                }
                let zone = zone_of[candidate as usize] as usize;
                if num_zones > 1 {
                    let count = zone_count[zone];
                    let least = zone_count.iter().copied().min().unwrap_or(0);
                    if count > 0 && count > least {
                        continue;
                    }
                }
                chosen.push(candidate);
                zone_count[zone] += 1;
                since_last_pick = 0;
            }
            replicas.extend_from_slice(&chosen);
        }

        let hashes: Vec<u64> = sections.iter().map(|s| s.0).collect();
        let (bucket_start, bucket_shift) = bucket_index(&hashes);
        Ok(KetamaRing { endpoints, hashes, replicas, replication_factor: rf, bucket_start, bucket_shift })
    }

    /// The endpoint for replica `n` of the series with hash `hash`.
    ///
    /// `n >= endpoints` ⇒ [`HashringError::InsufficientNodes`] (as Thanos);
    /// `n >= replication_factor` ⇒ [`HashringError::ReplicaOutOfRange`].
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
        if n >= self.replication_factor {
            return Err(HashringError::ReplicaOutOfRange { replica: n, replication_factor: self.replication_factor });
        }
        let k = self.section_for(hash);
        Ok(self.replicas[k * self.replication_factor + n] as usize)
    }

    /// Index of the first section with hash `>= hash`, wrapping to 0.
    #[inline]
    fn section_for(&self, hash: u64) -> usize {
        let b = hash.checked_shr(self.bucket_shift).unwrap_or(0) as usize;
        let lo = self.bucket_start[b] as usize;
        let hi = self.bucket_start[b + 1] as usize;
        let mut k = lo + self.hashes[lo..hi].partition_point(|&s| s < hash);
        if k == self.hashes.len() {
            k = 0;
        }
        k
    }

    /// The endpoints in configuration order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The replication factor the replicas were computed for.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The sections in ring order: `(hash, replica endpoint indices)`.
    pub fn sections(&self) -> impl Iterator<Item = (u64, &[u32])> + '_ {
        let rf = self.replication_factor;
        self.hashes.iter().enumerate().map(move |(k, &h)| (h, &self.replicas[k * rf..(k + 1) * rf]))
    }
}

/// Builds the bucket index over sorted `hashes`: about one bucket per
/// section, a power of two so the bucket is the top bits of the hash.
fn bucket_index(hashes: &[u64]) -> (Vec<u32>, u32) {
    let buckets = hashes.len().max(1).next_power_of_two();
    let bits = buckets.trailing_zeros();
    let shift = 64 - bits; // 64 (one bucket) makes checked_shr yield 0.
    let mut start = Vec::with_capacity(buckets + 1);
    let mut k = 0usize;
    for b in 0..buckets as u64 {
        let lower = if bits == 0 { 0 } else { b << shift };
        while k < hashes.len() && hashes[k] < lower {
            k += 1;
        }
        start.push(k as u32);
    }
    start.push(hashes.len() as u32);
    (start, shift)
}

fn az_imbalance(endpoints: &[Endpoint], rf: usize) -> HashringError {
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for e in endpoints {
        *per_zone.entry(e.az.as_str()).or_default() += 1;
    }
    let zones = per_zone.iter().map(|(z, n)| format!("{z:?}={n}")).collect::<Vec<_>>().join(", ");
    HashringError::KetamaAzImbalance { replication_factor: rf, zones }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(addrs: &[&str]) -> Vec<Endpoint> {
        addrs.iter().map(|a| Endpoint::new(*a)).collect()
    }

    #[test]
    fn too_few_endpoints() {
        let err = KetamaRing::with_sections_per_node(eps(&["node-1"]), 1, 2).unwrap_err();
        assert!(matches!(err, HashringError::KetamaTooFewEndpoints { .. }));
        assert!(err.to_string().starts_with("ketama: amount of endpoints needs to be larger than replication factor"));
    }

    #[test]
    fn replica_out_of_range() {
        let ring = KetamaRing::new(eps(&["a", "b", "c"]), 2).unwrap();
        assert!(ring.get_n(1, 1).is_ok());
        assert_eq!(
            ring.get_n(1, 2).unwrap_err(),
            HashringError::ReplicaOutOfRange { replica: 2, replication_factor: 2 }
        );
        assert_eq!(ring.get_n(1, 3).unwrap_err(), HashringError::InsufficientNodes { have: 3, want: 4 });
    }

    #[test]
    fn unbalanced_zones_are_rejected() {
        let mut e = eps(&["a", "b", "c", "d"]);
        e[0].az = "1".into();
        for x in &mut e[1..] {
            x.az = "2".into();
        }
        // Zone 1 has one node: zone 2 may hold at most 2 replicas.
        assert!(KetamaRing::with_sections_per_node(e.clone(), 10, 3).is_ok());
        let err = KetamaRing::with_sections_per_node(e, 10, 4).unwrap_err();
        assert!(matches!(err, HashringError::KetamaAzImbalance { .. }), "{err}");
    }

    #[test]
    fn bucket_lookup_matches_binary_search() {
        for n in [1usize, 2, 3, 7] {
            for spn in [1usize, 3, 10, 1000] {
                let ring = KetamaRing::with_sections_per_node(
                    (0..n).map(|i| Endpoint::new(format!("n{i}"))).collect(),
                    spn,
                    1,
                )
                .unwrap();
                let mut keys: Vec<u64> = vec![0, 1, u64::MAX, u64::MAX - 1, 1 << 63];
                for &h in &ring.hashes {
                    keys.extend([h, h.wrapping_sub(1), h.wrapping_add(1)]);
                }
                let mut x = 0x1234_5678_9abc_def0u64;
                for _ in 0..2000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    keys.push(x);
                }
                for key in keys {
                    let mut want = ring.hashes.partition_point(|&s| s < key);
                    if want == ring.hashes.len() {
                        want = 0;
                    }
                    assert_eq!(ring.section_for(key), want, "n={n} spn={spn} key={key:#x}");
                }
            }
        }
    }

    #[test]
    fn zero_rf_ring_never_panics() {
        let ring = KetamaRing::with_sections_per_node(eps(&["a"]), 10, 0).unwrap();
        assert!(ring.get_n(5, 0).is_err());
        let ring = KetamaRing::with_sections_per_node(vec![], 10, 0).unwrap();
        assert!(ring.get_n(5, 0).is_err());
    }
}
