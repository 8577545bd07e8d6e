//! Removing series whose data went into a block: how long head truncation, series removal and
//! freeing their label strings take, and how long an appender waits meanwhile.
//!
//! `cargo run --release -p ringest-benches --example series_gc -- [series]` (default 1M): the
//! series get one sample each, a newer series makes the head compactable, and the cut removes
//! all of the old ones. A writer commits 2000-sample batches of other series throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ringest_tsdb::{AppendBuffers, LabelRef, Options, Tsdb};

const T0: i64 = 1_800_000_000_000;
const H: i64 = 3_600_000;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options { retention_ms: 0, ..Options::default() }).unwrap();
    let mut bufs = AppendBuffers::default();
    let names: Vec<(String, String)> = (0..n).map(|i| (format!("churn_{}", i % 100), format!("pod-{i:08}"))).collect();
    for part in names.chunks(2000) {
        let mut app = db.appender(&mut bufs);
        for (name, pod) in part {
            let l = [
                LabelRef { name: b"__name__", value: name.as_bytes() },
                LabelRef { name: b"pod", value: pod.as_bytes() },
            ];
            app.append(&l, &[(T0, 1.0)], i64::MAX).unwrap();
        }
        app.commit().unwrap();
    }
    println!("{n} series, {} label strings", db.num_symbols());
    let stop = AtomicBool::new(false);
    let (lat, took) = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut bufs = AppendBuffers::default();
            let mut lat = Vec::new();
            let mut t = T0 + 4 * H;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let mut app = db.appender(&mut bufs);
                for i in 0..2000 {
                    let id = format!("{i}");
                    let l =
                        [LabelRef { name: b"__name__", value: b"live" }, LabelRef { name: b"i", value: id.as_bytes() }];
                    app.append(&l, &[(t, 1.0)], i64::MAX).unwrap();
                }
                app.commit().unwrap();
                lat.push(start.elapsed().as_secs_f64() * 1000.0);
                t += 1000;
                std::thread::sleep(Duration::from_millis(2));
            }
            lat
        });
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        db.compact().unwrap();
        let took = start.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        (w.join().unwrap(), took)
    });
    let mut lat = lat;
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "compaction (block, truncation, removal, symbol GC, checkpoint) {took:?}; {} series and {} label strings left; commit latency max {:.1} ms, p99 {:.1} ms over {} commits",
        db.num_series(),
        db.num_symbols(),
        lat.last().unwrap(),
        lat[(lat.len() as f64 * 0.99) as usize],
        lat.len()
    );
}
