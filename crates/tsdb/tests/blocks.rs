//! Head compaction, blocks, WAL checkpoints and retention through the public API: every
//! acknowledged sample is in exactly one place (a block or the head) and survives reopening.

use std::collections::BTreeMap;

use ringest_tsdb::block::{self, Block, MatchKind, Matcher};
use ringest_tsdb::{AppendBuffers, LabelRef, Labels, Options, Tsdb};

type Model = BTreeMap<Labels, Vec<(i64, u64)>>;

const H: i64 = 3_600_000;
/// A multiple of 2h.
const T0: i64 = 1_699_999_200_000;

fn lr<'a>(n: &'a str, v: &'a str) -> LabelRef<'a> {
    LabelRef { name: n.as_bytes(), value: v.as_bytes() }
}

fn values() -> Vec<f64> {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    vec![1.0, f64::NAN, stale, f64::INFINITY, f64::NEG_INFINITY, -0.0, 5e-324, 0.1, 1e300, 42.0]
}

fn model(data: Vec<ringest_tsdb::db::SeriesData>) -> Model {
    data.into_iter().map(|s| (s.labels, s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect())).collect()
}

/// Writes `series` series with one sample per `step` ms over `[from, to)`, irregular deltas
/// included (dod bucket edges), in requests of one timestamp each. Returns what was written.
fn load(db: &Tsdb, from: i64, to: i64, step: i64, series: usize, model: &mut Model) {
    let mut bufs = AppendBuffers::default();
    let vals = values();
    let names: Vec<String> = (0..series).map(|i| format!("{i}")).collect();
    let jitter = [0i64, 8192, -8191, 65536, -65535, 1, 0, 3];
    let mut t = from;
    let mut k = 0usize;
    while t < to {
        let mut app = db.appender(&mut bufs);
        for (i, name) in names.iter().enumerate() {
            let ts = t + jitter[(k + i) % jitter.len()].clamp(-step / 2 + 1, step / 2 - 1);
            let v = vals[(k + i) % vals.len()];
            let labels = [lr("__name__", if i % 2 == 0 { "up" } else { "load" }), lr("id", name), lr("job", "j")];
            let out = app.append(&labels, &[(ts, v)], i64::MAX).unwrap();
            assert_eq!(out.accepted, 1, "t={ts}");
            let key = Labels::from_pairs([
                ("__name__", if i % 2 == 0 { "up" } else { "load" }),
                ("id", name.as_str()),
                ("job", "j"),
            ]);
            model.entry(key).or_default().push((ts, v.to_bits()));
        }
        app.commit().unwrap();
        t += step;
        k += 1;
    }
}

fn everything(db: &Tsdb) -> Model {
    model(db.read_all(i64::MIN, i64::MAX).unwrap())
}

/// Closes `db`, opens its directory again and checks it holds exactly `want`.
fn reopen_holds(db: Tsdb, dir: &std::path::Path, want: &Model) {
    db.close().unwrap();
    drop(db);
    let (db, _) = Tsdb::open(dir, Options::default()).unwrap();
    assert_eq!(&everything(&db), want);
}

fn block_windows_ok(db: &Tsdb) {
    for b in db.blocks() {
        let m = b.meta();
        assert!(m.min_time < m.max_time);
        assert_eq!(
            m.min_time / (2 * H),
            (m.max_time - 1) / (2 * H),
            "block {}..{} crosses a window",
            m.min_time,
            m.max_time
        );
        assert_eq!(m.compaction.level, 1);
        assert_eq!(m.compaction.sources, vec![m.ulid.clone()]);
        assert_eq!(m.version, 1);
    }
}

