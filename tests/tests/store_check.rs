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
        let layout = Layout { shape, shards: 2, max_samples_per_send: 100 };
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
