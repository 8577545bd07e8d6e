//! Shipping blocks to object storage, from outside, against a real S3 server (moto on
//! loopback): Thanos' bucket layout and meta.json, meta.json last, the bucket alone holding
//! every acknowledged sample after SIGTERM, an S3 outage, kill -9 in the middle of an upload,
//! each S3 failure of the troubleshooting guide explained and counted, and a FILESYSTEM bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringest_e2e::faultproxy::{FaultProxy, Mode};
use ringest_e2e::oracle::{assert_exact, assert_exact_with, copy_dir};
use ringest_e2e::s3::{Moto, MotoOpts, sha256};
use ringest_e2e::workload::{Acked, Workload};
use ringest_e2e::{Receiver, RemoteWriter, free_port, http_get, wait_for};

const H: i64 = 3_600_000;
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % (2 * H) + 17 * 60_000;
const BUCKET: &str = "thanos";
const TENANT: &str = "default-tenant";

fn workload() -> Workload {
    Workload { series: 300, batch: 300, start_ms: T0, step_ms: 60_000, name: "ship".into() }
}

/// Five hours of one-minute rounds: blocks are cut while it runs. Returns what was acked and
/// the samples of a request cut short (if the process died).
fn load(r: &Receiver) -> (Acked, Acked) {
    let mut acked = Acked::new();
    let mut maybe = Acked::new();
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    if let Err(cut) = workload().send(&mut conn, 0..300, &mut acked) {
        for (l, t, v) in cut.sent {
            maybe.entry(l).or_default().insert(t, v);
        }
    }
    (acked, maybe)
}

fn s3_yaml(endpoint: &str, bucket: &str, (key, secret): (&str, &str), extra: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: {endpoint}\n  access_key: {key}\n  secret_key: {secret}\n  \
         insecure: true\n  max_retries: 2\n{extra}"
    )
}

fn config_file(dir: &Path, name: &str, yaml: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    format!("--objstore.config-file={}", p.display())
}

fn local_blocks(tenant: &Path) -> BTreeSet<String> {
    std::fs::read_dir(tenant)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("meta.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 26)
                .collect()
        })
        .unwrap_or_default()
}

/// Blocks whose meta.json is in the bucket.
fn shipped(objects: &[(String, u64)]) -> BTreeSet<String> {
    objects.iter().filter_map(|(k, _)| k.strip_suffix("/meta.json")).map(str::to_string).collect()
}

/// Checks one uploaded block against its local copy and Thanos' rules (shared spec §7.3, §7.4).
/// Checklist C.28: no local block is a merge of others (ringest never compacts blocks
/// locally, so nothing not yet uploaded can be merged away): each is level 1, its own source.
fn assert_unmerged(tenant: &Path) {
    for ulid in local_blocks(tenant) {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tenant.join(&ulid).join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["compaction"]["level"], 1, "{meta}");
        assert_eq!(meta["compaction"]["sources"], serde_json::json!([ulid]), "{meta}");
    }
}

fn check_block(ulid: &str, objects: &BTreeMap<String, u64>, meta: &serde_json::Value, local: Option<&Path>) {
    let keys: Vec<&String> = objects.keys().filter(|k| k.starts_with(&format!("{ulid}/"))).collect();
    assert!(
        keys.iter().all(|k| k.ends_with("/index") || k.ends_with("/meta.json") || k.contains("/chunks/")),
        "{keys:?}"
    );
    assert_eq!(meta["ulid"], ulid);
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["compaction"]["level"], 1);
    let th = &meta["thanos"];
    assert_eq!(th["labels"], serde_json::json!({"receive_replica": "e2e", "tenant_id": TENANT}), "{meta}");
    assert_eq!(th["downsample"]["resolution"], 0);
    assert_eq!(th["source"], "receive");
    assert_eq!(th["index_stats"], serde_json::json!({}));
    assert!(th.get("version").is_none());
    let upload_time = th["upload_time"].as_str().unwrap();
    assert!(upload_time.ends_with('Z') && upload_time.len() >= 20, "{upload_time}");
    let files = th["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["rel_path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "files sorted by path");
    assert_eq!(paths.last(), Some(&"meta.json"));
    assert!(files.last().unwrap().get("size_bytes").is_none());
    let segments: Vec<String> =
        th["segment_files"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    assert!(!segments.is_empty());
    for f in &files[..files.len() - 1] {
        let rel = f["rel_path"].as_str().unwrap();
        let key = format!("{ulid}/{rel}");
        let size = objects.get(&key).unwrap_or_else(|| panic!("{key} listed in meta.json but not in the bucket"));
        assert_eq!(f["size_bytes"].as_u64(), Some(*size), "{key}");
        if let Some(dir) = local {
            let data = std::fs::read(dir.join(rel)).unwrap();
            assert_eq!(data.len() as u64, *size, "{key}: object size equals the local file");
            if let Some(h) = f.get("hash") {
                assert_eq!(h["hashFunc"], "SHA256");
                let hex: String = sha256(&data).iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(h["value"], hex.as_str(), "{key}");
            }
        }
    }
    let chunk_files: Vec<String> = paths.iter().filter_map(|p| p.strip_prefix("chunks/")).map(str::to_string).collect();
    assert_eq!(chunk_files, segments, "segment_files are the chunk files");
    if let Some(dir) = local {
        let prom: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        for k in ["ulid", "minTime", "maxTime", "stats", "compaction", "version"] {
            assert_eq!(meta[k], prom[k], "{k} as in the local meta.json");
        }
    }
}

