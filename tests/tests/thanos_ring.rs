//! Mixed rings: ringest and the real Thanos Receive (the pinned release, built by
//! `scripts/thanos.sh`) in one hashring, RF=3 and quorum 2, started with the same flags.
//!
//! For one ringest with two Thanos, and two ringest with one Thanos, each with hashmod and
//! ketama and with `--receive.grpc-compression` snappy and none on every node:
//! - Prometheus 2.42 writes through every node (one remote-write queue per node, disjoint
//!   series), with no failed or retried sample, and every sample it stored is on all three;
//! - the load generator writes through every node (one sample per series a second, as a
//!   scraper does), every request answered 2xx at once, and every acknowledged sample is on
//!   all three nodes;
//! - the same bad request (duplicate, out of order, out of bounds, each row of the label matrix
//!   on which both agree) gets the same status code from every node, whichever implementation
//!   answers;
//! - the node of the minority kind killed with -9 under load: writes through the other two go
//!   on with 2xx and nothing acknowledged is lost (both survivors hold it);
//! - the other two killed: the survivor answers 503 within the forward timeout plus a second.
//!
//! The independent reader is promtool over each node's blocks and WAL after a clean stop.
//!
//! Outside rings, the label validation matrix (`ringest_e2e::label_matrix`) goes to one ringest
//! and one Thanos, the real Thanos being the oracle for each row's status and what is stored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringest_e2e::client::series;
use ringest_e2e::label_matrix;
use ringest_e2e::oracle::{Prometheus, promtool_dump};
use ringest_e2e::ring::{LoadRun, Ring, layout, metric_sum, now_ms, run_load};
use ringest_e2e::{Impl, Receiver, RemoteWriter, http_get};
use ringest_proto::prometheus as pb;

const FORWARD_TIMEOUT_S: u64 = 2;
const TENANT: &str = "default-tenant";

fn flags(algorithm: &str, compression: &str) -> Vec<String> {
    vec![
        "--receive.replication-factor=3".into(),
        format!("--receive.hashrings-algorithm={algorithm}"),
        format!("--receive.grpc-compression={compression}"),
        format!("--receive-forward-timeout={FORWARD_TIMEOUT_S}s"),
    ]
}

/// Prometheus 2.42 scraping itself and the three nodes every second and remote-writing through
/// every node: queue `i` keeps the series whose hash of name and instance is `i` modulo 3.
fn prometheus_config(ring: &Ring) -> String {
    let targets: Vec<String> = ring.nodes.iter().map(|r| format!("'{}'", r.http_addr)).collect();
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - \
         targets: ['{{{{self}}}}']\n  - job_name: receivers\n    static_configs:\n      - targets: [{}]\nremote_write:\n",
        targets.join(", ")
    );
    for (i, r) in ring.nodes.iter().enumerate() {
        cfg.push_str(&format!(
            "  - url: http://{rw}/api/v1/receive\n    name: node{i}\n    queue_config: {{batch_send_deadline: 1s, \
             max_samples_per_send: 500, min_backoff: 50ms}}\n    write_relabel_configs:\n      - source_labels: \
             [__name__, instance]\n        modulus: 3\n        target_label: __tmp_shard\n        action: hashmod\n      \
             - source_labels: [__tmp_shard]\n        regex: '{i}'\n        action: keep\n      - regex: __tmp_shard\n        \
             action: labeldrop\n",
            rw = r.rw_addr
        ));
    }
    cfg
}