#[test]
fn five_hours_become_blocks_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut want = Model::new();
    load(&db, T0 + 10 * 60_000, T0 + 5 * H, 60_000, 50, &mut want);
    assert!(db.compactable());
    let metas = db.compact().unwrap();
    // Head spanned ~4h50m: the first window is cut; the rest stays (head spans <= 3h).
    assert_eq!(metas.len(), 1);
    let first = want.values().flat_map(|s| s.iter().map(|&(t, _)| t)).min().unwrap();
    assert_eq!((metas[0].min_time, metas[0].max_time), (first, T0 + 2 * H));
    assert!(!db.compactable());
    block_windows_ok(&db);
    assert_eq!(everything(&db), want);
    // The block holds exactly the first window, and the head nothing before it.
    let b = &db.blocks()[0];
    let in_block = model(b.select(&[], i64::MIN, i64::MAX).unwrap());
    let head = model(db.dump_range(i64::MIN, T0 + 2 * H - 1));
    assert!(head.values().all(Vec::is_empty) || head.is_empty(), "head still holds block data");
    let expect_block: Model =
        want.iter().map(|(l, s)| (l.clone(), s.iter().copied().filter(|&(t, _)| t < T0 + 2 * H).collect())).collect();
    assert_eq!(in_block, expect_block);
    // The WAL was checkpointed and the data survives a reopen exactly once.
    db.close().unwrap();
    drop(db);
    let (db, report) = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(everything(&db), want);
    assert!(report.samples > 0);
    // Samples below the block's end are refused as out of bounds.
    let mut bufs = AppendBuffers::default();
    let mut app = db.appender(&mut bufs);
    let out = app.append(&[lr("__name__", "new")], &[(T0 + H, 1.0)], i64::MAX).unwrap();
    assert_eq!(out.out_of_bounds, 1);
    drop(app);
    // Flushing cuts the rest into aligned blocks and leaves the head empty.
    let metas = db.flush_head().unwrap();
    assert_eq!(metas.len(), 2, "{metas:?}");
    block_windows_ok(&db);
    assert_eq!(db.dump_range(i64::MIN, i64::MAX).iter().map(|s| s.samples.len()).sum::<usize>(), 0);
    assert_eq!(everything(&db), want);
    db.close().unwrap();
    drop(db);
    let (db, report) = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(report.samples, 0, "a flushed WAL replays nothing");
    assert_eq!(db.blocks().len(), 3);
    assert_eq!(everything(&db), want);
    assert!(
        dir.path()
            .join("wal")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with("checkpoint.") })
    );
}

#[test]
fn series_that_stop_are_removed_and_can_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut want = Model::new();
    load(&db, T0, T0 + H, 60_000, 20, &mut want);
    // Only one series keeps going.
    let mut bufs = AppendBuffers::default();
    let key = Labels::from_pairs([("__name__", "alive")]);
    for i in 0..300 {
        let t = T0 + H + i * 60_000;
        let mut app = db.appender(&mut bufs);
        app.append(&[lr("__name__", "alive")], &[(t, i as f64)], i64::MAX).unwrap();
        app.commit().unwrap();
        want.entry(key.clone()).or_default().push((t, (i as f64).to_bits()));
    }
    assert_eq!(db.num_series(), 21);
    // __name__, up, load, id, 0..19, job, j, alive
    assert_eq!(db.num_symbols(), 27);
    db.compact().unwrap();
    assert_eq!(db.num_series(), 1, "stopped series are gone from the head");
    assert_eq!(db.num_symbols(), 2, "their label strings too");
    assert_eq!(everything(&db), want);
    // A removed series comes back with a new sample.
    let t = T0 + 6 * H;
    let mut app = db.appender(&mut bufs);
    let labels = [lr("__name__", "up"), lr("id", "0"), lr("job", "j")];
    app.append(&labels, &[(t, 7.0)], i64::MAX).unwrap();
    app.commit().unwrap();
    want.get_mut(&Labels::from_pairs([("__name__", "up"), ("id", "0"), ("job", "j")]))
        .unwrap()
        .push((t, 7f64.to_bits()));
    assert_eq!(everything(&db), want);
    reopen_holds(db, dir.path(), &want);
}

