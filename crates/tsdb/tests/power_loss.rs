//! Simulated power loss (reliability checklist A.8): what a disk may hold after the power goes
//! out, built from a real TSDB directory and the points where it was fsynced, and opened again.
//!
//! ringest fsyncs as Prometheus does: a WAL segment when it is finished (in the background), the
//! directory when a segment is created, and nothing per write; head chunk files are never
//! fsynced (their samples are also in the WAL until a checkpoint). So after a power loss, the
//! finished segments whose fsync completed are intact, and every byte written since may be
//! gone: each other file keeps any prefix of what was written to it, its last page possibly
//! torn (garbage over part of it), and its length possibly past what reached the disk (zeros).
//!
//! For 100 such images of one directory (writes of 20 series, several WAL segments, head chunk
//! files with completed chunks), the store must open, every sample of a batch in an fsynced
//! segment must be there bit for bit, every sample there must have been acknowledged with that
//! value, each series must hold a prefix of what it was written, and new writes must work and
//! survive a clean reopen. Loss is bounded by the unsynced part of the WAL (the current
//! segment), as in Prometheus.

mod common;

use common::{Model, copy_dir, dump};
use std::path::{Path, PathBuf};

use ringest_tsdb::wal::{PAGE_SIZE, WalOptions, list_segments, segment_path};
use ringest_tsdb::{AppendBuffers, LabelRef, Options, Tsdb};

const T0: i64 = 1_700_000_000_000;
const SERIES: usize = 20;
const BATCHES: i64 = 400;
const PER_BATCH: i64 = 4;

fn opts() -> Options {
    Options { wal: WalOptions { compress: true, segment_size: 2 * PAGE_SIZE }, ..Options::default() }
}

fn name(s: usize) -> String {
    format!("s{s:02}")
}

/// Writes the batches without closing (the process "loses power" after the last one); returns
/// every acknowledged sample and, per batch, the WAL segment that holds it.
fn write_all(dir: &Path) -> (Model, Vec<(i64, u32)>) {
    let (db, _) = Tsdb::open(dir, opts()).unwrap();
    let names: Vec<String> = (0..SERIES).map(name).collect();
    let mut bufs = AppendBuffers::default();
    let mut batches = Vec::new();
    for b in 0..BATCHES {
        let mut app = db.appender(&mut bufs);
        for (s, n) in names.iter().enumerate() {
            let labels =
                [LabelRef { name: b"__name__", value: b"power" }, LabelRef { name: b"series", value: n.as_bytes() }];
            let samples: Vec<(i64, f64)> = (0..PER_BATCH)
                .map(|k| {
                    let t = T0 + (b * PER_BATCH + k) * 1000;
                    (t, (((t / 1000) % 1_000_003 * 2_654_435 + s as i64) % 1_000_003) as f64 / 7.0)
                })
                .collect();
            assert_eq!(app.append(&labels, &samples, i64::MAX).unwrap().accepted as i64, PER_BATCH);
        }
        app.commit().unwrap();
        batches.push((b, db.metrics().wal.segment_current.get() as u32));
    }
    // The background fsyncs of the finished segments complete before the power goes out.
    let finished = batches.last().unwrap().1 - batches[0].1;
    let start = std::time::Instant::now();
    while db.metrics().wal.fsync_duration.count() < finished as u64 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "background fsyncs did not complete");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let model = dump(&db);
    std::mem::forget(db); // no close: pages stay as the last write left them
    (model, batches)
}

/// A small deterministic generator (xorshift64*), one per image.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// What the disk may hold of a file none of whose bytes were fsynced: a prefix of them, the
/// last page of it torn, the length possibly past the data (zeros).
fn lose_power(path: &Path, rng: &mut Rng) {
    let mut data = std::fs::read(path).unwrap();
    let len = data.len() as u64;
    let keep = rng.below(len + 1) as usize;
    data.truncate(keep);
    if keep > 0 && rng.below(2) == 0 {
        let page_start = (keep - 1) / 4096 * 4096;
        let from = page_start + rng.below((keep - page_start) as u64) as usize;
        for b in &mut data[from..] {
            *b = rng.next() as u8;
        }
    }
    if rng.below(3) == 0 {
        data.resize(len as usize, 0);
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn after_a_simulated_power_loss_the_store_opens_with_every_fsynced_sample_and_nothing_invented() {
    let src = tempfile::tempdir().unwrap();
    let (acked, batches) = write_all(src.path());
    let wal = src.path().join("wal");
    let segments = list_segments(&wal).unwrap();
    let current = *segments.last().unwrap();
    assert!(segments.len() >= 4, "several segments were written: {segments:?}");
    let chunk_files = files(&src.path().join("chunks_head"));
    assert!(!chunk_files.is_empty(), "completed chunks were written to chunks_head");
    // Samples of batches in finished, fsynced segments: these must survive.
    let durable: i64 = batches.iter().filter(|&&(_, seg)| seg < current).count() as i64;
    assert!(durable > 0 && durable < BATCHES, "{durable} of {BATCHES} batches in fsynced segments");

    let mut lost_max = 0;
    for seed in 0..100u64 {
        let img = tempfile::tempdir().unwrap();
        copy_dir(src.path(), img.path());
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        lose_power(&segment_path(&img.path().join("wal"), current), &mut rng);
        for f in &chunk_files {
            let rel = f.strip_prefix(src.path()).unwrap();
            lose_power(&img.path().join(rel), &mut rng);
        }

        let (db, _) =
            Tsdb::open(img.path(), opts()).unwrap_or_else(|e| panic!("seed {seed}: the store does not open: {e}"));
        let got = dump(&db);
        for (labels, samples) in &got {
            let full = acked.get(labels).unwrap_or_else(|| panic!("seed {seed}: invented series {labels:?}"));
            assert!(full.starts_with(samples), "seed {seed}: {labels:?} is not a prefix of what was written");
        }
        for s in 0..SERIES {
            let n = name(s);
            let labels = acked.keys().find(|l| l.get("series") == Some(n.as_str())).unwrap();
            let have = got.get(labels).map_or(0, Vec::len) as i64;
            assert!(
                have >= durable * PER_BATCH,
                "seed {seed}: {n} has {have} samples, {} were fsynced",
                durable * PER_BATCH
            );
            lost_max = lost_max.max(BATCHES * PER_BATCH - have);
        }

        // New writes go on, and a clean reopen keeps everything.
        let mut bufs = AppendBuffers::default();
        let mut app = db.appender(&mut bufs);
        let labels = [LabelRef { name: b"__name__", value: b"after" }];
        app.append(&labels, &[(T0 + 10_000_000, 1.0)], i64::MAX).unwrap();
        app.commit().unwrap();
        db.close().unwrap();
        drop(db);
        let (db, report) = Tsdb::open(img.path(), opts()).unwrap();
        assert_eq!(report.repaired, None, "seed {seed}: a clean reopen finds nothing to repair");
        let again = dump(&db);
        assert_eq!(again.len(), got.len() + 1, "seed {seed}");
        for (labels, samples) in &got {
            assert_eq!(again.get(labels), Some(samples), "seed {seed}");
        }
    }
    // Loss is bounded by the unsynced current segment.
    assert!(lost_max <= (BATCHES - durable) * PER_BATCH);
}
