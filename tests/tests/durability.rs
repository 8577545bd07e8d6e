//! Durability from outside: a load acknowledged in full, a second load cut by `kill -9`, and
//! damaged WAL tails. Every acknowledged sample must come back with its exact value, read by
//! promtool (Prometheus' own WAL code) and by `ringest tsdb dump`, and the node must be ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringest_e2e::oracle::{promtool_dump, promtool_value_matches, ringest_dump};
use ringest_e2e::workload::{Acked, Workload};
use ringest_e2e::{Receiver, RemoteWriter};

const T0: i64 = 1_800_000_000_000;

fn assert_all_present(r: &Receiver, acked: &Acked, sent: &Acked) {
    let dir = r.tenant_dir("default-tenant");
    let ours = ringest_dump(&dir);
    let prom = promtool_dump(&dir);
    let mut checked = 0;
    for (series, samples) in acked {
        for (t, bits) in samples {
            let got = ours.get(series).and_then(|s| s.get(t));
            assert_eq!(got, Some(bits), "ringest lost or changed {series} @ {t}");
            let text =
                prom.get(series).and_then(|s| s.get(t)).unwrap_or_else(|| panic!("promtool lacks {series} @ {t}"));
            assert!(promtool_value_matches(text, *bits), "promtool shows {text} for {series} @ {t}, sent {bits:#x}");
            checked += 1;
        }
    }
    // Nothing invented: every stored sample was sent.
    for (series, samples) in &ours {
        for (t, bits) in samples {
            assert_eq!(
                sent.get(series).and_then(|s| s.get(t)),
                Some(bits),
                "invented or changed sample {series} @ {t}"
            );
        }
    }
    assert_eq!(ours.len(), prom.len(), "ringest and promtool see the same series");
    assert!(checked > 0);
}

#[test]
fn kill9_under_load_loses_no_acknowledged_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &[]);
    let w = Workload { series: 2000, batch: 500, start_ms: T0, step_ms: 15_000, name: "load".into() };

    // Load 1: acknowledged in full.
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    w.send(&mut conn, 0..10, &mut acked).expect("first load fully acknowledged");

    // Load 2: four concurrent senders on disjoint rounds; kill -9 while they run.
    let acked2 = Arc::new(Mutex::new(Acked::new()));
    let in_flight = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for s in 0..4usize {
        let wl = Workload { name: format!("load2_{s}"), ..w.clone() };
        let addr = r.rw_addr.clone();
        let (acked2, in_flight, stop) = (acked2.clone(), in_flight.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let mut c = RemoteWriter::connect(&addr).unwrap();
            let mut local = Acked::new();
            for round in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(f) = wl.send(&mut c, round..round + 1, &mut local) {
                    in_flight.lock().unwrap().extend(f.sent);
                    break;
                }
            }
            let mut a = acked2.lock().unwrap();
            for (k, v) in local {
                a.entry(k).or_default().extend(v);
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    r.kill9();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let acked2 = Arc::try_unwrap(acked2).unwrap().into_inner().unwrap();
    let n2: usize = acked2.values().map(BTreeMap::len).sum();
    assert!(n2 > 0, "the second load got acknowledgements before the kill");
    for (k, v) in acked2 {
        acked.entry(k).or_default().extend(v);
    }
    let mut sent = acked.clone();
    for (l, t, v) in in_flight.lock().unwrap().drain(..) {
        sent.entry(l).or_default().insert(t, v);
    }

    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(0.0));
    assert_all_present(&r, &acked, &sent);

    // The restarted node takes new writes, and a clean shutdown keeps everything too.
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let w3 = Workload { name: "after".into(), start_ms: T0 + 3_600_000, ..w.clone() };
    w3.send(&mut conn, 0..2, &mut acked).expect("writes after restart");
    for (k, v) in &acked {
        sent.entry(k.clone()).or_default().extend(v.clone());
    }
    assert!(r.terminate().success());
    r.restart();
    assert_all_present(&r, &acked, &sent);
}