/// In the server's request log, each block's meta.json is written after its chunks and index.
fn check_meta_last(moto: &Moto) {
    let puts: Vec<String> = moto
        .bucket_requests(BUCKET)
        .into_iter()
        .filter(|(m, _, status)| m == "PUT" && *status < 300)
        .map(|(_, p, _)| p.split('?').next().unwrap().trim_start_matches(&format!("/{BUCKET}/")).to_string())
        .collect();
    for (i, p) in puts.iter().enumerate() {
        if let Some(ulid) = p.strip_suffix("/meta.json") {
            let before: Vec<&String> = puts[..i].iter().filter(|q| q.starts_with(&format!("{ulid}/"))).collect();
            assert!(before.iter().any(|q| q.ends_with("/index")), "meta.json of {ulid} before its index: {puts:?}");
            assert!(before.iter().any(|q| q.contains("/chunks/")), "meta.json of {ulid} before its chunks: {puts:?}");
            assert!(
                !puts[i + 1..].iter().any(|q| q.starts_with(&format!("{ulid}/")) && !q.ends_with("/meta.json")),
                "a file of {ulid} written after its meta.json: {puts:?}"
            );
        }
    }
}

/// The shipper state at `path`, if written, after checking it is whole JSON of version 1 (it is
/// written aside, then renamed, so a kill -9 never leaves it empty or partial).
fn shipper_state_whole(path: &Path, when: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{when}: thanos.shipper.json is not whole: {e}: {bytes:?}"));
    assert_eq!(json["version"], 1, "{when}: {json}");
    Some(json)
}

