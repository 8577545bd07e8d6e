//! The read path of whole rings through one real Thanos Query (the pinned release), with
//! deduplication on the replica label each node of a ring has its own value of. The answers
//! compared are raw samples (checked exactly against the load's acknowledgement record),
//! PromQL instant and range queries, series, label names and label values.
//!
//! - An RF=3 ring of three ringest, and the same steps on an all-Thanos ring: with
//!   `dedup=false` each replica holds exactly the acknowledged samples; with `dedup=true` each
//!   acknowledged sample comes back exactly once and nothing else does. After a kill -9 of the
//!   node the load went through, the two survivors give the same answers (but for that
//!   replica's label value); writes go on while it is down and are read back exactly; when it
//!   comes back (its WAL replayed) it holds exactly what it had. At each step both rings give
//!   the same answers, including the samples Thanos' default (penalty) deduplication drops
//!   where it switches from the replica that missed a stretch; chain deduplication gives every
//!   acknowledged sample once.
//! - A mixed RF=3 ring (two ringest, one Thanos Receive) and an all-Thanos ring fed the same
//!   workload: the same answers, deduplicated or not; every replica holds exactly the
//!   acknowledged samples.
//! - One ringest and one Thanos Receive over five hours of data: the same answers from both
//!   with everything in the head; while ringest cuts the first 2h into a block, reads of the
//!   first 2.5h stay exact; after the cut, after a clean restart (both flush the head into
//!   blocks) and after new head data and a kill -9 restart (WAL replay), the same answers as
//!   before and as Thanos, range selectors ending at and around the 2h and 4h boundaries return
//!   exactly their windows' samples (a series with samples exactly on the boundaries among
//!   them), and label names, values and series in windows before,
//!   inside and across blocks and head agree (where both hold the same series there: Thanos
//!   cuts on a timer and its shutdown flush writes one block up to the last 2h boundary, here
//!   4h long, so label requests inside ringest's first 2h block are compared with what that
//!   window held before later series existed). Then each node is replaced by the other
//!   implementation on the same data directory (Thanos after a kill -9 of ringest, ringest after
//!   a SIGTERM of Thanos) and the answers stay the same.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ringest_e2e::Impl::{Ringest as R, Thanos as T};
use ringest_e2e::process::Receiver;
use ringest_e2e::read::{self, EXTERNAL, REPLICA_LABEL, TENANT_LABEL};
use ringest_e2e::ring::{LoadRun, Ring, metric_sum, now_ms, run_rounds};
use ringest_e2e::thanos::Component;
use ringest_loadgen::check::{self, AckLog, Dump};
use ringest_loadgen::plan::Layout;
use ringest_loadgen::shape::Shape;
use serde_json::Value;

const SERIES: usize = 48;
const PREFIX: &str = "sr";
const TENANT: &str = "default-tenant";
const HOUR_MS: i64 = 3_600_000;
/// How long a querier may take to notice a store that went away or came back.
const STORE_CHANGE: Duration = Duration::from_secs(60);

fn layout(start_ms: i64, step_ms: i64) -> Layout {
    let mut shape = Shape::node(SERIES);
    shape.prefix = PREFIX.into();
    shape.interval_ms = step_ms;
    shape.start_ms = start_ms;
    Layout { shape, shards: 1, max_samples_per_send: SERIES, remote_write_v2: false }
}

fn rf3() -> Vec<String> {
    vec!["--receive.replication-factor=3".into()]
}

/// Rounds `rounds` of `layout` through node `via`, a round every `round_ms` at most (or as fast
/// as it goes), every request answered 2xx at once.
fn load_paced(
    ring: &Ring,
    via: usize,
    layout: &Layout,
    rounds: std::ops::Range<usize>,
    round_ms: Option<u64>,
) -> LoadRun {
    let rate = round_ms.map(|ms| SERIES as f64 * 1000.0 / ms as f64);
    let run = run_rounds(layout, rounds, &ring.nodes[via].rw_addr, None, rate);
    run.assert_all_2xx_first_time(&format!("the workload through node {via}"));
    run
}

/// [`load_paced`] as fast as it goes for one node; in a replicated ring, a round at a time, each
/// once every running node has appended the one before. The third copy of a write goes out
/// after the quorum answered (in Thanos as here), and a next write of the same series that
/// overtook it would be refused as out of order on that node (neither has an out-of-order
/// window by default): under a busy CPU no fixed pace rules that out.
fn load(ring: &Ring, via: usize, layout: &Layout, rounds: std::ops::Range<usize>) -> LoadRun {
    if ring.nodes.len() == 1 {
        return load_paced(ring, via, layout, rounds, None);
    }
    let appended = |n: &Receiver| metric_sum(&n.metrics(), "prometheus_tsdb_head_samples_appended_total", &[]);
    let mut all: Option<LoadRun> = None;
    for round in rounds {
        let up: Vec<&Receiver> = ring.nodes.iter().filter(|n| n.is_running()).collect();
        let before: Vec<f64> = up.iter().map(|n| appended(n)).collect();
        let run = load_paced(ring, via, layout, round..round + 1, None);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let behind: Vec<usize> =
                (0..up.len()).filter(|&i| appended(up[i]) < before[i] + layout.shape.series as f64).collect();
            if behind.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: nodes {behind:?} of the running ones did not append it in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        all = Some(match all {
            None => run,
            Some(before) => before.then(run),
        });
    }
    all.expect("at least one round")
}

