//! WAL replay: checkpoint (if any), then segments, into the head.
//!
//! Records are read in WAL order. Series records create series at once (a large record on all
//! cores); samples are resolved to their series as they are read (a sample whose series is not
//! defined yet is dropped, as in Prometheus) and buffered. Every few million samples the buffer
//! is handed to a background flush, which sorts it by series (a stable counting sort, so each
//! series keeps its WAL order) and applies it series by series, one lock per series, on all
//! cores, while reading goes on. One flush at a time, so batches apply in WAL order. A sample's
//! verdict and the chunk it lands in depend only on its own series' earlier samples, so the head
//! is exactly what in-order replay builds; but each series is touched once per flush instead of
//! once per sample (replay is bound by cache misses, not arithmetic).

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeMap;

use hashbrown::HashMap;

use super::{OpenReport, TsdbError};
use crate::fsutil::MappedFile;
use crate::head::chunk_disk::{ChunkDiskMapper, MappedChunk};
use crate::head::series::{AppendCtx, ClosedChunk, Verdict, verdict};
use crate::head::{Head, LabelIds, MemSeries};
use crate::labels::{LabelRef, SeriesHasher, validate_sorted};
use crate::wal::record::{self, kind};
use crate::wal::{self, Corruption, SegmentReader};

/// Samples buffered before they are sorted and applied (24 bytes each).
const FLUSH_SAMPLES: usize = 2 << 20;

/// Replay index (position in `Replayer::series`) by WAL reference. References are dense from 1
/// in WALs written by ringest and by Prometheus, so a vector indexed by reference is the common
/// case; sparse ones go to a map.
#[derive(Default)]
struct Refs {
    /// Index + 1 (0: undefined).
    dense: Vec<u32>,
    sparse: HashMap<u64, u32>,
}

impl Refs {
    /// References up to this many slots past the current length stay dense.
    const GROWTH: u64 = 1 << 20;

