//! WAL replay: checkpoint (if any), then segments, into the head.
//!
//! The reading thread decodes records in WAL order and routes the work to a few workers that
//! own disjoint sets of series, chosen by label hash (the same low bits pick the head stripe,
//! so each worker also owns its stripes and never waits for or bounces the other's cache
//! lines). A series record's entries are hashed on the reading thread and sent to their owner,
//! which creates them; a sample goes to the owner of its series. Each worker receives its work in
//! WAL order, so every series sees its records in WAL order: the head is exactly what in-order
//! replay builds.
//!
//! Replay is bound by cache misses, not arithmetic: a worker applies a batch's samples in order
//! and asks the CPU to load the series (sixteen samples ahead) and then the tail of its open
//! chunk (eight ahead), so the misses of many samples overlap. Until replay ends no other thread
//! can reach the head, and each series is touched only by its worker, so samples are applied
//! without taking the series lock. A sample whose series is not defined yet is dropped, as in
//! Prometheus.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use hashbrown::HashMap;

use super::{OpenReport, TsdbError};
use crate::fsutil::MappedFile;
use crate::head::chunk_disk::MappedChunk;
use crate::head::series::{AppendCtx, ClosedChunk, Verdict, verdict};
use crate::head::{Head, LabelIds, MemSeries};
use crate::labels::{LabelRef, SeriesHasher, validate_sorted};
use crate::prefetch;
use crate::wal::record::{self, kind};
use crate::wal::{self, Corruption, SegmentReader};

/// Samples per message to a worker.
const BATCH_SAMPLES: usize = 1 << 15;
/// Series per message to a worker.
const BATCH_SERIES: usize = 1 << 10;
/// Messages queued per worker before the reader waits.
const QUEUE: usize = 8;
/// Values by WAL reference. References are dense from 1 in WALs written by ringest and by
/// Prometheus, so a vector indexed by reference is the common case; sparse ones go to a map.
#[derive(Default)]
struct Refs {
    /// Value + 1 (0: undefined).
    dense: Vec<u32>,
    sparse: HashMap<u64, u32>,
}

impl Refs {
    /// References up to this many slots past the current length stay dense.
    const GROWTH: u64 = 1 << 20;

    fn insert(&mut self, r: u64, v: u32) {
        if r < self.dense.len() as u64 + Self::GROWTH {
            if r as usize >= self.dense.len() {
                self.dense.resize(r as usize + 1, 0);
            }
            self.dense[r as usize] = v + 1;
        } else {
            self.sparse.insert(r, v);
        }
    }

    #[inline]
    fn get(&self, r: u64) -> Option<u32> {
        match self.dense.get(r as usize) {
            Some(&0) => None,
            Some(&i) => Some(i - 1),
            None => self.sparse.get(&r).copied(),
        }
    }
}

/// A sample of the series in slot `idx` of its worker.
#[derive(Clone, Copy)]
struct Pending {
    idx: u32,
    t: i64,
    v: f64,
}

/// What applying samples did.
#[derive(Clone, Copy)]
struct Applied {
    samples: u64,
    skipped: u64,
    chunks: u64,
    mint: i64,
    maxt: i64,
}

impl Default for Applied {
    fn default() -> Self {
        Applied { samples: 0, skipped: 0, chunks: 0, mint: i64::MAX, maxt: i64::MIN }
    }
}

impl Applied {
    fn merge(&mut self, o: &Applied) {
        self.samples += o.samples;
        self.skipped += o.skipped;
        self.chunks += o.chunks;
        self.mint = self.mint.min(o.mint);
        self.maxt = self.maxt.max(o.maxt);
    }
}

/// A series defined by a WAL series record, on its way to its worker.
struct NewSeries {
    wal_ref: u64,
    hash: u128,
    /// Whether the record's labels were strictly sorted (the batch holds them sorted).
    sorted: bool,
    /// Its labels' `(name length, value length)` in `Batch::spans`; the bytes follow each other
    /// in `Batch::bytes` from `bytes_at`.
    spans: std::ops::Range<usize>,
    bytes_at: usize,
    /// Completed chunks of the head chunk files for this reference.
    chunks: Vec<MappedChunk>,
}

/// Work for one worker in WAL order: series (each takes the worker's next slot), then samples by
/// slot. Samples only name series defined earlier, so creating the batch's series first changes
/// nothing.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
    series: Vec<NewSeries>,
    samples: Vec<Pending>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.series.clear();
        self.samples.clear();
    }
}