/// [`load`] into every ring at once.
fn load_each(rings: &[Ring], via: usize, layout: &Layout, rounds: std::ops::Range<usize>) -> Vec<LoadRun> {
    std::thread::scope(|s| {
        let hs: Vec<_> = rings.iter().map(|r| s.spawn(|| load(r, via, layout, rounds.clone()))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn querier(dir: &Path, ring: &Ring) -> Component {
    let eps: Vec<&str> = ring.nodes.iter().map(|n| n.grpc_addr.as_str()).collect();
    read::querier(dir, &eps)
}

/// A time window of the workload, in ms, both ends included.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: i64,
    end_ms: i64,
}

impl Window {
    fn s(ms: i64) -> String {
        format!("{}", ms as f64 / 1000.0)
    }

    /// A range selector length that reaches back from `end_ms` to `start_ms` (and a little more).
    fn range(&self) -> String {
        format!("{}ms", self.end_ms - self.start_ms + 1000)
    }

    fn params(&self) -> [(&'static str, String); 2] {
        [("start", Self::s(self.start_ms)), ("end", Self::s(self.end_ms))]
    }
}

fn selector() -> String {
    format!("{{__name__=~\"{PREFIX}_.*\"}}")
}

/// What a querier answers about the workload in a window: every raw sample (keyed by the
/// series' labels without the tenant label, so replicas stay apart unless deduplicated), PromQL
/// instant queries at three times, a range query, series, label names and label values.
#[derive(Clone, Debug, PartialEq)]
struct Answers {
    raw: Dump,
    instant: Vec<(String, String, Value)>,
    range: Value,
    series: Value,
    labels: Value,
    values: BTreeMap<String, Value>,
}

impl Answers {
    fn try_take(q: &Component, w: Window, dedup: bool) -> Result<Answers, String> {
        let sel = selector();
        let raw = read::dump(&read::try_raw(q, &sel, &w.range(), w.end_ms as f64 / 1000.0, dedup)?, &[TENANT_LABEL])?;
        // (expression, whether it must select something): raw and aggregated, matchers of
        // every kind, on the external labels too (a store matches those before it drops the
        // replica label for deduplication).
        let exprs = [
            (sel.clone(), true),
            (format!("count_over_time({PREFIX}_cpu_seconds_total[30m])"), true),
            (format!("sum by (__name__) ({sel})"), true),
            (format!("sum by (cpu, mode) (rate({PREFIX}_cpu_seconds_total[5m]))"), true),
            (format!("{{__name__=~\"{PREFIX}_.*\", mode=~\"user|idle\"}}[10m]"), true),
            (format!("count({sel})"), true),
            (format!("count by ({REPLICA_LABEL}, {TENANT_LABEL}) ({sel})"), true),
            (format!("{{__name__=~\"{PREFIX}_.*\", {REPLICA_LABEL}=\"node1\", cpu!=\"0\"}}"), false),
            (format!("{{__name__=~\"{PREFIX}_.*\", {REPLICA_LABEL}!=\"node1\", cpu!~\"0|2\"}}[5m]"), true),
            (format!("{{__name__=~\"{PREFIX}_.*\", {TENANT_LABEL}=\"{TENANT}\", cpu=\"1\"}}"), true),
            (format!("{{__name__=~\"{PREFIX}_.*\", {TENANT_LABEL}=\"other\"}}"), false),
        ];
        let span = w.end_ms - w.start_ms;
        // A quarter in, the middle, the end, and 5 minutes past a block boundary if the window
        // holds one (a range selector there reads a block and the head, or two blocks).
        let mut times = vec![w.start_ms + span / 4, w.start_ms + span / 2 + 7_000, w.end_ms];
        let boundary = w.end_ms.div_euclid(2 * HOUR_MS) * 2 * HOUR_MS + 5 * 60_000;
        if boundary > w.start_ms + 10 * 60_000 && boundary < w.end_ms {
            times.push(boundary);
        }
        let mut instant = Vec::new();
        for t in times {
            for (e, nonempty) in &exprs {
                let p = [("query", e.clone()), ("time", Window::s(t))];
                let v = read::sorted(read::try_get(q, "/api/v1/query", dedup, &p)?);
                if *nonempty && v["result"].as_array().is_none_or(|a| a.is_empty()) {
                    return Err(format!("{e} at {t}: nothing: {v}"));
                }
                instant.push((e.clone(), Window::s(t), v));
            }
        }
        let [start, end] = w.params();
        let step = (span / 100_000).max(60);
        let p = [
            ("query", format!("sum by (cpu, mode) (rate({PREFIX}_cpu_seconds_total[5m]))")),
            start.clone(),
            end.clone(),
            ("step", format!("{step}")),
        ];
        let range = read::sorted(read::try_get(q, "/api/v1/query_range", dedup, &p)?);
        let matched = [start.clone(), end.clone(), ("match[]", sel.clone())];
        let series = read::sorted(read::try_get(q, "/api/v1/series", dedup, &matched)?);
        let labels = read::sorted(read::try_get(q, "/api/v1/labels", dedup, &[start.clone(), end.clone()])?);
        let mut values = BTreeMap::new();
        for l in ["__name__", "mode", "cpu", REPLICA_LABEL, TENANT_LABEL] {
            let path = format!("/api/v1/label/{l}/values");
            values.insert(l.to_string(), read::sorted(read::try_get(q, &path, dedup, &[start.clone(), end.clone()])?));
        }
        let path = "/api/v1/label/mode/values";
        let mode_matched = [start, end, ("match[]", format!("{PREFIX}_cpu_seconds_total{{mode=~\"i.*|s.*\"}}"))];
        values.insert("mode (matched)".into(), read::sorted(read::try_get(q, path, dedup, &mode_matched)?));
        let empty = |v: &Value| v.get("result").unwrap_or(v).as_array().is_none_or(|a| a.is_empty());
        for (what, v) in [("range", &range), ("series", &series), ("labels", &labels), ("names", &values["__name__"])] {
            if empty(v) {
                return Err(format!("{what}: nothing: {v}"));
            }
        }
        Ok(Answers { raw, instant, range, series, labels, values })
    }

    fn take(q: &Component, w: Window, dedup: bool) -> Answers {
        Self::try_take(q, w, dedup).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The first difference between two dumps, if any.
fn dump_diff(a: &Dump, b: &Dump) -> Option<String> {
    for (k, sa) in a {
        let Some(sb) = b.get(k) else { return Some(format!("{k} only in the first ({} samples)", sa.len())) };
        if sa != sb {
            let t = sa.iter().zip(sb.iter()).find(|(x, y)| x != y).map(|(x, y)| format!("{x:?} vs {y:?}"));
            return Some(format!("{k}: {} vs {} samples, first difference {t:?}", sa.len(), sb.len()));
        }
    }
    b.keys().find(|k| !a.contains_key(*k)).map(|k| format!("{k} only in the second"))
}

/// Asserts two sets of answers about samples are the same (raw samples, PromQL, the series of
/// the workload), naming the first part that differs. Label names and values are left out: they
/// come from every series of a block or head that overlaps the window, so new series elsewhere
/// in the head change them.
fn assert_same_data(what: &str, a: &Answers, b: &Answers) {
    if let Some(d) = dump_diff(&a.raw, &b.raw) {
        panic!("{what}: raw samples differ: {d}");
    }
    assert_eq!(a.instant.len(), b.instant.len());
    for (x, y) in a.instant.iter().zip(&b.instant) {
        assert_eq!(x, y, "{what}: instant query {} at {}", x.0, x.1);
    }
    assert_eq!(a.range, b.range, "{what}: range query");
    assert_eq!(a.series, b.series, "{what}: series");
}

/// Asserts two sets of answers are the same, naming the first part that differs.
fn assert_same(what: &str, a: &Answers, b: &Answers) {
    assert_same_data(what, a, b);
    assert_eq!(a.labels, b.labels, "{what}: label names");
    assert_eq!(a.values, b.values, "{what}: label values");
    assert!(a == b);
}

/// Asserts `dump` holds exactly the acknowledged samples of `log`, each once (series keyed
/// without external labels), and nothing else.
fn assert_exact(what: &str, log: &AckLog, dump: &Dump) {
    let rep = check::check(log, dump);
    assert!(
        rep.ok() && rep.intact == rep.acked && rep.unacked_present == 0,
        "{what}: {rep:?} ({} series read)",
        dump.len()
    );
    let read: usize = dump.values().map(|s| s.len()).sum();
    assert_eq!(read as u64, rep.acked, "{what}: samples read vs acknowledged");
}

/// Waits until the querier answers for every series of the workload in `w` (it found the
/// stores, or found one again after a restart).
fn wait_for_store(q: &Component, w: Window, dedup: bool) {
    read::retry(q, "the querier sees the workload", STORE_CHANGE, || {
        let raw = read::try_raw(q, &selector(), &w.range(), w.end_ms as f64 / 1000.0, dedup)?;
        let distinct: std::collections::BTreeSet<Vec<(&String, &String)>> = raw
            .iter()
            .map(|(labels, _)| labels.iter().filter(|(k, _)| !EXTERNAL.contains(&k.as_str())).collect())
            .collect();
        if distinct.len() == SERIES { Ok(()) } else { Err(format!("{} series", distinct.len())) }
    });
}

/// Waits until each replica holds exactly the acknowledged samples of its log (read without
/// deduplication, grouped by the replica label) and no other replica answers. Every node of an
/// RF=3 ring gets every write ([`load`] sends a round once every running node holds the last).
fn wait_every_replica_exact(what: &str, q: &Component, w: Window, replicas: &[(&str, &AckLog)]) {
    read::retry(q, &format!("{what}: every replica holds every acknowledged sample"), Duration::from_secs(30), || {
        let raw = read::try_raw(q, &selector(), &w.range(), w.end_ms as f64 / 1000.0, false)?;
        let groups = read::by_label(raw, REPLICA_LABEL);
        let names: Vec<&str> = groups.keys().map(String::as_str).collect();
        let expected: Vec<&str> = replicas.iter().map(|r| r.0).collect();
        if names != expected {
            return Err(format!("replicas {names:?}"));
        }
        for (replica, log) in replicas {
            let rep = check::check(log, &read::dump(&groups[*replica], EXTERNAL)?);
            if !(rep.ok() && rep.intact == rep.acked && rep.unacked_present == 0) {
                return Err(format!("replica {replica}: {rep:?}"));
            }
        }
        Ok(())
    });
}

/// The window of rounds `0..rounds` (a round's timestamps are up to a second after its start,
/// the next round's are not in it).
fn workload_window(start_ms: i64, step_ms: i64, rounds: usize) -> Window {
    Window { start_ms, end_ms: start_ms + rounds as i64 * step_ms - 1 }
}

const STEP_MS: i64 = 15_000;
const ROUNDS: usize = 60;

fn recent_start() -> i64 {
    (now_ms() - ROUNDS as i64 * STEP_MS - 60_000) / STEP_MS * STEP_MS
}

/// Each of `rings` through its own querier: runs `f` on (ring index, ring, querier).
fn on_each<T>(rings: &mut [Ring], qs: &[Component], mut f: impl FnMut(usize, &mut Ring, &Component) -> T) -> Vec<T> {
    rings.iter_mut().zip(qs).enumerate().map(|(i, (r, q))| f(i, r, q)).collect()
}

#[test]
fn rf3_ringest_ring_reads_each_sample_once_and_survives_a_kill() {
    // Rounds 0..ROUNDS with every node up, ROUNDS..ROUNDS + DOWN while node 0 is down. The same
    // steps on an all-Thanos ring give the same answers at each step.
    const DOWN: usize = 20;
    let start_ms = recent_start() - DOWN as i64 * STEP_MS;
    let l = layout(start_ms, STEP_MS);
    let mut rings = [Ring::start(&[R, R, R], &rf3()), Ring::start(&[T, T, T], &rf3())];
    let tmp = tempfile::tempdir().unwrap();
    let qs: Vec<Component> =
        rings.iter().enumerate().map(|(i, r)| querier(&tmp.path().join(format!("q{i}")), r)).collect();
    let w = workload_window(start_ms, STEP_MS, ROUNDS);
    let runs = load_each(&rings, 0, &l, 0..ROUNDS);
    on_each(&mut rings, &qs, |i, _, q| {
        let run = &runs[i];
        wait_for_store(q, w, true);
        wait_every_replica_exact(
            &format!("ring {i}"),
            q,
            w,
            &[("node0", &run.log), ("node1", &run.log), ("node2", &run.log)],
        );
    });

    // Deduplicated: each acknowledged sample once, without the replica label.
    let before = on_each(&mut rings, &qs, |i, _, q| {
        let a = Answers::take(q, w, true);
        assert_exact(&format!("ring {i}: deduplicated raw samples"), &runs[i].log, &a.raw);
        assert_eq!(a.series.as_array().map(Vec::len), Some(SERIES), "ring {i}: series: {}", a.series);
        assert_eq!(a.values[REPLICA_LABEL], serde_json::json!(["node0", "node1", "node2"]));
        a
    });
    assert_same("ringest ring vs Thanos ring", &before[0], &before[1]);

    // kill -9 of the node the load went through: its peers hold every acknowledged sample.
    for ring in &mut rings {
        ring.nodes[0].kill9();
    }
    on_each(&mut rings, &qs, |i, _, q| {
        let after = read::retry(q, "answers without node 0", STORE_CHANGE, || Answers::try_take(q, w, true));
        assert_eq!(after.values[REPLICA_LABEL], serde_json::json!(["node1", "node2"]), "ring {i}: replicas left");
        let mut expected = before[i].clone();
        expected.values.insert(REPLICA_LABEL.into(), after.values[REPLICA_LABEL].clone());
        assert_same(&format!("ring {i}: after node 0 was killed vs before"), &after, &expected);
    });

    // Writes go on through node 1 (two of three make the quorum); then node 0 comes back with
    // what its WAL holds, and lacks only what was written while it was down.
    let w2 = workload_window(start_ms, STEP_MS, ROUNDS + DOWN);
    let firsts: Vec<AckLog> = runs.iter().map(|r| r.log.clone()).collect();
    let more = load_each(&rings, 1, &l, ROUNDS..ROUNDS + DOWN);
    let boths: Vec<LoadRun> = runs.into_iter().zip(more).map(|(run, more)| run.then(more)).collect();
    let down = on_each(&mut rings, &qs, |i, _, q| {
        wait_every_replica_exact(
            &format!("ring {i}, node 0 down"),
            q,
            w2,
            &[("node1", &boths[i].log), ("node2", &boths[i].log)],
        );
        let a = Answers::take(q, w2, true);
        assert_exact(&format!("ring {i}: deduplicated, written while node 0 was down"), &boths[i].log, &a.raw);
        a
    });
    assert_same("while node 0 is down: ringest ring vs Thanos ring", &down[0], &down[1]);
    for ring in &mut rings {
        ring.nodes[0].restart();
    }
    let back = on_each(&mut rings, &qs, |i, _, q| {
        let replicas = [("node0", &firsts[i]), ("node1", &boths[i].log), ("node2", &boths[i].log)];
        wait_every_replica_exact(&format!("ring {i}, node 0 back"), q, w2, &replicas);
        let a = Answers::take(q, w2, true);
        assert_eq!(a.values[REPLICA_LABEL], serde_json::json!(["node0", "node1", "node2"]), "ring {i}: replicas");
        a
    });
    // With a replica that lacks the samples of a stretch, the default (penalty) deduplication
    // can drop samples where it switches replicas (two per series here, for Thanos Receive as
    // for ringest): the two rings must agree on that, and chain deduplication (a plain merge)
    // gives every acknowledged sample once.
    assert_same("node 0 back: ringest ring vs Thanos ring", &back[0], &back[1]);
    let eps: Vec<&str> = rings[0].nodes.iter().map(|n| n.grpc_addr.as_str()).collect();
    let chain = read::querier_with(&tmp.path().join("chain"), &eps, &["--deduplication.func=chain"]);
    wait_for_store(&chain, w2, true);
    let merged = read::dump(
        &read::try_raw(&chain, &selector(), &w2.range(), w2.end_ms as f64 / 1000.0, true).unwrap(),
        &[TENANT_LABEL],
    )
    .unwrap();
    assert_exact("ringest ring, node 0 back, chain deduplication", &boths[0].log, &merged);
}

#[test]
fn mixed_ring_reads_as_an_all_thanos_ring() {
    let start_ms = recent_start();
    let l = layout(start_ms, STEP_MS);
    let rings = [Ring::start(&[R, R, T], &rf3()), Ring::start(&[T, T, T], &rf3())];
    let tmp = tempfile::tempdir().unwrap();
    let w = workload_window(start_ms, STEP_MS, ROUNDS);
    let mut logs = Vec::new();
    let mut queriers = Vec::new();
    // Half the rounds through a ringest node, half through the Thanos one (in the mixed ring).
    let halves = load_each(&rings, 0, &l, 0..ROUNDS / 2).into_iter().zip(load_each(&rings, 2, &l, ROUNDS / 2..ROUNDS));
    for (i, (ring, (first, second))) in rings.iter().zip(halves).enumerate() {
        let run = first.then(second);
        let q = querier(&tmp.path().join(format!("q{i}")), ring);
        wait_for_store(&q, w, true);
        wait_every_replica_exact(
            &format!("ring {i}"),
            &q,
            w,
            &[("node0", &run.log), ("node1", &run.log), ("node2", &run.log)],
        );
        logs.push(run.log);
        queriers.push(q);
    }
    let [ours, theirs] = [&queriers[0], &queriers[1]];
    let (a, b) = (Answers::take(ours, w, true), Answers::take(theirs, w, true));
    assert_exact("mixed ring, deduplicated", &logs[0], &a.raw);
    assert_exact("all-Thanos ring, deduplicated", &logs[1], &b.raw);
    assert_same("deduplicated: mixed ring vs all-Thanos ring", &a, &b);
    let (a, b) = (Answers::take(ours, w, false), Answers::take(theirs, w, false));
    assert_eq!(a.raw.len(), 3 * SERIES, "one series per replica");
    assert_same("not deduplicated: mixed ring vs all-Thanos ring", &a, &b);
}

/// Block directories (with a `meta.json`) of a node's tenant.
fn blocks(ring: &Ring) -> usize {
    std::fs::read_dir(ring.nodes[0].tenant_dir(TENANT))
        .map(|rd| rd.flatten().filter(|e| e.path().join("meta.json").is_file()).count())
        .unwrap_or(0)
}

/// Windows for the label and series requests, in minutes from the start of the data: before it,
/// across the first block's end, in the head (where the late workload is), across the end of
/// the data; and inside the first block.
const META_WINDOWS: [(i64, i64); 4] = [(-180, -60), (119, 121), (200, 220), (290, 310)];
const IN_FIRST_BLOCK: (i64, i64) = (0, 60);

/// Label names, metric names, values of a label only the late workload has, and every series,
/// in each of `windows`: (what, answer).
fn try_meta(q: &Component, start_ms: i64, windows: &[(i64, i64)]) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for &(a, b) in windows {
        let w = [("start", Window::s(start_ms + a * 60_000)), ("end", Window::s(start_ms + b * 60_000))];
        for path in ["/api/v1/labels", "/api/v1/label/__name__/values", "/api/v1/label/cycle_id/values"] {
            out.push((format!("{path} in minutes {a}..{b}"), read::sorted(read::try_get(q, path, true, &w)?)));
        }
        let m = [w[0].clone(), w[1].clone(), ("match[]", "{__name__=~\".+\"}".to_string())];
        out.push((format!("series in minutes {a}..{b}"), read::sorted(read::try_get(q, "/api/v1/series", true, &m)?)));
    }
    Ok(out)
}

fn assert_same_meta(what: &str, a: &[(String, Value)], b: &[(String, Value)]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "{what}: {}", x.0);
    }
}

/// Rounds 200..300 of `main` and 0..100 of `late` (which starts at round 200 of `main`), ten
/// rounds at a time in time order.
fn load_with_late(ring: &Ring, main: &Layout, late: &Layout) -> (LoadRun, LoadRun) {
    let (mut m, mut lt) = (load_main(ring, main, 200..210, None), load(ring, 0, late, 0..10));
    for k in (210..300).step_by(10) {
        m = m.then(load_main(ring, main, k..k + 10, None));
        lt = lt.then(load(ring, 0, late, k - 200..k - 190));
    }
    (m, lt)
}

/// A series outside the workloads with a sample exactly on every minute of the data, so on
/// the 2h and 4h block boundaries too; its value is the round.
const EDGE: &str = "edge_exact";

fn edge_samples(start_ms: i64, rounds: std::ops::Range<usize>) -> BTreeMap<i64, String> {
    rounds.map(|r| (start_ms + r as i64 * 60_000, format!("{r}"))).collect()
}

/// Rounds `rounds` of `main` ten at a time, each ten followed by the edge series' samples of
/// the same minutes (a head takes samples up to an hour older than its newest only).
fn load_main(ring: &Ring, main: &Layout, rounds: std::ops::Range<usize>, round_ms: Option<u64>) -> LoadRun {
    let mut run: Option<LoadRun> = None;
    let mut w = ringest_e2e::RemoteWriter::connect(&ring.nodes[0].rw_addr).unwrap();
    for k in rounds.clone().step_by(10) {
        let chunk = k..(k + 10).min(rounds.end);
        let more = load_paced(ring, 0, main, chunk.clone(), round_ms);
        let samples: Vec<(i64, f64)> =
            edge_samples(main.shape.start_ms, chunk).iter().map(|(t, v)| (*t, v.parse().unwrap())).collect();
        let req = ringest_proto::prometheus::WriteRequest {
            timeseries: vec![ringest_e2e::client::series(&[("__name__", EDGE), ("job", "edge")], &samples)],
            ..Default::default()
        };
        let resp = w.send(&req).unwrap();
        assert_eq!(resp.status, 200, "the edge series: {}", resp.text());
        run = Some(match run {
            None => more,
            Some(r) => r.then(more),
        });
    }
    run.expect("at least one round")
}

/// Asserts the edge series reads back exactly (its first `rounds` samples), and that range
/// selectors ending on the 2h and 4h boundaries, or a millisecond either side, hold exactly the
/// samples of their left-open windows (a block's end is exclusive: the boundary's sample is in
/// the next block or the head).
fn assert_edge_exact(what: &str, q: &Component, start_ms: i64, rounds: usize) {
    let all = edge_samples(start_ms, 0..rounds);
    let read = |len_ms: i64, end: i64| -> BTreeMap<i64, String> {
        let raw = read::try_raw(q, EDGE, &format!("{len_ms}ms"), end as f64 / 1000.0, true)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(raw.len() <= 1, "{what}: {} edge series", raw.len());
        raw.into_iter().flat_map(|(_, s)| s).collect()
    };
    assert_eq!(read(7 * HOUR_MS, start_ms + rounds as i64 * 60_000 - 1), all, "{what}: the edge series");
    for boundary in [2 * HOUR_MS, 4 * HOUR_MS] {
        for d in [-1, 0, 1] {
            let end = start_ms + boundary + d;
            let expected: BTreeMap<i64, String> =
                all.range(end - 61_000 + 1..=end).map(|(t, v)| (*t, v.clone())).collect();
            assert_eq!(read(61_000, end), expected, "{what}: edge_exact[61s] at {} ms from the start", boundary + d);
        }
    }
}

/// Asserts the querier returns exactly the late workload's acknowledged samples.
fn assert_late_exact(what: &str, q: &Component, log: &AckLog, at_ms: i64) {
    let raw = read::try_raw(q, "{__name__=~\"late_.*\"}", "7h", at_ms as f64 / 1000.0, true).unwrap();
    assert_exact(what, log, &read::dump(&raw, EXTERNAL).unwrap());
}

/// Asserts that range selectors ending at and around the 2h and 4h block boundaries (the
/// boundary, a millisecond either side, within the samples' one-second jitter) return exactly
/// the samples of `full` in their left-open windows, whatever holds them (block or head).
fn assert_edges(what: &str, q: &Component, start_ms: i64, full: &Dump) {
    for boundary in [start_ms + 2 * HOUR_MS, start_ms + 4 * HOUR_MS] {
        for d in [-1, 0, 1, 333, 999, 1000] {
            for len_ms in [61_000, HOUR_MS] {
                let end = boundary + d;
                let raw = read::try_raw(q, &selector(), &format!("{len_ms}ms"), end as f64 / 1000.0, true)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let got = read::dump(&raw, &[TENANT_LABEL]).unwrap();
                let expected: Dump = full
                    .iter()
                    .map(|(k, s)| (k.clone(), s.range(end - len_ms + 1..=end).map(|(t, v)| (*t, v.clone())).collect()))
                    .filter(|(_, s): &(String, std::collections::BTreeMap<i64, String>)| !s.is_empty())
                    .collect();
                if let Some(diff) = dump_diff(&got, &expected) {
                    panic!("{what}: [{len_ms}ms] at {} ms from the start: {diff}", end - start_ms);
                }
            }
        }
    }
}

#[test]
fn reads_are_the_same_across_a_block_cut_and_restarts() {
    const STEP: i64 = 60_000;
    // Five and a half hours of one-minute rounds from a 2h boundary, all in the past. The
    // head is cut into a block once it spans more than 3h (after round 180). A second, late
    // workload with label names of its own starts at round 200.
    let start_ms = (now_ms() - 8 * HOUR_MS).div_euclid(2 * HOUR_MS) * 2 * HOUR_MS;
    let l = layout(start_ms, STEP);
    let mut late = l.clone();
    late.shape = Shape { prefix: "late".into(), labels: 3, ..Shape::avalanche(10) };
    late.shape.interval_ms = STEP;
    late.shape.start_ms = start_ms + 200 * STEP;
    let mut rings = [Ring::start(&[R], &[]), Ring::start(&[T], &[])];
    let tmp = tempfile::tempdir().unwrap();
    let queriers: Vec<Component> =
        rings.iter().enumerate().map(|(i, r)| querier(&tmp.path().join(format!("q{i}")), r)).collect();
    let each = |f: &mut dyn FnMut(usize)| (0..2).for_each(f);
    let all_windows: Vec<(i64, i64)> = META_WINDOWS.iter().copied().chain([IN_FIRST_BLOCK]).collect();
    let meta_in = |i: usize, windows: &[(i64, i64)]| {
        read::retry(&queriers[i], "labels and series", STORE_CHANGE, || try_meta(&queriers[i], start_ms, windows))
    };
    let meta = |i: usize| meta_in(i, &all_windows);

    // 2.5h: all in the head.
    let (w_head, w_cut, w_all) = (
        workload_window(start_ms, STEP, 150),
        workload_window(start_ms, STEP, 300),
        workload_window(start_ms, STEP, 330),
    );
    let mut runs: Vec<LoadRun> = rings.iter().map(|r| load_main(r, &l, 0..150, None)).collect();
    let mut head: Vec<Answers> = Vec::new();
    assert_eq!(blocks(&rings[0]), 0, "ringest: no block yet");
    each(&mut |i| {
        wait_for_store(&queriers[i], w_head, true);
        head.push(Answers::take(&queriers[i], w_head, true));
        assert_exact(&format!("{:?}, head only", rings[i].nodes[0].imp), &runs[i].log, &head[i].raw);
        assert_edge_exact(&format!("{:?}, head only", rings[i].nodes[0].imp), &queriers[i], start_ms, 150);
    });
    assert_same("head only: ringest vs Thanos", &head[0], &head[1]);
    assert_same_meta("head only: ringest vs Thanos", &meta(0), &meta(1));
    // What a window inside the first block holds: every series with samples there, none of
    // the late workload (which does not exist yet).
    let first_block = meta_in(1, &[IN_FIRST_BLOCK]);

    // 5h: ringest cuts the first 2h into a block at once (the head spans more than 3h), while
    // the first 2.5h are read again and again. Thanos cuts on a timer (every 2h, first within
    // 12 minutes of start-up) and on shutdown: its answers here come from whatever it has.
    let mut lates = Vec::new();
    let mut reads = 0;
    runs = runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| {
            let done = std::sync::atomic::AtomicBool::new(false);
            let more = std::thread::scope(|s| {
                let loader = s.spawn(|| {
                    let more = load_main(&rings[i], &l, 150..200, Some(20));
                    done.store(true, std::sync::atomic::Ordering::Release);
                    more
                });
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let raw =
                        read::try_raw(&queriers[i], &selector(), &w_head.range(), w_head.end_ms as f64 / 1000.0, true);
                    let d = read::dump(&raw.unwrap(), &[TENANT_LABEL]).unwrap();
                    if let Some(diff) = dump_diff(&d, &head[i].raw) {
                        panic!("{:?}: the first 2.5h read while the head is cut: {diff}", rings[i].nodes[0].imp);
                    }
                    reads += 1;
                }
                loader.join().unwrap()
            });
            let (m, lt) = load_with_late(&rings[i], &l, &late);
            lates.push(lt);
            run.then(more).then(m)
        })
        .collect();
    assert!(reads >= 4, "{reads} reads while the head was cut");
    ringest_e2e::wait_for("ringest cuts a block", Duration::from_secs(60), || blocks(&rings[0]) >= 1);
    let (mut cut, mut head_cut): (Vec<Answers>, Vec<Answers>) = (Vec::new(), Vec::new());
    each(&mut |i| {
        let imp = rings[i].nodes[0].imp;
        head_cut.push(Answers::take(&queriers[i], w_head, true));
        assert_same_data(&format!("{imp:?}: the first 2.5h after the cut vs before"), &head_cut[i], &head[i]);
        cut.push(Answers::take(&queriers[i], w_cut, true));
        assert_edges(&format!("{imp:?}, a block and the head"), &queriers[i], start_ms, &cut[i].raw);
        assert_edge_exact(&format!("{imp:?}, a block and the head"), &queriers[i], start_ms, 300);
        assert_exact(&format!("{imp:?}, a block and the head"), &runs[i].log, &cut[i].raw);
        assert_late_exact(&format!("{imp:?}, the late workload"), &queriers[i], &lates[i].log, w_cut.end_ms);
    });
    assert_same("a block and the head: ringest vs Thanos", &cut[0], &cut[1]);
    assert_same("the first 2.5h: ringest vs Thanos", &head_cut[0], &head_cut[1]);
    // Label names and series come from every block or head overlapping a window, and the two
    // lay out blocks differently: Thanos answers from its head here, and its shutdown flush
    // below writes one block for [head start, last 2h boundary), 4h here; ringest cuts aligned
    // 2h blocks. So a window inside ringest's first block is compared with what that window
    // held before any later series existed; the other windows overlap the same series in both.
    assert_same_meta("a block and the head: ringest vs Thanos", &meta_in(0, &META_WINDOWS), &meta_in(1, &META_WINDOWS));
    assert_same_meta("ringest: inside its first block", &meta_in(0, &[IN_FIRST_BLOCK]), &first_block);
    let meta_cut = meta(0);

    // A clean restart (the head is flushed into blocks or replayed, as the implementation does).
    each(&mut |i| {
        let imp = rings[i].nodes[0].imp;
        let node = &mut rings[i].nodes[0];
        let st = node.terminate();
        assert!(st.success(), "{imp:?} exited with {st}:\n{}", node.logs());
        node.restart();
        assert!(blocks(&rings[i]) >= 1, "{imp:?}: the head was flushed into blocks at shutdown");
        wait_for_store(&queriers[i], w_cut, true);
        let again = read::retry(&queriers[i], "answers after a restart", STORE_CHANGE, || {
            Answers::try_take(&queriers[i], w_cut, true)
        });
        assert_same(&format!("{imp:?}: after a clean restart vs before"), &again, &cut[i]);
        assert_edges(&format!("{imp:?}, after a clean restart"), &queriers[i], start_ms, &cut[i].raw);
        assert_edge_exact(&format!("{imp:?}, after a clean restart"), &queriers[i], start_ms, 300);
        assert_same(
            &format!("{imp:?}: the first 2.5h after a clean restart"),
            &Answers::take(&queriers[i], w_head, true),
            &head_cut[i],
        );
        assert_late_exact(
            &format!("{imp:?}, the late workload after a restart"),
            &queriers[i],
            &lates[i].log,
            w_cut.end_ms,
        );
    });
    assert_same_meta("ringest: after a clean restart vs before", &meta(0), &meta_cut);
    assert_same_meta(
        "after a clean restart: ringest vs Thanos",
        &meta_in(0, &META_WINDOWS),
        &meta_in(1, &META_WINDOWS),
    );

    // New data in the head (and WAL), then kill -9 and a restart that replays it.
    runs = runs.into_iter().zip(&rings).map(|(run, r)| run.then(load_main(r, &l, 300..330, None))).collect();
    let mut all: Vec<Answers> = Vec::new();
    each(&mut |i| {
        wait_for_store(&queriers[i], w_all, true);
        all.push(Answers::take(&queriers[i], w_all, true));
        assert_exact(&format!("{:?}, after new head data", rings[i].nodes[0].imp), &runs[i].log, &all[i].raw);
    });
    assert_same("after a restart and new head data: ringest vs Thanos", &all[0], &all[1]);
    let meta_all = [meta(0), meta(1)];
    assert_same_meta(
        "after a restart and new head data: ringest vs Thanos",
        &meta_in(0, &META_WINDOWS),
        &meta_in(1, &META_WINDOWS),
    );
    each(&mut |i| {
        let imp = rings[i].nodes[0].imp;
        let node = &mut rings[i].nodes[0];
        node.kill9();
        node.restart();
        wait_for_store(&queriers[i], w_all, true);
        let again = read::retry(&queriers[i], "answers after kill -9", STORE_CHANGE, || {
            Answers::try_take(&queriers[i], w_all, true)
        });
        assert_same(&format!("{imp:?}: after kill -9 and a restart vs before"), &again, &all[i]);
        assert_edges(&format!("{imp:?}, after kill -9 and a restart"), &queriers[i], start_ms, &all[i].raw);
        assert_edge_exact(&format!("{imp:?}, after kill -9 and a restart"), &queriers[i], start_ms, 330);
        assert_same_meta(&format!("{imp:?}: after kill -9 and a restart vs before"), &meta(i), &meta_all[i]);
    });

    // Each node replaced by the other implementation on the same data directory and gRPC
    // endpoint, as a rolling migration does: Thanos replays ringest's WAL after a kill -9, and
    // ringest opens the blocks Thanos flushed at SIGTERM (one of them 4h long). Same answers.
    for (ring, (imp, crash)) in rings.iter_mut().zip([(T, true), (R, false)]) {
        ring.replace(0, imp, crash);
    }
    each(&mut |i| {
        let what = format!("ring {i}, now {:?} on the other's data", rings[i].nodes[0].imp);
        wait_for_store(&queriers[i], w_all, true);
        let again = read::retry(&queriers[i], &what, STORE_CHANGE, || Answers::try_take(&queriers[i], w_all, true));
        assert_same(&format!("{what} vs before"), &again, &all[i]);
        assert_edges(&what, &queriers[i], start_ms, &all[i].raw);
        assert_edge_exact(&what, &queriers[i], start_ms, 330);
        assert_same_meta(&format!("{what} vs before"), &meta(i), &meta_all[i]);
    });
}