#[test]
fn matchers_select_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut bufs = AppendBuffers::default();
    let mut app = db.appender(&mut bufs);
    let sets: [&[(&str, &str)]; 4] = [
        &[("__name__", "a"), ("env", "prod")],
        &[("__name__", "a"), ("env", "dev")],
        &[("__name__", "b"), ("env", "prod"), ("x", "1")],
        &[("__name__", "b")],
    ];
    for s in sets {
        let labels: Vec<LabelRef<'_>> = s.iter().map(|(n, v)| lr(n, v)).collect();
        app.append(&labels, &[(T0, 1.0)], i64::MAX).unwrap();
    }
    app.commit().unwrap();
    use MatchKind::*;
    type Case<'a> = (Vec<(MatchKind, &'a str, &'a str)>, usize);
    let cases: Vec<Case<'_>> = vec![
        (vec![(Equal, "__name__", "a")], 2),
        (vec![(Equal, "env", "prod")], 2),
        (vec![(NotEqual, "env", "prod")], 2),
        (vec![(Equal, "env", "")], 1),
        (vec![(Regex, "env", "pr.*"), (Equal, "__name__", "b")], 1),
        (vec![(NotRegex, "env", "prod|dev")], 1),
        (vec![(Regex, "env", "dev|")], 2),
        (vec![(Equal, "nope", "x")], 0),
        (vec![(Regex, "__name__", ".+")], 4),
    ];
    let db_sel = |ms: &[(MatchKind, &str, &str)]| -> Vec<String> {
        let ms: Vec<Matcher> = ms.iter().map(|(k, n, v)| Matcher::new(*k, n, v).unwrap()).collect();
        db.select(&ms, i64::MIN, i64::MAX).unwrap().into_iter().map(|s| s.labels.to_string()).collect()
    };
    // From the head (its index), then from the block the head becomes: the same answers.
    let from_head: Vec<Vec<String>> = cases.iter().map(|(ms, _)| db_sel(ms)).collect();
    for ((ms, n), got) in cases.iter().zip(&from_head) {
        assert_eq!(got.len(), *n, "{ms:?}: {got:?}");
    }
    assert_eq!(db.label_names(i64::MIN, i64::MAX).unwrap(), vec!["__name__", "env", "x"]);
    assert_eq!(db.label_values("env", i64::MIN, i64::MAX).unwrap().iter().collect::<Vec<_>>(), ["dev", "prod"]);
    assert!(db.label_names(T0 + 1, i64::MAX).unwrap().is_empty(), "nothing after the samples");
    assert!(db.label_values("env", i64::MIN, T0 - 1).unwrap().is_empty(), "nothing before them");
    let metas = db.flush_head().unwrap();
    let from_block: Vec<Vec<String>> = cases.iter().map(|(ms, _)| db_sel(ms)).collect();
    assert_eq!(from_block, from_head);
    assert_eq!(db.label_names(i64::MIN, i64::MAX).unwrap(), vec!["__name__", "env", "x"]);
    assert_eq!(db.label_names(T0, T0).unwrap(), vec!["__name__", "env", "x"], "from the block");
    assert!(db.label_names(T0 + 1, i64::MAX).unwrap().is_empty(), "the block ends at T0 + 1");
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].stats.num_series, 4);
    assert_eq!(metas[0].max_time, T0 + 1);
    let b = Block::open(&dir.path().join(&metas[0].ulid)).unwrap();
    let sel = |ms: &[(MatchKind, &str, &str)]| -> Vec<String> {
        let ms: Vec<Matcher> = ms.iter().map(|(k, n, v)| Matcher::new(*k, n, v).unwrap()).collect();
        b.select(&ms, i64::MIN, i64::MAX).unwrap().into_iter().map(|s| s.labels.to_string()).collect()
    };
    assert_eq!(sel(&[(Equal, "__name__", "a")]).len(), 2);
    assert_eq!(sel(&[(Equal, "env", "prod")]).len(), 2);
    assert_eq!(sel(&[(NotEqual, "env", "prod")]), vec![r#"{__name__="a", env="dev"}"#, r#"{__name__="b"}"#]);
    assert_eq!(sel(&[(Equal, "env", "")]), vec![r#"{__name__="b"}"#]);
    assert_eq!(sel(&[(Regex, "env", "pr.*"), (Equal, "__name__", "b")]).len(), 1);
    assert_eq!(sel(&[(NotRegex, "env", "prod|dev")]), vec![r#"{__name__="b"}"#]);
    assert_eq!(sel(&[(Regex, "env", "dev|")]).len(), 2);
    assert_eq!(sel(&[(Equal, "nope", "x")]).len(), 0);
    assert_eq!(sel(&[]).len(), 4);
    // Label order in the index: series come out sorted.
    let all = sel(&[]);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all.len(), sorted.len());
    assert_eq!(b.index().unwrap().label_names().collect::<Vec<_>>(), vec!["__name__", "env", "x"]);
    assert_eq!(b.index().unwrap().label_values("env").collect::<Vec<_>>(), vec!["dev", "prod"]);
}

#[test]
fn retention_deletes_old_blocks_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options { retention_ms: 4 * H, ..Options::default() };
    let (db, _) = Tsdb::open(dir.path(), o).unwrap();
    let mut want = Model::new();
    load(&db, T0 + 10 * 60_000, T0 + 10 * H, 300_000, 3, &mut want);
    db.flush_head().unwrap();
    assert_eq!(db.blocks().len(), 5);
    assert!(db.apply_retention(&|_| false).unwrap().is_empty(), "the hook keeps every block");
    let deleted = db.apply_retention(&|_| true).unwrap();
    // Newest block ends at T0+10h-ish; blocks ending 4h or more before it go.
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert_eq!(db.blocks().len(), 3);
    assert_eq!(block::list_block_dirs(dir.path()).unwrap().len(), 3);
}

#[test]
fn leftover_temporary_directories_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("01JABCDEFGHJKMNPQRSTVWXYZ0.tmp-for-creation/chunks")).unwrap();
    std::fs::create_dir_all(dir.path().join("01JABCDEFGHJKMNPQRSTVWXYZ1.tmp-for-deletion")).unwrap();
    let (_db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-for-")), "{names:?}");
}

/// An appender that validated a series before head truncation removed it commits after the
/// removal: the series is recreated with its exact labels (their strings are not freed while
/// the appender lives) and the sample is stored.
#[test]
fn a_commit_racing_series_removal_recreates_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut want = Model::new();
    load(&db, T0, T0 + H, 60_000, 3, &mut want);
    let mut bufs = AppendBuffers::default();
    // Another series moves time forward so that the first three become removable.
    let mut app = db.appender(&mut bufs);
    app.append(&[lr("__name__", "clock")], &[(T0 + 4 * H, 1.0)], i64::MAX).unwrap();
    app.commit().unwrap();
    want.insert(Labels::from_pairs([("__name__", "clock")]), vec![(T0 + 4 * H, 1f64.to_bits())]);
    let labels = [lr("__name__", "up"), lr("id", "0"), lr("job", "j")];
    let t = T0 + 4 * H + 1000;
    std::thread::scope(|s| {
        let mut bufs = AppendBuffers::default();
        let mut app = db.appender(&mut bufs);
        assert_eq!(app.append(&labels, &[(t, 9.0)], i64::MAX).unwrap().accepted, 1);
        let compaction = s.spawn(|| db.compact().unwrap());
        // Let the compaction remove the series and wait for this appender.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!compaction.is_finished(), "symbol GC waits for the running appender");
        app.commit().unwrap();
        assert!(!compaction.join().unwrap().is_empty());
    });
    want.get_mut(&Labels::from_pairs([("__name__", "up"), ("id", "0"), ("job", "j")]))
        .unwrap()
        .push((t, 9f64.to_bits()));
    assert_eq!(everything(&db), want);
    reopen_holds(db, dir.path(), &want);
}

/// A sample far in the future (a client with a wrong clock) does not make compaction cut every
/// empty 2h window in between: after a cut the head starts at its oldest remaining sample.
#[test]
fn a_far_future_sample_does_not_cut_empty_windows_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut want = Model::new();
    load(&db, T0, T0 + H, 60_000, 3, &mut want);
    let far = T0 + 10 * 365 * 24 * H;
    let mut bufs = AppendBuffers::default();
    let mut app = db.appender(&mut bufs);
    app.append(&[lr("__name__", "future")], &[(far, 1.0)], i64::MAX).unwrap();
    app.commit().unwrap();
    want.insert(Labels::from_pairs([("__name__", "future")]), vec![(far, 1f64.to_bits())]);
    let start = std::time::Instant::now();
    let metas = db.compact().unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(metas.len() <= 2, "{} blocks", metas.len());
    assert!(!db.compactable());
    assert_eq!(everything(&db), want);
    db.flush_head().unwrap();
    assert_eq!(everything(&db), want);
}