/// What a worker did.
#[derive(Default)]
struct WorkerReport {
    applied: Applied,
    created: u64,
    /// Samples of series whose labels were invalid (so never defined).
    undefined_samples: u64,
}

/// Owns the series whose hash picks it: creates them and applies their samples.
struct Worker<'h> {
    head: &'h Head,
    /// The series of each slot (slots are handed out by the reader, in order): a later record
    /// for the same labels (another reference) gets the same series; `None` for a series with
    /// invalid labels.
    by_slot: Vec<Option<Arc<MemSeries>>>,
    ids: LabelIds,
    report: WorkerReport,
}

impl<'h> Worker<'h> {
    fn new(head: &'h Head) -> Self {
        Worker { head, by_slot: Vec::new(), ids: LabelIds::default(), report: WorkerReport::default() }
    }

    fn run(mut self, rx: Receiver<Batch>, spare: SyncSender<Batch>) -> WorkerReport {
        for mut b in rx {
            self.create(&b);
            self.apply(&b.samples);
            b.clear();
            let _ = spare.try_send(b);
        }
        self.head.count_created(self.report.created);
        self.report
    }

    fn create(&mut self, b: &Batch) {
        let mut labels: Vec<LabelRef<'_>> = Vec::with_capacity(32);
        // The stripe and slots of a new series are cache misses: start loading the stripe eight
        // series ahead and, once it is in, the slots four ahead.
        const AHEAD: usize = 4;
        for ns in b.series.iter().take(2 * AHEAD) {
            self.head.prefetch_stripe(ns.hash);
        }
        for ns in b.series.iter().take(AHEAD) {
            self.head.prefetch_slot(ns.hash);
        }
        for (i, ns) in b.series.iter().enumerate() {
            if let Some(next) = b.series.get(i + 2 * AHEAD) {
                self.head.prefetch_stripe(next.hash);
            }
            if let Some(next) = b.series.get(i + AHEAD) {
                self.head.prefetch_slot(next.hash);
            }
            let mut at = ns.bytes_at;
            labels.clear();
            for &(n, v) in &b.spans[ns.spans.clone()] {
                let (n, v) = (n as usize, v as usize);
                labels.push(LabelRef { name: &b.bytes[at..at + n], value: &b.bytes[at + n..at + n + v] });
                at += n + v;
            }
            let series = if validate_sorted(&labels, ns.sorted).is_err() {
                tracing::warn!(series_ref = ns.wal_ref, "skipping WAL series record with invalid labels");
                None
            } else {
                let (s, created) = self.head.find_or_insert(ns.hash, &labels, Some(ns.wal_ref), &mut self.ids);
                if created {
                    self.report.created += 1;
                    s.logged.store(true, std::sync::atomic::Ordering::Relaxed);
                    if !ns.chunks.is_empty() {
                        // The head's time range covers these chunks too.
                        let a = &mut self.report.applied;
                        a.chunks += ns.chunks.len() as u64;
                        a.mint = a.mint.min(ns.chunks[0].min_t);
                        a.maxt = a.maxt.max(ns.chunks[ns.chunks.len() - 1].max_t);
                        s.state.lock().closed = ns
                            .chunks
                            .iter()
                            .map(|c| ClosedChunk { min_t: c.min_t, max_t: c.max_t, chunk_ref: c.chunk_ref })
                            .collect();
                    }
                }
                // Else an earlier record of this worker created it (same labels, same hash).
                Some(s)
            };
            self.by_slot.push(series);
        }
    }

    /// The series in `slot`, if its labels were valid.
    #[inline]
    fn series_in(&self, slot: u32) -> Option<&MemSeries> {
        self.by_slot[slot as usize].as_deref()
    }

