//! Thanos' own tools over the bucket a ringest ring fills (moto S3 on loopback; the store,
//! query and compactor read a local copy of it, see below).
//!
//! A 3-node ringest ring (RF=3) takes 2 to 4 weeks of samples (60 series, one every 6 hours,
//! written in time order as fast as they are acknowledged), cuts 2h blocks as it goes and
//! uploads them, then is stopped (the final blocks flushed and uploaded). Then, with the real
//! `thanos` binary:
//! - `thanos tools bucket verify` finds no issue, and does find one planted on purpose (a copy
//!   of a block under another ULID: overlapping blocks), so the check can fail;
//! - `thanos tools bucket inspect` lists every block in the bucket with its external labels;
//! - `thanos store` + `thanos query` (deduplicating on the replica label) return exactly the
//!   samples that were acknowledged, and several PromQL queries give what the samples imply;
//! - `thanos compact` with vertical deduplication on the replica label and downsampling
//!   finishes without error and leaves 5m and 1h downsampled blocks;
//! - the same queries over the compacted bucket give the same answers, and `count_over_time`
//!   over the 1h-downsampled blocks counts the raw samples.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ringest_e2e::Impl::Ringest as R;
use ringest_e2e::ring::{LoadRun, Ring, now_ms, run_load};
use ringest_e2e::s3::{Moto, MotoOpts};
use ringest_e2e::thanos::{self, Component, query_escape, s3_objstore};
use ringest_loadgen::check::{self, Dump};
use ringest_loadgen::plan::Layout;
use ringest_loadgen::shape::Shape;

const BUCKET: &str = "thanos";
const SERIES: usize = 60;
const STEP_MS: i64 = 6 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
const WEEKS2_MS: i64 = 14 * DAY_MS;
const PREFIX: &str = "bkt";

/// 60 series, one sample every 6 hours (so every sample starts a 2h block of its own) from
/// the start of the last complete 14-day window of the compactor's (epoch-aligned) ranges until
/// now: that window compacts into one 14-day block, which is downsampled to 1h. The number of
/// rounds comes with it.
fn layout() -> (Layout, usize) {
    let mut shape = Shape::node(SERIES);
    shape.prefix = PREFIX.into();
    shape.interval_ms = STEP_MS;
    shape.start_ms = (now_ms() / WEEKS2_MS - 1) * WEEKS2_MS;
    let rounds = ((now_ms() - shape.start_ms) / STEP_MS - 1) as usize;
    (Layout { shape, shards: 1, max_samples_per_send: SERIES, remote_write_v2: false }, rounds)
}

/// The time range the workload covers, and a query range that holds all of it.
fn span(run: &LoadRun) -> (i64, i64, String) {
    let shape = &run.log.header.layout.shape;
    let end = shape.start_ms + run.log.header.end_round as i64 * STEP_MS;
    (shape.start_ms, end, format!("{}s", (end - shape.start_ms + DAY_MS) / 1000))
}

/// One row of `thanos tools bucket inspect --output=tsv`.
#[derive(Debug)]
struct Block {
    ulid: String,
    resolution: String,
    labels: String,
}

fn inspect(objstore: &str) -> Vec<Block> {
    let (ok, out, err) = thanos::run(&["tools", "bucket", "inspect", objstore, "--output=tsv"]);
    assert!(ok, "thanos tools bucket inspect failed:\n{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (u, r, l) = (col("ULID"), col("RESOLUTION"), col("LABELS"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Block { ulid: f[u].into(), resolution: f[r].into(), labels: f[l].into() }
        })
        .collect()
}

/// The blocks (ULIDs) whose `meta.json` is in the bucket.
fn bucket_blocks(moto: &Moto) -> BTreeSet<String> {
    moto.list_objects(BUCKET)
        .into_iter()
        .filter_map(|(k, _)| k.strip_suffix("/meta.json").map(String::from))
        .filter(|k| !k.contains('/'))
        .collect()
}

