//! The append transaction: validate per series, then write the WAL and apply in one step.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Tsdb, TsdbError};
use crate::head::series::{AppendCtx, Verdict, verdict};
use crate::head::{LabelIds, MemSeries};
use crate::labels::{LabelError, LabelRef, SeriesHasher, SeriesKey, sort_by_name, validate_sorted};
use crate::wal::record;

/// Reusable scratch space for appenders (keep one per worker thread).
#[derive(Default)]
pub struct AppendBuffers {
    hasher: SeriesHasher,
    ids: LabelIds,
    series_rec: Vec<u8>,
    samples_rec: Vec<u8>,
    pending: Vec<Pending>,
    samples: Vec<(i64, f64)>,
    to_mark: Vec<Arc<MemSeries>>,
    label_scratch: Vec<(String, String)>,
    /// Keys of prepared series ([`Appender::prepare`]) and how many were appended.
    prepared: Vec<SeriesKey>,
    next_prepared: usize,
}

impl std::fmt::Debug for AppendBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendBuffers").finish_non_exhaustive()
    }
}

struct Pending {
    series: Arc<MemSeries>,
    start: u32,
    end: u32,
}

/// Per-series result of [`Appender::append`]: how many samples were accepted and why the others
/// were refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesOutcome {
    /// Samples accepted (to be written by `commit`), exact duplicates included.
    pub accepted: u32,
    /// Older than the series' latest sample.
    pub out_of_order: u32,
    /// Same timestamp as the latest sample, other value.
    pub duplicate: u32,
    /// Older than the oldest appendable time of the head.
    pub out_of_bounds: u32,
    /// Newer than the caller's future limit.
    pub too_far_in_future: u32,
    /// Timestamp of the first refused sample.
    pub first_refused: Option<i64>,
}

impl SeriesOutcome {
    fn refuse(&mut self, t: i64) {
        self.first_refused.get_or_insert(t);
    }
}

/// Result of a successful commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Samples applied to the head.
    pub appended: u64,
    /// Samples that passed validation but lost a race with a concurrent commit to the same
    /// series (applied in WAL order, so a restart sees the same result); report them as
    /// out-of-order.
    pub lost_races: u64,
}

/// One append transaction. Nothing is visible or durable before [`Appender::commit`].
pub struct Appender<'a> {
    db: &'a Tsdb,
    bufs: &'a mut AppendBuffers,
    min_valid: Option<i64>,
    /// Symbol ids stay valid while the appender lives (see `Head::gc_symbols`).
    _symbols: parking_lot::RwLockReadGuard<'a, ()>,
}

impl<'a> Appender<'a> {
    pub(super) fn new(db: &'a Tsdb, bufs: &'a mut AppendBuffers) -> Self {
        bufs.series_rec.clear();
        bufs.pending.clear();
        bufs.samples.clear();
        bufs.to_mark.clear();
        bufs.prepared.clear();
        bufs.next_prepared = 0;
        let _symbols = db.head.symbol_gate.read();
        Appender { db, bufs, min_valid: None, _symbols }
    }

    fn min_valid(&mut self, first_t: i64) -> i64 {
        *self.min_valid.get_or_insert_with(|| {
            // An empty head starts at the first sample it is offered (Prometheus' initAppender).
            self.db.head.init_time(first_t);
            self.db.head.appendable_min_valid_time()
        })
    }