/// Samples of raw chunks, in order (the XOR bytes decoded).
fn decode(chunks: &[ringest_tsdb::RawChunk]) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    for c in chunks {
        let samples: Vec<(i64, u64)> =
            ringest_tsdb::chunkenc::XorIter::new(&c.data).map(|(t, v)| (t, v.to_bits())).collect();
        assert_eq!(samples.first().map(|s| s.0), Some(c.min_time), "a chunk's first sample is its min time");
        assert_eq!(samples.last().map(|s| s.0), Some(c.max_time), "a chunk's last sample is its max time");
        out.extend(samples);
    }
    out
}

/// Chunks from blocks and head hold what `select` reads, each sample once; chunks overlapping
/// the range come whole.
#[test]
fn chunks_from_blocks_and_head_hold_every_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut want = Model::new();
    load(&db, T0 + 10 * 60_000, T0 + 5 * H, 60_000, 10, &mut want);
    assert_eq!(db.compact().unwrap().len(), 1);
    let up = [Matcher::new(MatchKind::Equal, "__name__", "up").unwrap()];
    for (ms, mint, maxt) in [
        (&[][..], i64::MIN, i64::MAX),
        (&up[..], i64::MIN, i64::MAX),
        (&up[..], T0 + H, T0 + 3 * H),
        (&[][..], T0 + 2 * H, T0 + 2 * H + 1),
    ] {
        let got = db.select_chunks(ms, mint, maxt).unwrap();
        let samples = db.select(ms, mint, maxt).unwrap();
        assert_eq!(got.len(), samples.len(), "{ms:?} {mint}..{maxt}");
        for (c, s) in got.iter().zip(&samples) {
            assert_eq!(c.labels, s.labels);
            let all = decode(&c.chunks);
            assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{}: each sample once, in order", c.labels);
            let inside: Vec<(i64, u64)> = all.iter().copied().filter(|&(t, _)| t >= mint && t <= maxt).collect();
            let want_inside: Vec<(i64, u64)> = s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(inside, want_inside, "{}", c.labels);
            assert!(c.chunks.iter().all(|k| k.max_time >= mint && k.min_time <= maxt), "only overlapping chunks");
        }
    }
    let all = db.select_chunks(&[], i64::MIN, i64::MAX).unwrap();
    let got: Model = all.into_iter().map(|s| (s.labels, decode(&s.chunks))).collect();
    assert_eq!(got, want);
}