/// Runs `thanos store` and `thanos query` over the bucket.
fn query_stack(dir: &Path, objstore: &str) -> (Component, Component) {
    let store = Component::start(
        "store",
        &dir.join("store"),
        &[format!("--data-dir={}", dir.join("store/data").display()), objstore.into(), "--consistency-delay=0s".into()],
    );
    let query = Component::start(
        "query",
        &dir.join("query"),
        // chain: merge the replicas' samples. A receiver acknowledges at quorum, so one replica
        // may lack a sample (its copy overtaken by the next write of the series); the default
        // penalty algorithm does not fill such one-sample gaps from another replica.
        &[
            format!("--endpoint={}", store.grpc_addr),
            "--query.replica-label=receive_replica".into(),
            "--deduplication.func=chain".into(),
        ],
    );
    (store, query)
}

/// A Prometheus API query (`query` or `query_range` parameters), deduplicated.
fn api(q: &Component, params: &[(&str, String)]) -> serde_json::Value {
    let mut path = String::from("/api/v1/query?dedup=true&partial_response=false");
    for (k, v) in params {
        path.push_str(&format!("&{k}={}", query_escape(v)));
    }
    q.api(&path)
}

/// Series labels as the checker keys them, without the external labels the store adds.
fn series_key(metric: &serde_json::Value) -> String {
    let mut labels: Vec<(String, String)> = metric
        .as_object()
        .expect("metric")
        .iter()
        .filter(|(k, _)| *k != "tenant_id" && *k != "receive_replica")
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
        .collect();
    labels.sort();
    check::labels_string(&labels)
}

/// Every raw sample of the workload through Thanos Query, as a checker dump.
fn raw_samples(q: &Component, range: &str, at_ms: i64, resolution: &str) -> Dump {
    let v = api(
        q,
        &[
            ("query", format!("{{__name__=~\"{PREFIX}_.*\"}}[{range}]")),
            ("time", format!("{}", at_ms as f64 / 1000.0)),
            ("max_source_resolution", resolution.into()),
        ],
    );
    let mut dump = Dump::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let key = series_key(&s["metric"]);
        let samples = dump.entry(key.clone()).or_default();
        for p in s["values"].as_array().expect("values") {
            let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
            let prev = samples.insert(t, p[1].as_str().expect("value").to_string());
            assert!(prev.is_none(), "{key} @ {t} twice after deduplication");
        }
    }
    dump
}

/// `count_over_time(<name>[range])` at `at_ms` for every metric name of the model, keyed by
/// series (functions over range vectors drop the name, so each name is asked for alone).
fn counts(q: &Component, names: &BTreeSet<String>, range: &str, at_ms: i64, resolution: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for name in names {
        for (key, v) in vector(q, &format!("count_over_time({name}[{range}])"), at_ms, resolution) {
            let key = key.replacen('{', &format!("{{__name__=\"{name}\", "), 1);
            out.insert(key, v);
        }
    }
    out
}

/// Metric names of the model's series.
fn names(model: &BTreeMap<String, BTreeMap<i64, f64>>) -> BTreeSet<String> {
    model.keys().filter_map(|k| k.strip_prefix("{__name__=\"")?.split('"').next().map(String::from)).collect()
}

/// Instant vector results as label key → value.
fn vector(q: &Component, query: &str, at_ms: i64, resolution: &str) -> BTreeMap<String, f64> {
    let v = api(
        q,
        &[
            ("query", query.into()),
            ("time", format!("{}", at_ms as f64 / 1000.0)),
            ("max_source_resolution", resolution.into()),
        ],
    );
    v["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|s| (series_key(&s["metric"]), s["value"][1].as_str().unwrap().parse::<f64>().unwrap()))
        .collect()
}

/// The acknowledged samples, per series, from the load's own record.
fn model(run: &LoadRun) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let l = &run.log.header.layout;
    let members = ringest_loadgen::plan::Plan::members_of(l);
    let mut m: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for id in &run.log.acked {
        for (labels, t, v) in ringest_loadgen::plan::samples_of(l, &members, *id) {
            let mut labels = labels;
            labels.sort();
            m.entry(check::labels_string(&labels)).or_default().insert(t, v);
        }
    }
    m
}

