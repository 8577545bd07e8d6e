//! Golden vectors (spec 4.3 / 4.5, upstream `TestKetamaHashringGet`) and an
//! independent naive re-computation of ketama placement.

use std::collections::{HashMap, HashSet};

use ringest_hashring::{
    Algorithm, Endpoint, HashmodRing, KetamaRing, MultiHashring, parse_config, section_hash, series_hash,
};
use xxhash_rust::xxh64::xxh64;

fn eps(addrs: &[&str]) -> Vec<Endpoint> {
    addrs.iter().map(|a| Endpoint::new(*a)).collect()
}

fn az_eps(list: &[(&str, &str)]) -> Vec<Endpoint> {
    list.iter().map(|(a, z)| Endpoint::new(*a).with_az(*z)).collect()
}

fn hash_of(tenant: &str, labels: &[(&str, &str)]) -> u64 {
    series_hash(tenant.as_bytes(), labels.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn up_series() -> u64 {
    hash_of("default-tenant", &[("__name__", "up"), ("instance", "localhost:9090"), ("job", "prometheus")])
}

#[test]
fn series_hash_vector() {
    assert_eq!(up_series(), 0xcb7a3eb434a9984c);
    assert_eq!(up_series(), 14662100480556636236);
}

#[test]
fn section_hash_vector() {
    assert_eq!(section_hash("receive-0:10901", 1), 0x989ad7f1fbebbbc2);
}

const RECEIVE: [&str; 3] = ["receive-0:10901", "receive-1:10901", "receive-2:10901"];
const EXPECTED_RECEIVE: [&str; 3] = ["receive-2:10901", "receive-0:10901", "receive-1:10901"];

#[test]
fn hashmod_receive_vector() {
    let ring = HashmodRing::new(eps(&RECEIVE)).unwrap();
    let h = up_series();
    for (n, want) in EXPECTED_RECEIVE.iter().enumerate() {
        assert_eq!(ring.get_n(h, n).unwrap().address, *want, "n={n}");
    }
    // File order does not matter for hashmod.
    let ring = HashmodRing::new(eps(&["receive-2:10901", "receive-0:10901", "receive-1:10901"])).unwrap();
    assert_eq!(ring.get_n(h, 0).unwrap().address, EXPECTED_RECEIVE[0]);
}

#[test]
fn ketama_receive_vector() {
    let ring = KetamaRing::new(eps(&RECEIVE), 3).unwrap();
    let h = up_series();
    for (n, want) in EXPECTED_RECEIVE.iter().enumerate() {
        assert_eq!(ring.get_n(h, n).unwrap().address, *want, "n={n}");
    }
}

#[test]
fn vectors_through_config_and_multi_ring() {
    let cfg =
        parse_config(r#"[{"hashring":"default","endpoints":["receive-0:10901","receive-1:10901","receive-2:10901"]}]"#)
            .unwrap();
    for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
        let m = MultiHashring::new(&cfg.rings, algorithm, 3).unwrap();
        for (n, want) in EXPECTED_RECEIVE.iter().enumerate() {
            let e = m.get_n("default-tenant", up_series(), n).unwrap();
            assert_eq!(e.address, *want, "{algorithm} n={n}");
            assert_eq!(e.capnproto_address, want.replace("10901", "19391"));
        }
    }
}

const AZ_RING: [(&str, &str); 6] = [
    ("r-a-0:10901", "A"),
    ("r-b-0:10901", "B"),
    ("r-c-0:10901", "C"),
    ("r-a-1:10901", "A"),
    ("r-b-1:10901", "B"),
    ("r-c-1:10901", "C"),
];

#[test]
fn ketama_az_vectors() {
    let ring = KetamaRing::new(az_eps(&AZ_RING), 3).unwrap();
    let h = up_series();
    let got: Vec<_> = (0..3).map(|n| ring.get_n(h, n).unwrap().address.as_str()).collect();
    assert_eq!(got, ["r-a-0:10901", "r-c-1:10901", "r-b-1:10901"]);

    let h = hash_of("tenant-b", &[("__name__", "bar")]);
    let got: Vec<_> = (0..3).map(|n| ring.get_n(h, n).unwrap().address.as_str()).collect();
    assert_eq!(got, ["r-c-0:10901", "r-b-0:10901", "r-a-0:10901"]);
}

/// Upstream `TestKetamaHashringGet`: 10 sections per node, tenant `tenant`,
/// replication factor `n + 1`.
#[test]
fn ketama_upstream_ten_section_vectors() {
    let nginx = hash_of("tenant", &[("pod", "nginx")]);
    let thanos = hash_of("tenant", &[("pod", "thanos")]);
    let cases: &[(&[&str], u64, usize, &str)] = &[
        (&["node-1", "node-2", "node-3"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3"], nginx, 1, "node-1"),
        (&["node-1", "node-2", "node-3"], nginx, 2, "node-3"),
        (&["node-1", "node-3", "node-2"], nginx, 2, "node-3"),
        (&["node-0", "node-1", "node-2", "node-3"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3", "node-4"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3"], thanos, 0, "node-3"),
    ];
    for (nodes, h, n, want) in cases {
        let ring = KetamaRing::with_sections_per_node(eps(nodes), 10, n + 1).unwrap();
        assert_eq!(ring.get_n(*h, *n).unwrap().address, *want, "{nodes:?} n={n}");
    }
}

// ---------------------------------------------------------------------------
// Naive re-computation.

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
}

/// Straightforward O(sections) ketama: its own section list built from
/// scratch, a linear scan for the owning section, then a clockwise walk with
/// the AZ rule.
struct NaiveKetama {
    endpoints: Vec<Endpoint>,
    sections: Vec<(u64, usize)>,
    rf: usize,
}

impl NaiveKetama {
    fn new(endpoints: &[Endpoint], sections_per_node: usize, rf: usize) -> NaiveKetama {
        let mut sections: Vec<(u64, usize)> = Vec::new();
        for (idx, e) in endpoints.iter().enumerate() {
            for i in 1..=sections_per_node {
                sections.push((xxh64(format!("{}:{}", e.address, i).as_bytes(), 0), idx));
            }
        }
        sections.sort();
        NaiveKetama { endpoints: endpoints.to_vec(), sections, rf }
    }

    fn replicas(&self, key: u64) -> Vec<String> {
        let endpoints = &self.endpoints;
        let sections = &self.sections;
        let zones: HashSet<&str> = endpoints.iter().map(|e| e.az.as_str()).collect();
        let start = sections.iter().position(|s| s.0 >= key).unwrap_or(0);
        let mut chosen: Vec<usize> = Vec::new();
        let mut spread: HashMap<&str, usize> = zones.iter().map(|z| (*z, 0)).collect();
        let mut j = start;
        while chosen.len() < self.rf {
            let idx = sections[j % sections.len()].1;
            j += 1;
            if chosen.contains(&idx) {
                continue;
            }
            let az = endpoints[idx].az.as_str();
            let least = *spread.values().min().unwrap();
            if spread.len() > 1 && spread[az] > 0 && spread[az] > least {
                continue;
            }
            chosen.push(idx);
            *spread.get_mut(az).unwrap() += 1;
        }
        chosen.into_iter().map(|i| endpoints[i].address.clone()).collect()
    }
}

#[test]
fn fast_lookup_agrees_with_naive_walk() {
    let configs: Vec<(Vec<Endpoint>, usize, usize)> = vec![
        (eps(&RECEIVE), 1000, 3),
        (eps(&["a:1", "b:1", "c:1", "d:1", "e:1"]), 100, 2),
        (az_eps(&AZ_RING), 1000, 3),
        (az_eps(&AZ_RING), 50, 5),
        (az_eps(&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2"), ("e", ""), ("f", "3"), ("g", "3")]), 200, 4),
    ];
    let mut rng = SplitMix(42);
    for (endpoints, spn, rf) in configs {
        let ring = KetamaRing::with_sections_per_node(endpoints.clone(), spn, rf).unwrap();
        let naive = NaiveKetama::new(&endpoints, spn, rf);
        let mut keys: Vec<u64> = (0..2000).map(|_| rng.next()).collect();
        // Edge keys: exactly on a section, just past the last one, zero, max.
        let first = ring.sections().next().unwrap().0;
        let last = ring.sections().last().unwrap().0;
        keys.extend([0, u64::MAX, first, last, last.wrapping_add(1), first.wrapping_sub(1)]);
        for key in keys {
            let want = naive.replicas(key);
            let got: Vec<String> = (0..rf).map(|n| ring.get_n(key, n).unwrap().address.clone()).collect();
            assert_eq!(got, want, "key {key:#x}");
        }
    }
}

#[test]
fn default_sections_agree_with_naive_for_real_series() {
    let endpoints = eps(&RECEIVE);
    let ring = KetamaRing::new(endpoints.clone(), 3).unwrap();
    let naive = NaiveKetama::new(&endpoints, 1000, 3);
    for i in 0..500 {
        let h = hash_of("default-tenant", &[("__name__", "up"), ("i", &i.to_string())]);
        let want = naive.replicas(h);
        let got: Vec<String> = (0..3).map(|n| ring.get_n(h, n).unwrap().address.clone()).collect();
        assert_eq!(got, want);
    }
}