/// The reliability checklist's "kill -9 at many random instants" (reliability-security §7): 50
/// times, two writers load the node and it is killed with -9 at a pseudo-random instant
/// (10-400 ms into the load: during appends, WAL writes, segment cuts, or between requests),
/// then restarted. Every acknowledged sample of every round survives all later kills, read
/// back by ringest's reader along the way and by promtool at the end; nothing is invented.
#[test]
fn kill9_at_50_random_instants_loses_no_acknowledged_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &[]);
    let (mut acked, mut sent) = (Acked::new(), Acked::new());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for kill in 0..50 {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..2usize)
            .map(|s| {
                let w =
                    Workload { series: 300, batch: 150, start_ms: T0, step_ms: 15_000, name: format!("k{kill}_{s}") };
                let (addr, stop) = (r.rw_addr.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut local, mut in_flight) = (Acked::new(), Vec::new());
                    let Ok(mut c) = RemoteWriter::connect(&addr) else { return (local, in_flight) };
                    for round in 0..10_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(f) = w.send(&mut c, round..round + 1, &mut local) {
                            in_flight = f.sent;
                            break;
                        }
                    }
                    (local, in_flight)
                })
            })
            .collect();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(10 + x % 390));
        r.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let (local, in_flight) = h.join().unwrap();
            for (k, v) in local {
                sent.entry(k.clone()).or_default().extend(v.clone());
                acked.entry(k).or_default().extend(v);
            }
            for (l, t, v) in in_flight {
                sent.entry(l).or_default().insert(t, v);
            }
        }
        r.restart();
        if kill % 10 == 9 {
            let ours = ringest_dump(&r.tenant_dir("default-tenant"));
            for (series, samples) in &acked {
                for (t, bits) in samples {
                    assert_eq!(
                        ours.get(series).and_then(|s| s.get(t)),
                        Some(bits),
                        "after kill {kill}: {series} @ {t}"
                    );
                }
            }
        }
    }
    let n: usize = acked.values().map(BTreeMap::len).sum();
    assert!(n > 10_000, "{n} samples acknowledged over 50 kills");
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(0.0));
    r.kill9();
    assert_all_present(&r, &acked, &sent);
}

/// Writes rounds one request at a time, each request in its own WAL records.
fn fill(r: &Receiver, rounds: usize) -> (Workload, Acked) {
    let w = Workload { series: 300, batch: 100, start_ms: T0, step_ms: 10_000, name: "wal".into() };
    let mut acked = Acked::new();
    let mut c = RemoteWriter::connect(&r.rw_addr).unwrap();
    w.send(&mut c, 0..rounds, &mut acked).unwrap();
    (w, acked)
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().bytes().all(|b| b.is_ascii_digit()))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segs.sort();
    segs.pop().expect("a non-empty segment")
}

fn prefix_kept(r: &Receiver, acked: &Acked, w: &Workload, rounds: usize) -> usize {
    let ours = ringest_dump(&r.tenant_dir("default-tenant"));
    // Records are replayed in order: the kept rounds form a prefix, and each kept sample is exact.
    let mut kept_rounds = 0;
    for round in 0..rounds {
        let all = (0..w.series).all(|i| {
            let l = ringest_e2e::oracle::labels_string(&w.labels(i));
            ours.get(&l).and_then(|s| s.get(&w.ts(i, round))) == acked.get(&l).and_then(|s| s.get(&w.ts(i, round)))
        });
        if !all {
            break;
        }
        kept_rounds += 1;
    }
    for (series, samples) in &ours {
        for (t, bits) in samples {
            assert_eq!(acked.get(series).and_then(|s| s.get(t)), Some(bits), "changed or invented {series} @ {t}");
        }
    }
    kept_rounds
}

#[test]
fn torn_wal_tail_is_repaired_and_writes_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &[]);
    let (w, acked) = fill(&r, 30);
    r.kill9();
    let seg = last_segment(&r.tenant_dir("default-tenant"));
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut the last record in half.
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 700).unwrap();
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(1.0), "{}", r.logs());
    assert!(r.logs().contains("Encountered WAL read error, attempting repair"));
    let kept = prefix_kept(&r, &acked, &w, 30);
    assert!(kept >= 28, "only {kept} of 30 rounds kept");
    // New writes are accepted and survive a restart.
    let w2 = Workload { name: "after".into(), start_ms: T0 + 1_000_000, ..w.clone() };
    let mut more = Acked::new();
    w2.send(&mut RemoteWriter::connect(&r.rw_addr).unwrap(), 0..3, &mut more).expect("writes after repair");
    assert!(r.terminate().success());
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(0.0));
    let ours = ringest_dump(&r.tenant_dir("default-tenant"));
    for (series, samples) in &more {
        for (t, bits) in samples {
            assert_eq!(ours.get(series).and_then(|s| s.get(t)), Some(bits));
        }
    }
}

