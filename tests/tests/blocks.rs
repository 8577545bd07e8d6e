//! 2h blocks from outside: five hours of data become aligned blocks without a restart, SIGTERM
//! flushes the rest, promtool and Prometheus 2.42 read the blocks, and kill -9 at every step of
//! block creation and checkpointing loses nothing and leaves no temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ringest_e2e::client::series;
use ringest_e2e::oracle::{
    Prometheus, assert_exact, assert_exact_with, copy_dir, labels_string, promtool_value_matches,
};
use ringest_e2e::workload::{Acked, Workload};
use ringest_e2e::{Receiver, RemoteWriter, http_get};
use ringest_proto::prometheus as pb;

const H: i64 = 3_600_000;
/// A multiple of 2h, plus 17 minutes: the first block does not start on a boundary.
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % (2 * H) + 17 * 60_000;

fn workload() -> Workload {
    Workload { series: 2000, batch: 500, start_ms: T0, step_ms: 60_000, name: "blk".into() }
}

/// One series whose timestamps hit every delta-of-delta bucket edge, within the first 4.5h.
/// Labels and samples of a series.
type SeriesInput = (Vec<(&'static str, &'static str)>, Vec<(i64, f64)>);

fn edges() -> SeriesInput {
    let dods = [0i64, 8192, -8191, -8192, 8193, 65536, -65535, -65536, 65537, 524288, -524287, -524288, 524289];
    let mut t = T0 + 30_000;
    let mut d = 600_000i64;
    let mut samples = vec![(t, 1.0)];
    for (k, dod) in dods.iter().cycle().enumerate() {
        d += dod;
        if t + d > T0 + 9 * H / 2 {
            break;
        }
        t += d;
        samples.push((t, k as f64 * 1.5));
    }
    samples.push((t + 1, -0.0));
    samples.push((t + 2, 5e-324));
    (vec![("__name__", "edges"), ("job", "e2e")], samples)
}

/// Loads five hours (300 rounds of 1 minute) with the edges series interleaved in time order
/// (a sample far ahead of the others would make them out of bounds). Returns what was acked;
/// on a failed request, `Err` with what was acked before and the samples of that request.
fn load_rounds(r: &Receiver, rounds: std::ops::Range<usize>, acked: &mut Acked) -> Result<(), Acked> {
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let (labels, samples) = edges();
    let key = labels_string(&labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>());
    let from = T0 + rounds.start as i64 * 60_000;
    let mut next = samples.iter().take_while(|(t, _)| *t < from).count();
    for round in rounds {
        let until = T0 + (round as i64 + 1) * 60_000;
        let end = next + samples[next..].iter().take_while(|(t, _)| *t < until).count();
        if end > next {
            let req = pb::WriteRequest { timeseries: vec![series(&labels, &samples[next..end])], ..Default::default() };
            let ok = match conn.send(&req) {
                Ok(resp) if resp.status == 200 => true,
                Ok(resp) => {
                    eprintln!("edges request refused: {} {}", resp.status, resp.text());
                    false
                }
                Err(e) => {
                    eprintln!("edges request failed: {e}");
                    false
                }
            };
            let part: BTreeMap<i64, u64> = samples[next..end].iter().map(|&(t, v)| (t, v.to_bits())).collect();
            if !ok {
                return Err(BTreeMap::from([(key, part)]));
            }
            acked.entry(key.clone()).or_default().extend(part);
            next = end;
        }
        if let Err(cut) = workload().send(&mut conn, round..round + 1, acked) {
            eprintln!("round {round} failed: {}", cut.reason);
            let mut maybe = Acked::new();
            for (l, t, v) in cut.sent {
                maybe.entry(l).or_default().insert(t, v);
            }
            return Err(maybe);
        }
    }
    Ok(())
}

fn load(r: &Receiver) -> Acked {
    let mut acked = Acked::new();
    load_rounds(r, 0..300, &mut acked).unwrap_or_else(|_| panic!("load not acknowledged:\n{}", r.logs()));
    acked
}

fn block_dirs(tenant: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tenant)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").is_file() && !p.file_name().unwrap().to_string_lossy().contains(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap()
}

fn range(m: &serde_json::Value) -> (i64, i64) {
    (m["minTime"].as_i64().unwrap(), m["maxTime"].as_i64().unwrap())
}

