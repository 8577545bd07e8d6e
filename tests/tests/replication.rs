//! Hashring and quorum replication from outside: three (or four) ringest processes on
//! loopback sharing a hashring file, RF=3 (quorum 2) or RF=1, checked through each node's own
//! storage (`ringest tsdb dump` after SIGTERM, promtool through `assert_exact`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringest_e2e::client::series;
use ringest_e2e::oracle::{labels_string, ringest_dump};
use ringest_e2e::workload::{Acked, Workload};
use ringest_e2e::{Receiver, RemoteWriter, http_get, wait_for};
use ringest_proto::prometheus as pb;

const T0: i64 = 1_800_000_000_000;

struct Cluster {
    _tmp: tempfile::TempDir,
    ring_file: PathBuf,
    nodes: Vec<Receiver>,
}

fn ring_json(endpoints: &[&str], algorithm: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!("[{{\"hashring\": \"default\", \"algorithm\": \"{algorithm}\", \"endpoints\": [{}]}}]", eps.join(", "))
}

/// `n` nodes, the first `in_ring` of them in the hashring, each with `extra` flags.
fn cluster(n: usize, in_ring: usize, rf: usize, algorithm: &str, extra: &[&str]) -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let ring_file = tmp.path().join("hashrings.json");
    let mut nodes: Vec<Receiver> = (0..n).map(|i| Receiver::unstarted(&tmp.path().join(format!("node{i}")))).collect();
    let eps: Vec<String> = nodes.iter().map(|r| r.grpc_addr.clone()).collect();
    let eps_ref: Vec<&str> = eps.iter().take(in_ring).map(String::as_str).collect();
    std::fs::write(&ring_file, ring_json(&eps_ref, algorithm)).unwrap();
    for r in &mut nodes {
        r.extra = vec![
            format!("--receive.hashrings-file={}", ring_file.display()),
            format!("--receive.local-endpoint={}", r.grpc_addr),
            format!("--receive.replication-factor={rf}"),
            "--receive.hashrings-file-refresh-interval=1s".into(),
        ];
        r.extra.extend(extra.iter().map(|s| s.to_string()));
        r.relaunch();
    }
    for r in &mut nodes {
        r.wait_ready(Duration::from_secs(60));
    }
    Cluster { _tmp: tmp, ring_file, nodes }
}

fn workload(name: &str, series: usize) -> Workload {
    Workload { series, batch: 100, start_ms: T0, step_ms: 15_000, name: name.into() }
}

fn tenant_dir(r: &Receiver) -> PathBuf {
    r.tenant_dir("default-tenant")
}

/// Samples of `dump` that are in `acked`, per series.
fn held(dir: &Path) -> Acked {
    if !dir.is_dir() {
        return Acked::new();
    }
    ringest_dump(dir)
}

/// Stops every node (SIGTERM, a clean exit) and checks that every acknowledged sample is on
/// at least two of them (the quorum that acknowledged it).
fn stop_and_check_quorum_copies(nodes: &mut [Receiver], acked: &Acked) {
    for r in nodes.iter_mut() {
        assert!(r.terminate().success(), "{}", r.logs());
    }
    let dumps: Vec<Acked> = nodes.iter().map(|r| held(&tenant_dir(r))).collect();
    for (s, samples) in acked {
        for (t, bits) in samples {
            let n = dumps.iter().filter(|d| d.get(s).and_then(|x| x.get(t)) == Some(bits)).count();
            assert!(n >= 2, "{s} @ {t} on {n} nodes");
        }
    }
}