/// The bucket holds exactly the blocks of `tenant` (the directory) in `local`, each whole and
/// its meta.json written once, and the tenant's `thanos.shipper.json` lists each once.
fn assert_each_block_uploaded_once(moto: &Moto, local: &BTreeSet<String>, tenant: &Path) {
    let objects = moto.list_objects(BUCKET);
    assert_eq!(&shipped(&objects), local, "the bucket holds exactly the blocks on disk");
    let map: BTreeMap<String, u64> = objects.iter().cloned().collect();
    for ulid in local {
        let meta: serde_json::Value =
            serde_json::from_slice(&moto.get_object(BUCKET, &format!("{ulid}/meta.json"))).unwrap();
        check_block(ulid, &map, &meta, Some(&tenant.join(ulid)));
    }
    let metas: Vec<String> = moto
        .bucket_requests(BUCKET)
        .into_iter()
        .filter(|(m, p, status)| m == "PUT" && *status < 300 && p.contains("/meta.json"))
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(metas.len(), local.len(), "each block's meta.json written once: {metas:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tenant.join("thanos.shipper.json")).unwrap()).unwrap();
    let listed: Vec<&str> = state["uploaded"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert_eq!(listed.len(), local.len(), "thanos.shipper.json lists each block once: {listed:?}");
    assert_eq!(&listed.iter().map(|u| u.to_string()).collect::<BTreeSet<_>>(), local);
}

/// Downloads every complete block of the bucket into `<dir>/` (plus an empty wal/).
fn download(moto: &Moto, dir: &Path) -> usize {
    let objects = moto.list_objects(BUCKET);
    let done = shipped(&objects);
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    for (key, _) in &objects {
        if done.iter().any(|u| key.starts_with(&format!("{u}/"))) {
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, moto.get_object(BUCKET, key)).unwrap();
        }
    }
    done.len()
}

fn moto() -> Moto {
    let m = Moto::start(MotoOpts::default()).expect("start moto_server");
    m.create_bucket(BUCKET).unwrap();
    m
}

fn metric(r: &Receiver, name: &str) -> f64 {
    r.metric(name).unwrap_or_else(|| panic!("no metric {name}:\n{}", r.metrics()))
}

#[test]
fn blocks_reach_s3_in_thanos_layout_with_meta_json_last() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = moto();
    let creds = moto.credentials();
    let cfg = config_file(tmp.path(), "bucket.yml", &s3_yaml(&moto.endpoint(), BUCKET, (&creds.0, &creds.1), ""));
    let mut r =
        Receiver::start(&tmp.path().join("data"), &[&cfg, "--hash-func=SHA256", "--shipper.upload-concurrency=2"]);
    let (acked, maybe) = load(&r);
    assert!(maybe.is_empty(), "load refused:\n{}", r.logs());
    let tenant = r.tenant_dir(TENANT);

    // Blocks cut while running are uploaded at once (compaction wakes the shipper).
    wait_for("blocks cut and uploaded", Duration::from_secs(120), || {
        let local = local_blocks(&tenant);
        !local.is_empty() && local.is_subset(&shipped(&moto.list_objects(BUCKET)))
    });
    let local = local_blocks(&tenant);
    let objects: BTreeMap<String, u64> = moto.list_objects(BUCKET).into_iter().collect();
    for ulid in &local {
        let meta: serde_json::Value =
            serde_json::from_slice(&moto.get_object(BUCKET, &format!("{ulid}/meta.json"))).unwrap();
        check_block(ulid, &objects, &meta, Some(&tenant.join(ulid)));
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tenant.join("thanos.shipper.json")).unwrap()).unwrap();
    assert_eq!(state["version"], 1);
    let recorded: BTreeSet<String> =
        state["uploaded"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    assert_eq!(recorded, local);
    assert!(!tenant.join("thanos/upload").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false));
    let t = "{tenant=\"default-tenant\"}";
    assert_eq!(metric(&r, &format!("thanos_shipper_uploads_total{t}")), local.len() as f64);
    assert_eq!(metric(&r, &format!("thanos_shipper_upload_duration_seconds_count{t}")), local.len() as f64);
    assert_eq!(metric(&r, &format!("thanos_shipper_upload_failures_total{t}")), 0.0);
    assert!(metric(&r, &format!("thanos_shipper_dir_syncs_total{t}")) >= 1.0);
    assert!(metric(&r, &format!("thanos_shipper_last_successful_upload_time{t}")) > 1.7e9);
    let ops = metric(&r, "thanos_objstore_bucket_operations_total{bucket=\"thanos\",operation=\"upload\"}");
    assert!(ops >= 3.0 * local.len() as f64, "{ops}");
    assert!(metric(&r, "thanos_objstore_bucket_last_successful_upload_time{bucket=\"thanos\"}") > 1.7e9);
    let logs = r.logs();
    assert!(logs.contains("msg=\"upload new block\""), "{logs}");
    assert!(logs.contains("msg=\"uploaded block to s3\"") && logs.contains("bucket=thanos"), "{logs}");

    // SIGTERM: the rest of the head becomes blocks, uploaded before exit; the bucket alone then
    // holds every acknowledged sample.
    assert!(r.terminate().success(), "{}", r.logs());
    let logs = r.logs();
    assert!(logs.contains("uploading the final cut block before exiting"), "{logs}");
    assert!(logs.contains("the final cut block was uploaded"), "{logs}");
    let local = local_blocks(&tenant);
    let objects: BTreeMap<String, u64> = moto.list_objects(BUCKET).into_iter().collect();
    let objects_vec: Vec<(String, u64)> = objects.clone().into_iter().collect();
    assert_eq!(shipped(&objects_vec), local, "every local block is in the bucket");
    for ulid in &local {
        let meta: serde_json::Value =
            serde_json::from_slice(&moto.get_object(BUCKET, &format!("{ulid}/meta.json"))).unwrap();
        check_block(ulid, &objects, &meta, Some(&tenant.join(ulid)));
    }
    check_meta_last(&moto);
    let from_bucket = tmp.path().join("from-bucket");
    assert_eq!(download(&moto, &from_bucket), local.len());
    assert_exact(&from_bucket, &acked);
}