    /// Applies samples in WAL order.
    fn apply(&mut self, samples: &[Pending]) {
        /// How far ahead a sample's slot entry, then its series, then its open chunk's tail
        /// are prefetched: each stage needs the address the one before it loaded.
        const SLOT_AHEAD: usize = 32;
        const SERIES_AHEAD: usize = 16;
        const CHUNK_AHEAD: usize = 8;
        let (chunk_range, floor, disk) = (self.head.chunk_range, self.head.floor(), &*self.head.disk);
        let mut a = self.report.applied;
        let by_slot = self.by_slot.as_ptr();
        for (k, p) in samples.iter().enumerate() {
            if let Some(q) = samples.get(k + SLOT_AHEAD) {
                prefetch(by_slot.wrapping_add(q.idx as usize));
            }
            if let Some(s) = samples.get(k + SERIES_AHEAD).and_then(|q| self.series_in(q.idx)) {
                // What an append reads lies in two cache lines (see `MemSeries`).
                let s = std::ptr::from_ref(s).cast::<u8>();
                prefetch(s);
                prefetch(s.wrapping_add(64));
            }
            if let Some(s) = samples.get(k + CHUNK_AHEAD).and_then(|q| self.series_in(q.idx)) {
                // SAFETY: see below; this only reads.
                if let Some(h) = unsafe { &(*s.state.data_ptr()).head } {
                    prefetch(h.bytes.as_ptr().wrapping_add(h.bytes.len()));
                }
            }
            let Some(s) = self.series_in(p.idx) else {
                self.report.undefined_samples += 1;
                continue;
            };
            // SAFETY: no other thread can reach the head before replay returns, and a series
            // is only ever touched by the one worker its hash picks (which created it), so this
            // thread has the state to itself. The scope's join orders these writes before any
            // later lock of the series.
            let st = unsafe { &mut *s.state.data_ptr() };
            let Pending { t, v, .. } = *p;
            // Samples up to the end of the series' chunks on disk are in those chunks.
            if st.closed_only_max_t().is_some_and(|mx| t <= mx) {
                a.skipped += 1;
                continue;
            }
            if verdict(st.last(disk), t, v.to_bits(), floor) == Verdict::Append {
                let ctx = AppendCtx { chunk_range, disk, series_ref: s.series_ref };
                if st.append(t, v, &ctx) {
                    a.chunks += 1;
                }
                a.samples += 1;
                a.mint = a.mint.min(t);
                a.maxt = a.maxt.max(t);
            } else {
                a.skipped += 1;
            }
        }
        self.report.applied = a;
    }
}

/// The reading side: decodes records and routes their work to the workers.
struct Replayer {
    /// Completed chunks found in the head chunk files, by series reference.
    mapped: BTreeMap<u64, Vec<MappedChunk>>,
    /// `slot << shift | worker` by WAL reference.
    refs: Refs,
    shift: u32,
    /// Next slot of each worker.
    next_slot: Vec<u32>,
    /// Batch being filled for each worker.
    out: Vec<Batch>,
    to: Vec<SyncSender<Batch>>,
    /// Emptied batches coming back from the workers.
    spare: Receiver<Batch>,
    hasher: SeriesHasher,
    report: OpenReport,
}

impl Replayer {
    fn record(&mut self, rec: &[u8]) -> Result<(), record::RecordError> {
        match rec.first() {
            Some(&kind::SERIES) => self.series_record(rec),
            Some(&kind::SAMPLES) => {
                let (shift, refs, out) = (self.shift, &self.refs, &mut self.out);
                let mask = (1u32 << shift) - 1;
                let before: Vec<usize> = out.iter().map(|b| b.samples.len()).collect();
                let mut unknown = 0;
                let res = record::for_each_sample(rec, |r, t, v| match refs.get(r) {
                    Some(x) => out[(x & mask) as usize].samples.push(Pending { idx: x >> shift, t, v }),
                    None => unknown += 1,
                });
                if let Err(e) = res {
                    // A malformed record applies no sample at all.
                    for (b, n) in out.iter_mut().zip(before) {
                        b.samples.truncate(n);
                    }
                    return Err(e);
                }
                self.report.unknown_ref_samples += unknown;
                self.send_full();
                Ok(())
            }
            Some(_) => {
                self.report.skipped_records += 1;
                Ok(())
            }
            None => Err(record::RecordError::Empty),
        }
    }

    /// Hashes the entries of a series record and hands each to its worker.
    fn series_record(&mut self, rec: &[u8]) -> Result<(), record::RecordError> {
        let mut scratch = Vec::new();
        let mut sorted = Vec::new();
        let workers = self.out.len() as u64;
        record::decode_series(rec, &mut scratch, |r, l: &[LabelRef<'_>]| {
            let key = self.hasher.key(l, &mut sorted);
            let canonical = if key.sorted { l } else { &sorted[..] };
            // The low bits of the hash also pick the head stripe.
            let w = (key.hash as u64 % workers) as usize;
            let slot = self.next_slot[w];
            self.next_slot[w] += 1;
            self.refs.insert(r, (slot << self.shift) | w as u32);
            let b = &mut self.out[w];
            let (first_span, bytes_at) = (b.spans.len(), b.bytes.len());
            for x in canonical {
                b.bytes.extend_from_slice(x.name);
                b.bytes.extend_from_slice(x.value);
                b.spans.push((x.name.len() as u32, x.value.len() as u32));
            }
            b.series.push(NewSeries {
                wal_ref: r,
                hash: key.hash,
                sorted: key.sorted,
                spans: first_span..b.spans.len(),
                bytes_at,
                chunks: self.mapped.remove(&r).unwrap_or_default(),
            });
            self.report.series += 1;
        })?;
        self.send_full();
        Ok(())
    }