/// The queries whose answers follow from the samples: raw samples exactly, sample counts,
/// and sums across series at a few instants.
fn assert_queries(q: &Component, run: &LoadRun, model: &BTreeMap<String, BTreeMap<i64, f64>>, what: &str) {
    let (start, end, range) = span(run);
    let dump = raw_samples(q, &range, end, "0s");
    let rep = check::check(&run.log, &dump);
    assert!(rep.ok() && rep.intact == rep.acked && rep.acked > 0, "{what}: raw samples through Thanos Query: {rep:?}");

    let got = counts(q, &names(model), &range, end, "0s");
    let want: BTreeMap<String, f64> = model.iter().map(|(k, s)| (k.clone(), s.len() as f64)).collect();
    assert_eq!(got, want, "{what}: count_over_time");

    // sum by (job) at instants 1 s after a round (every series has a sample within the 5m
    // lookback: the one of that round).
    let rounds = run.log.header.end_round;
    for round in [1, rounds / 2, rounds - 1] {
        let t = start + round as i64 * STEP_MS + 1000;
        let got = vector(q, &format!("sum by (job) ({{__name__=~\"{PREFIX}_.*\"}})"), t, "0s");
        let sum: f64 = model.values().filter_map(|s| s.range(..=t).next_back().map(|(_, v)| *v)).sum();
        let total: f64 = got.values().sum();
        assert!((total - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{what}: sum at round {round}: {total} vs {sum}");
    }
}

#[test]
fn thanos_tools_store_query_and_compactor_over_a_ringest_bucket() {
    let moto = Moto::start(MotoOpts::default()).unwrap();
    moto.create_bucket(BUCKET).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let objstore_file = tmp.path().join("objstore.yml");
    std::fs::write(&objstore_file, s3_objstore(&moto.endpoint(), BUCKET)).unwrap();
    let objstore = format!("--objstore.config-file={}", objstore_file.display());

    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1}s {what}", t0.elapsed().as_secs_f64());
    let mut ring = Ring::start(&[R, R, R], &["--receive.replication-factor=3".into(), objstore.clone()]);
    let (l, rounds) = layout();
    let run = run_load(&l, rounds, &ring.nodes[0].rw_addr, None, None);
    run.assert_all_2xx_first_time("the workload through node 0");
    for r in &mut ring.nodes {
        let st = r.terminate();
        assert!(st.success(), "exited with {st}:\n{}", r.logs());
    }
    phase("written and stopped");
    let model = model(&run);

    // verify: clean, and able to see a planted overlap.
    let (ok, out, err) = verify(&objstore);
    assert!(ok, "thanos tools bucket verify:\n{out}\n{err}");
    assert!(!err.contains("level=error") && !err.contains("level=warn"), "{err}");
    let blocks = bucket_blocks(&moto);
    // A block per sample window and replica (a replica may lack a window: a receiver answers
    // at quorum, and the third copy of a write can be overtaken by the next one).
    assert!(blocks.len() >= 2 * rounds, "{} blocks in the bucket for {rounds} rounds", blocks.len());
    let planted = plant_overlap(&moto, blocks.iter().next().unwrap());
    let (_, _, err) = verify(&objstore);
    assert!(err.contains("overlap") && err.contains(&planted), "verify did not report the planted overlap:\n{err}");
    remove_block(&moto, &planted);

    phase("verified");
    // inspect: every block, with the ring's external labels.
    let listed = inspect(&objstore);
    let ulids: BTreeSet<String> = listed.iter().map(|b| b.ulid.clone()).collect();
    assert_eq!(ulids, blocks, "inspect lists every block of the bucket");
    for b in &listed {
        assert!(b.labels.contains("tenant_id=default-tenant") && b.labels.contains("receive_replica=node"), "{b:?}");
    }
    let replicas: BTreeSet<&str> = listed.iter().filter_map(|b| b.labels.split("receive_replica=").nth(1)).collect();
    assert_eq!(replicas.len(), 3, "blocks of all three replicas: {replicas:?}");

    phase("inspected");
    // The rest reads a copy of the bucket in a local directory (Thanos' FILESYSTEM bucket,
    // the same objects): moto serves about 150 requests a second on one core, and the
    // compactor re-reads every block's markers on each of its ~60 passes (hours of moto).
    let fs_bucket = tmp.path().join("bucket");
    for (key, _) in moto.list_objects(BUCKET) {
        let path = fs_bucket.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, moto.get_object(BUCKET, &key)).unwrap();
    }
    let objstore = format!("--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n", fs_bucket.display());

    // Store + Query over the raw blocks, deduplicating the three replicas.
    {
        let (_store, query) = query_stack(&tmp.path().join("before"), &objstore);
        assert_queries(&query, &run, &model, "raw blocks");
    }

    phase("queried the raw blocks");
    // The compactor: vertical deduplication on the replica label, downsampling.
    let (ok, out, err) = thanos::run(&[
        "compact",
        &objstore,
        &format!("--data-dir={}", tmp.path().join("compact").display()),
        "--http-address=127.0.0.1:0",
        "--consistency-delay=0s",
        "--delete-delay=0s",
        "--deduplication.replica-label=receive_replica",
        "--compact.enable-vertical-compaction",
    ]);
    assert!(ok, "thanos compact failed:\n{out}\n{err}");
    assert!(!err.contains("level=error"), "{err}");
    phase("compacted");
    let after = inspect(&objstore);
    let resolutions: BTreeSet<&str> = after.iter().map(|b| b.resolution.as_str()).collect();
    assert!(resolutions.contains("5m0s") && resolutions.contains("1h0m0s"), "resolutions after compaction: {after:?}");
    assert!(after.iter().all(|b| !b.labels.contains("receive_replica")), "deduplicated: {after:?}");
    let (ok, out, err) = verify(&objstore);
    assert!(ok && !err.contains("level=warn"), "verify after compaction:\n{out}\n{err}");

    let (_store, query) = query_stack(&tmp.path().join("after"), &objstore);
    assert_queries(&query, &run, &model, "compacted blocks");
    // The 1h-downsampled blocks count the raw samples of a week inside their range.
    let start = l.shape.start_ms;
    let t = start + 9 * DAY_MS;
    let got = counts(&query, &names(&model), "7d", t, "1h");
    let want: BTreeMap<String, f64> =
        model.iter().map(|(k, s)| (k.clone(), s.range(t - 7 * DAY_MS + 1..=t).count() as f64)).collect();
    assert_eq!(got, want, "count_over_time over 1h-downsampled blocks");
}