    /// Validates the samples of one series and queues the acceptable ones. `labels` are the raw
    /// request labels in any order; samples newer than `max_t` are refused as too far in the
    /// future. A label set that cannot be stored is refused as a whole.
    pub fn append(
        &mut self,
        labels: &[LabelRef<'_>],
        samples: &[(i64, f64)],
        max_t: i64,
    ) -> Result<SeriesOutcome, LabelError> {
        let mut sorted = Vec::new();
        let key = self.bufs.hasher.key(labels, &mut sorted);
        self.append_keyed(key, || if key.sorted { labels } else { &sorted }, samples, max_t)
    }

    /// Hashes the labels of a series that [`Appender::append_prepared`] will append later and
    /// starts loading its place in the head. Preparing all of a request's series first, then
    /// appending them in the same order, lets the appender prefetch each lookup a few series
    /// ahead instead of waiting for it: the lookups are cache misses, the hashing is not.
    ///
    /// Returns whether the labels are strictly sorted by name (no duplicate names), as remote
    /// write sends them; a caller that refuses other label sets skips them with
    /// [`Appender::skip_prepared`].
    pub fn prepare(&mut self, labels: &[LabelRef<'_>]) -> bool {
        let key = self.bufs.hasher.key(labels, &mut Vec::new());
        self.prepare_key(key);
        key.sorted
    }

    /// [`Appender::prepare`] for a series whose key the caller already has (e.g. labels
    /// strictly sorted by name, hashed where they were received: [`SeriesKey::of_encoded`]).
    pub fn prepare_key(&mut self, key: SeriesKey) {
        self.db.head.prefetch_stripe(key.hash);
        self.bufs.prepared.push(key);
    }

    /// Passes over the next prepared series without appending it.
    pub fn skip_prepared(&mut self) {
        self.bufs.next_prepared = (self.bufs.next_prepared + 1).min(self.bufs.prepared.len());
    }

    /// [`Appender::append`] for the next series given to [`Appender::prepare`] or
    /// [`Appender::prepare_key`] (same labels, same order; plain `append` calls in between do
    /// not count). `labels` gives the series' labels; it is called only when they are needed
    /// (a series not in the head yet, or one prepared unsorted), so a caller whose series
    /// exist builds none. Without a prepared series left it hashes the labels itself.
    pub fn append_prepared<'r, 'l: 'r>(
        &mut self,
        labels: impl FnOnce() -> &'r [LabelRef<'l>],
        samples: &[(i64, f64)],
        max_t: i64,
    ) -> Result<SeriesOutcome, LabelError> {
        /// Series between a slot prefetch and its lookup.
        const AHEAD: usize = 6;
        let i = self.bufs.next_prepared;
        let Some(&key) = self.bufs.prepared.get(i) else {
            return self.append(labels(), samples, max_t);
        };
        self.bufs.next_prepared = i + 1;
        if i == 0 {
            for k in self.bufs.prepared.iter().take(AHEAD) {
                self.db.head.prefetch_slot(k.hash);
            }
        }
        if let Some(k) = self.bufs.prepared.get(i + AHEAD) {
            self.db.head.prefetch_slot(k.hash);
        }
        if key.sorted {
            if cfg!(debug_assertions) {
                let l = labels();
                let again = self.bufs.hasher.key(l, &mut Vec::new());
                debug_assert_eq!(key, again, "append_prepared out of step with prepare");
                return self.append_keyed(key, || l, samples, max_t);
            }
            return self.append_keyed(key, labels, samples, max_t);
        }
        let mut sorted = Vec::new();
        sort_by_name(labels(), &mut sorted);
        self.append_keyed(key, || &sorted, samples, max_t)
    }