#[test]
fn flipped_bit_in_last_segment_keeps_records_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &["--no-tsdb.wal-compression"]);
    let (w, acked) = fill(&r, 30);
    // kill -9: a clean shutdown would flush everything into a block and empty the WAL.
    r.kill9();
    let seg = last_segment(&r.tenant_dir("default-tenant"));
    let mut data = std::fs::read(&seg).unwrap();
    let pos = data.iter().rposition(|&b| b != 0).unwrap() * 3 / 4;
    data[pos] ^= 0x04;
    std::fs::write(&seg, &data).unwrap();
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(1.0), "{}", r.logs());
    let kept = prefix_kept(&r, &acked, &w, 30);
    assert!(kept > 0 && kept < 30, "kept {kept} rounds");
    // promtool reads the repaired WAL too.
    let prom = promtool_dump(&r.tenant_dir("default-tenant"));
    assert!(!prom.is_empty());
    let mut c = RemoteWriter::connect(&r.rw_addr).unwrap();
    let w2 = Workload { name: "after".into(), start_ms: T0 + 1_000_000, ..w };
    w2.send(&mut c, 0..2, &mut Acked::new()).expect("writes after repair");
}

/// A size-limited tmpfs mounted for one test (the project's machines allow it; see the shared
/// reliability spec §4.1), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mounting a tmpfs failed: this test needs root on a Linux machine");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn disk_full_answers_503_keeps_acknowledged_data_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _fs = Tmpfs::mount(&mnt, "6m");
    // Ballast to free later, leaving about 1 MiB for the WAL.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; 5 << 20]).unwrap();
    let mut r = Receiver::start(&mnt.join("data"), &["--no-tsdb.wal-compression"]);
    let mut acked = Acked::new();
    let mut refused = 0;
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    // New series with long label values fill the WAL quickly.
    for round in 0..400usize {
        let w = Workload {
            series: 100,
            batch: 100,
            start_ms: T0,
            step_ms: 15_000,
            name: format!("fill_{round}_{}", "x".repeat(100)),
        };
        match w.send(&mut conn, 0..1, &mut acked) {
            Ok(()) => {}
            Err(f) => {
                assert!(f.reason.starts_with("503 ") && f.reason.contains("No space left"), "{}", f.reason);
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "the disk filled up");
    // A refused write asks the sender to come back (Retry-After), as every retryable 503 does.
    let (pad, ids) = ("y".repeat(1000), (0..300).map(|i| i.to_string()).collect::<Vec<_>>());
    let req = ringest_proto::prometheus::WriteRequest {
        timeseries: ids
            .iter()
            .map(|i| ringest_e2e::client::series(&[("__name__", "full"), ("i", i), ("pad", &pad)], &[(T0, 1.0)]))
            .collect(),
        metadata: vec![],
    };
    let rw = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf")];
    let full =
        ringest_e2e::http_request(&r.rw_addr, "POST", "/api/v1/receive", &rw, &ringest_e2e::client::encode(&req))
            .unwrap();
    assert_eq!(full.status, 503, "{}", full.text());
    assert_eq!(full.header("retry-after"), Some("1"));
    let healthy = ringest_e2e::http_get(&r.http_addr, "/-/healthy").unwrap();
    assert_eq!(healthy.status, 200, "still running");
    assert!(r.metric("prometheus_tsdb_wal_writes_failed_total{tenant=\"default-tenant\"}").unwrap() >= 3.0);
    // Space comes back: writes succeed again without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let w = Workload { series: 50, batch: 50, start_ms: T0, step_ms: 15_000, name: "after_full".into() };
    w.send(&mut conn, 0..3, &mut acked).expect("writes succeed once space is back");
    // Everything acknowledged is there after a restart, and the WAL has no torn record.
    assert!(r.terminate().success());
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(0.0), "{}", r.logs());
    assert_holds(&r, &acked);
    r.kill9();
}

