//! Tests of the TSDB through its public API: what is acknowledged survives a reopen exactly,
//! conflicts are refused without touching stored values, and damaged WAL tails are repaired.

mod common;

use common::{Model, copy_dir, dump};
use std::path::Path;

use ringest_tsdb::wal::{PAGE_SIZE, list_segments, segment_path};
use ringest_tsdb::{AppendBuffers, LabelRef, Labels, Options, Tsdb};

fn lr<'a>(n: &'a str, v: &'a str) -> LabelRef<'a> {
    LabelRef { name: n.as_bytes(), value: v.as_bytes() }
}

fn opts() -> Options {
    Options::default()
}

/// A series for [`write`]: labels and samples.
type Input<'a> = (Vec<LabelRef<'a>>, Vec<(i64, f64)>);

fn write(db: &Tsdb, bufs: &mut AppendBuffers, series: &[Input<'_>]) {
    let mut app = db.appender(bufs);
    for (labels, samples) in series {
        let out = app.append(labels, samples, i64::MAX).unwrap();
        assert_eq!(out.accepted as usize, samples.len(), "{labels:?}");
    }
    app.commit().unwrap();
}

fn reopen(dir: &Path) -> (Tsdb, ringest_tsdb::OpenReport) {
    Tsdb::open(dir, opts()).unwrap()
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn acknowledged_samples_survive_reopen_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let values = [1.0, f64::NAN, stale, f64::INFINITY, f64::NEG_INFINITY, -0.0, 5e-324, 0.1, 1e300];
    for compress in [true, false] {
        let d = dir.path().join(format!("c{compress}"));
        let o = Options { wal: ringest_tsdb::wal::WalOptions { compress, ..Default::default() }, ..opts() };
        let (db, _) = Tsdb::open(&d, o).unwrap();
        let mut bufs = AppendBuffers::default();
        for round in 0..50i64 {
            let batch: Vec<_> = (0..40)
                .map(|s| {
                    let labels =
                        vec![lr("__name__", "m"), lr("series", ["a", "b", "c", "d", "e"][s % 5]), lr("i", "x")];
                    let labels = if s % 2 == 0 { labels } else { labels.into_iter().rev().collect() };
                    let v = values[(round as usize + s) % values.len()];
                    (labels, vec![(T0 + round * 15_000 + s as i64, v)])
                })
                .collect();
            // Several entries of one request hit the same series with increasing timestamps.
            write(&db, &mut bufs, &batch);
        }
        let before = dump(&db);
        assert_eq!(before.len(), 5, "unsorted labels map to the same series");
        assert_eq!(before.values().map(Vec::len).sum::<usize>(), 2000);
        db.close().unwrap();
        drop(db);
        let (db, report) = Tsdb::open(&d, o).unwrap();
        assert_eq!(report.repaired, None);
        // Samples in completed chunks come back from the head chunk files; the WAL replay
        // skips them and applies the rest.
        assert_eq!(report.samples + report.skipped_samples, 2000);
        assert!(report.skipped_samples > 0, "completed chunks were read from chunks_head");
        assert_eq!(dump(&db), before);
        // Without the chunk files the WAL alone rebuilds the same head.
        drop(db);
        std::fs::remove_dir_all(d.join("chunks_head")).unwrap();
        let (db, report) = Tsdb::open(&d, o).unwrap();
        assert_eq!(report.samples, 2000);
        assert_eq!(dump(&db), before);
        // A second reopen (now with two extra empty segments) is identical too.
        drop(db);
        let (db, _) = Tsdb::open(&d, o).unwrap();
        assert_eq!(dump(&db), before);
    }
}

#[test]
fn conflicts_are_refused_and_keep_original_values() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = reopen(dir.path());
    let mut bufs = AppendBuffers::default();
    let l = vec![lr("__name__", "up"), lr("job", "a")];
    write(&db, &mut bufs, &[(l.clone(), vec![(T0, 1.0), (T0 + 1000, 2.0), (T0 + 2000, 3.0)])]);
    let mut app = db.appender(&mut bufs);
    // Exact duplicate of the latest sample: accepted, no-op.
    let o = app.append(&l, &[(T0 + 2000, 3.0)], i64::MAX).unwrap();
    assert_eq!((o.accepted, o.duplicate), (1, 0));
    // Other value at the latest timestamp, and an older timestamp: refused.
    let o = app.append(&l, &[(T0 + 2000, 9.0), (T0 + 1000, 9.0), (T0 + 3000, 4.0)], i64::MAX).unwrap();
    assert_eq!((o.accepted, o.duplicate, o.out_of_order), (1, 1, 1));
    assert_eq!(o.first_refused, Some(T0 + 2000));
    // An exact retry of a multi-sample request: every sample already stored, value for value,
    // is accepted as a duplicate; an older sample with another value stays out of order.
    let o = app.append(&l, &[(T0, 1.0), (T0 + 1000, 2.0), (T0 + 2000, 3.0)], i64::MAX).unwrap();
    assert_eq!((o.accepted, o.duplicate, o.out_of_order), (3, 0, 0));
    let o = app.append(&l, &[(T0, 1.0), (T0 + 1000, 2.5)], i64::MAX).unwrap();
    assert_eq!((o.accepted, o.duplicate, o.out_of_order), (1, 0, 1));
    // Far too old: out of bounds (more than an hour behind the head's newest sample).
    let o = app.append(&[lr("__name__", "new")], &[(T0 - 2 * 3600 * 1000, 1.0)], i64::MAX).unwrap();
    assert_eq!(o.out_of_bounds, 1);
    // Too far in the future for the caller's limit.
    let o = app.append(&l, &[(T0 + 10_000, 1.0)], T0 + 5000).unwrap();
    assert_eq!(o.too_far_in_future, 1);
    app.commit().unwrap();
    let want: Vec<(i64, u64)> = [(T0, 1.0), (T0 + 1000, 2.0), (T0 + 2000, 3.0), (T0 + 3000, 4.0)]
        .iter()
        .map(|&(t, v)| (t, f64::to_bits(v)))
        .collect();
    let got = dump(&db);
    assert_eq!(got.get(&Labels::from_pairs([("__name__", "up"), ("job", "a")])), Some(&want));
    db.close().unwrap();
    drop(db);
    let (db, _) = reopen(dir.path());
    assert_eq!(dump(&db), got);
}