    /// Appends the series with identity `key` and `canonical` (name-ordered) labels, asked
    /// for only when the series is not in the head.
    fn append_keyed<'r, 'l: 'r>(
        &mut self,
        key: SeriesKey,
        canonical: impl FnOnce() -> &'r [LabelRef<'l>],
        samples: &[(i64, f64)],
        max_t: i64,
    ) -> Result<SeriesOutcome, LabelError> {
        if samples.is_empty() {
            // Nothing to store: validate the labels, but create no series.
            if self.db.head.get(key.hash).is_none() {
                validate_sorted(canonical(), key.sorted)?;
            }
            return Ok(SeriesOutcome::default());
        }
        let series = match self.db.head.get(key.hash) {
            Some(s) => {
                if !s.logged.load(Ordering::Acquire) {
                    self.queue_series_record(&s, None);
                }
                s
            }
            None => {
                let canonical = canonical();
                validate_sorted(canonical, key.sorted)?;
                let (s, created) = self.db.head.get_or_create(key.hash, canonical, None, &mut self.bufs.ids);
                if created || !s.logged.load(Ordering::Acquire) {
                    self.queue_series_record(&s, Some(canonical));
                }
                s
            }
        };
        let mut out = SeriesOutcome::default();
        let min_valid = self.min_valid(samples[0].0);
        let start = self.bufs.samples.len() as u32;
        let mut last = series.state.lock().last(&self.db.head.disk);
        // The samples of the series' open chunk, read at the request's first sample older than
        // the latest: a retry of a recent request sends them again. (Older samples are not
        // looked up: a client could make every refused sample cost a read of the series.)
        let mut stored: Option<Vec<(i64, f64)>> = None;
        for &(t, v) in samples {
            if t > max_t {
                out.too_far_in_future += 1;
                out.refuse(t);
                continue;
            }
            let mut outcome = verdict(last, t, v.to_bits(), min_valid);
            if outcome == Verdict::OutOfOrder {
                let stored = stored.get_or_insert_with(|| series.state.lock().open_samples());
                if is_stored(stored, t, v) {
                    // Prometheus ignores a sample it already holds, value for value: an exact
                    // retry of a multi-sample request is accepted, not a conflict.
                    outcome = Verdict::Duplicate;
                }
            }
            match outcome {
                Verdict::Append => {
                    self.bufs.samples.push((t, v));
                    last = Some((t, v.to_bits()));
                    out.accepted += 1;
                }
                Verdict::Duplicate => {
                    out.accepted += 1;
                    self.db.metrics().head.duplicate_samples_ignored.inc();
                }
                Verdict::DuplicateOtherValue => {
                    out.duplicate += 1;
                    out.refuse(t);
                }
                Verdict::OutOfOrder => {
                    out.out_of_order += 1;
                    out.refuse(t);
                    self.db.metrics().head.out_of_order_samples.inc();
                }
                Verdict::OutOfBounds => {
                    out.out_of_bounds += 1;
                    out.refuse(t);
                    self.db.metrics().head.out_of_bound_samples.inc();
                }
            }
        }
        let end = self.bufs.samples.len() as u32;
        if end > start {
            self.bufs.pending.push(Pending { series, start, end });
        }
        Ok(out)
    }

    fn queue_series_record(&mut self, s: &Arc<MemSeries>, labels: Option<&[LabelRef<'_>]>) {
        if self.bufs.series_rec.is_empty() {
            record::begin_series(&mut self.bufs.series_rec);
        }
        match labels {
            Some(labels) => record::push_series(&mut self.bufs.series_rec, s.series_ref, labels.iter().copied()),
            None => {
                let scratch = &mut self.bufs.label_scratch;
                scratch.clear();
                let symbols = &self.db.head.symbols;
                scratch.extend(s.labels.chunks_exact(2).map(|p| (symbols.get(p[0]), symbols.get(p[1]))));
                let refs = scratch.iter().map(|(n, v)| LabelRef { name: n.as_bytes(), value: v.as_bytes() });
                record::push_series(&mut self.bufs.series_rec, s.series_ref, refs);
            }
        }
        self.bufs.to_mark.push(s.clone());
    }

    /// Writes the queued series and samples to the WAL, then applies the samples to the head.
    /// On error nothing was applied and the caller must not acknowledge.
    pub fn commit(self) -> Result<CommitOutcome, TsdbError> {
        let bufs = self.bufs;
        let head = &self.db.head;
        if bufs.pending.is_empty() && bufs.series_rec.is_empty() {
            return Ok(CommitOutcome::default());
        }
        {
            let samples = &bufs.samples;
            let iter = bufs.pending.iter().flat_map(|p| {
                samples[p.start as usize..p.end as usize].iter().map(move |&(t, v)| (p.series.series_ref, t, v))
            });
            record::encode_samples(&mut bufs.samples_rec, iter);
        }
        let mut wal = self.db.wal.lock();
        let writer = wal.as_mut().ok_or(TsdbError::Closed)?;
        let floor = head.floor();
        // Series that head truncation removed since validation are recreated (new reference,
        // new series record); rare, so the samples record is re-encoded here under the lock.
        if bufs.pending.iter().any(|p| p.series.removed.load(Ordering::Acquire)) {
            recreate_removed(head, bufs);
        }
        let mut recs: [&[u8]; 2] = [&[], &[]];
        let mut n = 0;
        if !bufs.series_rec.is_empty() {
            recs[n] = &bufs.series_rec;
            n += 1;
        }
        if !bufs.pending.is_empty() {
            recs[n] = &bufs.samples_rec;
            n += 1;
        }
        writer.log(&recs[..n])?;
        for s in bufs.to_mark.drain(..) {
            s.logged.store(true, Ordering::Release);
        }
        // Apply in WAL order while still holding the WAL lock.
        let mut out = CommitOutcome::default();
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        let mut chunks_created = 0u64;
        let metrics = &head.metrics.head;
        for p in bufs.pending.drain(..) {
            let mut st = p.series.state.lock();
            let ctx = AppendCtx { chunk_range: head.chunk_range, disk: &head.disk, series_ref: p.series.series_ref };
            for &(t, v) in &bufs.samples[p.start as usize..p.end as usize] {
                match verdict(st.last(&head.disk), t, v.to_bits(), floor) {
                    Verdict::Append => {
                        if st.append(t, v, &ctx) {
                            chunks_created += 1;
                        }
                        out.appended += 1;
                        mint = mint.min(t);
                        maxt = maxt.max(t);
                    }
                    Verdict::Duplicate => {}
                    Verdict::OutOfBounds => {
                        // A block was cut over this range since validation.
                        out.lost_races += 1;
                        metrics.out_of_bound_samples.inc();
                    }
                    _ => {
                        out.lost_races += 1;
                        metrics.out_of_order_samples.inc();
                    }
                }
            }
        }
        head.update_min_max(mint, maxt);
        drop(wal);
        metrics.samples_appended.add(out.appended);
        metrics.chunks_created.add(chunks_created);
        metrics.chunks.add(chunks_created as i64);
        Ok(out)
    }
}

