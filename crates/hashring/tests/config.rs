//! Hashring file parsing and tenant → ring selection.

use std::collections::BTreeMap;

use ringest_hashring::{
    Algorithm, Endpoint, HashringConfig, HashringError, MultiHashring, TenantMatcher, parse_config,
};

fn multi(json: &str, algorithm: Algorithm, rf: usize) -> MultiHashring {
    let cfg = parse_config(json).unwrap();
    MultiHashring::new(&cfg.rings, algorithm, rf).unwrap()
}

/// Address of the endpoint serving replica 0 of some series of `tenant`.
fn route(m: &MultiHashring, tenant: &str) -> Result<String, HashringError> {
    m.get_n(tenant, 12345, 0).map(|e| e.address.clone())
}

#[test]
fn spec_example() {
    let json = r#"[{"hashring":"default","endpoints":[
       {"address":"receive-0.receive:10901","capnproto_address":"receive-0.receive:19391","az":"a"},
       "receive-1.receive:10901"],
      "algorithm":"ketama","tenants":["team-*"],"tenant_matcher_type":"glob",
      "external_labels":{"region":"eu"}}]"#;
    let parsed = parse_config(json).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let ring = &parsed.rings[0];
    assert_eq!(ring.name, "default");
    assert_eq!(ring.tenants, ["team-*"]);
    assert_eq!(ring.tenant_matcher, TenantMatcher::Glob);
    assert_eq!(ring.algorithm, Some(Algorithm::Ketama));
    assert_eq!(ring.external_labels, BTreeMap::from([("region".to_owned(), "eu".to_owned())]));
    assert_eq!(
        ring.endpoints,
        [
            Endpoint {
                address: "receive-0.receive:10901".into(),
                capnproto_address: "receive-0.receive:19391".into(),
                az: "a".into()
            },
            Endpoint {
                address: "receive-1.receive:10901".into(),
                capnproto_address: "receive-1.receive:19391".into(),
                az: "".into()
            },
        ]
    );
    let m = MultiHashring::new(&parsed.rings, Algorithm::Hashmod, 2).unwrap();
    assert!(route(&m, "team-x").is_ok());
    assert_eq!(route(&m, "other"), Err(HashringError::NoMatchingHashring));
}

#[test]
fn endpoint_forms() {
    let parsed = parse_config(
        r#"[{"endpoints":[
            "host-a:10901",
            "host-b",
            {"address":"host-c:10901"},
            {"address":"host-d:10901","capnproto_address":"capnp-d:7000"},
            {"address":"host-e:10901","capnproto_address":""}
        ]}]"#,
    )
    .unwrap();
    let e = &parsed.rings[0].endpoints;
    assert_eq!(e[0].capnproto_address, "host-a:19391");
    assert_eq!(e[1].capnproto_address, "host-b:19391");
    assert_eq!(e[2].capnproto_address, "host-c:19391");
    assert_eq!(e[3].capnproto_address, "capnp-d:7000");
    assert_eq!(e[4].capnproto_address, "host-e:19391");
    assert!(e.iter().all(|e| e.az.is_empty()));
    assert!(e[3].has_address("capnp-d:7000"));
    assert!(e[3].has_address("host-d:10901"));
    assert!(!e[3].has_address("host-d"));
}

#[test]
fn missing_address() {
    for json in [
        r#"[{"hashring":"r","endpoints":["a",{"az":"x"}]}]"#,
        r#"[{"hashring":"r","endpoints":["a",""]}]"#,
        r#"[{"hashring":"r","endpoints":["a",null]}]"#,
        r#"[{"hashring":"r","endpoints":["a",{"address":null}]}]"#,
    ] {
        let err = parse_config(json).unwrap_err();
        assert_eq!(err.root(), &HashringError::MissingAddress { index: 1 }, "{json}");
        assert_eq!(err.to_string(), "hashring #0 \"r\": endpoint #1: endpoint address must be set");
    }
}

#[test]
fn wrong_types_are_parse_errors() {
    for json in [
        r#"[{"hashring":1}]"#,
        r#"[{"tenants":"a"}]"#,
        r#"[{"tenants":[1]}]"#,
        r#"[{"endpoints":{}}]"#,
        r#"[{"endpoints":[1]}]"#,
        r#"[{"endpoints":[{"address":1}]}]"#,
        r#"[{"external_labels":{"a":1}}]"#,
        r#"[{"algorithm":true}]"#,
        r#"[{"tenant_matcher_type":[]}]"#,
        r#"[1]"#,
        r#"{"hashring":"x"}"#,
        r#"[{"endpoints":["a"]}"#,
        "",
    ] {
        let err = parse_config(json).unwrap_err();
        assert!(matches!(err.root(), HashringError::Parse(_)), "{json}: {err}");
    }
    let err = parse_config(r#"[{"hashring":"main","tenants":"a"}]"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to parse configuration file: hashring #0 \"main\": field \"tenants\": expected an array of strings, found a string"
    );
}