#[test]
fn invalid_labels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = reopen(dir.path());
    let mut bufs = AppendBuffers::default();
    let mut app = db.appender(&mut bufs);
    assert!(app.append(&[lr("a", "1"), lr("a", "2")], &[(T0, 1.0)], i64::MAX).is_err());
    assert!(app.append(&[lr("", "1")], &[(T0, 1.0)], i64::MAX).is_err());
    assert!(app.append(&[lr("a", "")], &[(T0, 1.0)], i64::MAX).is_err());
    assert!(app.append(&[LabelRef { name: b"a", value: b"\xc3\x28" }], &[(T0, 1.0)], i64::MAX).is_err());
    assert!(app.append(&[lr("b", "1"), lr("a", "2")], &[(T0, 1.0)], i64::MAX).is_ok());
    // A series without samples is validated but not created.
    assert!(app.append(&[lr("a", "1"), lr("a", "2")], &[], i64::MAX).is_err());
    assert_eq!(app.append(&[lr("empty", "series")], &[], i64::MAX).unwrap().accepted, 0);
    app.commit().unwrap();
    assert_eq!(db.num_series(), 1);
}

/// Preparing a request's series first and appending them afterwards (the order the writer uses
/// to prefetch lookups) gives each series the same outcome, and the head the same contents, as
/// appending them one by one: new and known series, labels out of order, invalid labels, no
/// samples, refused samples, and an append beyond the prepared ones.
#[test]
fn prepared_appends_match_plain_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, _) = Tsdb::open(&dir.path().join("plain"), opts()).unwrap();
    let (prepared, _) = Tsdb::open(&dir.path().join("prepared"), opts()).unwrap();
    let (mut b1, mut b2) = (AppendBuffers::default(), AppendBuffers::default());
    let names: Vec<String> = (0..300).map(|i| format!("{i}")).collect();
    for round in 0..4i64 {
        let mut batch: Vec<Input<'_>> = Vec::new();
        for (i, n) in names.iter().enumerate().skip(round as usize * 50).take(150) {
            let mut labels = vec![lr("__name__", "m"), lr("i", n), lr("z", "last")];
            if i % 7 == 0 {
                labels.reverse();
            }
            if i % 31 == 0 {
                labels.push(lr("i", "again"));
            }
            let t = T0 + round * 1000 - if i % 11 == 0 { 5000 } else { 0 };
            let samples = if i % 13 == 0 { vec![] } else { vec![(t, i as f64), (t + 1, 0.5)] };
            batch.push((labels, samples));
        }
        let mut a = plain.appender(&mut b1);
        let want: Vec<_> = batch.iter().map(|(l, s)| a.append(l, s, T0 + 2500).map_err(|e| e.to_string())).collect();
        a.commit().unwrap();
        let mut a = prepared.appender(&mut b2);
        let (last, rest) = batch.split_last().unwrap();
        for (l, _) in rest {
            a.prepare(l);
        }
        let mut got: Vec<_> =
            rest.iter().map(|(l, s)| a.append_prepared(|| l, s, T0 + 2500).map_err(|e| e.to_string())).collect();
        got.push(a.append_prepared(|| &last.0, &last.1, T0 + 2500).map_err(|e| e.to_string()));
        a.commit().unwrap();
        assert_eq!(got, want, "round {round}");
    }
    assert_eq!(dump(&prepared), dump(&plain));
    assert!(plain.num_series() > 300 / 2);
}