#[test]
fn rf3_every_acknowledged_sample_is_on_all_three_nodes_and_replicas_are_not_forwarded_again() {
    let mut c = cluster(3, 3, 3, "hashmod", &[]);
    let w = workload("rep", 300);
    let mut acked = Acked::new();
    // Writes through two different routers.
    for (i, rounds) in [(0usize, 0..10), (1, 10..20)] {
        let mut conn = RemoteWriter::connect(&c.nodes[i].rw_addr).unwrap();
        w.send(&mut conn, rounds, &mut acked).unwrap_or_else(|e| panic!("write refused: {}", e.reason));
    }
    let fwd = c.nodes[0].metric("thanos_receive_forward_requests_total{result=\"success\"}").unwrap();
    assert!(fwd >= 10.0, "{fwd}");
    assert!(c.nodes[0].metric("thanos_receive_replications_total{result=\"success\"}").unwrap() >= 1.0);
    assert_eq!(c.nodes[0].metric("thanos_receive_replication_factor"), Some(3.0));
    assert_eq!(c.nodes[0].metric("thanos_receive_hashring_nodes{name=\"default\"}"), Some(3.0));
    let api = http_get(&c.nodes[0].http_addr, "/api/v1/receive/hashrings").unwrap();
    assert_eq!(api.status, 200);
    let body: serde_json::Value = serde_json::from_str(&api.text()).unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"][0]["endpoints"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["data"][0]["name"], "default", "{body}");
    assert_eq!(body["data"][0]["endpoints"][0].as_str().map(|e| e.starts_with("127.0.0.1:")), Some(true), "{body}");
    // The operations guide's `count(thanos_receive_hashring_nodes{state="active"})`: one series
    // per member, exported by the first member only, so that the count over every node is the
    // ring's size.
    let active = |r: &Receiver| {
        r.metrics()
            .lines()
            .filter(|l| l.starts_with("thanos_receive_hashring_nodes{") && l.contains("state=\"active\""))
            .count()
    };
    let counts: Vec<usize> = c.nodes.iter().map(active).collect();
    assert_eq!(counts, vec![3, 0, 0], "the operations guide's per-node series");
    assert!(c.nodes[0].logs().contains("msg=\"loaded hashring configuration\" hashrings=1"), "{}", c.nodes[0].logs());
    assert!(c.nodes[0].logs().contains("mode=RouterIngestor"));

    // A client may not send a replica number: with it, the write would be stored by its
    // receiver only, skipping replication (Thanos' legacy HTTP replication). Refused, stored
    // nowhere; peers replicate over gRPC.
    let req = pb::WriteRequest {
        timeseries: vec![series(&[("__name__", "replicated_once")], &[(T0, 1.0)])],
        ..Default::default()
    };
    for replica in ["2", "4"] {
        // A connection each: the server answers before reading the body, then closes.
        let mut conn = RemoteWriter::connect(&c.nodes[2].rw_addr).unwrap();
        let resp = conn.send_with_headers(&req, &[("THANOS-REPLICA", replica)]).unwrap();
        assert_eq!(resp.status, 400, "{}", resp.text());
        assert!(resp.text().contains("only peers replicate"), "{}", resp.text());
    }

    // The first member goes: once forwards to it fail, the second exports the series, still
    // three of them while two receivers are up (the guide's alert fires).
    c.nodes[0].kill9();
    let (other, mut conn) = (workload("other", 10), RemoteWriter::connect(&c.nodes[1].rw_addr).unwrap());
    wait_for("the second member to export the hashring's members", Duration::from_secs(30), || {
        let _ = other.send(&mut conn, 0..1, &mut Acked::new());
        active(&c.nodes[1]) == 3
    });
    assert_eq!(active(&c.nodes[2]), 0, "the third sees the second up");

    for r in &mut c.nodes[1..] {
        assert!(r.terminate().success(), "{}", r.logs());
    }
    let dumps: Vec<Acked> = c.nodes.iter().map(|r| held(&tenant_dir(r))).collect();
    for (i, dump) in dumps.iter().enumerate() {
        assert!(!dump.contains_key("{__name__=\"replicated_once\"}"), "node {i}");
    }
    assert_on_quorum(&dumps, &acked);
}

/// Every acked sample is on at least two of the three nodes (the quorum that acknowledged it)
/// and the last one of each series on all three (a stopping router waits for its forwards);
/// no node holds a sample nobody acknowledged or another value. An earlier sample may miss on
/// one node: its third copy, still in flight when the client sent the series' next sample,
/// can arrive after that one and be refused as out of order there (Thanos Receive alike).
fn assert_on_quorum(dumps: &[Acked], acked: &Acked) {
    for (s, samples) in acked {
        let last = samples.keys().next_back();
        for (t, bits) in samples {
            let holders = dumps.iter().filter(|d| d.get(s).and_then(|x| x.get(t)) == Some(bits)).count();
            let want = if Some(t) == last { dumps.len() } else { 2 };
            assert!(holders >= want, "{s} @ {t} on {holders} nodes, want {want}");
        }
    }
    for (node, dump) in dumps.iter().enumerate() {
        for (s, samples) in dump.iter().filter(|(s, _)| acked.contains_key(*s)) {
            for (t, bits) in samples {
                assert_eq!(acked[s].get(t), Some(bits), "node {node}: {s} @ {t} nobody acknowledged");
            }
        }
    }
}

