//! The load generator's check through the StoreAPI (`ringest-loadgen check --store`) reads a
//! running receiver back without stopping it: against ringest and the real Thanos Receive
//! alike, every acknowledged sample of a tenant comes back exactly, with the external labels
//! (tenant, replica) stripped, and another tenant's matcher selects none of them.

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::ring::{Ring, now_ms, run_load};
use ringest_loadgen::check;
use ringest_loadgen::plan::Layout;
use ringest_loadgen::shape::Shape;
use ringest_loadgen::store::{self, DumpOptions, Store};

const SERIES: usize = 300;
const ROUNDS: usize = 8;
const TENANT: &str = "team-a";

#[test]
fn check_through_the_store_api_reads_ringest_and_thanos_receive_exactly() {
    for imp in [R, T] {
        let ring = Ring::start(&[imp], &[]);
        let mut shape = Shape::node(SERIES);
        shape.prefix = "sc".into();
        shape.start_ms = now_ms() - (ROUNDS as i64 + 2) * shape.interval_ms;
        let layout = Layout { shape, shards: 2, max_samples_per_send: 100, remote_write_v2: false };
        let node = &ring.nodes[0];
        let run = run_load(&layout, ROUNDS, &node.rw_addr, Some(TENANT), None);
        run.assert_all_2xx_first_time("the workload");

        let s = Store::connect(&node.grpc_addr).expect("connect to the StoreAPI");
        let (min, max) = store::workload_range(&layout, 0, ROUNDS);
        let tenant = |t: &str| DumpOptions { tenant: Some(t.into()), ..DumpOptions::default() };
        let dump = store::dump(&s, "sc", min, max, &tenant(TENANT)).expect("Series");
        let rep = check::check(&run.log, &dump);
        assert!(rep.ok() && rep.intact == rep.acked, "{imp:?}: {rep:?}\n{}", node.logs());
        assert_eq!(rep.acked, (SERIES * ROUNDS) as u64);
        assert!(dump.keys().all(|k| !k.contains("tenant_id") && !k.contains("receive_replica")), "{dump:?}");

        let other = store::dump(&s, "sc", min, max, &tenant("default-tenant")).expect("Series");
        assert!(other.is_empty(), "{imp:?}: another tenant's matcher selected {} series", other.len());
    }
}

/// Raw Series answers come in Prometheus' label order, each series once, exactly as Thanos
/// Receive sends them: two tenants' series merged (their tenant label between the series' own
/// labels), several metric names, series without one, and label names that sort before
/// `__name__` (upper case, `__a`), selected alone or with the others.
#[test]
fn series_come_in_label_order_as_thanos_receive_sends_them() {
    // Labels sorted by name, as remote write sends them.
    const NAMED: &[&[(&str, &str)]] = &[
        &[("__name__", "lo_b"), ("i", "2"), ("q", "named")],
        &[("__name__", "lo_b"), ("i", "10"), ("q", "named")],
        &[("__name__", "lo_a"), ("i", "1"), ("q", "named")],
        &[("__name__", "lo_a"), ("j", "1"), ("q", "named")],
        &[("__name__", "lo_a"), ("q", "named")],
        &[("__name__", "lo_c"), ("q", "named"), ("zz", "1")],
        &[("i", "1"), ("q", "named")],
        &[("q", "named"), ("z", "1")],
    ];
    const BEFORE: &[&[(&str, &str)]] = &[
        &[("A", "1"), ("__name__", "lo_b"), ("q", "before")],
        &[("B", "1"), ("q", "before")],
        &[("__a", "1"), ("__name__", "lo_a"), ("q", "before")],
        &[("__name__", "lo_a"), ("q", "before")],
        &[("q", "before"), ("z", "2")],
    ];
    let at = now_ms() - 60_000;
    let selections = ["named", "before", "named|before"];
    let mut answers = Vec::new();
    for imp in [R, T] {
        let ring = Ring::start(&[imp], &[]);
        let node = &ring.nodes[0];
        for (tenant, sets) in [("t1", NAMED), ("t2", NAMED), ("t1", BEFORE)] {
            let mut w = ringest_e2e::RemoteWriter::connect(&node.rw_addr).unwrap().with_tenant(tenant);
            let timeseries = sets.iter().map(|l| ringest_e2e::client::series(l, &[(at, 1.0)])).collect();
            let req = ringest_proto::prometheus::WriteRequest { timeseries, ..Default::default() };
            let resp = w.send(&req).unwrap();
            assert_eq!(resp.status, 200, "{imp:?} {tenant}: {resp:?}");
        }
        let s = Store::connect(&node.grpc_addr).expect("connect to the StoreAPI");
        let mut per_imp = Vec::new();
        for q in selections {
            let m = store::matcher("q", ringest_proto::thanos::label_matcher::Type::Re, q);
            for batch in [0, 3] {
                let mut req = store::series_request(vec![m.clone()], at - 1, at + 1);
                req.response_batch_size = batch;
                let mut got: Vec<Vec<(String, String)>> = Vec::new();
                s.series(req, |series| {
                    got.push(series.labels.into_iter().map(|l| (l.name, l.value)).collect());
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{imp:?} {q}: {e}"));
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{imp:?} {q}: not in label order, or twice: {got:#?}");
                per_imp.push(got);
            }
        }
        answers.push(per_imp);
    }
    for (i, q) in selections.iter().enumerate() {
        let want = if i == 0 {
            2 * NAMED.len()
        } else if i == 1 {
            BEFORE.len()
        } else {
            2 * NAMED.len() + BEFORE.len()
        };
        assert_eq!(answers[0][2 * i].len(), want, "{q}: {:#?}", answers[0][2 * i]);
    }
    assert_eq!(answers[0], answers[1], "ringest's answers, then Thanos Receive's");
}