#[test]
fn an_s3_outage_keeps_blocks_on_disk_until_they_are_uploaded() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = moto();
    let proxy = FaultProxy::start(moto.addr());
    proxy.set_mode(Mode::Refuse);
    let outage = Instant::now();
    let creds = moto.credentials();
    let cfg = config_file(tmp.path(), "bucket.yml", &s3_yaml(&proxy.endpoint(), BUCKET, (&creds.0, &creds.1), ""));
    // With 1h retention, every block but the newest is beyond retention as soon as it is cut.
    let mut r = Receiver::start(&tmp.path().join("data"), &[&cfg, "--tsdb.retention=1h"]);
    let (acked, maybe) = load(&r);
    assert!(maybe.is_empty(), "ingestion must not depend on the bucket:\n{}", r.logs());
    let tenant = r.tenant_dir(TENANT);
    wait_for("two blocks cut", Duration::from_secs(120), || local_blocks(&tenant).len() >= 2);
    wait_for("the failure logged", Duration::from_secs(60), || r.logs().contains("msg=\"upload failed\""));
    let cut = local_blocks(&tenant);
    // A minute of outage: still ready, writes still acknowledged, nothing deleted, failures counted.
    while outage.elapsed() < Duration::from_secs(60) {
        assert_eq!(http_get(&r.http_addr, "/-/ready").unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(cut.is_subset(&local_blocks(&tenant)), "a block not in the bucket was deleted");
    assert_unmerged(&tenant);
    assert!(moto.list_objects(BUCKET).is_empty());
    let logs = r.logs();
    let failure = logs.lines().find(|l| l.contains("msg=\"upload failed\"")).unwrap();
    assert!(failure.contains("connection refused by http://127.0.0.1:"), "{failure}");
    let t = "{tenant=\"default-tenant\"}";
    assert!(metric(&r, &format!("thanos_shipper_upload_failures_total{t}")) >= 1.0);
    assert!(metric(&r, &format!("thanos_shipper_dir_sync_failures_total{t}")) >= 1.0);
    assert!(
        metric(&r, "thanos_objstore_bucket_operation_failures_total{bucket=\"thanos\",operation=\"exists\"}") >= 1.0
    );
    assert_eq!(metric(&r, &format!("prometheus_tsdb_time_retentions_total{t}")), 0.0);

    // Recovery: every block arrives at the next cycle, then retention may delete the old ones.
    proxy.set_mode(Mode::Pass);
    wait_for("blocks uploaded after the outage", Duration::from_secs(60), || {
        cut.is_subset(&shipped(&moto.list_objects(BUCKET)))
    });
    wait_for("retention after upload", Duration::from_secs(90), || local_blocks(&tenant).len() < cut.len());
    assert!(metric(&r, &format!("prometheus_tsdb_time_retentions_total{t}")) >= 1.0);
    check_meta_last(&moto);
    assert!(r.terminate().success(), "{}", r.logs());
    let from_bucket = tmp.path().join("from-bucket");
    download(&moto, &from_bucket);
    assert_exact(&from_bucket, &acked);
}

#[test]
fn kill9_in_the_middle_of_an_upload_uploads_the_block_again() {
    let moto = moto();
    let creds = moto.credentials();
    for point in ["shipper.before_index", "shipper.before_meta"] {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = point.replace('.', "-");
        let yaml = s3_yaml(&moto.endpoint(), BUCKET, (&creds.0, &creds.1), "") + &format!("prefix: {prefix}\n");
        let cfg = config_file(tmp.path(), "bucket.yml", &yaml);
        let mut r = Receiver::launch_with_env(&tmp.path().join("data"), &[&cfg], &[("RINGEST_FAILPOINT", point)]);
        r.wait_ready(Duration::from_secs(60));
        let (acked, maybe) = load(&r);
        let st = r.wait_exit(Duration::from_secs(120));
        assert!(st.is_some(), "{point} not reached:\n{}", r.logs());
        let prefixed = |objects: Vec<(String, u64)>| -> Vec<(String, u64)> {
            objects
                .into_iter()
                .filter_map(|(k, s)| Some((k.strip_prefix(&format!("{prefix}/"))?.to_string(), s)))
                .collect()
        };
        let before = prefixed(moto.list_objects(BUCKET));
        assert!(!before.is_empty(), "{point}: chunks uploaded before the kill");
        assert!(shipped(&before).is_empty(), "{point}: no meta.json without its block: {before:?}");

        r.env.clear();
        r.relaunch();
        r.wait_ready(Duration::from_secs(60));
        let tenant = r.tenant_dir(TENANT);
        wait_for("the interrupted block uploaded", Duration::from_secs(60), || {
            let local = local_blocks(&tenant);
            !local.is_empty() && local.is_subset(&shipped(&prefixed(moto.list_objects(BUCKET))))
        });
        assert!(r.terminate().success(), "{}", r.logs());
        let objects = prefixed(moto.list_objects(BUCKET));
        let map: BTreeMap<String, u64> = objects.iter().cloned().collect();
        assert_eq!(shipped(&objects), local_blocks(&tenant));
        for ulid in shipped(&objects) {
            let meta: serde_json::Value =
                serde_json::from_slice(&moto.get_object(BUCKET, &format!("{prefix}/{ulid}/meta.json"))).unwrap();
            check_block(&ulid, &map, &meta, Some(&tenant.join(&ulid)));
        }
        // Blocks complete in the bucket hold every acknowledged sample.
        let dir = tmp.path().join("from-bucket");
        std::fs::create_dir_all(dir.join("wal")).unwrap();
        for ulid in shipped(&objects) {
            copy_dir(&tenant.join(&ulid), &dir.join(&ulid));
        }
        assert_exact_with(&dir, &acked, &maybe);
    }
}

/// A data directory holding blocks (loaded without a bucket, then SIGTERM).
fn data_with_blocks(root: &Path) -> PathBuf {
    let data = root.join("seed");
    let mut r = Receiver::start(&data, &[]);
    let (_, maybe) = load(&r);
    assert!(maybe.is_empty());
    assert!(r.terminate().success());
    assert!(local_blocks(&data.join(TENANT)).len() >= 3);
    data
}

#[test]
fn each_s3_failure_is_explained_counted_and_does_not_touch_ingestion() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = data_with_blocks(tmp.path());
    let moto = Moto::start(MotoOpts { auth: true, ..Default::default() }).expect("start moto_server");
    moto.create_bucket(BUCKET).unwrap();
    let (key, secret) = moto.credentials();
    let hung = FaultProxy::start(moto.addr());
    hung.set_mode(Mode::Blackhole);
    let ep = moto.endpoint();
    let closed = format!("127.0.0.1:{}", free_port());
    let hung_ep = hung.endpoint();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "https against an HTTP-only endpoint",
            s3_yaml(&ep, BUCKET, (&key, &secret), "").replace("insecure: true", "insecure: false"),
            "plain HTTP; set insecure: true",
            "exists",
        ),
        ("connection refused", s3_yaml(&closed, BUCKET, (&key, &secret), ""), "connection refused by", "exists"),
        (
            "unknown access key",
            s3_yaml(&ep, BUCKET, ("AKIANOSUCHKEY0000000", &secret), ""),
            "access key is not known to the object store (InvalidAccessKeyId)",
            "exists",
        ),
        (
            "wrong secret key",
            s3_yaml(&ep, BUCKET, (&key, "wrong-secret"), ""),
            "secret key does not match the access key (SignatureDoesNotMatch)",
            "exists",
        ),
        (
            "missing bucket",
            s3_yaml(&ep, "no-such-bucket", (&key, &secret), ""),
            "bucket \\\"no-such-bucket\\\" does not exist",
            "upload",
        ),
        (
            "hung endpoint",
            s3_yaml(&hung_ep, BUCKET, (&key, &secret), "  http_config:\n    response_header_timeout: 1s\n"),
            "did not answer in time",
            "exists",
        ),
    ];
    for (i, (name, yaml, words, op)) in cases.iter().enumerate() {
        let data = tmp.path().join(format!("case{i}"));
        copy_dir(&seed, &data);
        let blocks = local_blocks(&data.join(TENANT));
        let cfg = config_file(tmp.path(), &format!("case{i}.yml"), yaml);
        let mut r = Receiver::start(&data, &[&cfg, "--http-grace-period=5s", "--tsdb.retention=1h"]);
        wait_for(name, Duration::from_secs(30), || r.logs().contains("msg=\"upload failed\""));
        let logs = r.logs();
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains("msg=\"upload failed\"")).collect();
        assert_eq!(lines.len(), 1, "{name}: one line per cycle: {lines:#?}");
        eprintln!("{name}: {}", lines[0]);
        assert!(lines[0].contains(words), "{name}: {}", lines[0]);
        let t = "{tenant=\"default-tenant\"}";
        assert_eq!(metric(&r, &format!("thanos_shipper_dir_sync_failures_total{t}")), 1.0, "{name}");
        assert_eq!(metric(&r, &format!("thanos_shipper_upload_failures_total{t}")), 1.0, "{name}");
        let bucket = if name == &"missing bucket" { "no-such-bucket" } else { BUCKET };
        let failures =
            format!("thanos_objstore_bucket_operation_failures_total{{bucket=\"{bucket}\",operation=\"{op}\"}}");
        assert!(metric(&r, &failures) >= 1.0, "{name}");
        // Ingestion and readiness do not depend on the bucket.
        assert_eq!(http_get(&r.http_addr, "/-/ready").unwrap().status, 200, "{name}");
        let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
        let mut acked = Acked::new();
        let late = Workload { start_ms: T0 + 5 * H, ..workload() };
        late.send(&mut conn, 0..1, &mut acked).unwrap_or_else(|e| panic!("{name}: write refused: {}", e.reason));
        assert!(r.terminate().success(), "{name}: {}", r.logs());
        assert!(r.logs().contains("the final upload failed"), "{name}");
        assert!(blocks.is_subset(&local_blocks(&data.join(TENANT))), "{name}: a block not in the bucket was deleted");
    }
    assert!(moto.list_objects(BUCKET).is_empty());

    // An endpoint that first answers nothing (every request times out after the configured
    // `response_header_timeout`, 2 s), with a kill -9 while requests hang; then a flaky one (one
    // connection in 3 cut: a third of the requests fail), and kill -9 while uploads go through
    // it, up to five times (until nothing is left to upload), each after a few more
    // connections: the local shipper state is whole after every kill (written aside, then
    // renamed), no meta.json is in the bucket before its block's other files, and retries get
    // every block through exactly once (each whole, the bucket's blocks those on disk).
    let flaky = FaultProxy::start(moto.addr());
    flaky.set_mode(Mode::Hang { every: 1 });
    let data = tmp.path().join("flaky");
    copy_dir(&seed, &data);
    let timeout = "  http_config:\n    response_header_timeout: 2s\n";
    let yaml = s3_yaml(&flaky.endpoint(), BUCKET, (&key, &secret), timeout).replace("max_retries: 2", "max_retries: 6");
    let cfg = config_file(tmp.path(), "flaky.yml", &yaml);
    let local = local_blocks(&data.join(TENANT));
    let state = data.join(TENANT).join("thanos.shipper.json");
    let mut r = Receiver::launch(&data, &[&cfg]);
    let all_shipped = || local.is_subset(&shipped(&moto.list_objects(BUCKET)));
    let check_state = |when: &str| {
        shipper_state_whole(&state, when);
    };
    wait_for("requests to time out and be retried", Duration::from_secs(60), || flaky.hangs() >= 3);
    r.kill9();
    check_state("kill while requests hang");
    r.relaunch();
    let hung = flaky.hangs();
    wait_for("requests to time out again", Duration::from_secs(60), || flaky.hangs() >= hung + 2);
    assert!(moto.list_objects(BUCKET).is_empty(), "nothing went through a hung endpoint");
    flaky.set_mode(Mode::Flaky { every: 3 });
    for kill in 1..=5u64 {
        let at = flaky.connections() + kill;
        wait_for("uploads through the flaky endpoint", Duration::from_secs(60), || {
            flaky.connections() >= at || all_shipped()
        });
        if kill > 1 && all_shipped() {
            break; // nothing left to interrupt
        }
        r.kill9();
        check_state(&format!("kill {kill}"));
        check_meta_last(&moto);
        r.relaunch();
    }
    r.wait_ready(Duration::from_secs(60));
    wait_for("uploads through a flaky endpoint", Duration::from_secs(90), all_shipped);
    assert!(flaky.resets() > 0);
    eprintln!("through the faulty endpoint: {} requests hung, {} connections reset", flaky.hangs(), flaky.resets());
    assert!(r.terminate().success());
    assert_each_block_uploaded_once(&moto, &local, &data.join(TENANT));
}