#[test]
fn rf3_one_node_killed_writes_go_on_two_killed_answer_503_in_time_and_a_stopped_node_does_not_slow_writes() {
    let mut c = cluster(3, 3, 3, "ketama", &["--receive-forward-timeout=2s"]);
    let w = workload("kill", 200);
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&c.nodes[0].rw_addr).unwrap();
    w.send(&mut conn, 0..5, &mut acked).unwrap();
    // With all three up, the quorum of a sample may be node 0 and node 2 (the third copy, to
    // node 1, overtaken by the series' next sample): only later samples must be on 0 and 1.
    let acked_all_up = acked.clone();

    // SIGSTOP one node: quorum comes from the other two, well within the forward timeout.
    c.nodes[2].signal(libc::SIGSTOP);
    let mut lat = Vec::new();
    let in_flight = |c: &Cluster| c.nodes[0].metric("ringest_receive_forwards_in_flight").unwrap();
    let mut waiting = 0.0;
    for round in 5..15 {
        let start = Instant::now();
        w.send(&mut conn, round..round + 1, &mut acked).unwrap_or_else(|e| panic!("with a stopped node: {}", e.reason));
        lat.push(start.elapsed());
        if round == 5 {
            // Answered at quorum; its third replica waits for the stopped node.
            waiting = in_flight(&c);
        }
    }
    lat.sort();
    assert!(lat[lat.len() * 99 / 100] < Duration::from_secs(2), "p99 {:?}", lat.last());
    assert!(waiting >= 1.0, "forwards in flight to the stopped node: {waiting}");
    c.nodes[2].signal(libc::SIGCONT);
    // Checklist B.16: the forwards in flight go back to their baseline soon after SIGCONT.
    wait_for("forwards in flight back to 0", Duration::from_secs(30), || in_flight(&c) == 0.0);

    // kill -9 one node under load: every write still answers 2xx, and the two survivors
    // (whose writes made the quorum) hold every sample acknowledged since node 2 stopped.
    c.nodes[2].kill9();
    w.send(&mut conn, 15..30, &mut acked).unwrap_or_else(|e| panic!("with one node down: {}", e.reason));
    let down = format!("ringest_receive_peer_up{{node=\"{}\"}} 0", c.nodes[2].grpc_addr);
    let mut seen = false;
    for round in 30..50 {
        // Each write to the dead peer fails and puts it in backoff for a while.
        let mut probe = Acked::new();
        workload("probe", 1).send(&mut conn, round..round + 1, &mut probe).unwrap();
        acked.extend(probe);
        if c.nodes[0].metrics().contains(&down) {
            seen = true;
            break;
        }
    }
    assert!(seen, "a peer in backoff shows as unavailable");
    let acked_while_down = acked.clone();
    // Restarted, the third node replays and takes writes again.
    c.nodes[2].relaunch();
    c.nodes[2].wait_ready(Duration::from_secs(60));
    let mut conn2 = RemoteWriter::connect(&c.nodes[2].rw_addr).unwrap();
    w.send(&mut conn2, 30..32, &mut acked).unwrap_or_else(|e| panic!("after restart: {}", e.reason));

    // kill -9 two nodes: 503 within the forward timeout plus a second; nothing acknowledged.
    c.nodes[1].kill9();
    c.nodes[2].kill9();
    let req = pb::WriteRequest {
        timeseries: vec![series(&[("__name__", "lost_quorum")], &[(T0, 1.0)])],
        ..Default::default()
    };
    let start = Instant::now();
    let resp = conn.send(&req).unwrap();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());

    for i in [1, 2] {
        c.nodes[i].relaunch();
        c.nodes[i].wait_ready(Duration::from_secs(60));
    }
    for r in &mut c.nodes {
        assert!(r.terminate().success(), "{}", r.logs());
    }
    let dumps: Vec<Acked> = c.nodes.iter().map(|r| held(&tenant_dir(r))).collect();
    for (s, samples) in &acked {
        for (t, bits) in samples {
            let on: Vec<usize> = (0..3).filter(|&n| dumps[n].get(s).and_then(|x| x.get(t)) == Some(bits)).collect();
            assert!(on.len() >= 2, "{s} @ {t} acknowledged but only on {on:?}");
            let all_up = acked_all_up.get(s).is_some_and(|x| x.contains_key(t));
            if !all_up && acked_while_down.get(s).is_some_and(|x| x.contains_key(t)) {
                assert!(on.contains(&0) && on.contains(&1), "{s} @ {t}: the survivors must hold it, on {on:?}");
            }
        }
    }
}

/// Thanos' placement recomputed independently: XXH64 over `tenant 0xff (name 0xff value 0xff)*`,
/// hashmod over the sorted addresses, ketama over 1000 sections per endpoint.
fn expected_node(endpoints: &[String], algorithm: &str, tenant: &str, labels: &[(String, String)]) -> String {
    let mut b = tenant.as_bytes().to_vec();
    b.push(0xff);
    for (n, v) in labels {
        b.extend_from_slice(n.as_bytes());
        b.push(0xff);
        b.extend_from_slice(v.as_bytes());
        b.push(0xff);
    }
    let h = xxhash_rust::xxh64::xxh64(&b, 0);
    if algorithm == "hashmod" {
        let mut sorted = endpoints.to_vec();
        sorted.sort();
        return sorted[(h % sorted.len() as u64) as usize].clone();
    }
    let mut sections: Vec<(u64, usize)> = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        for k in 1..=1000 {
            sections.push((xxhash_rust::xxh64::xxh64(format!("{e}:{k}").as_bytes(), 0), i));
        }
    }
    sections.sort();
    let owner = sections.iter().find(|(s, _)| *s >= h).unwrap_or(&sections[0]).1;
    endpoints[owner].clone()
}

#[test]
fn rf1_each_series_lands_on_the_node_thanos_names() {
    // The golden vectors first (shared spec 4.5): the same computation as below.
    let eps: Vec<String> = ["receive-0:10901", "receive-1:10901", "receive-2:10901"].map(String::from).to_vec();
    let golden: Vec<(String, String)> = [("__name__", "up"), ("instance", "localhost:9090"), ("job", "prometheus")]
        .map(|(a, b)| (a.into(), b.into()))
        .to_vec();
    assert_eq!(expected_node(&eps, "hashmod", "default-tenant", &golden), "receive-2:10901");
    assert_eq!(expected_node(&eps, "ketama", "default-tenant", &golden), "receive-2:10901");

    for algorithm in ["hashmod", "ketama"] {
        let mut c = cluster(3, 3, 1, algorithm, &[]);
        let w = workload("place", 60);
        let mut acked = Acked::new();
        let mut conn = RemoteWriter::connect(&c.nodes[1].rw_addr).unwrap();
        w.send(&mut conn, 0..2, &mut acked).unwrap();
        for r in &mut c.nodes {
            assert!(r.terminate().success());
        }
        let eps: Vec<String> = c.nodes.iter().map(|r| r.grpc_addr.clone()).collect();
        let dumps: Vec<Acked> = c.nodes.iter().map(|r| held(&tenant_dir(r))).collect();
        let mut per_node = vec![0; 3];
        for i in 0..60 {
            let labels = w.labels(i);
            let key = labels_string(&labels);
            let want = expected_node(&eps, algorithm, "default-tenant", &labels);
            let holders: Vec<usize> = (0..3).filter(|&n| dumps[n].contains_key(&key)).collect();
            let owner = eps.iter().position(|e| *e == want).unwrap();
            assert_eq!(holders, vec![owner], "{algorithm}: {key} should be on {want}");
            per_node[owner] += 1;
        }
        assert!(per_node.iter().all(|&n| n > 0), "{algorithm}: {per_node:?}");
    }
}