/// Checklist A.5: a WAL missing a middle segment. The node starts and serves its other
/// tenants; that tenant's writes get 503 naming the missing segment and the repair flag. With
/// `--ringest.tsdb.wal-discard-after-gap` the tenant opens with every sample written before the
/// gap, the segments after it set aside, and one corruption counted.
#[test]
fn missing_middle_segment_is_refused_until_repair_is_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &["--no-tsdb.wal-compression"]);
    // Three lives (each starts a new segment), each killed with -9 so the WAL keeps everything.
    let (w, first) = fill(&r, 5);
    r.kill9();
    for life in 1..3 {
        r.restart();
        let mut c = RemoteWriter::connect(&r.rw_addr).unwrap();
        w.send(&mut c, life * 5..life * 5 + 5, &mut Acked::new()).unwrap();
        r.kill9();
    }
    let wal = r.tenant_dir("default-tenant").join("wal");
    let mut segs: Vec<u32> =
        std::fs::read_dir(&wal).unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    segs.sort();
    assert!(segs.len() >= 3, "{segs:?}");
    let missing = segs[1];
    std::fs::remove_file(wal.join(format!("{missing:08}"))).unwrap();

    r.restart();
    let body = ringest_e2e::client::encode(&ringest_proto::prometheus::WriteRequest {
        timeseries: vec![ringest_e2e::client::series(&[("__name__", "up")], &[(T0 + 99_000_000, 1.0)])],
        metadata: vec![],
    });
    let post = |r: &Receiver, tenant: &str| {
        let h = [("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf"), ("THANOS-TENANT", tenant)];
        ringest_e2e::http_request(&r.rw_addr, "POST", "/api/v1/receive", &h, &body).unwrap()
    };
    let refused = post(&r, "default-tenant");
    assert_eq!(refused.status, 503, "{}", refused.text());
    let text = refused.text();
    assert!(text.contains(&format!("segment {missing:08} is missing")), "{text}");
    assert!(text.contains("--ringest.tsdb.wal-discard-after-gap"), "{text}");
    assert_eq!(post(&r, "other").status, 200, "the other tenants are served");
    assert!(wal.join(format!("{:08}", segs[2])).exists(), "nothing is changed without the flag");

    r.kill9();
    r.extra.push("--ringest.tsdb.wal-discard-after-gap".into());
    r.restart();
    assert_eq!(r.metric("prometheus_tsdb_wal_corruptions_total{tenant=\"default-tenant\"}"), Some(1.0), "{}", r.logs());
    assert!(r.logs().contains("segments after the gap were set aside"), "{}", r.logs());
    assert!(wal.join(format!("discarded.{:08}", segs[2])).join(format!("{:08}", segs[2])).exists());
    // Every sample of the first life (before the gap) is there, exactly.
    let ours = ringest_dump(&r.tenant_dir("default-tenant"));
    for (series, samples) in &first {
        for (t, bits) in samples {
            assert_eq!(ours.get(series).and_then(|s| s.get(t)), Some(bits), "{series} @ {t}");
        }
    }
    assert_eq!(post(&r, "default-tenant").status, 200, "writes are accepted again");
}

/// A memory cgroup with a limit, for one test (cgroup v1 `memory` or v2; root only), removed
/// on drop once empty.
struct MemCgroup {
    dir: std::path::PathBuf,
    v2: bool,
}

impl MemCgroup {
    fn create(name: &str, limit: u64) -> MemCgroup {
        let (v1, v2) = (std::path::Path::new("/sys/fs/cgroup/memory"), std::path::Path::new("/sys/fs/cgroup"));
        let (dir, v2, file) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(name), false, "memory.limit_in_bytes")
        } else {
            (v2.join(name), true, "memory.max")
        };
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("create {}: {e} (this test needs root and a memory cgroup)", dir.display()));
        std::fs::write(dir.join(file), limit.to_string()).unwrap();
        MemCgroup { dir, v2 }
    }

    fn procs(&self) -> std::path::PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Processes of the cgroup killed by the OOM killer.
    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 { ("memory.events", "oom_kill ") } else { ("memory.oom_control", "oom_kill ") };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Checklist A.12: a WAL five times larger than the memory limit of the cgroup ringest runs in