fn fill(dir: &Path, requests: i64) -> Model {
    let (db, _) = reopen(dir);
    let mut bufs = AppendBuffers::default();
    let mut model = Model::new();
    for r in 0..requests {
        let batch: Vec<_> = (0..20)
            .map(|s| {
                (vec![lr("__name__", "m"), lr("s", ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"][s % 10])], s)
            })
            .collect();
        let mut app = db.appender(&mut bufs);
        for (labels, s) in &batch {
            let t = T0 + r * 1000 + *s as i64;
            app.append(labels, &[(t, (r * 100 + *s as i64) as f64)], i64::MAX).unwrap();
        }
        app.commit().unwrap();
    }
    for s in db.dump() {
        model.insert(s.labels, s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect());
    }
    // No close: like a kill -9, the last page stays partial.
    model
}

fn is_prefix(got: &Model, full: &Model) -> bool {
    got.iter().all(|(k, v)| full.get(k).is_some_and(|f| f.starts_with(v)))
}

#[test]
fn torn_tail_is_repaired_and_writes_continue() {
    let src = tempfile::tempdir().unwrap();
    let full = fill(src.path(), 300);
    let seg = *list_segments(&src.path().join("wal")).unwrap().last().unwrap();
    let seg_path = segment_path(&src.path().join("wal"), seg);
    let len = std::fs::metadata(&seg_path).unwrap().len();
    assert!(len > 3 * PAGE_SIZE as u64 / 2);
    for cut in [len - 1, len - 500, len / 2 + 3, 9, PAGE_SIZE as u64 + 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let p = segment_path(&dir.path().join("wal"), seg);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let (db, report) = reopen(dir.path());
        let c = report.repaired.clone().expect("torn record detected");
        assert_eq!(db.metrics().wal.corruptions.get(), 1);
        let got = dump(&db);
        assert!(is_prefix(&got, &full), "cut {cut}: replay is a prefix of what was written");
        assert!(report.samples > 0 || cut < 100);
        assert!(c.offset as u64 <= cut);
        // New writes are accepted and the next reopen is clean.
        let mut bufs = AppendBuffers::default();
        write(&db, &mut bufs, &[(vec![lr("__name__", "after")], vec![(T0 + 10_000_000, 1.0)])]);
        db.close().unwrap();
        drop(db);
        let (db, report) = reopen(dir.path());
        assert_eq!(report.repaired, None, "cut {cut}");
        let again = dump(&db);
        assert_eq!(again.len(), got.len() + 1);
        assert!(is_prefix(&got, &again));
    }
}

#[test]
fn flipped_bit_truncates_at_the_damaged_record() {
    let src = tempfile::tempdir().unwrap();
    let full = fill(src.path(), 300);
    let wal = src.path().join("wal");
    let seg = *list_segments(&wal).unwrap().last().unwrap();
    let len = std::fs::metadata(segment_path(&wal, seg)).unwrap().len() as usize;
    for pos in [len / 3, len / 2, len - 20] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let p = segment_path(&dir.path().join("wal"), seg);
        let mut data = std::fs::read(&p).unwrap();
        data[pos] ^= 0x10;
        std::fs::write(&p, &data).unwrap();
        let (db, report) = reopen(dir.path());
        assert!(report.repaired.is_some(), "flip at {pos} detected");
        let got = dump(&db);
        assert!(is_prefix(&got, &full));
        let kept: usize = got.values().map(Vec::len).sum();
        let all: usize = full.values().map(Vec::len).sum();
        assert!(kept < all && kept > 0, "kept {kept} of {all}");
    }
}

#[test]
fn missing_middle_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let (db, _) = reopen(dir.path());
        let mut bufs = AppendBuffers::default();
        write(&db, &mut bufs, &[(vec![lr("__name__", "m")], vec![(T0 + db.num_series() as i64, 1.0)])]);
        db.close().unwrap();
    }
    std::fs::remove_file(segment_path(&dir.path().join("wal"), 1)).unwrap();
    let err = Tsdb::open(dir.path(), opts()).unwrap_err().to_string();
    assert!(err.contains("not sequential") && err.contains("00000001"), "{err}");
    assert!(err.contains("--ringest.tsdb.wal-discard-after-gap"), "the way out is named: {err}");
}