#[test]
fn the_hashring_file_changes_under_load_without_loss_4xx_or_unreadiness() {
    let mut c = cluster(4, 3, 3, "ketama", &[]);
    let all: Vec<String> = c.nodes.iter().map(|r| r.grpc_addr.clone()).collect();
    let three: Vec<&str> = all.iter().take(3).map(String::as_str).collect();
    let four: Vec<&str> = all.iter().map(String::as_str).collect();
    let w = workload("reload", 200);
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&c.nodes[0].rw_addr).unwrap();
    let mut round = 0;
    for (step, ring) in [(0, &four), (1, &three), (2, &four)] {
        std::fs::write(&c.ring_file, ring_json(ring, "ketama")).unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            w.send(&mut conn, round..round + 1, &mut acked).unwrap_or_else(|e| panic!("step {step}: {}", e.reason));
            round += 1;
            for r in &c.nodes {
                assert_eq!(http_get(&r.http_addr, "/-/ready").unwrap().status, 200, "step {step}: not ready");
            }
        }
    }
    for r in &c.nodes {
        assert!(r.metric("thanos_receive_hashrings_file_changes_total").unwrap() >= 2.0, "{}", r.logs());
        assert_eq!(r.metric("thanos_receive_config_last_reload_successful"), Some(1.0));
        assert!(!r.logs().contains("storage is flushed"), "no flush on a ring change");
    }
    // Content that does not parse keeps the old ring and is counted.
    std::fs::write(&c.ring_file, "[{").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    w.send(&mut conn, round..round + 1, &mut acked).unwrap();
    assert!(c.nodes[0].metric("thanos_receive_hashrings_file_errors_total").unwrap() >= 1.0);
    assert_eq!(c.nodes[0].metric("thanos_receive_config_last_reload_successful"), Some(0.0));
    assert!(c.nodes[0].logs().contains("failed to load configuration file"));

    stop_and_check_quorum_copies(&mut c.nodes, &acked);
}

#[test]
fn a_router_without_local_endpoint_only_forwards_and_grpc_health_follows_readiness() {
    let mut c = cluster(3, 3, 1, "hashmod", &[]);
    let mut router = Receiver::unstarted(&c._tmp.path().join("router"));
    router.extra = vec![format!("--receive.hashrings-file={}", c.ring_file.display())];
    router.relaunch();
    router.wait_ready(Duration::from_secs(60));
    assert!(router.logs().contains("mode=RouterOnly"), "{}", router.logs());
    let w = workload("routed", 50);
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&router.rw_addr).unwrap();
    w.send(&mut conn, 0..2, &mut acked).unwrap_or_else(|e| panic!("{}", e.reason));

    // gRPC health (grpc.health.v1.Health/Check): SERVING (field 1 = 1) while ready.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ch = ringest_grpc::Channel::new(c.nodes[0].grpc_addr.clone(), ringest_grpc::ChannelOptions::default());
    let resp =
        rt.block_on(ch.unary("/grpc.health.v1.Health/Check", bytes::Bytes::new(), Duration::from_secs(2))).unwrap();
    assert_eq!(&resp[..], &[0x08, 0x01]);

    assert!(router.terminate().success(), "{}", router.logs());
    assert!(held(&tenant_dir(&router)).is_empty(), "a router stores nothing");
    for r in &mut c.nodes {
        assert!(r.terminate().success());
    }
    let dumps: Vec<Acked> = c.nodes.iter().map(|r| held(&tenant_dir(r))).collect();
    for (s, samples) in &acked {
        let holders: Vec<usize> = (0..3).filter(|&n| dumps[n].get(s) == Some(samples)).collect();
        assert_eq!(holders.len(), 1, "{s} on exactly one node with RF=1: {holders:?}");
    }
}

#[test]
fn a_bad_hashring_stops_start_up_with_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("h.json");
    let cases = [
        ("[]", "configuration file is empty"),
        ("[{\"endpoints\": [\"a:1\"]", "parse"),
        ("[{\"endpoints\": [\"a:1\"], \"shuffle_sharding_config\": {\"shard_size\": 2}}]", "shuffle_sharding_config"),
        ("[{\"endpoints\": [\"a:1\"], \"algorithm\": \"ketama\"}]", "have 1"),
    ];
    for (i, (content, want)) in cases.into_iter().enumerate() {
        std::fs::write(&file, content).unwrap();
        let mut r = Receiver::launch(
            &tmp.path().join(format!("data{i}")),
            &[&format!("--receive.hashrings-file={}", file.display()), "--receive.replication-factor=3"],
        );
        let st = r.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{content}: still running"));
        assert!(!st.success());
        assert!(r.logs().to_lowercase().contains(want), "{content}: {}", r.logs());
    }
}

