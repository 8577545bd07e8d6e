//! The hashring file (`--receive.hashrings-file`, a peer-supplied config in a ConfigMap) on
//! arbitrary bytes: parsed and built, or refused, never a panic; a built ring places every
//! replica of a series on an endpoint it lists, for any tenant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest_hashring::{Algorithm, MultiHashring, parse_config};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, json)) = data.split_first() else { return };
    let Ok(json) = std::str::from_utf8(json) else { return };
    let algorithm = if knobs & 1 == 0 { Algorithm::Hashmod } else { Algorithm::Ketama };
    let rf = usize::from(knobs >> 1 & 3) + 1;
    let Ok(parsed) = parse_config(json) else { return };
    let Ok(ring) = MultiHashring::new(&parsed.rings, algorithm, rf) else { return };
    let listed: Vec<String> = ring.endpoints().iter().map(|e| e.address.clone()).collect();
    for tenant in ["", "default-tenant", "team-a", "x"] {
        for hash in [0u64, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
            for n in 0..rf {
                if let Ok(ep) = ring.get_n(tenant, hash, n) {
                    assert!(listed.contains(&ep.address), "{} is not in the ring", ep.address);
                }
            }
        }
    }
});