    fn insert(&mut self, r: u64, idx: u32) {
        if r < self.dense.len() as u64 + Self::GROWTH {
            if r as usize >= self.dense.len() {
                self.dense.resize(r as usize + 1, 0);
            }
            self.dense[r as usize] = idx + 1;
        } else {
            self.sparse.insert(r, idx);
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

/// A buffered sample.
#[derive(Clone, Copy)]
struct Pending {
    idx: u32,
    t: i64,
    v: f64,
}

/// What applying a batch did.
#[derive(Default)]
struct Applied {
    samples: u64,
    skipped: u64,
    chunks: u64,
    mint: i64,
    maxt: i64,
}

/// Series by replay index: appended by the reader while a flush reads it.
type SeriesTable = Arc<boxcar::Vec<Arc<MemSeries>>>;

/// A flush running in the background: its result and the buffer to reuse.
type Inflight = std::thread::JoinHandle<(Applied, Vec<Pending>)>;

struct Replayer<'h> {
    head: &'h Head,
    /// Completed chunks found in the head chunk files, by series reference.
    mapped: BTreeMap<u64, Vec<MappedChunk>>,
    flush_at: usize,
    refs: Refs,
    series: SeriesTable,
    decoded: Vec<(u64, i64, f64)>,
    buf: Vec<Pending>,
    spare: Vec<Pending>,
    inflight: Option<Inflight>,
    report: OpenReport,
    applied: Applied,
}

/// Applies the samples of one partition: sorted by series first (a counting sort over the
/// partition's few series, stable, so each series keeps its WAL order), then one lock per series.
fn apply_partition(
    series: &boxcar::Vec<Arc<MemSeries>>,
    group: &[Pending],
    scratch: &mut Vec<Pending>,
    chunk_range: i64,
    floor: i64,
    disk: &ChunkDiskMapper,
    a: &mut Applied,
) {
    let Some(base) = group.iter().map(|p| p.idx).min() else { return };
    let mut counts = [0u32; PARTITION_SERIES + 1];
    for p in group {
        counts[(p.idx - base) as usize + 1] += 1;
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    scratch.clear();
    scratch.resize(group.len(), Pending { idx: 0, t: 0, v: 0.0 });
    for p in group {
        let pos = &mut counts[(p.idx - base) as usize];
        scratch[*pos as usize] = *p;
        *pos += 1;
    }
    let mut i = 0;
    while i < scratch.len() {
        let idx = scratch[i].idx;
        let s = &series[idx as usize];
        let ctx = AppendCtx { chunk_range, disk, series_ref: s.series_ref };
        let mut st = s.state.lock();
        while i < scratch.len() && scratch[i].idx == idx {
            let Pending { t, v, .. } = scratch[i];
            // Samples up to the end of the series' chunks on disk are in those chunks.
            if st.closed_only_max_t().is_some_and(|mx| t <= mx) {
                a.skipped += 1;
                i += 1;
                continue;
            }
            if verdict(st.last(disk), t, v.to_bits(), floor) == Verdict::Append {
                if st.append(t, v, &ctx) {
                    a.chunks += 1;
                }
                a.samples += 1;
                a.mint = a.mint.min(t);
                a.maxt = a.maxt.max(t);
            } else {
                a.skipped += 1;
            }
            i += 1;
        }
    }
}

/// Series per partition of a flush: a partition's series (and their open chunks) stay in cache
/// while its samples are applied.
const PARTITION_SERIES: usize = 256;

/// Partitions `buf` by series (stable: each series keeps its WAL order) into groups of
/// `PARTITION_SERIES` adjacent series, and applies the groups on all cores. Returns the stats
/// and the emptied buffer for reuse.
fn flush_job(
    series: &boxcar::Vec<Arc<MemSeries>>,
    n: usize,
    mut buf: Vec<Pending>,
    chunk_range: i64,
    floor: i64,
    disk: &ChunkDiskMapper,
) -> (Applied, Vec<Pending>) {
    let groups = n.div_ceil(PARTITION_SERIES).max(1);
    let mut parts: Vec<Vec<Pending>> = vec![Vec::new(); groups];
    let hint = buf.len() / groups + 16;
    for p in &buf {
        let g = &mut parts[p.idx as usize / PARTITION_SERIES];
        if g.capacity() == 0 {
            g.reserve(hint);
        }
        g.push(*p);
    }
    buf.clear();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1);
    let per = groups.div_ceil(threads);
    let mut total = Applied { mint: i64::MAX, maxt: i64::MIN, ..Default::default() };
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut a = Applied { mint: i64::MAX, maxt: i64::MIN, ..Default::default() };
                    let mut scratch = Vec::new();
                    for g in chunk {
                        apply_partition(series, g, &mut scratch, chunk_range, floor, disk, &mut a);
                    }
                    a
                })
            })
            .collect();
        for h in handles {
            let r = h.join().expect("replay worker panicked");
            total.samples += r.samples;
            total.skipped += r.skipped;
            total.chunks += r.chunks;
            total.mint = total.mint.min(r.mint);
            total.maxt = total.maxt.max(r.maxt);
        }
    });
    (total, buf)
}