/// Clock skew (reliability checklist 22): with `--tsdb.too-far-in-future.time-window=5m` and one
/// replica's clock 10 minutes behind (libfaketime), whether a sample is too far in the future is
/// decided once, by the node that received it, with its own clock: all three replicas then
/// store it or none does. (Before, each replica decided with its own clock, and the slow one
/// refused what the others stored.)
#[test]
fn too_far_in_the_future_is_decided_once_by_the_receiving_node_whatever_the_replicas_clocks() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(Path::new(lib).exists(), "needs Debian's faketime package (the test command installs it)");
    let tmp = tempfile::tempdir().unwrap();
    let ring_file = tmp.path().join("hashrings.json");
    let mut nodes: Vec<Receiver> = (0..3).map(|i| Receiver::unstarted(&tmp.path().join(format!("node{i}")))).collect();
    let eps: Vec<String> = nodes.iter().map(|r| r.grpc_addr.clone()).collect();
    let eps_ref: Vec<&str> = eps.iter().map(String::as_str).collect();
    std::fs::write(&ring_file, ring_json(&eps_ref, "hashmod")).unwrap();
    for (i, r) in nodes.iter_mut().enumerate() {
        r.extra = vec![
            format!("--receive.hashrings-file={}", ring_file.display()),
            format!("--receive.local-endpoint={}", r.grpc_addr),
            "--receive.replication-factor=3".into(),
            "--tsdb.too-far-in-future.time-window=5m".into(),
        ];
        if i == 1 {
            r.env = vec![
                ("LD_PRELOAD".into(), lib.into()),
                ("FAKETIME".into(), "-10m".into()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ];
        }
        r.relaunch();
    }
    for r in &mut nodes {
        r.wait_ready(Duration::from_secs(60));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let min = 60_000;
    let write = |node: &Receiver, name: &str, t: i64| {
        let req = pb::WriteRequest { timeseries: vec![series(&[("__name__", name)], &[(t, 1.0)])], metadata: vec![] };
        let body = ringest_e2e::client::encode(&req);
        let rw = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
        ringest_e2e::http_request(&node.rw_addr, "POST", "/api/v1/receive", &rw, &body).unwrap()
    };
    // Through a node with the true clock: 4 minutes ahead is within the window for it (the slow
    // replica, on its own clock, would see it 14 minutes ahead and refuse it).
    let ok = write(&nodes[0], "ahead_4m", now + 4 * min);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let refused = write(&nodes[2], "ahead_6m", now + 6 * min);
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.text().contains("too far in the future"), "{}", refused.text());
    // Through the slow node: its clock decides; 4 minutes ahead of true time is too far for it.
    let refused = write(&nodes[1], "via_slow_4m", now + 4 * min);
    assert_eq!(refused.status, 409, "{}", refused.text());
    let ok = write(&nodes[1], "via_slow_6m_ago", now - 6 * min);
    assert_eq!(ok.status, 200, "{}", ok.text());
    for r in &mut nodes {
        assert!(r.terminate().success(), "{}", r.logs());
    }
    let stored: Vec<Vec<String>> = nodes
        .iter()
        .map(|r| {
            held(&tenant_dir(r))
                .keys()
                .map(|k| k.trim_start_matches("{__name__=\"").trim_end_matches("\"}").to_string())
                .collect()
        })
        .collect();
    for (i, names) in stored.iter().enumerate() {
        assert_eq!(names, &["ahead_4m", "via_slow_6m_ago"], "node {i} stores what its router decided");
    }
}