/// (written straight into Prometheus-format segments: 2,000 series, samples 1 ms apart) is
/// replayed within the limit: no OOM kill, the node becomes ready with every series and sample.
#[test]
fn a_wal_five_times_the_memory_limit_replays_within_it() {
    use ringest_tsdb::LabelRef;
    use ringest_tsdb::wal::{WalOptions, WalWriter, record};
    const LIMIT: u64 = 64 << 20;
    const SERIES: u64 = 2000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let wal = data.join("default-tenant").join("wal");
    let opts = WalOptions { compress: false, ..Default::default() };
    let mut w = WalWriter::create(&wal, 0, opts, Default::default()).unwrap();
    let mut buf = Vec::new();
    record::begin_series(&mut buf);
    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let labels =
            [LabelRef { name: b"__name__", value: b"replayed" }, LabelRef { name: b"i", value: id.as_bytes() }];
        record::push_series(&mut buf, i as u64 + 1, labels.into_iter());
    }
    w.log(&[&buf]).unwrap();
    let wal_bytes = || -> u64 { std::fs::read_dir(&wal).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum() };
    let mut rounds = 0i64;
    while wal_bytes() < 5 * LIMIT {
        for _ in 0..100 {
            buf.clear();
            record::encode_samples(&mut buf, (1..=SERIES).map(|r| (r, T0 + rounds, rounds as f64)));
            w.log(&[&buf]).unwrap();
            rounds += 1;
        }
    }
    w.close().unwrap();
    let wal_size = wal_bytes();

    let cg = MemCgroup::create(&format!("ringest-replay-{}", std::process::id()), LIMIT);
    let mut r = Receiver::unstarted(&data);
    r.cgroup_procs = Some(cg.procs());
    r.extra = vec!["--no-tsdb.wal-compression".into()];
    r.relaunch();
    r.wait_ready(Duration::from_secs(300));
    let in_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", r.pid())).unwrap();
    assert!(in_cgroup.contains(&format!("ringest-replay-{}", std::process::id())), "{in_cgroup}");
    let hwm = ringest_loadgen::procstat::sample(r.pid()).unwrap().hwm;
    println!("replayed a {} MiB WAL under a {} MiB limit: peak RSS {} MiB", wal_size >> 20, LIMIT >> 20, hwm >> 20);
    assert_eq!(cg.oom_kills(), 0);
    let t = "{tenant=\"default-tenant\"}";
    assert_eq!(r.metric(&format!("prometheus_tsdb_head_series{t}")), Some(SERIES as f64), "{}", r.logs());
    // Every sample is there: each series' last one, and the count of one series.
    let stored = ringest_dump(&r.tenant_dir("default-tenant"));
    let last = stored.get("{__name__=\"replayed\", i=\"7\"}").expect("series 7");
    assert_eq!(last.len() as i64, rounds);
    assert_eq!(last.get(&(T0 + rounds - 1)), Some(&((rounds - 1) as f64).to_bits()));
    assert!(r.terminate().success(), "{}", r.logs());
}

/// Every sample of `acked` is in `r`'s default tenant, bit for bit (`ringest tsdb dump`).
fn assert_holds(r: &Receiver, acked: &Acked) {
    let ours = ringest_dump(&r.tenant_dir("default-tenant"));
    for (series, samples) in acked {
        for (t, bits) in samples {
            assert_eq!(ours.get(series).and_then(|s| s.get(t)), Some(bits), "lost {series} @ {t}");
        }
    }
}

/// Bytes free on the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().expect("run df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df's answer")
}

fn tmp_dirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