impl Replayer<'_> {
    fn record(&mut self, rec: &[u8]) -> Result<(), record::RecordError> {
        match rec.first() {
            Some(&kind::SERIES) => {
                self.series_record(rec)?;
                Ok(())
            }
            Some(&kind::SAMPLES) => {
                record::decode_samples(rec, &mut self.decoded)?;
                for &(r, t, v) in &self.decoded {
                    match self.refs.get(r) {
                        Some(idx) => self.buf.push(Pending { idx, t, v }),
                        None => {
                            self.report.unknown_ref_samples += 1;
                            self.head.metrics.head.replay_unknown_refs.inc();
                        }
                    }
                }
                if self.buf.len() >= self.flush_at {
                    self.flush();
                }
                Ok(())
            }
            Some(_) => {
                self.report.skipped_records += 1;
                Ok(())
            }
            None => Err(record::RecordError::Empty),
        }
    }

    /// Creates the series of a series record, on all cores for large records. Samples only
    /// follow their series record, so indexes can be assigned after the record is done.
    fn series_record(&mut self, rec: &[u8]) -> Result<(), record::RecordError> {
        let mut entries: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        let mut labels: Vec<LabelRef<'_>> = Vec::new();
        let mut scratch = Vec::new();
        record::decode_series(rec, &mut scratch, |r, l: &[LabelRef<'_>]| {
            let start = labels.len();
            labels.extend_from_slice(l);
            entries.push((r, start..labels.len()));
        })?;
        self.report.series += entries.len() as u64;
        let head = self.head;
        let create = |part: &[(u64, std::ops::Range<usize>)]| -> Vec<Option<(Arc<MemSeries>, bool)>> {
            let mut hasher = SeriesHasher::default();
            let mut ids = LabelIds::default();
            part.iter()
                .map(|(r, range)| {
                    let l = &labels[range.clone()];
                    let mut sorted = Vec::new();
                    let key = hasher.key(l, &mut sorted);
                    let canonical = if key.sorted { l } else { &sorted[..] };
                    if validate_sorted(canonical, key.sorted).is_err() {
                        tracing::warn!(series_ref = r, "skipping WAL series record with invalid labels");
                        return None;
                    }
                    Some(head.get_or_create(key.hash, canonical, Some(*r), &mut ids))
                })
                .collect()
        };
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let created: Vec<Option<(Arc<MemSeries>, bool)>> = if entries.len() < 512 || threads == 1 {
            create(&entries)
        } else {
            let per = entries.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = entries.chunks(per).map(|part| s.spawn(|| create(part))).collect();
                handles.into_iter().flat_map(|h| h.join().expect("series worker panicked")).collect()
            })
        };
        // New series first, then records that named an existing series (a second record for the
        // same labels, possibly with another ref), found through the ref of its first record.
        for ((r, _), c) in entries.iter().zip(&created) {
            if let Some((s, true)) = c {
                s.logged.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(chunks) = self.mapped.remove(r) {
                    // The head's time range covers these chunks too.
                    let a = &mut self.applied;
                    a.chunks += chunks.len() as u64;
                    a.mint = a.mint.min(chunks.first().map_or(i64::MAX, |c| c.min_t));
                    a.maxt = a.maxt.max(chunks.last().map_or(i64::MIN, |c| c.max_t));
                    s.state.lock().closed = chunks
                        .into_iter()
                        .map(|c| ClosedChunk { min_t: c.min_t, max_t: c.max_t, chunk_ref: c.chunk_ref })
                        .collect();
                }
                let idx = self.series.push(s.clone());
                self.refs.insert(*r, idx as u32);
            }
        }
        for ((r, _), c) in entries.iter().zip(&created) {
            if let Some((s, false)) = c
                && let Some(idx) = self.refs.get(s.series_ref)
            {
                self.refs.insert(*r, idx);
            }
        }
        Ok(())
    }

    /// Hands the buffered samples to a background flush (after the previous one finished).
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.wait_flush();
        let buf = std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare));
        let (series, chunk_range, floor) = (self.series.clone(), self.head.chunk_range, self.head.floor());
        let disk = self.head.disk.clone();
        let n = self.series.count();
        self.inflight = Some(std::thread::spawn(move || flush_job(&series, n, buf, chunk_range, floor, &disk)));
    }

    /// Waits for the running flush, if any, and adds up what it did.
    fn wait_flush(&mut self) {
        if let Some(h) = self.inflight.take() {
            let (r, mut buf) = h.join().expect("replay flush panicked");
            buf.clear();
            self.spare = buf;
            let a = &mut self.applied;
            a.samples += r.samples;
            a.skipped += r.skipped;
            a.chunks += r.chunks;
            a.mint = a.mint.min(r.mint);
            a.maxt = a.maxt.max(r.maxt);
        }
    }

    /// Replays one segment; returns the corruption that stopped it, if any.
    fn segment(&mut self, index: u32, seg: &MappedFile) -> Option<Corruption> {
        let mut r = SegmentReader::new(index, seg.data());
        loop {
            let (offset, res) = match r.next() {
                None => return None,
                Some(Err(c)) => return Some(c),
                Some(Ok(rec)) => {
                    seg.release_before(rec.offset);
                    (rec.offset, self.record(rec.data))
                }
            };
            if let Err(e) = res {
                return Some(Corruption { segment: index, offset, reason: e.to_string() });
            }
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
    replay_with(head, wal_dir, FLUSH_SAMPLES, mapped)
}

fn replay_with(
    head: &Head,
    wal_dir: &Path,
    flush_at: usize,
    mapped: BTreeMap<u64, Vec<MappedChunk>>,
) -> Result<OpenReport, TsdbError> {
    let mut rp = Replayer {
        flush_at,
        head,
        mapped,
        refs: Refs::default(),
        series: Arc::new(boxcar::Vec::new()),
        decoded: Vec::new(),
        buf: Vec::new(),
        spare: Vec::new(),
        inflight: None,
        report: OpenReport::default(),
        applied: Applied { mint: i64::MAX, maxt: i64::MIN, ..Default::default() },
    };
    let read = |p: &Path| MappedFile::open(p).map_err(super::io("map", p));
    let mut first_segment = 0;
    if let Some((n, cp_dir)) = wal::last_checkpoint(wal_dir)? {
        for i in wal::list_segments(&cp_dir)? {
            let data = read(&wal::segment_path(&cp_dir, i))?;
            if let Some(c) = rp.segment(i, &data) {
                return Err(TsdbError::Replay(format!("checkpoint {}: {c}", cp_dir.display())));
            }
        }
        first_segment = n + 1;
    }
    let segments: Vec<u32> = wal::list_segments(wal_dir)?.into_iter().filter(|&i| i >= first_segment).collect();
    let max_segment = segments.last().copied().unwrap_or(0);
    for i in segments {
        let start = std::time::Instant::now();
        let data = read(&wal::segment_path(wal_dir, i))?;
        rp.report.segments += 1;
        let corruption = rp.segment(i, &data);
        tracing::info!(segment = i, maxSegment = max_segment, duration = ?start.elapsed(), "WAL segment loaded");
        if let Some(c) = corruption {
            rp.report.repaired = Some(c);
            break;
        }
    }
    rp.flush();
    rp.wait_flush();
    let a = &rp.applied;
    rp.report.samples = a.samples;
    rp.report.skipped_samples = a.skipped;
    head.update_min_max(a.mint, a.maxt);
    head.metrics.head.chunks_created.add(a.chunks);
    head.metrics.head.chunks.add(a.chunks as i64);
    Ok(rp.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::wal::{WalOptions, WalWriter};

    fn lr<'a>(n: &'a str, v: &'a str) -> LabelRef<'a> {
        LabelRef { name: n.as_bytes(), value: v.as_bytes() }
    }

    type Dumped = Vec<(Labels, Vec<(i64, u64)>)>;

    fn replayed(dir: &Path, flush_at: usize) -> (Dumped, OpenReport) {
        let head = Head::new(2 * 3600 * 1000, Default::default(), Arc::new(ChunkDiskMapper::in_memory()));
        let report = replay_with(&head, dir, flush_at, BTreeMap::new()).unwrap();
        let mut out = Vec::new();
        head.for_each_series(|s| {
            let samples = s.state.lock().samples(&head.disk).into_iter().map(|(t, v)| (t, v.to_bits())).collect();
            out.push((head.labels_of(s), samples));
        });
        out.sort();
        (out, report)
    }

    /// Flushing every sample, every few samples or once gives the same head: the buffered,
    /// partitioned, parallel apply is the in-order replay.
    #[test]
    fn flush_size_does_not_change_the_result() {
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
        let (want, report) = replayed(dir.path(), usize::MAX);
        assert_eq!(report.unknown_ref_samples, 40);
        assert!(report.skipped_samples > 0, "some samples were refused");
        assert_eq!(want.len(), 500);
        for flush_at in [1, 7, 1000, 4096] {
            let (got, r) = replayed(dir.path(), flush_at);
            assert_eq!((r.samples, r.skipped_samples), (report.samples, report.skipped_samples));
            assert!(got == want, "flush every {flush_at} samples changed the head");
        }
    }
}