/// Retry idempotency (reliability checklist 18): a write that partly failed (two of three
/// replicas stopped: 503, stored on the router only) and a write that quorum-succeeded (one
/// replica stopped) are each resent 5 times, through different nodes, once every node is back:
/// every resend is a 2xx (an exact retry is never a 409), and each replica ends with every
/// sample exactly once and nothing else.
#[test]
fn resending_a_partly_failed_or_quorum_succeeded_write_is_idempotent_on_every_replica() {
    let mut c = cluster(3, 3, 3, "hashmod", &["--receive-forward-timeout=2s"]);
    let request = |name: &str| {
        let ids: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let timeseries = ids
            .iter()
            .map(|i| series(&[("__name__", name), ("i", i)], &[(T0, 1.0), (T0 + 15_000, 2.0), (T0 + 30_000, 3.0)]))
            .collect();
        ringest_e2e::client::encode(&pb::WriteRequest { timeseries, metadata: vec![] })
    };
    let rw = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
    let post = |r: &Receiver, body: &[u8]| {
        ringest_e2e::http_request(&r.rw_addr, "POST", "/api/v1/receive", &rw, body).unwrap()
    };
    let (partial, quorum) = (request("partial"), request("quorum"));

    c.nodes[1].signal(libc::SIGSTOP);
    c.nodes[2].signal(libc::SIGSTOP);
    let failed = post(&c.nodes[0], &partial);
    assert_eq!(failed.status, 503, "two replicas down: {}", failed.text());
    c.nodes[1].signal(libc::SIGCONT);
    let ok = post(&c.nodes[0], &quorum);
    assert_eq!(ok.status, 200, "one replica down: {}", ok.text());
    c.nodes[2].signal(libc::SIGCONT);
    for attempt in 0..5 {
        for body in [&partial, &quorum] {
            let r = post(&c.nodes[attempt % 3], body);
            assert_eq!(r.status, 200, "resend {attempt} through node {}: {}", attempt % 3, r.text());
        }
    }
    for (n, r) in c.nodes.iter().enumerate() {
        // Exactly once: each replica appended each sample once, however often it was resent
        // (the resends are exact duplicates, accepted and not stored again).
        let appended =
            r.metric("prometheus_tsdb_head_samples_appended_total{tenant=\"default-tenant\",type=\"float\"}");
        assert_eq!(appended, Some(120.0), "node {n}");
    }
    for r in &mut c.nodes {
        assert!(r.terminate().success(), "{}", r.logs());
    }
    for (n, r) in c.nodes.iter().enumerate() {
        let dump = held(&tenant_dir(r));
        assert_eq!(dump.len(), 40, "node {n}: every series, nothing else");
        for (s, samples) in &dump {
            let got: Vec<(i64, f64)> = samples.iter().map(|(t, bits)| (*t, f64::from_bits(*bits))).collect();
            assert_eq!(got, [(T0, 1.0), (T0 + 15_000, 2.0), (T0 + 30_000, 3.0)], "node {n}: {s}");
        }
    }
}

/// Network partition (reliability checklist 15): node 2 is reached by its peers only through a
/// fault proxy, which blackholes it (connections hang, nothing flows either way) while a load
/// goes through nodes 0 and 1, then heals. Every write answers 2xx, well before the forward
/// timeout (the quorum does not wait for the partitioned replica), during the partition and
/// after it, and every acknowledged sample ends on at least two nodes.
#[test]
fn a_partitioned_replica_neither_stops_nor_slows_writes_beyond_the_forward_timeout() {
    use ringest_e2e::faultproxy::{FaultProxy, Mode};
    let tmp = tempfile::tempdir().unwrap();
    let ring_file = tmp.path().join("hashrings.json");
    let mut nodes: Vec<Receiver> = (0..3).map(|i| Receiver::unstarted(&tmp.path().join(format!("node{i}")))).collect();
    let proxy = FaultProxy::start(nodes[2].grpc_addr.parse().unwrap());
    let eps = [nodes[0].grpc_addr.clone(), nodes[1].grpc_addr.clone(), proxy.endpoint()];
    let eps_ref: Vec<&str> = eps.iter().map(String::as_str).collect();
    std::fs::write(&ring_file, ring_json(&eps_ref, "hashmod")).unwrap();
    for (r, ep) in nodes.iter_mut().zip(&eps) {
        r.extra = vec![
            format!("--receive.hashrings-file={}", ring_file.display()),
            format!("--receive.local-endpoint={ep}"),
            "--receive.replication-factor=3".into(),
            "--receive-forward-timeout=2s".into(),
        ];
        r.relaunch();
    }
    for r in &mut nodes {
        r.wait_ready(Duration::from_secs(60));
    }
    let w = workload("partition", 200);
    let mut acked = Acked::new();
    let mut conns: Vec<RemoteWriter> = nodes[..2].iter().map(|r| RemoteWriter::connect(&r.rw_addr).unwrap()).collect();
    let mut round = 0;
    let mut phase = |acked: &mut Acked, rounds: usize| {
        for _ in 0..rounds {
            let started = Instant::now();
            w.send(&mut conns[round % 2], round..round + 1, acked)
                .unwrap_or_else(|f| panic!("round {round}: {}", f.reason));
            assert!(started.elapsed() < Duration::from_millis(1500), "round {round} took {:?}", started.elapsed());
            round += 1;
        }
    };
    phase(&mut acked, 4);
    proxy.set_mode(Mode::Blackhole);
    phase(&mut acked, 10);
    proxy.set_mode(Mode::Pass);
    phase(&mut acked, 6);
    stop_and_check_quorum_copies(&mut nodes, &acked);
}