#[test]
fn a_filesystem_bucket_gets_the_same_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let cfg = format!("--objstore.config={{type: FILESYSTEM, config: {{directory: {}}}}}", bucket.display());
    let mut r = Receiver::start(&tmp.path().join("data"), &[&cfg]);
    let (acked, maybe) = load(&r);
    assert!(maybe.is_empty());
    assert!(r.terminate().success(), "{}", r.logs());
    let tenant = r.tenant_dir(TENANT);
    let local = local_blocks(&tenant);
    assert!(local.len() >= 3);
    assert_eq!(local_blocks(&bucket), local);
    let mut objects = BTreeMap::new();
    for ulid in &local {
        for rel in ["index", "meta.json", "chunks/000001"] {
            objects.insert(format!("{ulid}/{rel}"), std::fs::metadata(bucket.join(ulid).join(rel)).unwrap().len());
        }
        assert_eq!(std::fs::read_dir(bucket.join(ulid)).unwrap().count(), 3, "chunks/, index and meta.json only");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bucket.join(ulid).join("meta.json")).unwrap()).unwrap();
        check_block(ulid, &objects, &meta, Some(&tenant.join(ulid)));
    }
    std::fs::create_dir_all(bucket.join("wal")).unwrap();
    assert_exact(&bucket, &acked);
}