/// Replaces removed series in `bufs.pending` by live ones (created again if needed, with a
/// series record) and re-encodes the samples record.
fn recreate_removed(head: &crate::head::Head, bufs: &mut AppendBuffers) {
    let mut new_records = Vec::new();
    for p in bufs.pending.iter_mut() {
        if !p.series.removed.load(Ordering::Acquire) {
            continue;
        }
        let labels = head.labels_of(&p.series);
        let refs: Vec<LabelRef<'_>> =
            labels.iter().map(|l| LabelRef { name: l.name.as_bytes(), value: l.value.as_bytes() }).collect();
        let (s, created) = head.get_or_create(p.series.hash, &refs, None, &mut bufs.ids);
        if created || !s.logged.load(Ordering::Acquire) {
            new_records.push((s.series_ref, labels));
            bufs.to_mark.push(s.clone());
        }
        p.series = s;
    }
    if !new_records.is_empty() {
        if bufs.series_rec.is_empty() {
            record::begin_series(&mut bufs.series_rec);
        }
        for (r, labels) in &new_records {
            let refs: Vec<LabelRef<'_>> =
                labels.iter().map(|l| LabelRef { name: l.name.as_bytes(), value: l.value.as_bytes() }).collect();
            record::push_series(&mut bufs.series_rec, *r, refs.into_iter());
        }
    }
    let samples = &bufs.samples;
    let iter = bufs
        .pending
        .iter()
        .flat_map(|p| samples[p.start as usize..p.end as usize].iter().map(move |&(t, v)| (p.series.series_ref, t, v)));
    record::encode_samples(&mut bufs.samples_rec, iter);
}

/// Whether `stored` (in time order) holds a sample at `t` with exactly the bits of `v`.
fn is_stored(stored: &[(i64, f64)], t: i64, v: f64) -> bool {
    stored.binary_search_by_key(&t, |s| s.0).is_ok_and(|i| stored[i].1.to_bits() == v.to_bits())
}