/// With the repair option, a WAL missing a middle segment opens with everything before the gap,
/// the segments after it set aside (not deleted) and one corruption counted; the next open is
/// clean. The same holds for a gap right after a checkpoint.
#[test]
fn a_gap_is_repaired_only_when_asked_keeping_what_precedes_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    for i in 0..4 {
        let (db, _) = reopen(dir.path());
        let mut bufs = AppendBuffers::default();
        write(&db, &mut bufs, &[(vec![lr("__name__", "m")], vec![(T0 + i * 1000, i as f64)])]);
        db.close().unwrap();
    }
    assert_eq!(list_segments(&wal).unwrap(), vec![0, 1, 2, 3]);
    std::fs::remove_file(segment_path(&wal, 2)).unwrap();
    let repair = Options { wal_discard_after_gap: true, ..opts() };
    let (db, _) = Tsdb::open(dir.path(), repair).unwrap();
    assert_eq!(db.metrics().wal.corruptions.get(), 1);
    let got = dump(&db);
    let samples: Vec<i64> = got.values().flat_map(|v| v.iter().map(|&(t, _)| t)).collect();
    assert_eq!(samples, vec![T0, T0 + 1000], "the samples before the gap, none after it");
    assert!(wal.join("discarded.00000003").join("00000003").exists(), "the tail set aside");
    db.close().unwrap();
    drop(db);
    let (db, report) = reopen(dir.path());
    assert_eq!((report.repaired, db.metrics().wal.corruptions.get()), (None, 0), "the next open is clean");
    assert_eq!(dump(&db), got);
    db.close().unwrap();
    drop(db);

    // A checkpoint whose next segment is missing: refused, then repaired when asked.
    let last = *list_segments(&wal).unwrap().last().unwrap();
    let checkpoint = wal.join(format!("checkpoint.{last:08}"));
    std::fs::create_dir(&checkpoint).unwrap();
    std::fs::copy(segment_path(&wal, 0), segment_path(&checkpoint, 0)).unwrap();
    let after = last + 2;
    for seg in [after, after + 1] {
        std::fs::copy(segment_path(&wal, last), segment_path(&wal, seg)).unwrap();
    }
    let err = Tsdb::open(dir.path(), opts()).unwrap_err().to_string();
    assert!(err.contains(&format!("{:08} is missing", last + 1)), "{err}");
    let (db, _) = Tsdb::open(dir.path(), repair).unwrap();
    assert_eq!(db.metrics().wal.corruptions.get(), 1);
    let aside = wal.join(format!("discarded.{after:08}"));
    assert!(segment_path(&aside, after).exists() && segment_path(&aside, after + 1).exists());
    assert_eq!(dump(&db).values().map(Vec::len).sum::<usize>(), 1, "the checkpoint's one sample");
}