#[test]
fn a_bad_bucket_configuration_stops_start_up_with_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    for (cfg, want) in [
        ("--objstore.config=type: S4", "bucket with type S4 is not supported"),
        ("--objstore.config={type: S3, config: {bucket: b, endpoint: e, bucket_nam: x}}", "bucket_nam"),
        ("--objstore.config={type: S3, config: {bucket: b}}", "no s3 endpoint in config file"),
        (
            "--objstore.config={type: S3, config: {bucket: b, endpoint: e, signature_version2: true}}",
            "signature_version2",
        ),
        ("--objstore.config={type: FILESYSTEM, config: {}}", "missing directory for filesystem bucket"),
        ("--objstore.config-file=/nonexistent/bucket.yml", "/nonexistent/bucket.yml"),
    ] {
        let mut r = Receiver::launch(&tmp.path().join("data"), &[cfg]);
        let st = r.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("{cfg}: still running"));
        assert!(!st.success(), "{cfg}");
        assert!(r.logs().contains(want), "{cfg}: {}", r.logs());
    }
}

#[test]
fn large_files_go_up_as_multipart_uploads_with_the_exact_bytes() {
    let moto = moto();
    let (key, secret) = moto.credentials();
    let yaml = s3_yaml(&moto.endpoint(), BUCKET, (&key, &secret), "  part_size: 5242880\n") + "prefix: mp\n";
    let cfg = ringest_shipper::config::parse(&yaml).unwrap();
    let built = cfg.build().unwrap();
    let metrics = ringest_shipper::BucketMetrics::new(&prometheus::Registry::new(), &built.name).unwrap();
    let bucket = ringest_shipper::Bucket::new(built, &cfg.prefix, metrics);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("000001");
    let data: Vec<u8> = (0..12 * 1024 * 1024 + 12345u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sent = rt.block_on(bucket.upload_file(&path, "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001")).unwrap();
    assert_eq!(sent, data.len() as u64);
    assert_eq!(moto.get_object(BUCKET, "mp/01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001"), data);
    let parts = moto.bucket_requests(BUCKET).iter().filter(|(m, p, _)| m == "PUT" && p.contains("partNumber=")).count();
    assert_eq!(parts, 3, "12 MiB in 5 MiB parts: {:?}", moto.bucket_requests(BUCKET));
    assert!(rt.block_on(bucket.exists("01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001")).unwrap());
    assert!(!rt.block_on(bucket.exists("01JAAAAAAAAAAAAAAAAAAAAAAA/meta.json")).unwrap());
}

#[test]
fn hashring_external_labels_reach_meta_json_below_label_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let ring_file = tmp.path().join("hashrings.json");
    let mut r = Receiver::unstarted(&tmp.path().join("data"));
    std::fs::write(
        &ring_file,
        format!(
            r#"[{{"hashring": "r", "tenants": ["{TENANT}"], "endpoints": ["{}"],
                "external_labels": {{"region": "eu", "receive_replica": "from-ring"}}}}]"#,
            r.grpc_addr
        ),
    )
    .unwrap();
    r.extra = vec![
        format!("--receive.hashrings-file={}", ring_file.display()),
        format!("--receive.local-endpoint={}", r.grpc_addr),
        format!("--objstore.config={{type: FILESYSTEM, config: {{directory: {}}}}}", bucket.display()),
    ];
    r.relaunch();
    r.wait_ready(Duration::from_secs(60));
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let mut acked = Acked::new();
    workload().send(&mut conn, 0..3, &mut acked).unwrap();
    assert!(r.terminate().success(), "{}", r.logs());
    let blocks = local_blocks(&bucket);
    assert_eq!(blocks.len(), 1);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bucket.join(blocks.first().unwrap()).join("meta.json")).unwrap())
            .unwrap();
    assert_eq!(
        meta["thanos"]["labels"],
        serde_json::json!({"region": "eu", "receive_replica": "e2e", "tenant_id": TENANT}),
        "hashring labels < --label < tenant label"
    );
}

