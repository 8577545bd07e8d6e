//! Pod-by-pod migration, both ways, under continuous load: a 3-node ring of the real Thanos
//! Receive (RF=3, uploading to a loopback S3 bucket) has its nodes replaced one at a time by
//! ringest on the same `--tsdb.path` and gRPC endpoint, then the same back from ringest to
//! Thanos, as a rolling update of the StatefulSet would.
//!
//! The first node of each direction is killed with -9 (the new process finds the other's WAL,
//! head chunks and checkpoint), the others get SIGTERM (the old process flushes its head into
//! blocks and uploads them; the new one finds its blocks and `thanos.shipper.json`). A history
//! of 130 samples for each of 2000 series is written first so every head holds full chunks.
//!
//! Checked: every write answers 2xx at once throughout (the quorum holds while one node is
//! replaced); promtool, reading each node's directory after a clean stop, finds every
//! acknowledged sample on at least two nodes and every sample acknowledged while all three
//! were up (but the round just before a node goes, whose third copy may still be in flight)
//! on all three; no block is uploaded twice; `thanos tools bucket verify` finds no
//! issue (no overlapping blocks) in the bucket. The same harness restarts a ringest ring node by
//! node with SIGTERM (a rolling restart).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use ringest_e2e::Impl::{self, Ringest as R, Thanos as T};
use ringest_e2e::ring::{Load, Ring, layout_from_block_start, run_load};
use ringest_e2e::s3::{Moto, MotoOpts};
use ringest_e2e::thanos::{self, s3_objstore};
use ringest_loadgen::check::{self, AckLog};

const BUCKET: &str = "thanos";
const HISTORY_SERIES: usize = 2_000;

/// Node `i` replaced by `imp` (`crash`: kill -9 instead of SIGTERM).
const STEPS: [(usize, Impl, bool); 6] =
    [(0, R, true), (1, R, false), (2, R, false), (0, T, true), (1, T, false), (2, T, false)];

#[test]
fn a_thanos_ring_is_replaced_by_ringest_pod_by_pod_and_back_under_load() {
    roll([T, T, T], &STEPS, 6);
}

/// Checklist B.21, a rolling restart of a ringest ring: each node in turn gets SIGTERM (it
/// flushes its head into a block and uploads it before exiting) and is started again, under
/// the same load and with the same checks (every write 2xx at once, nothing acknowledged lost,
/// each block uploaded once, no overlap), and at least one block uploaded per restart.
#[test]
fn a_ringest_ring_restarts_node_by_node_with_sigterm_under_load() {
    roll([R, R, R], &[(0, R, false), (1, R, false), (2, R, false)], 3);
}

