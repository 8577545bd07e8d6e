//! Cutting one 2h block out of a large head: time, peak extra memory, and commit latency while
//! the block is written versus without.
//!
//! `cargo run --release -p ringest-benches --example block_cut -- [series] [samples per block]`
//! (default 1000000 series x 480 samples at a 15 s interval). The head is filled with 1.5 block
//! ranges plus one sample per series (so it becomes compactable), through the appender on all
//! cores; then a writer thread keeps committing 2000-sample batches of newer samples while the
//! block is cut, and again for as long without a cut, and the commit latencies are compared.
//! Memory is the process' resident set, sampled every 10 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ringest_tsdb::{AppendBuffers, LabelRef, Options, Tsdb};

const STEP: i64 = 15_000;
/// A multiple of 2h.
const T0: i64 = 1_800_000_000_000;

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn labels(i: usize, buf: &mut Vec<(String, String)>) {
    buf.clear();
    buf.push(("__name__".into(), format!("avalanche_metric_mmmmm_{}", i % 10)));
    buf.push(("cycle_id".into(), "0".into()));
    buf.push(("instance".into(), format!("host-{}", i / 1000)));
    buf.push(("job".into(), "bench".into()));
    buf.push(("series_id".into(), format!("{i}")));
}

/// Appends samples `rounds` (one per series per round) for series `range`.
fn fill(db: &Tsdb, series: std::ops::Range<usize>, rounds: std::ops::Range<i64>, batch: usize) {
    let mut bufs = AppendBuffers::default();
    let mut l = Vec::new();
    let ids: Vec<usize> = series.collect();
    for r in rounds {
        for chunk in ids.chunks(batch) {
            let mut app = db.appender(&mut bufs);
            for &i in chunk {
                labels(i, &mut l);
                let refs: Vec<LabelRef<'_>> =
                    l.iter().map(|(n, v)| LabelRef { name: n.as_bytes(), value: v.as_bytes() }).collect();
                let t = T0 + r * STEP + (i % 1000) as i64;
                let v = ((r as usize * 7 + i) % 1000) as f64;
                app.append(&refs, &[(t, v)], i64::MAX).expect("valid labels");
            }
            app.commit().expect("commit");
        }
    }
}

/// Commits 2000-sample batches of series `0..n` from round `from` until `stop`; returns the
/// commit latencies in ms and the next round.
fn writer(db: &Tsdb, n: usize, from: i64, stop: &AtomicBool) -> (Vec<f64>, i64) {
    let mut lat = Vec::new();
    let mut bufs = AppendBuffers::default();
    let mut l = Vec::new();
    let mut r = from;
    while !stop.load(Ordering::Relaxed) {
        for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let start = Instant::now();
            let mut app = db.appender(&mut bufs);
            for &i in chunk {
                labels(i, &mut l);
                let refs: Vec<LabelRef<'_>> =
                    l.iter().map(|(n, v)| LabelRef { name: n.as_bytes(), value: v.as_bytes() }).collect();
                app.append(&refs, &[(T0 + r * STEP + (i % 1000) as i64, 1.0)], i64::MAX).unwrap();
            }
            app.commit().unwrap();
            lat.push(start.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(2));
        }
        r += 1;
    }
    (lat, r + 1)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0.0)
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    // The TSDB's own log lines give the phases of the cut (block write, head GC, checkpoint).
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let per_block: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(480);
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options { retention_ms: 0, ..Options::default() }).unwrap();
    let db = Arc::new(db);
    let rounds = per_block * 3 / 2 + 1;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let db = &db;
            s.spawn(move || {
                let part = n.div_ceil(threads);
                // Rounds in steps so every series advances together (the head's append window).
                for r0 in (0..rounds).step_by(8) {
                    fill(db, k * part..((k + 1) * part).min(n), r0..(r0 + 8).min(rounds), 2000);
                }
            });
        }
    });
    let fill_s = t.elapsed().as_secs_f64();
    assert!(db.compactable(), "head should span more than 1.5 block ranges");
    let head_rss = rss_bytes();
    println!(
        "filled {n} series x {rounds} samples in {fill_s:.1}s ({:.2}M samples/s); RSS {:.0} MiB ({} B/series)",
        (n as f64 * rounds as f64) / fill_s / 1e6,
        head_rss as f64 / 1048576.0,
        head_rss / n as u64
    );

    // Baseline: commit latency without a cut, for 20 s.
    let stop = AtomicBool::new(false);
    let writers_n = n.min(200_000);
    let (base, next) = std::thread::scope(|s| {
        let h = s.spawn(|| writer(&db, writers_n, rounds, &stop));
        std::thread::sleep(Duration::from_secs(20));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap()
    });

    // The cut, with the same writer running and RSS sampled.
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let (metas, cut_s, peak, mut during) = std::thread::scope(|s| {
        let w = s.spawn(|| writer(&db, writers_n, next, &stop));
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let t = Instant::now();
        let cpu = thread_cpu_seconds();
        let metas = db.compact().unwrap();
        let cut_s = t.elapsed().as_secs_f64();
        println!("compaction thread CPU: {:.1}s (wall {cut_s:.1}s)", thread_cpu_seconds() - cpu);
        done.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        (metas, cut_s, sampler.join().unwrap(), w.join().unwrap().0)
    });
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_bytes();
    let mut base = base;
    let m = &metas[0];
    println!(
        "cut block {} [{}, {}): {} series, {} samples, {} chunks in {cut_s:.1}s",
        m.ulid, m.min_time, m.max_time, m.stats.num_series, m.stats.num_samples, m.stats.num_chunks
    );
    println!(
        "RSS: head {:.0} MiB, peak during cut {:.0} MiB (+{:.1}% of the head), 3 s after {:.0} MiB",
        head_rss as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        (peak as f64 - head_rss as f64) / head_rss as f64 * 100.0,
        after as f64 / 1048576.0
    );
    println!(
        "commit latency of 2000-sample batches: without a cut p50 {:.2} ms p99 {:.2} ms ({} commits); during the cut p50 {:.2} ms p99 {:.2} ms ({} commits)",
        pct(&mut base, 0.5),
        pct(&mut base, 0.99),
        base.len(),
        pct(&mut during, 0.5),
        pct(&mut during, 0.99),
        during.len()
    );
}