/// Checklist C.27 (thanos#8253): one local block whose meta.json is corrupted. The tenant still
/// opens and takes writes (Prometheus would refuse the whole TSDB), the block is left on disk
/// and reported (`ringest_tsdb_blocks_unreadable`, the log); as in Thanos the shipper stops at
/// it by default (each sync fails, counted) and with `--shipper.skip-corrupted-blocks` skips it
/// (`thanos_shipper_corrupted_blocks_total`) and uploads every other block.
#[test]
fn a_corrupted_local_meta_json_holds_back_only_its_block() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_with_blocks(tmp.path());
    let local = local_blocks(&data.join(TENANT));
    let bad = local.iter().next().unwrap().clone();
    std::fs::write(data.join(TENANT).join(&bad).join("meta.json"), "{\"ulid\": ").unwrap();
    let bucket = tmp.path().join("bucket");
    let cfg = format!("--objstore.config={{type: FILESYSTEM, config: {{directory: {}}}}}", bucket.display());
    let t = "{tenant=\"default-tenant\"}";

    // Default: the tenant opens and takes writes; the shipper stops at the unreadable block.
    let mut r = Receiver::start(&data, &[&cfg]);
    assert_eq!(metric(&r, &format!("ringest_tsdb_blocks_unreadable{t}")), 1.0);
    assert!(r.logs().contains("skipping a block that cannot be opened") && r.logs().contains(&bad), "{}", r.logs());
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let late = Workload { start_ms: T0 + 5 * H, ..workload() };
    late.send(&mut conn, 0..1, &mut Acked::new()).unwrap_or_else(|e| panic!("write refused: {}", e.reason));
    wait_for("a failed sync", Duration::from_secs(30), || {
        metric(&r, &format!("thanos_shipper_dir_sync_failures_total{t}")) >= 1.0
    });
    assert!(local_blocks(&bucket).is_empty(), "Thanos' default: nothing past a corrupted block is shipped");
    r.kill9();

    // Skipping: every other block reaches the bucket; the bad one stays local and unshipped.
    r.extra.push("--shipper.skip-corrupted-blocks".into());
    r.restart();
    let others: BTreeSet<String> = local.iter().filter(|u| **u != bad).cloned().collect();
    wait_for("the other blocks shipped", Duration::from_secs(30), || others.is_subset(&local_blocks(&bucket)));
    assert!(!local_blocks(&bucket).contains(&bad));
    // Counted once the sync that skipped it ends, after its uploads.
    wait_for("the skipped block counted", Duration::from_secs(30), || {
        metric(&r, &format!("thanos_shipper_corrupted_blocks_total{t}")) >= 1.0
    });
    assert!(data.join(TENANT).join(&bad).join("index").exists(), "the damaged block is left for the operator");
    assert!(r.terminate().success(), "{}", r.logs());
}