/// The series written at step `k` of the churn workload: a window of 12 ids moving on by one
/// every 20 steps, so old series stop, leave the head at its next truncation and live on in
/// blocks only, while new ones appear.
fn churn_ids(k: i64) -> std::ops::Range<i64> {
    k / 20..k / 20 + 12
}

/// The model of the churn workload once steps `0..=k` are acknowledged: id → sample times.
fn churn_model(k: i64, step: i64) -> BTreeMap<i64, Vec<i64>> {
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for j in 0..=k {
        for id in churn_ids(j) {
            out.entry(id).or_default().push(T0 + j * step);
        }
    }
    out
}

/// Writes, block cuts, head truncation with series GC (and the index renumbering that goes with
/// it) and streaming reads with matchers, all at once: every read returns, for each series its
/// matchers select, each sample exactly once with its value, everything acknowledged before the
/// read began and nothing that was never written, and no selected series is missing.
#[test]
fn reads_match_the_model_while_blocks_are_cut_and_series_collected() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
    const STEP: i64 = 60_000;
    const STEPS: i64 = 9 * 60;
    let acked = AtomicI64::new(-1);
    // Matchers, and which ids they select.
    type Selection = (Vec<Matcher>, fn(i64) -> bool);
    let matchers: Vec<Selection> = vec![
        (vec![Matcher::new(MatchKind::Equal, "__name__", "m").unwrap()], |_| true),
        (vec![Matcher::new(MatchKind::Regex, "id", "1.*").unwrap()], |id| id.to_string().starts_with('1')),
        (
            vec![
                Matcher::new(MatchKind::NotEqual, "id", "3").unwrap(),
                Matcher::new(MatchKind::Equal, "odd", "").unwrap(),
            ],
            |id| id != 3 && id % 2 == 0,
        ),
        (vec![Matcher::new(MatchKind::Equal, "odd", "yes").unwrap()], |id| id % 2 == 1),
    ];
    let reads = std::thread::scope(|s| {
        s.spawn(|| {
            let mut bufs = AppendBuffers::default();
            for k in 0..STEPS {
                let mut app = db.appender(&mut bufs);
                for id in churn_ids(k) {
                    let name = id.to_string();
                    let mut labels = vec![lr("__name__", "m"), lr("id", &name)];
                    if id % 2 == 1 {
                        labels.push(lr("odd", "yes"));
                    }
                    app.append(&labels, &[(T0 + k * STEP, (k * 1000 + id) as f64)], i64::MAX).unwrap();
                }
                app.commit().unwrap();
                acked.store(k, Ordering::Release);
                if k % 30 == 29 && db.compactable() {
                    db.compact().unwrap();
                }
            }
        });
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (db, acked, matchers) = (&db, &acked, &matchers);
                s.spawn(move || {
                    let mut reads = 0usize;
                    loop {
                        let (ms, selects) = &matchers[(reads + r) % matchers.len()];
                        let before = acked.load(Ordering::Acquire);
                        let reader = db.reader(i64::MIN, i64::MAX).unwrap();
                        let mut got: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
                        let mut table = ringest_tsdb::LabelTable::default();
                        for series in reader.select(ms, &mut table).unwrap() {
                            // Give the writer and the cuts room between the selection and the
                            // chunks: truncation must wait for this read, not take data from it.
                            std::thread::yield_now();
                            let mut chunks = Vec::new();
                            reader.chunks(&series.parts, &mut chunks).unwrap();
                            let id: i64 = table.get(series.labels, "id").unwrap().parse().unwrap();
                            let samples = decode(&chunks);
                            for &(t, v) in &samples {
                                let k = (t - T0) / STEP;
                                assert_eq!(f64::from_bits(v), (k * 1000 + id) as f64, "id {id} at {t}");
                            }
                            got.insert(id, samples.iter().map(|s| s.0).collect());
                        }
                        drop(reader);
                        let after = acked.load(Ordering::Acquire) + 1;
                        let (low, high) = (churn_model(before, STEP), churn_model(after, STEP));
                        for (id, want) in low.iter().filter(|(id, _)| selects(**id)) {
                            let ts = got.get(id).unwrap_or_else(|| panic!("{ms:?}: series {id} missing"));
                            assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ms:?}: id {id}: a sample read twice");
                            assert!(ts.starts_with(want), "{ms:?}: id {id}: acknowledged samples missing");
                        }
                        for (id, ts) in &got {
                            assert!(selects(*id), "{ms:?}: id {id} not selected");
                            let bound = high.get(id).map(Vec::as_slice).unwrap_or_default();
                            assert!(bound.starts_with(ts), "{ms:?}: id {id}: samples never written, or a gap");
                        }
                        reads += 1;
                        if before == STEPS - 1 {
                            return reads;
                        }
                    }
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).sum::<usize>()
    });
    assert!(db.blocks().len() >= 3, "blocks were cut during the reads: {}", db.blocks().len());
    assert!(reads > 2, "{reads}");
    let m = db.metrics();
    assert!(m.head.series_removed.get() > 0, "series were collected from the head during the reads");
}