#[test]
fn lock_file_excludes_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = reopen(dir.path());
    let err = Tsdb::open(dir.path(), opts()).unwrap_err().to_string();
    assert!(err.contains("lock"), "{err}");
    drop(db);
    assert!(Tsdb::open(dir.path(), opts()).is_ok());
}

#[test]
fn concurrent_appenders_replay_to_the_same_head() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = reopen(dir.path());
    std::thread::scope(|scope| {
        for w in 0..4i64 {
            let db = &db;
            scope.spawn(move || {
                let mut bufs = AppendBuffers::default();
                for r in 0..200i64 {
                    let names: Vec<String> = (0..10).map(|s| format!("s{}", (s + w) % 12)).collect();
                    let mut app = db.appender(&mut bufs);
                    for n in &names {
                        // Overlapping series and timestamps between writers: some conflict.
                        let _ =
                            app.append(&[lr("__name__", "m"), lr("s", n)], &[(T0 + r * 100 + w, w as f64)], i64::MAX);
                    }
                    app.commit().unwrap();
                }
            });
        }
    });
    let before = dump(&db);
    for samples in before.values() {
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "strictly increasing timestamps");
    }
    drop(db);
    let (db, _) = reopen(dir.path());
    assert_eq!(dump(&db), before, "replay rebuilds exactly the in-memory head");
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append { series: u8, dt: i64, value: u64 },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (0u8..4, (-3i64..6).prop_map(|x| x * 1000),
                   prop_oneof![Just(1.0f64.to_bits()), Just(2.0f64.to_bits()), Just(f64::NAN.to_bits()), any::<u64>()])
                .prop_map(|(series, dt, value)| Op::Append { series, dt, value }),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// The head behaves like a map of series to strictly increasing samples, with
        /// Prometheus' acceptance rules (and exact retries of older samples accepted), across
        /// reopens.
        #[test]
        fn head_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let (mut db, _) = reopen(dir.path());
            let mut bufs = AppendBuffers::default();
            let mut model: Model = Model::new();
            let mut head_max = i64::MIN;
            let mut clock = T0;
            for op in ops {
                match op {
                    Op::Reopen => {
                        db.close().unwrap();
                        drop(db);
                        db = reopen(dir.path()).0;
                    }
                    Op::Append { series, dt, value } => {
                        clock += 1000;
                        let t = clock + dt;
                        let name = format!("s{series}");
                        let labels = Labels::from_pairs([("__name__", name.as_str())]);
                        let min_valid = if head_max == i64::MIN { t - 3_600_000 } else { head_max - 3_600_000 };
                        let entry = model.get(&labels);
                        let last = entry.and_then(|v| v.last().copied());
                        // Newer than the latest, or a sample the series holds, value for value
                        // (an exact retry; every sample here is in the open chunk, which is
                        // where a retry is looked up).
                        let expect_ok = t >= min_valid && match last {
                            None => true,
                            Some((lt, _)) => t > lt || entry.is_some_and(|v| v.contains(&(t, value))),
                        };
                        let mut app = db.appender(&mut bufs);
                        let out = app.append(&[lr("__name__", &name)], &[(t, f64::from_bits(value))], i64::MAX).unwrap();
                        app.commit().unwrap();
                        prop_assert_eq!(out.accepted == 1, expect_ok, "t={} last={:?}", t, last);
                        if expect_ok && last.is_none_or(|(lt, _)| t > lt) {
                            model.entry(labels).or_default().push((t, value));
                            head_max = head_max.max(t);
                        }
                        if head_max == i64::MIN {
                            head_max = t; // the head starts at its first offered sample
                        }
                    }
                }
                prop_assert_eq!(dump(&db), model.clone());
            }
        }
    }
}