/// Checklist C.26, as a soak: 20 % of the requests to S3 fail for the whole run (every fifth
/// request sent through [`Mode::Chaos`] is in turn reset, left unanswered until the 2 s
/// `response_header_timeout`, or answered S3's `503 SlowDown`), while a writer adds ten
/// minutes of data per second (a 2 h block cut and uploaded about every 20 s) and the receiver
/// is killed with -9 ten times, at moments unrelated to the uploads. After each kill the local
/// shipper state is whole (written aside, then renamed) and no meta.json precedes its block's
/// files. Then the faults stop: every block reaches the bucket exactly once (one meta.json
/// written per block, the bucket's blocks exactly those on disk, each whole), the shipper
/// state lists each once, and the bucket alone holds every acknowledged sample after SIGTERM.
/// Runs for `RINGEST_S3_SOAK_SECS` (60 by default); the test command runs it for 30 minutes
/// beside the other tests.
#[test]
#[ignore = "a soak of RINGEST_S3_SOAK_SECS seconds: scripts/test.sh runs it for 30 minutes beside the other tests"]
fn s3_faults_for_a_long_run_with_kills_upload_every_block_exactly_once() {
    let secs: u64 = std::env::var("RINGEST_S3_SOAK_SECS").map_or(60, |s| s.trim().parse().expect("seconds"));
    let tmp = tempfile::tempdir().unwrap();
    let moto = moto();
    let creds = moto.credentials();
    let proxy = FaultProxy::start(moto.addr());
    proxy.set_mode(Mode::Chaos { every: 5 });
    let timeout = "  http_config:\n    response_header_timeout: 2s\n";
    let yaml = s3_yaml(&proxy.endpoint(), BUCKET, (&creds.0, &creds.1), timeout);
    let cfg = config_file(tmp.path(), "chaos.yml", &yaml);
    let data = tmp.path().join("data");
    let mut r = Receiver::start(&data, &[&cfg]);
    let tenant = r.tenant_dir(TENANT);
    let state = tenant.join("thanos.shipper.json");
    let check_state = |when: &str| {
        if let Some(json) = shipper_state_whole(&state, when) {
            // null before the first upload, as Go writes an empty list.
            assert!(json["uploaded"].is_array() || json["uploaded"].is_null(), "{when}: {json}");
        }
    };

    // Ten minutes of data per second of the run: six rounds of one minute.
    const ROUNDS_PER_SECOND: f64 = 6.0;
    let w = Workload { series: 100, batch: 100, start_ms: T0, step_ms: 60_000, name: "soak".into() };
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let start = Instant::now();
    let kill_every = Duration::from_secs((secs / 10).max(5));
    let (mut next_kill, mut kills, mut round) = (start + kill_every, 0, 0usize);
    while start.elapsed() < Duration::from_secs(secs) {
        if let Some(wait) =
            (start + Duration::from_secs_f64(round as f64 / ROUNDS_PER_SECOND)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait); // the writer's pace
        }
        if let Err(e) = w.send(&mut conn, round..round + 1, &mut acked) {
            panic!("round {round} refused: {}\n{}", e.reason, r.logs());
        }
        round += 1;
        if Instant::now() >= next_kill {
            r.kill9();
            kills += 1;
            check_state(&format!("kill {kills}"));
            check_meta_last(&moto);
            r.restart();
            conn = RemoteWriter::connect(&r.rw_addr).unwrap();
            next_kill += kill_every;
        }
    }
    let faults = (proxy.resets(), proxy.hangs(), proxy.errors());
    eprintln!(
        "{secs} s: {round} rounds written, {kills} kills, {} connections to S3, faults: {} reset, {} unanswered, {} SlowDown",
        proxy.connections(),
        faults.0,
        faults.1,
        faults.2
    );
    assert!(faults.0 > 0 && faults.1 > 0 && faults.2 > 0, "every kind of fault happened: {faults:?}");

    proxy.set_mode(Mode::Pass);
    let all_shipped = || {
        let local = local_blocks(&tenant);
        !local.is_empty() && local.is_subset(&shipped(&moto.list_objects(BUCKET)))
    };
    wait_for("every block uploaded once the faults stop", Duration::from_secs(120), all_shipped);
    assert!(r.terminate().success(), "{}", r.logs());
    let local = local_blocks(&tenant);
    assert!(local.len() as f64 >= secs as f64 / 30.0, "{} blocks cut in {secs} s", local.len());
    assert_each_block_uploaded_once(&moto, &local, &tenant);
    check_meta_last(&moto);
    let from_bucket = tmp.path().join("from-bucket");
    assert_eq!(download(&moto, &from_bucket), local.len());
    assert_exact(&from_bucket, &acked);
    eprintln!("{} blocks, each uploaded once; {} samples acknowledged, all in the bucket", local.len(), {
        acked.values().map(|s| s.len()).sum::<usize>()
    });
}