    /// Sends the batches that are full enough.
    fn send_full(&mut self) {
        for w in 0..self.out.len() {
            let b = &self.out[w];
            if b.samples.len() >= BATCH_SAMPLES || b.series.len() >= BATCH_SERIES {
                self.send(w);
            }
        }
    }

    fn send(&mut self, w: usize) {
        let next = self.spare.try_recv().unwrap_or_default();
        let b = std::mem::replace(&mut self.out[w], next);
        // A worker only stops early by panicking, which the scope reports.
        let _ = self.to[w].send(b);
    }

    /// Applies the records of `sources` as the framing thread delivers them; stops at the first
    /// corruption (an error in a checkpoint, a repair in a segment).
    fn apply_read(&mut self, sources: &[Source], rx: Receiver<Read>, spare: SyncSender<Run>) -> Result<(), TsdbError> {
        let max_segment = sources.iter().filter(|s| s.checkpoint.is_none()).map(|s| s.index).max().unwrap_or(0);
        for src in sources {
            let start = std::time::Instant::now();
            let corruption = loop {
                match rx.recv() {
                    Ok(Read::Records(run)) => {
                        let mut from = 0;
                        let mut bad = None;
                        for &(offset, end) in &run.recs {
                            if let Err(e) = self.record(&run.bytes[from..end]) {
                                bad = Some(Corruption { segment: src.index, offset, reason: e.to_string() });
                                break;
                            }
                            from = end;
                        }
                        // Its bytes stay as they are, to be written over.
                        let mut run = run;
                        run.recs.clear();
                        let _ = spare.try_send(run);
                        if bad.is_some() {
                            break bad;
                        }
                    }
                    Ok(Read::End(c)) => break c,
                    Ok(Read::Failed(e)) => return Err(e),
                    // The framing thread only stops early by panicking, which the scope reports.
                    Err(_) => return Ok(()),
                }
            };
            match &src.checkpoint {
                Some(dir) => {
                    if let Some(c) = corruption {
                        return Err(TsdbError::Replay(format!("checkpoint {}: {c}", dir.display())));
                    }
                }
                None => {
                    self.report.segments += 1;
                    tracing::info!(segment = src.index, maxSegment = max_segment, duration = ?start.elapsed(), "WAL segment loaded");
                    if corruption.is_some() {
                        self.report.repaired = corruption;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// A file to replay: a checkpoint segment or a WAL segment.
struct Source {
    index: u32,
    path: std::path::PathBuf,
    /// The checkpoint directory, for a checkpoint segment.
    checkpoint: Option<std::path::PathBuf>,
}

/// The checkpoint's segments (if any), then the WAL segments after it.
fn sources(wal_dir: &Path) -> Result<Vec<Source>, TsdbError> {
    let mut out = Vec::new();
    let mut first_segment = 0;
    if let Some((n, cp_dir)) = wal::last_checkpoint(wal_dir)? {
        for i in wal::list_segments(&cp_dir)? {
            out.push(Source { index: i, path: wal::segment_path(&cp_dir, i), checkpoint: Some(cp_dir.clone()) });
        }
        first_segment = n + 1;
    }
    if let Some((before, after)) = super::wal_gap(wal_dir)? {
        return Err(wal::WalError::NotSequential { dir: wal_dir.to_owned(), before, missing: before + 1, after }.into());
    }
    for i in wal::list_segments_unchecked(wal_dir)?.into_iter().filter(|&i| i >= first_segment) {
        out.push(Source { index: i, path: wal::segment_path(wal_dir, i), checkpoint: None });
    }
    Ok(out)
}

/// Decompressed records of one segment, back to back, with each record's segment offset and
/// the end of its bytes. A run is used again once replayed, its bytes written over without
/// being cleared or zeroed again.
#[derive(Default)]
struct Run {
    bytes: Vec<u8>,
    recs: Vec<(usize, usize)>,
}

/// Bytes of records per [`Run`].
const RUN_BYTES: usize = 1 << 20;

/// What the framing thread hands the replayer, segment by segment in `sources` order.
enum Read {
    Records(Run),
    /// The segment ended: cleanly, or at this corruption (nothing after it is sent).
    End(Option<Corruption>),
    Failed(TsdbError),
}

/// The framing thread: reads pages, checks CRCs and decompresses records, so the replayer
/// spends its time routing. Stops at the first corruption, or when the replayer hangs up.
fn frame(sources: &[Source], tx: SyncSender<Read>, spare: Receiver<Run>) {
    for src in sources {
        let seg = match MappedFile::open(&src.path) {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(Read::Failed(super::io("map", &src.path)(e)));
                return;
            }
        };
        let mut r = SegmentReader::new(src.index, seg.data());
        let mut run = spare.try_recv().unwrap_or_default();
        let mut at = 0;
        let corruption = loop {
            match r.next_into(&mut run.bytes, at) {
                None => break None,
                Some(Err(c)) => break Some(c),
                Some(Ok((offset, _, end))) => {
                    seg.release_before(offset);
                    run.recs.push((offset, end));
                    at = end;
                    if at >= RUN_BYTES {
                        let next = spare.try_recv().unwrap_or_default();
                        if tx.send(Read::Records(std::mem::replace(&mut run, next))).is_err() {
                            return;
                        }
                        at = 0;
                    }
                }
            }
        };
        if !run.recs.is_empty() && tx.send(Read::Records(run)).is_err() {
            return;
        }
        let stop = corruption.is_some();
        if tx.send(Read::End(corruption)).is_err() || stop {
            return;
        }
    }
}

/// Replays `wal_dir` into `head`. A corruption in a WAL segment stops the replay and is
/// returned in the report for the caller to repair; one in a checkpoint is an error.
/// `mapped` holds the completed chunks of the head chunk files; they are attached to their
/// series as the series are created, and WAL samples they already hold are skipped.
pub(super) fn replay(
    head: &Head,
    wal_dir: &Path,
    mapped: BTreeMap<u64, Vec<MappedChunk>>,
) -> Result<OpenReport, TsdbError> {
    // A power of two, so that the worker bits of a hash are also its stripe bits.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 16);
    let workers = 1 << cores.ilog2();
    replay_with(head, wal_dir, workers, mapped)
}

fn replay_with(
    head: &Head,
    wal_dir: &Path,
    workers: usize,
    mapped: BTreeMap<u64, Vec<MappedChunk>>,
) -> Result<OpenReport, TsdbError> {
    let shift = workers.next_power_of_two().trailing_zeros();
    let sources = sources(wal_dir)?;
    let (spare_tx, spare) = sync_channel(workers * QUEUE);
    std::thread::scope(|scope| {
        let mut to = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = sync_channel::<Batch>(QUEUE);
            let spare_tx = spare_tx.clone();
            let worker = Worker::new(head);
            handles.push(scope.spawn(move || worker.run(rx, spare_tx)));
            to.push(tx);
        }
        let mut rp = Replayer {
            mapped,
            refs: Refs::default(),
            shift,
            next_slot: vec![0; workers],
            out: (0..workers).map(|_| Batch::default()).collect(),
            to,
            spare,
            hasher: SeriesHasher::default(),
            report: OpenReport::default(),
        };
        let (read_tx, read_rx) = sync_channel(4);
        let (run_tx, run_rx) = sync_channel(8);
        let srcs = &sources;
        scope.spawn(move || frame(srcs, read_tx, run_rx));
        let read = rp.apply_read(&sources, read_rx, run_tx);
        for w in 0..workers {
            rp.send(w);
        }
        rp.to.clear();
        let mut applied = Applied::default();
        let mut report = std::mem::take(&mut rp.report);
        for h in handles {
            let r = h.join().expect("replay worker panicked");
            applied.merge(&r.applied);
            report.unknown_ref_samples += r.undefined_samples;
        }
        read?;
        head.metrics.head.replay_unknown_refs.add(report.unknown_ref_samples);
        report.samples = applied.samples;
        report.skipped_samples = applied.skipped;
        head.update_min_max(applied.mint, applied.maxt);
        head.metrics.head.chunks_created.add(applied.chunks);
        head.metrics.head.chunks.add(applied.chunks as i64);
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::chunk_disk::ChunkDiskMapper;
    use crate::labels::Labels;
    use crate::wal::{WalOptions, WalWriter};

    fn lr<'a>(n: &'a str, v: &'a str) -> LabelRef<'a> {
        LabelRef { name: n.as_bytes(), value: v.as_bytes() }
    }

    type Dumped = Vec<(Labels, Vec<(i64, u64)>)>;

    fn replayed(dir: &Path, workers: usize) -> (Dumped, OpenReport) {
        let head = Head::new(2 * 3600 * 1000, Default::default(), Arc::new(ChunkDiskMapper::in_memory()));
        let report = replay_with(&head, dir, workers, BTreeMap::new()).unwrap();
        let mut out = Vec::new();
        head.for_each_series(|s| {
            let samples = s.state.lock().samples(&head.disk).into_iter().map(|(t, v)| (t, v.to_bits())).collect();
            out.push((head.labels_of(s), samples));
        });
        out.sort();
        (out, report)
    }

    /// Any number of workers gives the same head: the routed apply is the in-order replay.
    #[test]
    fn worker_count_does_not_change_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(dir.path(), 0, WalOptions::default(), Default::default()).unwrap();
        let mut rec = Vec::new();
        let mut x = 7u64;
        for round in 0..40i64 {
            // A pool of 500 label sets, declared again under new refs every round (a second
            // record for existing labels maps to the existing series).
            record::begin_series(&mut rec);
            for k in 0..500u64 {
                let name = format!("m{}", k % 13);
                let id = format!("{k}");
                record::push_series(
                    &mut rec,
                    round as u64 * 1000 + k + 1,
                    [lr("__name__", &name), lr("id", &id)].into_iter(),
                );
            }
            let mut samples = Vec::new();
            for k in 0..500u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Through this round's ref or an older one: the same series either way.
                let r = if round > 0 && x.is_multiple_of(3) {
                    (round as u64 - 1) * 1000 + k + 1
                } else {
                    round as u64 * 1000 + k + 1
                };
                // Mostly in order; sometimes older than the series' latest sample (refused).
                let t = 1_000_000 + round * 15_000 - x.is_multiple_of(10) as i64 * 40_000;
                samples.push((r, t, f64::from_bits(x >> 12)));
            }
            // A reference nobody defined.
            samples.push((999_999_999, 5, 1.0));
            let mut srec = Vec::new();
            record::encode_samples(&mut srec, samples);
            w.log(&[&rec, &srec]).unwrap();
        }
        w.close().unwrap();
        let (want, report) = replayed(dir.path(), 1);
        assert_eq!(report.unknown_ref_samples, 40);
        assert!(report.skipped_samples > 0, "some samples were refused");
        assert_eq!(want.len(), 500);
        for workers in [2, 4, 8] {
            let (got, r) = replayed(dir.path(), workers);
            assert_eq!(
                (r.samples, r.skipped_samples, r.unknown_ref_samples),
                (report.samples, report.skipped_samples, report.unknown_ref_samples)
            );
            assert!(got == want, "{workers} workers changed the head");
        }
    }

    /// A samples record cut short in the middle of a segment stops the replay there: the
    /// samples before it are applied, none of the bad record's (even those it decoded before
    /// the fault, routed to any worker), none after it.
    #[test]
    fn malformed_samples_record_applies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(dir.path(), 0, WalOptions::default(), Default::default()).unwrap();
        let mut series = Vec::new();
        record::begin_series(&mut series);
        for k in 1..=64u64 {
            let id = format!("{k}");
            record::push_series(&mut series, k, [lr("__name__", "m"), lr("id", &id)].into_iter());
        }
        let samples = |t: i64| {
            let mut rec = Vec::new();
            record::encode_samples(&mut rec, (1..=64u64).map(|k| (k, t, k as f64)));
            rec
        };
        let mut bad = samples(2000);
        bad.truncate(bad.len() - 3);
        w.log(&[&series, &samples(1000)]).unwrap();
        w.log(&[&bad]).unwrap();
        w.log(&[&samples(3000)]).unwrap();
        w.close().unwrap();
        for workers in [1, 2, 4] {
            let (got, report) = replayed(dir.path(), workers);
            assert!(report.repaired.is_some(), "the bad record is reported");
            assert_eq!(got.len(), 64);
            for (labels, samples) in &got {
                let k: f64 = labels.get("id").unwrap().parse().unwrap();
                assert_eq!(samples, &vec![(1000, k.to_bits())], "{labels}");
            }
        }
    }
}