/// Checklist B.15, one direction only: node 2 reaches its peers only through fault proxies
/// (its own hashring file names them; the peers' files name node 2 directly), which blackhole
/// node 2's outgoing traffic while its peers still reach it. Writes through nodes 0 and 1 keep
/// answering 2xx at once (their quorum includes node 2); a write through node 2, which cannot
/// reach a second replica, answers 503 within the forward timeout plus a second and is never
/// acknowledged; once healed, node 2 answers 2xx again within 10 s; every acknowledged sample
/// is on at least two nodes.
#[test]
fn a_one_way_partition_fails_only_the_writes_that_cannot_reach_a_quorum() {
    use ringest_e2e::faultproxy::{FaultProxy, Mode};
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Receiver> = (0..3).map(|i| Receiver::unstarted(&tmp.path().join(format!("node{i}")))).collect();
    let proxies: Vec<FaultProxy> = nodes[..2].iter().map(|r| FaultProxy::start(r.grpc_addr.parse().unwrap())).collect();
    let direct: Vec<String> = nodes.iter().map(|r| r.grpc_addr.clone()).collect();
    // Node 2 reaches nodes 0 and 1 through the proxies.
    start_ring_via(
        &mut nodes,
        tmp.path(),
        |i, j| if i == 2 && j < 2 { proxies[j].endpoint() } else { direct[j].clone() },
    );
    let w = workload("oneway", 100);
    let mut acked = Acked::new();
    let mut conns: Vec<RemoteWriter> = nodes.iter().map(|r| RemoteWriter::connect(&r.rw_addr).unwrap()).collect();
    let mut round = 0;
    // Every node answers 2xx at once while the network is whole.
    for conn in conns.iter_mut() {
        w.send(conn, round..round + 1, &mut acked).unwrap_or_else(|f| panic!("round {round}: {}", f.reason));
        round += 1;
    }
    for p in &proxies {
        p.set_mode(Mode::Blackhole);
    }
    for _ in 0..3 {
        for (n, conn) in conns.iter_mut().enumerate() {
            let started = Instant::now();
            let res = w.send(conn, round..round + 1, &mut acked);
            let took = started.elapsed();
            if n == 2 {
                let f = res.expect_err("node 2 cannot reach a quorum");
                assert!(f.reason.starts_with("503"), "node 2: {}", f.reason);
                assert!(took < Duration::from_secs(3), "node 2 answered after {took:?}");
            } else {
                res.unwrap_or_else(|f| panic!("node {n}, round {round}: {}", f.reason));
                assert!(took < Duration::from_millis(1500), "node {n} took {took:?}");
            }
            round += 1;
        }
    }
    for p in &proxies {
        p.set_mode(Mode::Pass);
    }
    let healed = Instant::now();
    loop {
        match w.send(&mut conns[2], round..round + 1, &mut acked) {
            Ok(()) => break,
            Err(f) => assert!(healed.elapsed() < Duration::from_secs(10), "node 2 still failing: {}", f.reason),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    round += 1;
    for conn in conns.iter_mut() {
        w.send(conn, round..round + 1, &mut acked).unwrap_or_else(|f| panic!("after healing: {}", f.reason));
        round += 1;
    }
    stop_and_check_quorum_copies(&mut nodes, &acked);
}

/// Starts `nodes` (unstarted) as one RF=3 hashmod ring in which node `i` reaches node `j`
/// at `endpoint(i, j)` (its own gRPC address, or a fault proxy's), each with its own hashring
/// file in `dir`, and waits until all are ready.
fn start_ring_via(nodes: &mut [Receiver], dir: &Path, endpoint: impl Fn(usize, usize) -> String) {
    for (i, r) in nodes.iter_mut().enumerate() {
        let eps: Vec<String> = (0..3).map(|j| endpoint(i, j)).collect();
        let file = dir.join(format!("hashrings{i}.json"));
        std::fs::write(&file, ring_json(&eps.iter().map(String::as_str).collect::<Vec<_>>(), "hashmod")).unwrap();
        r.extra = vec![
            format!("--receive.hashrings-file={}", file.display()),
            format!("--receive.local-endpoint={}", eps[i]),
            "--receive.replication-factor=3".into(),
            "--receive-forward-timeout=2s".into(),
        ];
        r.relaunch();
    }
    for r in nodes.iter_mut() {
        r.wait_ready(Duration::from_secs(60));
    }
}

/// Records every sample of `round` as sent (acknowledged or not, it may be stored).
fn record_sent(w: &Workload, round: usize, sent: &mut Acked) {
    for (_, batch) in w.round(round) {
        for (series, t, bits) in batch {
            sent.entry(series).or_default().insert(t, bits);
        }
    }
}

/// A small deterministic generator (xorshift64*): a seed gives the same schedule every time.
struct Schedule(u64);

impl Schedule {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// Randomized faults on a 3-node RF=3 ring (checklist B.23, on real processes): per seed, a
/// schedule of writes through random nodes mixed with kill -9 and restarts of nodes, and
/// links between nodes (each node reaches each peer through its own fault proxy) blackholed,
/// slowed and healed. At the end, with the network whole and every node up, every node takes
/// writes again; then the checker reads every node's storage: no acknowledged sample missing
/// from the two nodes of its quorum (lost), no sample that was never sent (phantom), no sample
/// with another value than the one sent (conflicting duplicate). The schedule depends only on
/// the seed, so a failing seed is run again with `RINGEST_NEMESIS_SEEDS=<seed>`
/// (`RINGEST_NEMESIS_OPS`: operations per seed, 60 by default; 8 seeds by default). Timing between processes is
/// not simulated: the seed replays the faults, not the interleaving.
#[test]
fn random_kills_partitions_and_slow_links_lose_invent_and_change_nothing() {
    use ringest_e2e::faultproxy::{FaultProxy, Mode};
    let seeds: Vec<u64> = std::env::var("RINGEST_NEMESIS_SEEDS")
        .unwrap_or_else(|_| "1,2,3,4,5,6,7,8".into())
        .split(',')
        .map(|s| s.trim().parse().expect("a seed"))
        .collect();
    let ops: usize = std::env::var("RINGEST_NEMESIS_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    for seed in seeds {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Receiver> =
            (0..3).map(|i| Receiver::unstarted(&tmp.path().join(format!("node{i}")))).collect();
        // links[i][j]: node i's way to node j.
        let links: Vec<Vec<Option<FaultProxy>>> = (0..3)
            .map(|i| (0..3).map(|j| (i != j).then(|| FaultProxy::start(nodes[j].grpc_addr.parse().unwrap()))).collect())
            .collect();
        let direct: Vec<String> = nodes.iter().map(|r| r.grpc_addr.clone()).collect();
        start_ring_via(&mut nodes, tmp.path(), |i, j| {
            links[i][j].as_ref().map_or_else(|| direct[j].clone(), |p| p.endpoint())
        });
        let w = workload(&format!("nemesis{seed}"), 50);
        let (mut acked, mut sent) = (Acked::new(), Acked::new());
        let mut up = [true; 3];
        let mut round = 0;
        let mut s = Schedule(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut log: Vec<String> = Vec::new();
        for _ in 0..ops {
            let op = s.below(20);
            let n = s.below(3);
            match op {
                0..=10 => {
                    let mut once = Acked::new();
                    let res = RemoteWriter::connect(&nodes[n].rw_addr)
                        .map_err(|e| e.to_string())
                        .and_then(|mut c| w.send(&mut c, round..round + 1, &mut once).map_err(|f| f.reason));
                    record_sent(&w, round, &mut sent);
                    for (series, samples) in once {
                        acked.entry(series).or_default().extend(samples);
                    }
                    log.push(format!(
                        "write round {round} via {n}: {}",
                        res.as_ref().map_or_else(|e| e.as_str(), |_| "2xx")
                    ));
                    round += 1;
                }
                11 | 12 if up[n] && up.iter().filter(|&&u| u).count() > 1 => {
                    nodes[n].kill9();
                    up[n] = false;
                    log.push(format!("kill -9 {n}"));
                }
                11..=13 if !up[n] => {
                    nodes[n].relaunch();
                    nodes[n].wait_ready(Duration::from_secs(60));
                    up[n] = true;
                    log.push(format!("restart {n}"));
                }
                14..=16 => {
                    let j = (n + 1 + s.below(2)) % 3;
                    let mode = if op == 16 {
                        Mode::Slow { delay_per_chunk: Duration::from_millis(50) }
                    } else {
                        Mode::Blackhole
                    };
                    log.push(format!("link {n}->{j}: {mode:?}"));
                    links[n][j].as_ref().unwrap().set_mode(mode);
                }
                _ => {
                    let j = (n + 1 + s.below(2)) % 3;
                    links[n][j].as_ref().unwrap().set_mode(Mode::Pass);
                    log.push(format!("heal {n}->{j}"));
                }
            }
        }
        // Whole again: every link passes, every node up, every node takes writes.
        for p in links.iter().flatten().flatten() {
            p.set_mode(Mode::Pass);
        }
        for (i, r) in nodes.iter_mut().enumerate() {
            if !up[i] {
                r.relaunch();
                r.wait_ready(Duration::from_secs(60));
            }
        }
        for (n, node) in nodes.iter().enumerate() {
            let healed = Instant::now();
            loop {
                let mut once = Acked::new();
                let mut c = RemoteWriter::connect(&node.rw_addr).unwrap();
                let res = w.send(&mut c, round..round + 1, &mut once);
                record_sent(&w, round, &mut sent);
                round += 1;
                for (series, samples) in once {
                    acked.entry(series).or_default().extend(samples);
                }
                match res {
                    Ok(()) => break,
                    Err(f) => assert!(
                        healed.elapsed() < Duration::from_secs(15),
                        "seed {seed}: node {n} still refuses writes once healed: {}\n{}",
                        f.reason,
                        log.join("\n")
                    ),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for r in nodes.iter_mut() {
            assert!(r.terminate().success(), "seed {seed}: {}", r.logs());
        }
        let dumps: Vec<Acked> = nodes.iter().map(|r| held(&tenant_dir(r))).collect();
        let schedule = log.join("\n");
        for (series, samples) in &acked {
            for (t, bits) in samples {
                let copies = dumps.iter().filter(|d| d.get(series).and_then(|x| x.get(t)) == Some(bits)).count();
                assert!(copies >= 2, "seed {seed}: lost: {series} @ {t} on {copies} nodes\n{schedule}");
            }
        }
        for (i, d) in dumps.iter().enumerate() {
            for (series, samples) in d.iter().filter(|(s, _)| s.contains(&format!("nemesis{seed}_"))) {
                for (t, bits) in samples {
                    let want = sent.get(series).and_then(|x| x.get(t));
                    assert!(want.is_some(), "seed {seed}: phantom on node {i}: {series} @ {t}\n{schedule}");
                    assert_eq!(
                        want,
                        Some(bits),
                        "seed {seed}: node {i} holds {series} @ {t} with another value\n{schedule}"
                    );
                }
            }
        }
        let acks = acked.values().map(|s| s.len()).sum::<usize>();
        assert!(acks > 0, "seed {seed}: nothing was acknowledged\n{schedule}");
        let count = |what: &str| log.iter().filter(|l| l.contains(what)).count();
        eprintln!(
            "seed {seed}: {} writes ({} acknowledged), {} kills, {} links cut or slowed, {acks} samples acknowledged",
            count("write"),
            count(": 2xx"),
            count("kill"),
            count("link"),
        );
    }
}