/// Status codes of the same bad requests sent through `node` (its own series, so every node
/// sees each case for the first time): duplicate, out of order, out of bounds, and every row of
/// the label matrix on which ringest and Thanos agree (the others are the README's differences).
fn bad_request_codes(ring: &Ring, node: usize) -> BTreeMap<String, u16> {
    let r = &ring.nodes[node];
    let mut w = RemoteWriter::connect(&r.rw_addr).unwrap();
    let tag = format!("via{node}");
    let now = now_ms();
    let send = |w: &mut RemoteWriter, labels: &[(&str, &str)], t: i64, v: f64| {
        let req = pb::WriteRequest { timeseries: vec![series(labels, &[(t, v)])], ..Default::default() };
        let resp = w.send(&req).unwrap();
        (resp.status, resp.text())
    };
    let probe = [("__name__", "bad_probe"), ("via", tag.as_str())];
    let (st, body) = send(&mut w, &probe, now, 1.0);
    assert_eq!(st, 200, "node {node}: the first sample of a series: {body}");
    let mut codes = BTreeMap::new();
    codes.insert("duplicate".into(), send(&mut w, &probe, now, 2.0).0);
    codes.insert("out of order".into(), send(&mut w, &probe, now - 60_000, 1.0).0);
    codes.insert(
        "out of bounds".into(),
        send(&mut w, &[("__name__", "bad_oob"), ("via", &tag)], now - 3 * 3_600_000, 1.0).0,
    );
    for row in label_matrix::rows(&tag).into_iter().filter(|row| row.thanos == row.ringest) {
        let resp = w.send_raw(&label_matrix::body(&[(&row.labels, &[(now, 1.0)])])).unwrap();
        codes.insert(row.case.into(), resp.status);
    }
    codes
}

/// What [`bad_request_codes`] should find on every node: 409 for the samples, the matrix's
/// answer for each label row.
fn expected_bad_request_codes() -> BTreeMap<String, u16> {
    let mut want: BTreeMap<String, u16> =
        ["duplicate", "out of order", "out of bounds"].iter().map(|c| (c.to_string(), 409)).collect();
    for row in label_matrix::rows("x").into_iter().filter(|row| row.thanos == row.ringest) {
        want.insert(row.case.into(), row.thanos);
    }
    want
}

/// The node of the kind that appears once.
fn minority(kinds: &[Impl; 3]) -> usize {
    (0..3).find(|&i| kinds.iter().filter(|k| **k == kinds[i]).count() == 1).expect("a mixed ring")
}