#[test]
fn defaults() {
    let parsed = parse_config(r#"[{"endpoints":["a"]}]"#).unwrap();
    let ring = &parsed.rings[0];
    assert_eq!(ring.name, "");
    assert!(ring.tenants.is_empty());
    assert_eq!(ring.tenant_matcher, TenantMatcher::Exact);
    assert_eq!(ring.algorithm, None);
    assert!(ring.external_labels.is_empty());

    let parsed = parse_config(r#"[{"endpoints":["a"],"tenant_matcher_type":"","algorithm":""}]"#).unwrap();
    assert_eq!(parsed.rings[0].tenant_matcher, TenantMatcher::Exact);
    assert_eq!(parsed.rings[0].algorithm, None);
    assert!(parsed.warnings.is_empty());

    // null fields keep their defaults, like Go's encoding/json.
    let parsed = parse_config(
        r#"[{"hashring":null,"tenants":null,"endpoints":["a"],"algorithm":null,"external_labels":null,"shuffle_sharding_config":null}]"#,
    )
    .unwrap();
    assert_eq!(parsed.rings[0].name, "");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);

    // The default algorithm applies when the ring has none.
    let m = MultiHashring::new(&parsed.rings, Algorithm::Ketama, 1).unwrap();
    assert_eq!(m.to_json()[0]["algorithm"], "ketama");
}

#[test]
fn empty_configuration() {
    assert_eq!(parse_config("[]").unwrap_err(), HashringError::Empty);
    assert_eq!(parse_config(" null ").unwrap_err(), HashringError::Empty);
    assert_eq!(HashringError::Empty.to_string(), "configuration file is empty");
}

#[test]
fn selection_exact_then_glob_then_catch_all() {
    let json = r#"[
        {"hashring":"exact","tenants":["team-a","solo"],"endpoints":["exact:1"]},
        {"hashring":"glob","tenants":["team-*","x?z"],"tenant_matcher_type":"glob","endpoints":["glob:1"]},
        {"hashring":"default","endpoints":["default:1"]}
    ]"#;
    let m = multi(json, Algorithm::Hashmod, 1);
    assert_eq!(route(&m, "team-a").unwrap(), "exact:1");
    assert_eq!(route(&m, "solo").unwrap(), "exact:1");
    assert_eq!(route(&m, "team-b").unwrap(), "glob:1");
    assert_eq!(route(&m, "xyz").unwrap(), "glob:1");
    assert_eq!(route(&m, "team-b/c").unwrap(), "default:1");
    assert_eq!(route(&m, "other").unwrap(), "default:1");
    // Cached answers stay the same.
    for _ in 0..3 {
        assert_eq!(route(&m, "team-b").unwrap(), "glob:1");
        assert_eq!(route(&m, "other").unwrap(), "default:1");
    }
}

#[test]
fn file_order_wins() {
    // A glob ring listed first takes tenants that a later exact ring lists.
    let json = r#"[
        {"hashring":"glob","tenants":["team-*"],"tenant_matcher_type":"glob","endpoints":["glob:1"]},
        {"hashring":"exact","tenants":["team-a"],"endpoints":["exact:1"]}
    ]"#;
    let m = multi(json, Algorithm::Hashmod, 1);
    assert_eq!(route(&m, "team-a").unwrap(), "glob:1");

    // A catch-all ring that is not last swallows everything after it.
    let json = r#"[
        {"hashring":"default","endpoints":["default:1"]},
        {"hashring":"exact","tenants":["team-a"],"endpoints":["exact:1"]}
    ]"#;
    let m = multi(json, Algorithm::Hashmod, 1);
    assert_eq!(route(&m, "team-a").unwrap(), "default:1");

    // An explicitly empty tenant list is a catch-all too.
    let m =
        multi(r#"[{"tenants":[],"endpoints":["any:1"]},{"tenants":["a"],"endpoints":["a:1"]}]"#, Algorithm::Hashmod, 1);
    assert_eq!(route(&m, "a").unwrap(), "any:1");
}