/// Every block lies in one aligned 2h window; blocks do not overlap.
fn check_block_ranges(tenant: &Path) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = block_dirs(tenant).iter().map(|d| range(&meta(d))).collect();
    ranges.sort();
    for &(mn, mx) in &ranges {
        assert!(mn < mx);
        assert_eq!(mn.div_euclid(2 * H), (mx - 1).div_euclid(2 * H), "block {mn}..{mx} crosses a 2h boundary");
    }
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks overlap: {ranges:?}");
    }
    ranges
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).output().expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn five_hours_become_aligned_blocks_that_promtool_and_prometheus_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(&tmp.path().join("data"), &[]);
    let acked = load(&r);
    let tenant = r.tenant_dir("default-tenant");
    // Blocks appear without a restart (writes trigger the check; a minute at most otherwise).
    let start = Instant::now();
    while block_dirs(&tenant).is_empty() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ranges = check_block_ranges(&tenant);
    assert!(!ranges.is_empty(), "no block after 2 minutes:\n{}", r.logs());
    assert!(r.metric("prometheus_tsdb_compactions_total{tenant=\"default-tenant\"}").unwrap() >= 1.0);
    assert_eq!(r.metric("prometheus_tsdb_blocks_loaded{tenant=\"default-tenant\"}"), Some(ranges.len() as f64));
    assert!(r.metric("prometheus_tsdb_checkpoint_creations_total{tenant=\"default-tenant\"}").is_some());
    assert!(r.metric("prometheus_tsdb_storage_blocks_bytes{tenant=\"default-tenant\"}").unwrap() > 10_000.0);
    let lowest = acked.values().flat_map(|s| s.keys().copied()).min().unwrap();
    assert_eq!(r.metric("prometheus_tsdb_lowest_timestamp{tenant=\"default-tenant\"}"), Some(lowest as f64));
    assert!(r.metric("prometheus_tsdb_head_gc_duration_seconds_count{tenant=\"default-tenant\"}").unwrap() >= 1.0);
    assert!(r.logs().contains("msg=\"write block\""), "{}", r.logs());
    // While running: blocks, head chunk files and WAL hold everything once (promtool reads
    // ringest's chunks_head files too).
    let chunk_bytes: u64 = std::fs::read_dir(tenant.join("chunks_head"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len().saturating_sub(8))
        .sum();
    assert!(chunk_bytes > 100_000, "completed chunks were written to chunks_head ({chunk_bytes} bytes)");
    assert_exact(&tenant, &acked);

    assert!(r.terminate().success(), "{}", r.logs());
    let ranges = check_block_ranges(&tenant);
    let (first, last) = (ranges[0].0, ranges.last().unwrap().1);
    let all_t: Vec<i64> = acked.values().flat_map(|s| s.keys().copied()).collect();
    assert_eq!(first, *all_t.iter().min().unwrap());
    assert_eq!(last, all_t.iter().max().unwrap() + 1);
    // After SIGTERM the blocks alone hold every sample.
    let blocks_only = tmp.path().join("blocks-only");
    std::fs::create_dir_all(blocks_only.join("wal")).unwrap();
    for b in block_dirs(&tenant) {
        copy_dir(&b, &blocks_only.join(b.file_name().unwrap()));
        let out = promtool(&[
            "tsdb",
            "analyze",
            "--extended",
            tenant.to_str().unwrap(),
            b.file_name().unwrap().to_str().unwrap(),
        ]);
        assert!(out.contains("Block ID"), "{out}");
    }
    assert_exact(&blocks_only, &acked);
    let listed = promtool(&["tsdb", "list", blocks_only.to_str().unwrap()]);
    assert_eq!(listed.lines().count(), ranges.len() + 1, "{listed}");

    // Prometheus 2.42 loads the blocks and answers queries with the raw samples.
    let pdir = tmp.path().join("prom");
    copy_dir(&blocks_only, &pdir.join("prometheus-data"));
    let p = Prometheus::start(&pdir, "global: {}\n", &["--storage.tsdb.retention.time=100y"]);
    let logs = std::fs::read_to_string(&p.log).unwrap_or_default();
    assert!(logs.matches("Found healthy block").count() >= ranges.len(), "{logs}");
    let w = workload();
    for i in [0usize, 7, 1999] {
        let labels = w.labels(i);
        let key = labels_string(&labels);
        let sel = format!("{{instance=\"{}\",__name__=\"{}\"}}[6h]", labels[1].1, labels[0].1);
        let q = format!("/api/v1/query?query={}&time={}", urlencode(&sel), (last + 60_000) as f64 / 1000.0);
        let resp = http_get(&p.addr, &q).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        let body: serde_json::Value = serde_json::from_str(&resp.text()).unwrap();
        let values = body["data"]["result"][0]["values"].as_array().unwrap_or_else(|| panic!("{body}"));
        // PromQL drops stale markers from range vectors.
        let want: Vec<(i64, u64)> = acked[&key]
            .iter()
            .filter(|(_, b)| **b != ringest_e2e::workload::STALE_NAN)
            .map(|(&t, &b)| (t, b))
            .collect();
        assert_eq!(values.len(), want.len(), "{key}");
        for (v, (t, bits)) in values.iter().zip(want) {
            let ts = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
            assert_eq!(ts, t, "{key}");
            assert!(promtool_value_matches(v[1].as_str().unwrap(), bits), "{key} @ {t}: {v}");
        }
    }
    // A range query over a whole window: one series count per step.
    let q = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=600",
        urlencode("count(count_over_time({job=\"e2e\",__name__=~\"blk_.*\"}[1m]))"),
        (T0 + H) / 1000,
        (T0 + 3 * H) / 1000
    );
    let body: serde_json::Value = serde_json::from_str(&http_get(&p.addr, &q).unwrap().text()).unwrap();
    let values = body["data"]["result"][0]["values"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(values.len(), 13);
    for v in values {
        // Series with a sample other than a stale marker in [step - 1m, step] (2.42's ranges
        // include both ends).
        let at = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
        let want = acked
            .iter()
            .filter(|(k, _)| k.starts_with("{__name__=\"blk_"))
            .filter(|(_, s)| s.range(at - 60_000..=at).any(|(_, b)| *b != ringest_e2e::workload::STALE_NAN))
            .count();
        assert_eq!(v[1].as_str().unwrap(), want.to_string(), "at {at}: {body}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// kill -9 at each step of cutting a block and of checkpointing the WAL: after a restart no
/// temporary directory remains, every acknowledged sample is present, and blocks and head hold
/// each sample once (blocks disjoint, their sample counts plus the head's adding up).
#[test]
fn kill9_at_every_step_of_block_creation_and_checkpointing() {
    let points = [
        "block.before_chunks",
        "block.before_index",
        "block.before_meta",
        "block.before_rename",
        "compact.before_truncate",
        "checkpoint.before_rename",
        "checkpoint.before_delete_segments",
    ];
    for fp in points {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Receiver::launch_with_env(&tmp.path().join("data"), &[], &[("RINGEST_FAILPOINT", fp)]);
        r.wait_ready(Duration::from_secs(60));
        let mut acked = Acked::new();
        // Acknowledged writes until the compaction they trigger kills the process; checkpoints
        // of a short WAL happen in the final flush, so SIGTERM reaches those.
        let maybe = load_rounds(&r, 0..300, &mut acked).err().unwrap_or_default();
        let status = match r.wait_exit(Duration::from_millis(500)) {
            Some(st) => st,
            None => {
                r.signal(libc::SIGTERM);
                r.wait_exit(Duration::from_secs(120)).unwrap_or_else(|| panic!("{fp} never reached"))
            }
        };
        assert!(!status.success(), "{fp}: {status}");
        assert!(r.logs().contains(&format!("failpoint {fp} reached")), "{fp}: {}", r.logs());
        let tenant = r.tenant_dir("default-tenant");
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        };
        let tmp_names = || -> Vec<String> {
            names(&tenant).into_iter().chain(names(&tenant.join("wal"))).filter(|n| n.contains(".tmp")).collect()
        };
        let crashed_in = tmp_names();
        if fp.starts_with("block.") || fp == "checkpoint.before_rename" {
            assert!(!crashed_in.is_empty(), "{fp}: the crash left no temporary directory to clean up");
        }
        r.env.clear();
        r.restart();
        // Restarting compacts the head again; wait until that is done.
        let start = Instant::now();
        loop {
            let span = r.metric("prometheus_tsdb_head_max_time{tenant=\"default-tenant\"}").unwrap_or(0.0)
                - r.metric("prometheus_tsdb_head_min_time{tenant=\"default-tenant\"}").unwrap_or(0.0);
            if span <= 3.0 * H as f64 && tmp_names().is_empty() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{fp}: compaction after restart did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        let leftovers: Vec<String> = tmp_names().into_iter().filter(|n| crashed_in.contains(n)).collect();
        assert!(leftovers.is_empty(), "{fp}: {leftovers:?}");
        let ranges = check_block_ranges(&tenant);
        assert_exact_with(&tenant, &acked, &maybe);
        // Exactly once: the blocks' sample counts equal the acknowledged samples below the last
        // block's end (the cut request's samples are all newer than that).
        let in_blocks: u64 = block_dirs(&tenant).iter().map(|d| meta(d)["stats"]["numSamples"].as_u64().unwrap()).sum();
        let floor = ranges.last().map(|r| r.1).unwrap_or(i64::MIN);
        let below: usize = acked.values().map(|s| s.range(..floor).count()).sum();
        assert_eq!(in_blocks as usize, below, "{fp}: blocks hold {in_blocks}, acked below {floor}: {below}");
        // The node keeps working: more writes, a clean shutdown, still exact.
        load_rounds(&r, 300..310, &mut acked).unwrap_or_else(|_| panic!("{fp}: writes after restart failed"));
        assert!(r.terminate().success(), "{fp}: {}", r.logs());
        check_block_ranges(&tenant);
        assert_exact_with(&tenant, &acked, &maybe);
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Completed chunks live in `chunks_head/`, not on the heap: with values that compress badly
/// the chunk files outgrow the whole process. Cutting a block costs little memory on top of the
/// head, and the resident set falls back afterwards.
#[test]
fn completed_chunks_stay_off_the_heap_and_a_cut_gives_memory_back() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(&tmp.path().join("data"), &[]);
    let pid = r.pid();
    let tenant = r.tenant_dir("default-tenant");
    let n = 10_000usize;
    let step = 15_000i64;
    let mut conn = RemoteWriter::connect(&r.rw_addr).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut send_round = |round: i64, conn: &mut RemoteWriter| {
        for part in (0..n).collect::<Vec<_>>().chunks(2000) {
            let mut req = pb::WriteRequest::default();
            for &i in part {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = i.to_string();
                let labels = [("__name__", "noise"), ("id", id.as_str())];
                req.timeseries.push(series(&labels, &[(T0 + round * step, f64::from_bits(x >> 2))]));
            }
            let resp = conn.send(&req).unwrap();
            assert_eq!(resp.status, 200, "{}", resp.text());
        }
    };
    // Exactly three hours: not yet compactable.
    for round in 0..=720 {
        send_round(round, &mut conn);
    }
    let chunk_bytes: u64 =
        std::fs::read_dir(tenant.join("chunks_head")).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    let rss = proc_status_kib(pid, "VmRSS:") * 1024;
    assert!(chunk_bytes > 50 << 20, "only {chunk_bytes} bytes of completed chunks");
    assert!(
        rss < chunk_bytes * 3 / 4,
        "resident set {rss} B is not well below the {chunk_bytes} B of completed chunks: they are on the heap"
    );
    assert!(block_dirs(&tenant).is_empty());
    // Reset the peak, then one more round makes the head compactable.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = proc_status_kib(pid, "VmRSS:");
    let parts = |pid: u32| ["RssAnon:", "RssFile:"].map(|k| format!("{k} {} KiB", proc_status_kib(pid, k))).join(", ");
    let before_parts = parts(pid);
    send_round(721, &mut conn);
    let start = Instant::now();
    while block_dirs(&tenant).is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(block_dirs(&tenant).len(), 1, "{}", r.logs());
    // The cut ends with the head's garbage collection (the WAL is too short to truncate).
    ringest_e2e::wait_for("the head GC after the cut", Duration::from_secs(60), || {
        r.logs().contains("Head GC completed")
    });
    // Freed memory goes back to the system (the cut's thread hands it back when it is done;
    // other threads after the allocator's purge delay of 1 s).
    let bound = before + before / 10;
    let start = Instant::now();
    while proc_status_kib(pid, "VmRSS:") > bound && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let peak = proc_status_kib(pid, "VmHWM:");
    let after = proc_status_kib(pid, "VmRSS:");
    assert!(peak <= before + before / 4, "cutting the block took {} KiB on top of {before} KiB", peak - before);
    assert!(
        after <= bound,
        "resident set after the cut {after} KiB ({}), before {before} KiB ({before_parts})",
        parts(pid)
    );
}
