//! Property tests: distinct replicas, AZ spreading, consistency under
//! membership changes (ketama) versus remapping (hashmod).

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use ringest_hashring::{Endpoint, HashmodRing, HashringError, KetamaRing, series_hash};

fn node(i: usize, zone: Option<usize>) -> Endpoint {
    let e = Endpoint::new(format!("receive-{i}.receive.svc:10901"));
    match zone {
        Some(z) => e.with_az(format!("zone-{z}")),
        None => e,
    }
}

/// Deterministic uniform keys.
fn keys(seed: u64, count: usize) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// Whether the zone rule can place `rf` replicas: once the smallest zone
/// (size `m`) is full, no zone may exceed `m + 1` replicas.
fn az_feasible(zone_sizes: &BTreeMap<String, usize>, rf: usize) -> bool {
    if zone_sizes.len() <= 1 {
        return true;
    }
    let m = *zone_sizes.values().min().unwrap();
    rf <= zone_sizes.values().map(|&s| s.min(m + 1)).sum::<usize>()
}

fn ring_case() -> impl Strategy<Value = (Vec<Option<usize>>, usize, u64)> {
    (1usize..=9, 0usize..=4)
        .prop_flat_map(|(n, zones)| {
            let zone = if zones == 0 { Just(None).boxed() } else { (0..zones).prop_map(Some).boxed() };
            (proptest::collection::vec(zone, n), 1..=n, any::<u64>())
        })
        .prop_map(|(z, rf, seed)| (z, rf, seed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ketama_replicas_are_distinct_and_spread((zones, rf, seed) in ring_case()) {
        let endpoints: Vec<Endpoint> = zones.iter().enumerate().map(|(i, z)| node(i, *z)).collect();
        let mut zone_sizes: BTreeMap<String, usize> = BTreeMap::new();
        for e in &endpoints {
            *zone_sizes.entry(e.az.clone()).or_default() += 1;
        }
        let ring = match KetamaRing::new(endpoints.clone(), rf) {
            Ok(ring) => {
                prop_assert!(az_feasible(&zone_sizes, rf));
                ring
            }
            Err(HashringError::KetamaAzImbalance { .. }) => {
                prop_assert!(!az_feasible(&zone_sizes, rf), "rejected a feasible ring {zone_sizes:?} rf={rf}");
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        for key in keys(seed, 300) {
            let replicas: Vec<&Endpoint> = (0..rf).map(|n| ring.get_n(key, n).unwrap()).collect();
            let distinct: HashSet<&str> = replicas.iter().map(|e| e.address.as_str()).collect();
            prop_assert_eq!(distinct.len(), rf);
            if zone_sizes.len() > 1 {
                let mut per_zone: BTreeMap<&str, usize> = zone_sizes.keys().map(|z| (z.as_str(), 0)).collect();
                for e in &replicas {
                    *per_zone.get_mut(e.az.as_str()).unwrap() += 1;
                }
                let max = *per_zone.values().max().unwrap();
                let min = *per_zone.values().min().unwrap();
                // No zone gets 2 replicas while another zone has none; in
                // general zones differ by at most one replica.
                prop_assert!(max <= min + 1, "{per_zone:?}");
                if zone_sizes.len() >= rf {
                    prop_assert_eq!(max, 1, "{:?}", per_zone);
                }
            }
        }
    }

    #[test]
    fn hashmod_replicas_are_distinct(n in 1usize..=12, seed in any::<u64>()) {
        let ring = HashmodRing::new((0..n).map(|i| node(i, None)).collect()).unwrap();
        for key in keys(seed, 200) {
            let distinct: HashSet<&str> = (0..n).map(|r| ring.get_n(key, r).unwrap().address.as_str()).collect();
            prop_assert_eq!(distinct.len(), n);
            let err = ring.get_n(key, n).unwrap_err();
            prop_assert_eq!(err, HashringError::InsufficientNodes { have: n as u64, want: n as u64 + 1 });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Adding a node to N nodes moves about 1/(N+1) of replica-0 placements,
    /// all of them to the new node; removing one of N nodes moves about 1/N,
    /// all of them away from the removed node. Hashmod moves most keys.
    #[test]
    fn ketama_is_consistent_hashmod_is_not(n in 2usize..=10, seed in any::<u64>(), removed in any::<prop::sample::Index>()) {
        let ks = keys(seed, 10_000);
        let base: Vec<Endpoint> = (0..n).map(|i| node(i, None)).collect();
        let mut grown = base.clone();
        grown.push(node(n, None));
        let mut shrunk = base.clone();
        let gone = shrunk.remove(removed.index(n));

        let before = KetamaRing::new(base.clone(), 1).unwrap();
        let after_add = KetamaRing::new(grown.clone(), 1).unwrap();
        let after_remove = KetamaRing::new(shrunk, 1).unwrap();

        let mut moved_add = 0usize;
        let mut moved_remove = 0usize;
        for &k in &ks {
            let b = &before.get_n(k, 0).unwrap().address;
            let a = &after_add.get_n(k, 0).unwrap().address;
            if a != b {
                moved_add += 1;
                prop_assert_eq!(a, &grown[n].address, "a key moved between old nodes");
            }
            let r = &after_remove.get_n(k, 0).unwrap().address;
            if r != b {
                moved_remove += 1;
                prop_assert_eq!(b, &gone.address, "a key left a node that stayed");
            } else {
                prop_assert_ne!(r, &gone.address);
            }
        }
        let total = ks.len() as f64;
        let add_frac = moved_add as f64 / total;
        let remove_frac = moved_remove as f64 / total;
        let expect_add = 1.0 / (n as f64 + 1.0);
        let expect_remove = 1.0 / n as f64;
        prop_assert!((0.5 * expect_add..=1.5 * expect_add).contains(&add_frac), "add moved {add_frac} (n={n})");
        prop_assert!((0.5 * expect_remove..=1.5 * expect_remove).contains(&remove_frac), "remove moved {remove_frac} (n={n})");

        let hm_before = HashmodRing::new(base).unwrap();
        let hm_after = HashmodRing::new(grown).unwrap();
        let hm_moved = ks
            .iter()
            .filter(|&&k| hm_before.get_n(k, 0).unwrap() != hm_after.get_n(k, 0).unwrap())
            .count() as f64
            / total;
        prop_assert!(hm_moved > 0.5, "hashmod moved only {hm_moved}");
    }
}

/// Placement of every key for every replica, per node.
fn assignments(ring: &KetamaRing, ks: &[u64], rf: usize) -> BTreeMap<String, HashSet<u64>> {
    let mut out: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for &k in ks {
        for n in 0..rf {
            out.entry(ring.get_n(k, n).unwrap().address.clone()).or_default().insert(k);
        }
    }
    out
}

fn az_nodes(list: &[(&str, &str)]) -> Vec<Endpoint> {
    list.iter().map(|(a, z)| Endpoint::new(*a).with_az(*z)).collect()
}

/// Growing a ring never gives an existing node a replica it did not have
/// before (replicas are ring successors), with and without zones.
#[test]
fn growing_adds_no_new_series_to_old_nodes() {
    let cases: Vec<(Vec<Endpoint>, Vec<Endpoint>, usize)> = vec![
        (az_nodes(&[("node-1", ""), ("node-3", "")]), az_nodes(&[("node-1", ""), ("node-2", ""), ("node-3", "")]), 1),
        (
            az_nodes(&[("node-1", ""), ("node-4", ""), ("node-5", "")]),
            az_nodes(&[("node-4", ""), ("node-3", ""), ("node-1", ""), ("node-2", ""), ("node-5", "")]),
            2,
        ),
        (
            az_nodes(&[("a", "1"), ("b", "2"), ("c", "3")]),
            az_nodes(&[("b", "2"), ("c", "3"), ("a", "1"), ("d", "2"), ("e", "4")]),
            3,
        ),
        (
            az_nodes(&[("a", "1"), ("b", "2"), ("c", "3")]),
            az_nodes(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "1"), ("e", "2"), ("f", "3")]),
            3,
        ),
        (
            az_nodes(&[("a", "1"), ("b", "2"), ("c", "3")]),
            az_nodes(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")]),
            2,
        ),
        (
            az_nodes(&[("a", "1"), ("c", "2"), ("f", "3")]),
            az_nodes(&[("a", "1"), ("b", "1"), ("c", "2"), ("d", "2"), ("f", "3")]),
            2,
        ),
    ];
    let ks = keys(7, 5_000);
    for (initial, resized, rf) in cases {
        let before = assignments(&KetamaRing::new(initial.clone(), rf).unwrap(), &ks, rf);
        let after = assignments(&KetamaRing::new(resized, rf).unwrap(), &ks, rf);
        for e in &initial {
            let old = before.get(&e.address).cloned().unwrap_or_default();
            for k in after.get(&e.address).into_iter().flatten() {
                assert!(old.contains(k), "node {} got a new series after resizing", e.address);
            }
        }
    }
}

/// Series spread evenly over nodes (within 10% of optimal), as upstream checks.
#[test]
fn even_node_spread() {
    let cases: Vec<(Vec<Endpoint>, usize)> = vec![
        (az_nodes(&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")]), 2),
        (az_nodes(&[("a", ""), ("b", ""), ("c", ""), ("d", "")]), 2),
        (az_nodes(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "2"), ("e", "1"), ("f", "3")]), 3),
        (
            az_nodes(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "2"),
                ("e", "1"),
                ("f", "3"),
                ("g", "1"),
                ("h", "2"),
                ("i", "3"),
            ]),
            2,
        ),
    ];
    for (endpoints, rf) in cases {
        let n = endpoints.len();
        let ring = KetamaRing::new(endpoints, rf).unwrap();
        let series = 10_000usize;
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..series {
            let v = i.to_string();
            let h = series_hash(b"default-tenant", [(&b"foo"[..], v.as_bytes())]);
            for r in 0..rf {
                *per_node.entry(ring.get_n(h, r).unwrap().address.clone()).or_default() += 1;
            }
        }
        let optimal = (series * rf / n) as f64;
        for (node, count) in per_node {
            let diff = (count as f64 - optimal).abs() / optimal;
            assert!(diff < 0.1, "node {node}: {count} vs optimal {optimal}");
        }
    }
}

/// The ring builds exactly when the zone rule can place every replica (an
/// unbalanced layout is rejected instead of looping forever).
#[test]
fn az_imbalance_detection_is_exact() {
    let mut rejected = 0;
    for a in 0..=3usize {
        for b in 0..=3usize {
            for c in 0..=4usize {
                let sizes = [a, b, c];
                let mut endpoints = Vec::new();
                let mut zone_sizes: BTreeMap<String, usize> = BTreeMap::new();
                for (z, &count) in sizes.iter().enumerate() {
                    for _ in 0..count {
                        endpoints.push(node(endpoints.len(), Some(z)));
                        *zone_sizes.entry(format!("zone-{z}")).or_default() += 1;
                    }
                }
                for rf in 1..=endpoints.len() {
                    let built = KetamaRing::with_sections_per_node(endpoints.clone(), 20, rf);
                    assert_eq!(built.is_ok(), az_feasible(&zone_sizes, rf), "{zone_sizes:?} rf={rf}");
                    if let Err(e) = built {
                        assert!(matches!(e, HashringError::KetamaAzImbalance { .. }));
                        rejected += 1;
                    }
                }
            }
        }
    }
    assert!(rejected > 0);
}