/// Starts a ring of `start` (RF=3, an S3 bucket), writes a history, then applies `steps` under
/// load and checks the result; at least `min_blocks` blocks must reach the bucket.
fn roll(start: [Impl; 3], steps: &[(usize, Impl, bool)], min_blocks: usize) {
    let moto = Moto::start(MotoOpts::default()).unwrap();
    moto.create_bucket(BUCKET).unwrap();
    let objstore_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(objstore_file.path(), s3_objstore(&moto.endpoint(), BUCKET)).unwrap();
    let objstore = format!("--objstore.config-file={}", objstore_file.path().display());
    // A peer that was down is retried after at most a second (default 5 s), so the settling
    // phase after each replacement can be short.
    let flags = ["--receive.replication-factor=3".into(), "--receive-forward-max-backoff=1s".into(), objstore.clone()];
    let mut ring = Ring::start(&start, &flags);

    // History: 2000 series x 130 samples 15 s apart from a block start, through node 0 as fast
    // as it answers, so every head holds a full chunk per series (ringest's, written past its
    // 256 KiB buffer, are in `chunks_head/` when it is killed; Thanos' stay in its 4 MiB
    // buffer: reading its head chunk files is `thanos_tsdb.rs`' part).
    let history =
        run_load(&layout_from_block_start("hist", HISTORY_SERIES, 130, 2), 130, &ring.nodes[0].rw_addr, None, None);
    history.assert_all_2xx_first_time("history");

    let mut load = Load::new("mig", 300);
    load.rounds(&ring.nodes[1].rw_addr, 3, "steady");
    for (step, &(i, imp, crash)) in steps.iter().enumerate() {
        load.step = step + 1;
        let via = ring.nodes[(i + 1) % 3].rw_addr.clone();
        let before = ring.nodes[i].imp;
        // The round just before a node goes is held by a quorum: its third copy may still be
        // on its way to that node (both implementations answer at quorum), so it is checked
        // on two nodes only.
        load.rounds(&via, 1, "handover");
        let chunks = ring.nodes[i].head_chunk_bytes("default-tenant");
        if crash && before == R {
            // More than a file header: chunks the new process must read (or cut back) itself.
            assert!(
                chunks > 64 << 10,
                "{before:?} node {i} has written {chunks} bytes of head chunks to disk before it is killed\n{}",
                ring.nodes[i].logs()
            );
        }
        let done = AtomicBool::new(false);
        let old_logs = std::thread::scope(|s| {
            let (ring, done) = (&mut ring, &done);
            let replacing = s.spawn(move || {
                let logs = ring.replace(i, imp, crash);
                done.store(true, Ordering::Release);
                logs
            });
            load.until(&via, "replacing", done);
            replacing.join().unwrap()
        });
        if before == R && !crash {
            // Thanos' TestReceiveUploadOnShutdown: the head is cut and uploaded before exit.
            assert!(old_logs.contains("the final cut block was uploaded"), "node {i}:\n{old_logs}");
        }
        // What the new process found: after a crash the other's head (WAL, head chunks),
        // after a clean stop the other's blocks.
        let r = &ring.nodes[i];
        if crash {
            let series = r.metric("prometheus_tsdb_head_series{tenant=\"default-tenant\"}").unwrap_or(0.0);
            assert!(
                series >= HISTORY_SERIES as f64,
                "{imp:?} after {before:?} crashed: {series} head series\n{}",
                r.logs()
            );
        } else {
            let blocks = r.metric("prometheus_tsdb_blocks_loaded{tenant=\"default-tenant\"}").unwrap_or(0.0);
            assert!(blocks >= 1.0, "{imp:?} after {before:?} stopped: {blocks} blocks loaded\n{}", r.logs());
        }
        // The routers' backoff towards the replaced node ends, then all three take writes.
        load.rounds(&via, 3, "settling");
        load.rounds(&via, 3, "steady");
    }
    load.assert_all_2xx_first_time();

    for r in &mut ring.nodes {
        let st = r.terminate();
        assert!(st.success(), "{:?} exited with {st}:\n{}", r.imp, r.logs());
    }

    // Every node's directory holds blocks and WAL written by both implementations.
    let dumps: Vec<_> = ring
        .tenant_dirs("default-tenant")
        .iter()
        .map(|d| check::promtool_dump(d).unwrap_or_else(|e| panic!("{}: {e}", d.display())))
        .collect();
    let steady = load.log(&["steady"]);
    for (n, d) in dumps.iter().enumerate() {
        let rep = check::check(&steady, d);
        if !(rep.ok() && rep.intact == rep.acked) {
            let lost: Vec<(usize, u64)> =
                (0..=steps.len()).map(|k| (k, check::check(&load.log_of_step(&["steady"], Some(k)), d).lost)).collect();
            panic!("node {n}: samples written while all three were up, lost per step {lost:?}: {rep:?}");
        }
    }
    let all = load.log(&["steady", "handover", "settling", "replacing"]);
    assert_on_two_nodes(&all, &dumps, "the migration load");
    assert_on_two_nodes(&history.log, &dumps, "the history");

    // The bucket: each block uploaded once, none overlapping.
    let mut uploads: BTreeMap<String, usize> = BTreeMap::new();
    for (method, path, status) in moto.bucket_requests(BUCKET) {
        if method == "PUT" && status == 200 && path.ends_with("/meta.json") {
            *uploads.entry(path).or_default() += 1;
        }
    }
    assert!(uploads.len() >= min_blocks, "blocks uploaded: {uploads:?}");
    let twice: Vec<_> = uploads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "blocks uploaded more than once: {twice:?}");
    let (ok, out, err) = thanos::run(&[
        "tools",
        "bucket",
        "verify",
        &objstore,
        "--issues=overlapped_blocks",
        "--issues=index_known_issues",
    ]);
    assert!(ok, "thanos tools bucket verify failed:\n{out}\n{err}");
    assert!(!err.contains("level=error") && !err.contains("found overlapped blocks"), "{err}");
}

/// Every sample acknowledged in `log` is intact on at least two of the nodes' dumps.
fn assert_on_two_nodes(log: &AckLog, dumps: &[check::Dump], what: &str) {
    // The samples held by at least two nodes (with the first one's value), as one dump.
    let mut two = check::Dump::new();
    for (k, d) in dumps.iter().enumerate() {
        for (s, samples) in d {
            for (t, v) in samples {
                let held = dumps.iter().filter(|o| o.get(s).is_some_and(|x| x.contains_key(t))).count();
                let first = dumps.iter().position(|o| o.get(s).is_some_and(|x| x.contains_key(t)));
                if held >= 2 && first == Some(k) {
                    two.entry(s.clone()).or_default().insert(*t, v.clone());
                }
            }
        }
    }
    let rep = check::check(log, &two);
    assert!(rep.ok() && rep.intact == rep.acked, "{what}: acknowledged samples on fewer than two nodes: {rep:?}");
}