/// A reader keeps reading the blocks it started with after retention deleted them.
#[test]
fn a_reader_outlives_the_blocks_retention_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options { retention_ms: 2 * H, ..Options::default() };
    let (db, _) = Tsdb::open(dir.path(), o).unwrap();
    let mut want = Model::new();
    load(&db, T0, T0 + 7 * H, 10 * 60_000, 4, &mut want);
    db.compact().unwrap();
    let reader = db.reader(i64::MIN, i64::MAX).unwrap();
    let deleted = db.apply_retention(&|_| true).unwrap();
    assert!(!deleted.is_empty(), "retention deleted a block");
    assert!(deleted.iter().all(|m| !dir.path().join(&m.ulid).exists()), "its files are gone");
    let mut got = Model::new();
    let mut table = ringest_tsdb::LabelTable::default();
    for s in reader.select(&[], &mut table).unwrap() {
        let mut chunks = Vec::new();
        reader.chunks(&s.parts, &mut chunks).unwrap();
        got.insert(table.labels(s.labels), decode(&chunks));
    }
    assert_eq!(got, want, "the read saw every sample once, deleted blocks included");
}

/// A block that cannot be completed (here its final name is taken; a full disk fails the same
/// way) leaves no unfinished directory behind, and nothing is renamed into place.
#[test]
fn a_failed_block_leaves_no_temporary_directory() {
    use ringest_tsdb::chunkenc::XorAppender;
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8, 0];
    let mut app = XorAppender::new();
    for k in 0..10 {
        app.append(&mut bytes, 1000 + k, k as f64);
    }
    let mut w = block::BlockWriter::create(dir.path(), 0, 7_200_000, [&b"__name__"[..], b"up"]).unwrap();
    w.count_series(&[(0, 1)]);
    w.add_series(&[(0, 1)], &[(1000, 1009, &bytes[..])]).unwrap();
    let taken = dir.path().join(w.ulid());
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("in-the-way"), b"x").unwrap();
    assert!(w.finish().is_err(), "the rename onto a non-empty directory fails");
    let left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.contains(".tmp-for-")), "{left:?}");
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 1, "what was in the way is untouched");
}

/// Found by the fuzzer: an index whose series entry declares a length near 2^64, so that the
/// end of the entry wrapped around and passed the bounds check (a panic slicing 154..153). Every
/// series id is now either read or refused as corrupt.
#[test]
fn a_series_entry_whose_length_wraps_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    std::fs::write(&path, include_bytes!("data/index_series_length_wraps")).unwrap();
    let r = block::IndexReader::open(&path).expect("its table of contents is whole");
    let mut refused = Vec::new();
    let names: Vec<String> = r.label_names().map(str::to_owned).collect();
    for n in &names {
        let values: Vec<String> = r.label_values(n).map(str::to_owned).collect();
        for id in values.iter().filter_map(|v| r.postings(n, v).ok()).flatten() {
            if let Err(e) = r.series(id) {
                refused.push(e.to_string());
            }
        }
    }
    assert!(refused.iter().any(|e| e.contains("runs past the end of the file")), "{refused:?}");
}