fn mixed_ring(kinds: [Impl; 3], algorithm: &str, compression: &str) {
    let what = format!("{kinds:?} {algorithm} {compression}");
    let mut ring = Ring::start(&kinds, &flags(algorithm, compression));

    // Prometheus 2.42 writes through every node.
    let prom_dir = ring.dir.path().join("prometheus");
    let mut prom = Prometheus::start(&prom_dir, &prometheus_config(&ring), &["--storage.tsdb.retention.time=1d"]);
    let until = Instant::now() + Duration::from_secs(12);

    // Meanwhile the load generator writes through every node (its own series per node), one
    // sample per series a second, as a scraper does: the third copy of a write is best effort
    // (answered at quorum, Thanos' protocol and ringest's), and a sender that writes a series'
    // next sample before that copy landed can overtake it, making it out of order there.
    let lg: Vec<LoadRun> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|i| {
                let addr = ring.nodes[i].rw_addr.clone();
                s.spawn(move || run_load(&layout(&format!("lg{i}"), 600, 5, 2), 5, &addr, None, Some(600.0)))
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, run) in lg.iter().enumerate() {
        run.assert_all_2xx_first_time(&format!("{what}: load through node {i}"));
    }

    // The same bad requests get the same answers from every node.
    let codes: Vec<BTreeMap<String, u16>> = (0..3).map(|i| bad_request_codes(&ring, i)).collect();
    for i in 1..3 {
        assert_eq!(codes[i], codes[0], "{what}: node {i} ({:?}) vs node 0 ({:?})", kinds[i], kinds[0]);
    }
    assert_eq!(codes[0], expected_bad_request_codes(), "{what}");

    if let Some(wait) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let prom_metrics = http_get(&prom.addr, "/metrics").unwrap().text();
    prom.stop();
    for i in 0..3 {
        let queue = [("remote_name", format!("node{i}"))];
        let q: Vec<(&str, &str)> = queue.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sent = metric_sum(&prom_metrics, "prometheus_remote_storage_samples_total", &q);
        let failed = metric_sum(&prom_metrics, "prometheus_remote_storage_samples_failed_total", &q);
        let retried = metric_sum(&prom_metrics, "prometheus_remote_storage_samples_retried_total", &q);
        assert!(sent > 100.0, "{what}: Prometheus sent {sent} samples through node {i}");
        assert_eq!((failed, retried), (0.0, 0.0), "{what}: Prometheus' samples through node {i}");
    }

    // kill -9 the node of the minority kind under load through the other two.
    let m = minority(&kinds);
    let others: Vec<usize> = (0..3).filter(|&i| i != m).collect();
    let killed_under_load: Vec<LoadRun> = std::thread::scope(|s| {
        let handles: Vec<_> = others
            .iter()
            .map(|&i| {
                let addr = ring.nodes[i].rw_addr.clone();
                s.spawn(move || run_load(&layout(&format!("kill{i}"), 300, 30, 2), 30, &addr, None, Some(3000.0)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        ring.nodes[m].kill9();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (run, i) in killed_under_load.iter().zip(&others) {
        run.assert_all_2xx_first_time(&format!("{what}: node {m} killed, writes through node {i}"));
    }
    ring.nodes[m].relaunch();
    ring.nodes[m].wait_ready(Duration::from_secs(120));

    // Two down: the one left answers 503 within the forward timeout plus a second.
    for &i in &others {
        ring.nodes[i].kill9();
    }
    let mut w = RemoteWriter::connect(&ring.nodes[m].rw_addr).unwrap();
    let req = pb::WriteRequest {
        timeseries: vec![series(&[("__name__", "lost_quorum")], &[(now_ms(), 1.0)])],
        ..Default::default()
    };
    let start = Instant::now();
    let resp = w.send(&req).unwrap();
    let took = start.elapsed();
    assert_eq!(resp.status, 503, "{what}: two nodes down, through node {m}: {}", resp.text());
    assert!(took < Duration::from_secs(FORWARD_TIMEOUT_S + 1), "{what}: 503 after {took:?}");
    for &i in &others {
        ring.nodes[i].relaunch();
    }
    for &i in &others {
        ring.nodes[i].wait_ready(Duration::from_secs(120));
    }

    // Clean stop, then promtool reads every node.
    for r in &mut ring.nodes {
        let st = r.terminate();
        assert!(st.success(), "{what}: {:?} exited with {st}:\n{}", r.imp, r.logs());
    }
    let dirs = ring.tenant_dirs(TENANT);
    for (n, dir) in dirs.iter().enumerate() {
        for (i, run) in lg.iter().enumerate() {
            let rep = run.check(dir);
            if !(rep.ok() && rep.intact == rep.acked) {
                panic!("{what}: node {n}, load through node {i}: {rep:?} (logs and data kept in {})", ring.keep());
            }
        }
        for (run, i) in killed_under_load.iter().zip(&others) {
            if n == m {
                continue; // down for part of the run
            }
            let rep = run.check(dir);
            assert!(rep.ok(), "{what}: survivor {n}, load through node {i} while node {m} was down: {rep:?}");
        }
    }

    // Everything Prometheus stored itself (up to a few seconds before it stopped) is on all three.
    let theirs = promtool_dump(&prom.data);
    let nodes: Vec<_> = dirs.iter().map(|d| promtool_dump(d)).collect();
    let t_last = theirs.values().flat_map(|s| s.keys()).max().copied().expect("Prometheus stored samples");
    let t_cut = t_last - 5_000;
    let mut compared = 0;
    for (s, samples) in &theirs {
        for (t, v) in samples.range(..=t_cut) {
            for (n, dump) in nodes.iter().enumerate() {
                let got = dump.get(s).and_then(|x| x.get(t));
                assert_eq!(got, Some(v), "{what}: node {n} lacks {s} @ {t} (Prometheus has {v})");
            }
            compared += 1;
        }
    }
    assert!(compared > 2000, "{what}: compared {compared} samples");
}

use Impl::{Ringest as R, Thanos as T};

#[test]
fn one_ringest_two_thanos_hashmod_snappy() {
    mixed_ring([R, T, T], "hashmod", "snappy");
}

#[test]
fn one_ringest_two_thanos_hashmod_none() {
    mixed_ring([T, R, T], "hashmod", "none");
}

#[test]
fn one_ringest_two_thanos_ketama_snappy() {
    mixed_ring([T, T, R], "ketama", "snappy");
}

#[test]
fn one_ringest_two_thanos_ketama_none() {
    mixed_ring([R, T, T], "ketama", "none");
}

#[test]
fn two_ringest_one_thanos_hashmod_snappy() {
    mixed_ring([T, R, R], "hashmod", "snappy");
}

#[test]
fn two_ringest_one_thanos_hashmod_none() {
    mixed_ring([R, T, R], "hashmod", "none");
}

#[test]
fn two_ringest_one_thanos_ketama_snappy() {
    mixed_ring([R, R, T], "ketama", "snappy");
}

#[test]
fn two_ringest_one_thanos_ketama_none() {
    mixed_ring([T, R, R], "ketama", "none");
}

/// The label matrix (shared spec §7 item 34) against the real Thanos Receive as oracle: one
/// ringest and one Thanos, single nodes with the same flags, get the same requests (each row's
/// series beside a valid one). Both answer each row as the matrix documents (the same code,
/// but for the README's differences), keep the valid series of every request (partial write),
/// and store the same series, as promtool reads them after a clean stop.
#[test]
fn label_matrix_answers_and_stores_as_thanos() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Receiver> = [R, T]
        .iter()
        .map(|&imp| {
            let mut r = Receiver::unstarted_as(imp, &dir.path().join(format!("{imp:?}")));
            r.relaunch();
            r
        })
        .collect();
    for r in &mut nodes {
        r.wait_ready(Duration::from_secs(120));
    }
    let now = now_ms();
    let rows = label_matrix::rows("single");
    let neighbour = |i: usize| label_matrix::raw(&[("__name__", "valid_neighbour"), ("row", &i.to_string())]);
    for (i, row) in rows.iter().enumerate() {
        let body = label_matrix::body(&[(&neighbour(i), &[(now, 1.0)]), (&row.labels, &[(now, 2.0)])]);
        for r in &nodes {
            let resp = RemoteWriter::connect(&r.rw_addr).unwrap().send_raw(&body).unwrap();
            let text = resp.text();
            eprintln!("{:?} {:<26} {} {}", r.imp, row.case, resp.status, text.trim_end());
            let want = if r.imp == R { row.ringest } else { row.thanos };
            assert_eq!(resp.status, want, "{:?}, {}: {text}", r.imp, row.case);
            if r.imp == R && !row.ringest_stores() {
                assert!(text.contains(row.reason), "{}: {text:?} lacks {:?}", row.case, row.reason);
                assert!(text.contains(&row.shown()), "{}: {text:?} does not name {}", row.case, row.shown());
            }
        }
    }
    for r in &mut nodes {
        let st = r.terminate();
        assert!(st.success(), "{:?} exited with {st}:\n{}", r.imp, r.logs());
    }
    let dumps: Vec<_> = nodes.iter().map(|r| promtool_dump(&r.tenant_dir(TENANT))).collect();
    let (ours, theirs) = (&dumps[0], &dumps[1]);
    for (i, row) in rows.iter().enumerate() {
        let n = label_matrix::labels_string(&neighbour(i));
        assert!(ours.contains_key(&n) && theirs.contains_key(&n), "{}: the valid series {n} was not kept", row.case);
        if row.ringest_stores() {
            assert!(ours.contains_key(&row.sorted_string()), "{}: ringest lacks {}", row.case, row.sorted_string());
        }
    }
    // The same series on both, but those Thanos stores with labels that are not UTF-8.
    let not_utf8 = |s: &&String| s.contains("\\x") || s.contains('\u{fffd}');
    let theirs_utf8: Vec<&String> = theirs.keys().filter(|s| !not_utf8(s)).collect();
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs_utf8);
    let refused_by_us = rows.iter().filter(|r| r.thanos == 200 && r.ringest != 200).count();
    assert_eq!(theirs.keys().filter(not_utf8).count(), refused_by_us, "{:?}", theirs.keys());
}