/// `thanos tools bucket verify` of every issue it checks without repairing.
fn verify(objstore: &str) -> (bool, String, String) {
    thanos::run(&[
        "tools",
        "bucket",
        "verify",
        objstore,
        "--issues=overlapped_blocks",
        "--issues=index_known_issues",
        "--issues=duplicated_compaction",
    ])
}

/// Copies block `ulid` under another ULID (same labels and range: an overlap) and returns it.
fn plant_overlap(moto: &Moto, ulid: &str) -> String {
    let last = ulid.chars().last().unwrap();
    let copy = format!("{}{}", &ulid[..ulid.len() - 1], if last == 'Z' { 'Y' } else { 'Z' });
    for (key, _) in moto.list_objects(BUCKET) {
        let Some(rest) = key.strip_prefix(&format!("{ulid}/")) else { continue };
        let mut body = moto.get_object(BUCKET, &key);
        if rest == "meta.json" {
            body = String::from_utf8(body).unwrap().replace(ulid, &copy).into_bytes();
        }
        moto.put_object(BUCKET, &format!("{copy}/{rest}"), &body).unwrap();
    }
    copy
}

fn remove_block(moto: &Moto, ulid: &str) {
    for (key, _) in moto.list_objects(BUCKET) {
        if key.starts_with(&format!("{ulid}/")) {
            let r =
                moto.client().request("DELETE", &ringest_e2e::s3::object_path(BUCKET, &key), &[], &[], &[]).unwrap();
            assert!(r.status == 204 || r.status == 200, "DELETE {key}: {}", r.status);
        }
    }
}