fn blocks(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("meta.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Checklist A.10: the disk fills up while a block is written. The half-written block is
/// removed, the head and its WAL are kept whole (no truncation), writes go on, and once space
/// is back the next compaction cuts the block; every acknowledged sample is there after a
/// restart.
#[test]
fn disk_full_during_a_block_write_keeps_head_and_wal_and_the_next_compaction_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _fs = Tmpfs::mount(&mnt, "48m");
    let mut r = Receiver::start(&mnt.join("data"), &["--no-tsdb.wal-compression"]);
    let tenant = r.tenant_dir("default-tenant");
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    // Two and a half hours of one-minute rounds: a block's worth, not yet cut.
    let w = Workload { series: 2000, batch: 1000, start_ms: T0, step_ms: 60_000, name: "cut".into() };
    w.send(&mut conn, 0..150, &mut acked).expect("the head fills");
    assert!(blocks(&tenant).is_empty());
    // Leave 128 KiB: room for a few WAL pages, not for a block.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; (free_bytes(&mnt) - (128 << 10)) as usize]).unwrap();
    // A round past 1.5 block ranges asks for the block [T0, T0+2h).
    let failed = "prometheus_tsdb_compactions_failed_total{tenant=\"default-tenant\"}";
    let late =
        Workload { series: 1, batch: 1, start_ms: T0 + 3 * 3_600_000 + 60_000, step_ms: 60_000, name: "late".into() };
    late.send(&mut conn, 0..1, &mut acked).expect("a small write still fits in the WAL");
    ringest_e2e::wait_for("a failed head compaction", Duration::from_secs(90), || {
        r.metric(failed).unwrap_or(0.0) >= 1.0
    });
    assert!(r.logs().contains("No space left"), "{}", r.logs());
    assert!(tmp_dirs(&tenant).is_empty(), "a half-written block is left: {:?}", tmp_dirs(&tenant));
    assert!(blocks(&tenant).is_empty());
    let wal: Vec<String> = std::fs::read_dir(tenant.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(wal.iter().any(|n| n == "00000000"), "the WAL was not truncated: {wal:?}");
    assert!(!wal.iter().any(|n| n.starts_with("checkpoint")), "no checkpoint without a block: {wal:?}");

    // Space comes back: the next compaction cuts the block.
    std::fs::remove_file(&ballast).unwrap();
    late.send(&mut conn, 1..2, &mut acked).expect("writes go on");
    ringest_e2e::wait_for("the block cut once space is back", Duration::from_secs(90), || !blocks(&tenant).is_empty());
    assert!(tmp_dirs(&tenant).is_empty(), "{:?}", tmp_dirs(&tenant));
    assert!(r.terminate().success(), "{}", r.logs());
    r.restart();
    assert_holds(&r, &acked);
    r.kill9();
}

/// Checklist A.11: fsync answers EIO (the `wal.fsync` error point, three times). The
/// background fsync of the segment finished when a block is cut fails first; from then on no
/// write is acknowledged (503) until the current segment is fsynced and a new one is open, which
/// fails twice more and then works; writes then go on, and every acknowledged sample is there
/// after a restart.
#[test]
fn a_failed_fsync_stops_acknowledgements_until_a_new_segment_is_safely_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::launch_with_env(&tmp.path().join("data"), &[], &[("RINGEST_FAILPOINT", "wal.fsync:3")]);
    r.wait_ready(Duration::from_secs(60));
    let mut acked = Acked::new();
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let w = Workload { series: 200, batch: 200, start_ms: T0, step_ms: 60_000, name: "fsync".into() };
    w.send(&mut conn, 0..150, &mut acked).expect("writes before the failure");
    // A round past 1.5 block ranges: a block is cut, the WAL checkpointed and a new segment
    // started; the finished one is fsynced in the background, and that fsync fails.
    let late =
        Workload { series: 1, batch: 1, start_ms: T0 + 3 * 3_600_000 + 60_000, step_ms: 60_000, name: "late".into() };
    late.send(&mut conn, 0..1, &mut acked).expect("the write that cuts the block");
    ringest_e2e::wait_for("the background fsync to fail", Duration::from_secs(60), || {
        r.logs().contains("fsync of finished WAL segment failed")
    });
    let mut refused = 0;
    let mut round = 1;
    loop {
        match late.send(&mut conn, round..round + 1, &mut acked) {
            Ok(()) => break,
            Err(f) => {
                assert!(f.reason.starts_with("503 ") && f.reason.contains("fsync"), "{}", f.reason);
                refused += 1;
                assert!(refused <= 2, "still refused after the error point ran out: {}", f.reason);
                conn = RemoteWriter::connect(&r.rw_addr).unwrap();
            }
        }
        round += 1;
    }
    assert_eq!(refused, 2, "the two writes while the current segment could not be fsynced were refused");
    assert!(r.logs().contains("WAL writes resumed on a new segment after a failed fsync"), "{}", r.logs());
    let failed = r.metric("prometheus_tsdb_wal_writes_failed_total{tenant=\"default-tenant\"}").unwrap();
    assert!(failed >= 2.0, "{failed}");
    late.send(&mut conn, round..round + 5, &mut acked).expect("writes go on");
    assert!(r.terminate().success(), "{}", r.logs());
    r.env.clear();
    r.restart();
    assert_holds(&r, &acked);
    r.kill9();
}