#[test]
fn no_matching_hashring() {
    let m = multi(
        r#"[{"hashring":"a","tenants":["tenant1"],"endpoints":["n1"]},{"hashring":"b","tenants":["tenant2"],"endpoints":["n2"]}]"#,
        Algorithm::Hashmod,
        1,
    );
    let err = route(&m, "tenant4").unwrap_err();
    assert_eq!(err, HashringError::NoMatchingHashring);
    assert_eq!(err.to_string(), "no matching hashring to handle tenant");
    // Exact matching is case-sensitive.
    assert!(route(&m, "Tenant1").is_err());
}

#[test]
fn glob_literal_tenant_in_glob_ring() {
    // In a glob ring a tenant equal to a pattern only matches through the
    // pattern (`a\*` matches "a*", not "a\*").
    let m =
        multi(r#"[{"tenants":["t2","a\\*"],"tenant_matcher_type":"glob","endpoints":["g"]}]"#, Algorithm::Hashmod, 1);
    assert!(route(&m, "t2").is_ok());
    assert!(route(&m, "a*").is_ok());
    assert!(route(&m, "a\\*").is_err());
}

#[test]
fn bad_glob_rejected_at_load() {
    let err =
        parse_config(r#"[{"hashring":"g","tenants":["ok-*","bad["],"tenant_matcher_type":"glob","endpoints":["a"]}]"#)
            .unwrap_err();
    assert_eq!(err.root(), &HashringError::BadPattern { pattern: "bad[".into() });
    assert!(err.to_string().contains("hashring #0 \"g\""), "{err}");
    // The same string is fine for an exact ring.
    assert!(parse_config(r#"[{"tenants":["bad["],"endpoints":["a"]}]"#).is_ok());
    // MultiHashring::new validates configs built by hand as well.
    let cfg = HashringConfig {
        tenants: vec!["[x-]".into()],
        tenant_matcher: TenantMatcher::Glob,
        endpoints: vec![Endpoint::new("a")],
        ..Default::default()
    };
    assert!(matches!(
        MultiHashring::new(&[cfg], Algorithm::Hashmod, 1).unwrap_err().root(),
        HashringError::BadPattern { .. }
    ));
}

#[test]
fn unknown_keys_are_reported() {
    let parsed = parse_config(
        r#"[{"hashring":"main","endpoints":[{"address":"a","port":1}],"foo":1,"bar":{}},{"extra":true,"endpoints":["b"]}]"#,
    )
    .unwrap();
    let w = parsed.warnings.join("\n");
    assert!(w.contains("hashring #0 \"main\": unknown key \"foo\" ignored"), "{w}");
    assert!(w.contains("hashring #0 \"main\": unknown key \"bar\" ignored"), "{w}");
    assert!(w.contains("hashring #0 \"main\": endpoint #0: unknown key \"port\" ignored"), "{w}");
    assert!(w.contains("hashring #1: unknown key \"extra\" ignored"), "{w}");
    assert_eq!(parsed.warnings.len(), 4);
}

#[test]
fn keys_match_case_insensitively_like_go() {
    let parsed = parse_config(r#"[{"Hashring":"x","ENDPOINTS":[{"Address":"a"}],"Tenants":["t"]}]"#).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert_eq!(parsed.rings[0].name, "x");
    assert_eq!(parsed.rings[0].tenants, ["t"]);
    assert_eq!(parsed.rings[0].endpoints[0].address, "a");
}

#[test]
fn shuffle_sharding() {
    let err = parse_config(
        r#"[{"hashring":"sharded","algorithm":"ketama","endpoints":["a","b"],"shuffle_sharding_config":{"shard_size":1}}]"#,
    )
    .unwrap_err();
    assert_eq!(err, HashringError::ShuffleShardingUnsupported { ring: "#0 \"sharded\"".into() });
    assert_eq!(err.to_string(), "shuffle_sharding_config is not supported by ringest yet (hashring #0 \"sharded\")");
    // shard_size 0 disables sharding in Thanos: accepted with a warning.
    let parsed = parse_config(
        r#"[{"hashring":"s","endpoints":["a"],"shuffle_sharding_config":{"shard_size":0,"cache_size":5}}]"#,
    )
    .unwrap();
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].contains("shuffle_sharding_config ignored"));
    let parsed = parse_config(r#"[{"endpoints":["a"],"shuffle_sharding_config":{}}]"#).unwrap();
    assert_eq!(parsed.warnings.len(), 1);
    assert!(matches!(
        parse_config(r#"[{"endpoints":["a"],"shuffle_sharding_config":{"shard_size":1.5}}]"#).unwrap_err(),
        HashringError::Parse(_)
    ));
}

#[test]
fn az_with_hashmod() {
    let json = r#"[{"hashring":"zoned","endpoints":[{"address":"a","az":"1"},{"address":"b","az":"2"}]}]"#;
    let parsed = parse_config(json).unwrap();
    let err = MultiHashring::new(&parsed.rings, Algorithm::Hashmod, 2).unwrap_err();
    assert_eq!(err.root(), &HashringError::HashmodAz);
    assert_eq!(
        err.to_string(),
        "hashring #0 \"zoned\": Hashmod algorithm does not support AZ aware hashring configuration. \
         Either use Ketama or remove AZ configuration."
    );
    // Fine with ketama as default ...
    assert!(MultiHashring::new(&parsed.rings, Algorithm::Ketama, 2).is_ok());
    // ... but the ring's own algorithm wins over the default.
    let json = r#"[{"algorithm":"hashmod","endpoints":[{"address":"a","az":"1"}]}]"#;
    let parsed = parse_config(json).unwrap();
    assert!(MultiHashring::new(&parsed.rings, Algorithm::Ketama, 1).is_err());
}

#[test]
fn unknown_algorithm_falls_back_to_hashmod() {
    let parsed = parse_config(r#"[{"hashring":"r","algorithm":"Ketama","endpoints":["a","b"]}]"#).unwrap();
    assert_eq!(parsed.rings[0].algorithm, Some(Algorithm::Hashmod));
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].contains("\"Ketama\""), "{:?}", parsed.warnings);
    // Hashmod even though the default is ketama.
    let m = MultiHashring::new(&parsed.rings, Algorithm::Ketama, 2).unwrap();
    assert_eq!(m.to_json()[0]["algorithm"], "hashmod");
}

#[test]
fn unknown_matcher_type_never_matches() {
    let parsed = parse_config(
        r#"[{"hashring":"r","tenants":["a"],"tenant_matcher_type":"regex","endpoints":["x"]},{"endpoints":["y"]}]"#,
    )
    .unwrap();
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    let m = MultiHashring::new(&parsed.rings, Algorithm::Hashmod, 1).unwrap();
    assert_eq!(route(&m, "a").unwrap(), "y");
    assert_eq!(m.to_json()[0]["tenant_matcher_type"], "regex");
}

#[test]
fn ketama_needs_replication_factor_endpoints() {
    let parsed = parse_config(r#"[{"hashring":"small","algorithm":"ketama","endpoints":["a","b"]}]"#).unwrap();
    let err = MultiHashring::new(&parsed.rings, Algorithm::Hashmod, 3).unwrap_err();
    assert_eq!(err.root(), &HashringError::KetamaTooFewEndpoints { endpoints: 2, replication_factor: 3 });
    assert!(
        err.to_string().starts_with(
            "hashring #0 \"small\": ketama: amount of endpoints needs to be larger than replication factor"
        ),
        "{err}"
    );
    assert!(MultiHashring::new(&parsed.rings, Algorithm::Hashmod, 2).is_ok());

    // Hashmod builds with too few nodes and fails per lookup, like Thanos.
    let m = multi(r#"[{"endpoints":["a","b"]}]"#, Algorithm::Hashmod, 3);
    assert!(m.get_n("t", 1, 1).is_ok());
    assert_eq!(m.get_n("t", 1, 2).unwrap_err().to_string(), "insufficient nodes; have 2, want 3");
}

#[test]
fn external_labels_for_literal_tenants_only() {
    let json = r#"[
        {"hashring":"glob","tenants":["team-*","team-lit"],"tenant_matcher_type":"glob","endpoints":["g"],"external_labels":{"ring":"glob"}},
        {"hashring":"a","tenants":["alpha","team-x"],"endpoints":["a"],"external_labels":{"ring":"a","zone":"eu"}},
        {"hashring":"a2","tenants":["alpha","beta"],"endpoints":["a2"],"external_labels":{"ring":"a2"}},
        {"hashring":"nolabels","tenants":["gamma"],"endpoints":["n"]},
        {"hashring":"gamma2","tenants":["gamma"],"endpoints":["n2"],"external_labels":{"ring":"gamma2"}},
        {"hashring":"default","endpoints":["d"],"external_labels":{"ring":"default"}}
    ]"#;
    let m = multi(json, Algorithm::Hashmod, 1);
    let labels = |t: &str| m.external_labels(t).into_iter().collect::<Vec<_>>();
    let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    // First ring listing the tenant literally wins.
    assert_eq!(labels("alpha"), [kv("ring", "a"), kv("zone", "eu")]);
    assert_eq!(labels("beta"), [kv("ring", "a2")]);
    // Literal entry of a glob ring counts.
    assert_eq!(labels("team-lit"), [kv("ring", "glob")]);
    // Routed to the glob ring, but labels come from the ring listing it.
    assert_eq!(route(&m, "team-x").unwrap(), "g");
    assert_eq!(labels("team-x"), [kv("ring", "a"), kv("zone", "eu")]);
    // Matched by pattern only, or by the catch-all: nothing.
    assert!(labels("team-y").is_empty());
    assert!(labels("other").is_empty());
    // The first listing ring has no labels: later rings are not consulted.
    assert!(labels("gamma").is_empty());
}

#[test]
fn rings_endpoints_and_json() {
    let json = r#"[
        {"hashring":"one","tenants":["a","b"],"endpoints":["n2:1","n1:1"],"external_labels":{"k":"v"}},
        {"hashring":"two","algorithm":"ketama","endpoints":["n1:1",{"address":"n3:1","capnproto_address":"c3:1","az":"z"}]}
    ]"#;
    let m = multi(json, Algorithm::Hashmod, 2);
    let rings: Vec<_> = m.rings().collect();
    assert_eq!(rings, [("one", 2, 2), ("two", 2, 0)]);
    let endpoints: Vec<_> = m.endpoints().iter().map(|e| e.address.as_str()).collect();
    assert_eq!(endpoints, ["n1:1", "n2:1", "n3:1"]);

    let v = m.to_json();
    assert_eq!(
        v,
        serde_json::json!([
            {"hashring":"one","tenants":["a","b"],"tenant_matcher_type":"exact",
             "endpoints":[{"address":"n2:1","capnproto_address":"n2:19391","az":""},
                          {"address":"n1:1","capnproto_address":"n1:19391","az":""}],
             "algorithm":"hashmod","external_labels":{"k":"v"}},
            {"hashring":"two","tenants":[],"tenant_matcher_type":"exact",
             "endpoints":[{"address":"n1:1","capnproto_address":"n1:19391","az":""},
                          {"address":"n3:1","capnproto_address":"c3:1","az":"z"}],
             "algorithm":"ketama","external_labels":{}}
        ])
    );
    assert_eq!(serde_json::to_value(&m).unwrap(), v);

    // The JSON parses back to the same rings (algorithm now explicit).
    let reparsed = parse_config(&v.to_string()).unwrap();
    let original = parse_config(json).unwrap();
    assert!(reparsed.warnings.is_empty());
    for (a, b) in reparsed.rings.iter().zip(&original.rings) {
        assert_eq!(a.endpoints, b.endpoints);
        assert_eq!(a.tenants, b.tenants);
        assert_eq!(a.external_labels, b.external_labels);
    }
    assert_eq!(reparsed.rings[0].algorithm, Some(Algorithm::Hashmod));
}

#[test]
fn other_warnings() {
    let parsed =
        parse_config(r#"[{"hashring":"w","endpoints":["a:1","a:1","[::1]:10901"]},{"hashring":"e"},null]"#).unwrap();
    let w = parsed.warnings.join("\n");
    assert!(w.contains("\"a:1\" is listed more than once"), "{w}");
    assert!(w.contains("IPv6"), "{w}");
    assert!(w.contains("hashring #1 \"e\": no endpoints"), "{w}");
    assert!(w.contains("hashring #2 is null"), "{w}");
    assert_eq!(parsed.rings.len(), 3);
    assert_eq!(parsed.rings[0].endpoints[2].capnproto_address, "[:19391");
}

#[test]
fn unnamed_ring_errors_use_index() {
    let err = parse_config(r#"[{"endpoints":["a"]},{"endpoints":[{}]}]"#).unwrap_err();
    assert_eq!(err.to_string(), "hashring #1: endpoint #0: endpoint address must be set");
}

#[test]
fn concurrent_lookups() {
    let m = std::sync::Arc::new(multi(
        r#"[{"tenants":["t-*"],"tenant_matcher_type":"glob","endpoints":["g1","g2"]},{"algorithm":"hashmod","endpoints":["d"]}]"#,
        Algorithm::Ketama,
        2,
    ));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                for k in 0..2000u64 {
                    let tenant = format!("t-{}", (k + i) % 50);
                    let e = m.get_n(&tenant, k, 1).unwrap();
                    assert!(e.address.starts_with('g'));
                    assert_eq!(m.get_n("x", k, 0).unwrap().address, "d");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