/// Replay reads the newest checkpoint, then only the segments after it (Prometheus' layout:
/// `wal/checkpoint.N/` + `wal/N+1...`); an unfinished `checkpoint.M.tmp` is ignored.
#[test]
fn replay_reads_checkpoint_then_later_segments() {
    use ringest_tsdb::wal::record;
    use ringest_tsdb::wal::{WalOptions, WalWriter};
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let opts = WalOptions { compress: false, ..Default::default() };
    let series = |r: u64, name: &str| {
        let mut b = Vec::new();
        record::begin_series(&mut b);
        record::push_series(&mut b, r, [lr("__name__", name)].into_iter());
        b
    };
    let samples = |s: &[(u64, i64, f64)]| {
        let mut b = Vec::new();
        record::encode_samples(&mut b, s.iter().copied());
        b
    };
    // Checkpoint 1 holds series 1 and its sample at T0.
    let mut w = WalWriter::create(&wal.join("checkpoint.00000001"), 0, opts, Default::default()).unwrap();
    w.log(&[&series(1, "a"), &samples(&[(1, T0, 1.0)])]).unwrap();
    w.close().unwrap();
    // Segment 1 is covered by the checkpoint: its content must be ignored.
    let mut w = WalWriter::create(&wal, 1, opts, Default::default()).unwrap();
    w.log(&[&series(9, "ignored"), &samples(&[(9, T0, 9.0)])]).unwrap();
    w.close().unwrap();
    // Segment 2 continues after the checkpoint.
    let mut w = WalWriter::create(&wal, 2, opts, Default::default()).unwrap();
    w.log(&[&series(2, "b"), &samples(&[(1, T0 + 1000, 2.0), (2, T0, 3.0)])]).unwrap();
    w.close().unwrap();
    // A leftover temporary checkpoint with newer number is not used.
    let mut w = WalWriter::create(&wal.join("checkpoint.00000003.tmp"), 0, opts, Default::default()).unwrap();
    w.log(&[&series(7, "tmp")]).unwrap();
    w.close().unwrap();

    let (db, report) = reopen(dir.path());
    assert_eq!(report.repaired, None);
    let got = dump(&db);
    let want: Model = [
        (Labels::from_pairs([("__name__", "a")]), vec![(T0, 1f64.to_bits()), (T0 + 1000, 2f64.to_bits())]),
        (Labels::from_pairs([("__name__", "b")]), vec![(T0, 3f64.to_bits())]),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // New series get references after every reference seen in the checkpoint and segments.
    let mut bufs = AppendBuffers::default();
    write(&db, &mut bufs, &[(vec![lr("__name__", "c")], vec![(T0 + 2000, 4.0)])]);
    db.close().unwrap();
    drop(db);
    let (db, _) = reopen(dir.path());
    assert_eq!(dump(&db).len(), 3);
}

/// A damaged checkpoint is not repaired like a WAL tail (the series it holds would be lost):
/// opening fails and names the checkpoint; the segments after it are left untouched.
#[test]
fn damaged_checkpoint_fails_the_open() {
    use ringest_tsdb::wal::record;
    use ringest_tsdb::wal::{WalOptions, WalWriter};
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let wal_opts = WalOptions { compress: false, ..Default::default() };
    let cp = wal.join("checkpoint.00000001");
    let mut w = WalWriter::create(&cp, 0, wal_opts, Default::default()).unwrap();
    let mut series = Vec::new();
    record::begin_series(&mut series);
    record::push_series(&mut series, 1, [lr("__name__", "a")].into_iter());
    w.log(&[&series]).unwrap();
    w.close().unwrap();
    let mut w = WalWriter::create(&wal, 2, wal_opts, Default::default()).unwrap();
    let mut samples = Vec::new();
    record::encode_samples(&mut samples, [(1, T0, 1.0)]);
    w.log(&[&samples]).unwrap();
    w.close().unwrap();
    let seg = cp.join("00000000");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let segment_2 = std::fs::read(wal.join("00000002")).unwrap();
    let Err(err) = Tsdb::open(dir.path(), opts()) else { panic!("a damaged checkpoint fails the open") };
    assert!(err.to_string().contains("checkpoint.00000001"), "{err}");
    assert_eq!(std::fs::read(wal.join("00000002")).unwrap(), segment_2);
}

/// Series references far apart (as in a WAL whose series were garbage-collected) replay too.
#[test]
fn replay_handles_sparse_references() {
    use ringest_tsdb::wal::record;
    use ringest_tsdb::wal::{WalOptions, WalWriter};
    let dir = tempfile::tempdir().unwrap();
    let mut w = WalWriter::create(&dir.path().join("wal"), 0, WalOptions::default(), Default::default()).unwrap();
    let mut s = Vec::new();
    record::begin_series(&mut s);
    record::push_series(&mut s, 3, [lr("__name__", "low")].into_iter());
    record::push_series(&mut s, 1 << 39, [lr("__name__", "high")].into_iter());
    let mut smp = Vec::new();
    record::encode_samples(&mut smp, [(1 << 39, T0, 2.0), (3, T0, 1.0), (12345, T0, 9.0)]);
    w.log(&[&s, &smp]).unwrap();
    w.close().unwrap();
    let (db, report) = reopen(dir.path());
    assert_eq!((report.samples, report.unknown_ref_samples), (2, 1));
    assert_eq!(dump(&db).len(), 2);
    // New series are numbered after the highest reference seen.
    let mut bufs = AppendBuffers::default();
    write(&db, &mut bufs, &[(vec![lr("__name__", "new")], vec![(T0 + 1, 1.0)])]);
    db.close().unwrap();
    drop(db);
    let (db, report) = reopen(dir.path());
    assert_eq!(report.unknown_ref_samples, 1);
    assert_eq!(dump(&db).len(), 3);
}

/// The samples of each complete record of a segment, with where the record ends: what a repair
/// that truncates at a damaged record keeps is the samples of every record ending before it.
fn record_ends(data: &[u8]) -> Vec<(usize, usize)> {
    use ringest_tsdb::wal::record::{decode_samples, kind};
    let mut r = ringest_tsdb::wal::SegmentReader::new(0, data);
    let mut out = Vec::new();
    let mut samples = Vec::new();
    while let Some(rec) = r.next() {
        let rec = rec.expect("the undamaged segment reads cleanly");
        let n = if rec.data.first() == Some(&kind::SAMPLES) {
            decode_samples(rec.data, &mut samples).expect("samples record");
            samples.len()
        } else {
            0
        };
        out.push((rec.end, n));
    }
    out
}

/// The reliability checklist's WAL damage (reliability-security §7): the last segment cut at
/// 200 offsets and a bit flipped at 200 positions (both spread over the whole segment). Each
/// damaged WAL opens (repaired, as Prometheus repairs: truncated at the first damaged record),
/// keeps exactly the samples of the records that end before the damage, in order, and takes
/// writes again.
#[test]
fn wal_cut_or_flipped_anywhere_keeps_exactly_the_records_before_the_damage() {
    let src = tempfile::tempdir().unwrap();
    let full = fill(src.path(), 400);
    let wal = src.path().join("wal");
    let seg = *list_segments(&wal).unwrap().last().unwrap();
    let original = std::fs::read(segment_path(&wal, seg)).unwrap();
    let ends = record_ends(&original);
    let kept_before = |pos: usize| -> usize { ends.iter().filter(|(end, _)| *end <= pos).map(|(_, n)| n).sum() };
    let total: usize = full.values().map(Vec::len).sum();
    assert_eq!(kept_before(original.len()), total, "every sample is in the last segment");
    let len = original.len();
    // `torn`: the damage is inside a record (not a cut exactly where one ends), so it must be
    // reported as repaired.
    let check = |what: &str, pos: usize, damaged: Vec<u8>, torn: bool| {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        std::fs::write(segment_path(&dir.path().join("wal"), seg), &damaged).unwrap();
        let (db, report) = reopen(dir.path());
        let got = dump(&db);
        assert!(is_prefix(&got, &full), "{what} at {pos}: replay is a prefix of what was written");
        let kept: usize = got.values().map(Vec::len).sum();
        assert_eq!(kept, kept_before(pos), "{what} at {pos} of {len}: {:?}", report.repaired);
        assert_eq!(report.repaired.is_some(), torn, "{what} at {pos}: {:?}", report.repaired);
        let mut bufs = AppendBuffers::default();
        write(&db, &mut bufs, &[(vec![lr("__name__", "after")], vec![(T0 + 10_000_000, 1.0)])]);
        db.close().unwrap();
    };
    for i in 0..200 {
        let cut = 1 + i * (len - 1) / 200;
        let at_record_end = ends.iter().any(|(end, _)| *end == cut);
        check("cut", cut, original[..cut].to_vec(), !at_record_end);
    }
    for i in 0..200 {
        let pos = i * (len - 1) / 199;
        let mut data = original.clone();
        data[pos] ^= 1 << (i % 8);
        check("flipped bit", pos, data, true);
    }
}

/// Checklist A.3: a bit flipped in a middle segment (of three). The open repairs as Prometheus
/// does: the records before the flip are kept, the damaged segment is cut there, every later
/// segment is removed, one corruption is counted, and writes go on.
#[test]
fn a_flip_in_a_middle_segment_keeps_what_precedes_it_and_drops_later_segments() {
    let src = tempfile::tempdir().unwrap();
    // Three lives, each with its own samples (a new segment per open, no close: like kill -9).
    let live = |life: i64| {
        let (db, _) = reopen(src.path());
        let mut bufs = AppendBuffers::default();
        for r in 0..100 {
            let t = T0 + (life * 100 + r) * 1000;
            let series: Vec<_> =
                (0..20).map(|s| (vec![lr("__name__", "m"), lr("s", S[s])], vec![(t, r as f64)])).collect();
            write(&db, &mut bufs, &series);
        }
        dump(&db)
    };
    const S: [&str; 20] =
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let first = live(0);
    live(1);
    let full = live(2);
    let wal = src.path().join("wal");
    assert_eq!(list_segments(&wal).unwrap(), vec![0, 1, 2]);
    let middle = std::fs::read(segment_path(&wal, 1)).unwrap();
    let used = middle.iter().rposition(|&b| b != 0).unwrap();
    let first_n: usize = first.values().map(Vec::len).sum();
    let total: usize = full.values().map(Vec::len).sum();
    for i in 0..20 {
        let pos = 1 + i * (used - 1) / 19;
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let mut data = middle.clone();
        data[pos] ^= 1 << (i % 8);
        std::fs::write(segment_path(&dir.path().join("wal"), 1), &data).unwrap();
        let (db, report) = reopen(dir.path());
        let c = report.repaired.clone().unwrap_or_else(|| panic!("flip at {pos} detected"));
        assert_eq!(c.segment, 1, "flip at {pos}");
        assert_eq!(db.metrics().wal.corruptions.get(), 1);
        let got = dump(&db);
        assert!(is_prefix(&got, &full), "flip at {pos}: replay is a prefix of what was written");
        let kept: usize = got.values().map(Vec::len).sum();
        assert!(kept >= first_n && kept < total, "flip at {pos}: kept {kept}, first segment {first_n}, all {total}");
        // Segment 2 is gone; the writer's new segment follows the repaired one.
        assert_eq!(list_segments(&dir.path().join("wal")).unwrap(), vec![0, 1, 2], "flip at {pos}");
        assert!(std::fs::metadata(segment_path(&dir.path().join("wal"), 2)).unwrap().len() < PAGE_SIZE as u64);
        let mut bufs = AppendBuffers::default();
        write(&db, &mut bufs, &[(vec![lr("__name__", "after")], vec![(T0 + 10_000_000, 1.0)])]);
        db.close().unwrap();
        drop(db);
        let (db, report) = reopen(dir.path());
        assert_eq!(report.repaired, None);
        assert_eq!(dump(&db).len(), got.len() + 1);
    }
}
