//! The in-memory head: series found by the hash of their labels, each with an open XOR chunk.
//!
//! Series live in a striped hash table (4096 stripes, short critical sections; see [`stripe`]).
//! A series is created (labels validated, sorted and interned) only the first time its label
//! hash is seen; every later sample of that series costs one hash and one stripe lookup, whose
//! cache misses callers with many series at hand hide by prefetching ([`Head::prefetch_stripe`],
//! then [`Head::prefetch_slot`]). Appending follows Prometheus' in-order rules and chunk cutting
//! exactly (see [`series`]).

pub(crate) mod chunk_disk;
pub(crate) mod index;
pub(crate) mod series;
pub(crate) mod stripe;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use crate::labels::{Label, LabelRef, Labels};
use crate::metrics::TsdbMetrics;
use crate::symbols::{SymbolId, Symbols};
pub(crate) use series::MemSeries;
use stripe::Stripe;

const STRIPES: usize = 1 << 12;

/// Interns label sets, reusing the symbol ids of the previous label set's labels where the
/// bytes are the same: series created one after the other (a request's new series, a WAL series
/// record) mostly share names and many values, and a short compare is cheaper than a lookup.
#[derive(Default)]
pub(crate) struct LabelIds {
    prev: Vec<(Vec<u8>, SymbolId, Vec<u8>, SymbolId)>,
    /// [`Symbols::generation`] the cached ids belong to.
    generation: u64,
}

impl LabelIds {
    /// `name, value, name, value, ...` symbol ids of `labels`.
    fn intern(&mut self, symbols: &Symbols, labels: &[LabelRef<'_>]) -> Box<[SymbolId]> {
        let generation = symbols.generation();
        if generation != self.generation {
            self.prev.clear();
            self.generation = generation;
        }
        let mut ids = Vec::with_capacity(labels.len() * 2);
        for (i, l) in labels.iter().enumerate() {
            if i == self.prev.len() {
                let (n, v) = (symbols.intern(l.name), symbols.intern(l.value));
                self.prev.push((l.name.to_vec(), n, l.value.to_vec(), v));
            }
            let (pn, pni, pv, pvi) = &mut self.prev[i];
            if pn.as_slice() != l.name {
                *pni = symbols.intern(l.name);
                pn.clear();
                pn.extend_from_slice(l.name);
            }
            if pv.as_slice() != l.value {
                *pvi = symbols.intern(l.value);
                pv.clear();
                pv.extend_from_slice(l.value);
            }
            ids.push(*pni);
            ids.push(*pvi);
        }
        ids.into_boxed_slice()
    }
}

/// The head block of one TSDB.
pub(crate) struct Head {
    stripes: Box<[Stripe]>,
    pub(crate) symbols: Symbols,
    /// Held (shared) by whoever uses symbol ids: appenders for their whole life, readers of
    /// labels. Freeing unused symbols takes it exclusively.
    pub(crate) symbol_gate: parking_lot::RwLock<()>,
    /// Next series reference to hand out (refs start at 1; 0 means unknown).
    next_ref: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Lowest sample time applied since head truncation started (see
    /// [`Head::begin_truncation`]).
    low_water: AtomicI64,
    /// Lower bound for appends set by persisted blocks (none yet: `i64::MIN`).
    min_valid_floor: AtomicI64,
    num_series: AtomicU64,
    /// Series counted as created so far (never decreases): the index folds new series in
    /// only when this moved since its last fold.
    created: AtomicU64,
    pub(crate) chunk_range: i64,
    pub(crate) metrics: Arc<TsdbMetrics>,
    /// Where completed chunks go.
    pub(crate) disk: Arc<chunk_disk::ChunkDiskMapper>,
    /// Label pairs to series, built when first read (see [`index`]).
    index: parking_lot::RwLock<index::HeadIndex>,
}

#[inline]
fn stripe_of(hash: u128) -> usize {
    (hash as u64 as usize) & (STRIPES - 1)
}

impl Head {
    pub(crate) fn new(chunk_range: i64, metrics: Arc<TsdbMetrics>, disk: Arc<chunk_disk::ChunkDiskMapper>) -> Self {
        Head {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            symbols: Symbols::new(),
            symbol_gate: parking_lot::RwLock::new(()),
            next_ref: AtomicU64::new(1),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            low_water: AtomicI64::new(i64::MAX),
            min_valid_floor: AtomicI64::new(i64::MIN),
            num_series: AtomicU64::new(0),
            created: AtomicU64::new(0),
            chunk_range,
            metrics,
            disk,
            index: parking_lot::RwLock::new(index::HeadIndex::default()),
        }
    }

    /// Folds the series created since the last fold into the index (see [`Head::index`]).
    pub(crate) fn fold_index(&self) {
        drop(self.index());
    }

    /// The index with every series created so far in it. Readers share it: only when series
    /// were created since the last fold does one of them take it exclusively to fold them in.
    pub(crate) fn index(&self) -> parking_lot::RwLockReadGuard<'_, index::HeadIndex> {
        let ix = self.index.read();
        if ix.folded == self.created.load(Acquire) {
            return ix;
        }
        drop(ix);
        let mut ix = self.index.write();
        // Loaded before the stripes are visited: every series counted by then is in a stripe.
        let created = self.created.load(Acquire);
        if ix.folded != created {
            let before = ix.len();
            for stripe in self.stripes.iter() {
                let new = stripe.lock().take_new();
                for s in new {
                    ix.add(s);
                }
            }
            if ix.len() - before > before / 8 {
                // Enough new series that lists may have doubled.
                ix.trim();
            }
            ix.folded = created;
        }
        parking_lot::RwLockWriteGuard::downgrade(ix)
    }

    /// The series selected by `matchers` (Prometheus' semantics: a matcher that matches the
    /// empty string also selects series without the label), in no particular order.
    pub(crate) fn select(&self, matchers: &[crate::postings::Matcher]) -> Vec<Arc<MemSeries>> {
        let ix = self.index();
        let ids = self.select_ids(&ix, matchers);
        ids.into_iter().map(|id| ix.series(id)).filter(|s| !s.removed.load(Relaxed)).cloned().collect()
    }

    /// The ids in `ix` (from [`Head::index`]) of the series selected by `matchers`, sorted;
    /// some may be of series removed since the index was last cleaned. An id stays the same
    /// series until the head is next truncated.
    pub(crate) fn select_ids(&self, ix: &index::HeadIndex, matchers: &[crate::postings::Matcher]) -> Vec<u32> {
        let _symbols = self.symbol_gate.read();
        let lookup = index::Lookup { index: ix, symbols: &self.symbols };
        let Ok(ids) = crate::postings::select(&lookup, matchers);
        ids
    }

    /// Label names of the series in the head, sorted.
    pub(crate) fn label_names(&self) -> crate::labels::StringList {
        let ix = self.index();
        let _symbols = self.symbol_gate.read();
        let mut out: Vec<String> = ix.names().map(|n| self.symbols.get(n)).collect();
        out.sort_unstable();
        crate::labels::StringList::from_sorted(out.iter().map(String::as_str))
    }

    /// Values of label `name` in the head, sorted.
    pub(crate) fn label_values(&self, name: &str) -> crate::labels::StringList {
        let ix = self.index();
        let _symbols = self.symbol_gate.read();
        let Some(n) = self.symbols.lookup(name.as_bytes()) else { return Default::default() };
        ix.sorted_values(n, &self.symbols)
    }

    /// Takes the series removed by truncation out of the index and out of the stripes' lists
    /// of series not indexed yet (before their label strings are freed).
    pub(crate) fn unindex_removed(&self) {
        let mut ix = self.index.write();
        for stripe in self.stripes.iter() {
            stripe.lock().forget_removed();
        }
        ix.drop_removed();
    }

    /// Asks the CPU to start loading the stripe of `hash`: the first step of hiding a lookup's
    /// cache misses behind other work (replay creating a batch of series, an appender with a
    /// request's series).
    #[inline]
    pub(crate) fn prefetch_stripe(&self, hash: u128) {
        self.stripes[stripe_of(hash)].prefetch();
    }

    /// The second step, some work after [`Head::prefetch_stripe`]: asks the CPU to load the
    /// stripe slots where the lookup of `hash` starts.
    #[inline]
    pub(crate) fn prefetch_slot(&self, hash: u128) {
        self.stripes[stripe_of(hash)].prefetch_slot(hash);
    }

    /// Finds a series by its label hash.
    #[inline]
    pub(crate) fn get(&self, hash: u128) -> Option<Arc<MemSeries>> {
        self.stripes[stripe_of(hash)].lock().find(hash).cloned()
    }

    /// Finds or creates the series with canonical (sorted, validated) `labels`. With `with_ref`
    /// (WAL replay) a new series gets that reference. Returns the series and whether it was new.
    /// Labels are interned before the stripe is locked (through `ids`, which remembers the
    /// previous series' labels), so the stripe's critical section stays short.
    pub(crate) fn get_or_create(
        &self,
        hash: u128,
        labels: &[LabelRef<'_>],
        with_ref: Option<u64>,
        ids: &mut LabelIds,
    ) -> (Arc<MemSeries>, bool) {
        let (s, created) = self.find_or_insert(hash, labels, with_ref, ids);
        if created {
            self.count_created(1);
        }
        (s, created)
    }

    /// Adds `n` series created through [`Head::find_or_insert`] to the series count and metrics
    /// (replay counts once per batch: a shared counter bumped per series by several threads
    /// costs more than creating the series).
    pub(crate) fn count_created(&self, n: u64) {
        self.num_series.fetch_add(n, Relaxed);
        self.created.fetch_add(n, Release);
        self.metrics.head.series_created.add(n);
    }

    /// [`Head::get_or_create`] without counting a created series; the caller calls
    /// [`Head::count_created`].
    pub(crate) fn find_or_insert(
        &self,
        hash: u128,
        labels: &[LabelRef<'_>],
        with_ref: Option<u64>,
        ids: &mut LabelIds,
    ) -> (Arc<MemSeries>, bool) {
        let interned = ids.intern(&self.symbols, labels);
        let mut stripe = self.stripes[stripe_of(hash)].lock();
        if let Some(s) = stripe.find(hash) {
            return (s.clone(), false);
        }
        let series_ref = match with_ref {
            Some(r) => {
                self.next_ref.fetch_max(r + 1, Relaxed);
                r
            }
            None => self.next_ref.fetch_add(1, Relaxed),
        };
        let s = Arc::new(MemSeries::new(hash, series_ref, interned));
        stripe.insert(s.clone());
        (s, true)
    }

    /// Removes `s` from the index (the caller holds the WAL lock). Returns whether it was there.
    pub(crate) fn remove(&self, s: &Arc<MemSeries>) -> bool {
        let removed = self.stripes[stripe_of(s.hash)].lock().remove(s);
        if removed {
            self.num_series.fetch_sub(1, Relaxed);
        }
        removed
    }

    /// Frees the label strings no series in the index uses (after truncation removed series).
    /// Waits for running appenders and holds new ones back while it runs. Returns how many.
    pub(crate) fn gc_symbols(&self) -> usize {
        let gate = self.symbol_gate.write();
        let bound = self.symbols.id_bound() as usize;
        let mut live = vec![0u64; bound.div_ceil(64)];
        // Under the stripe locks, without cloning the series handles.
        for stripe in self.stripes.iter() {
            for s in stripe.lock().iter() {
                for &id in s.labels.iter() {
                    live[id as usize / 64] |= 1 << (id % 64);
                }
            }
        }
        let freed = self.symbols.retain(|id| live.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0));
        drop(gate);
        freed.len()
    }

    /// Raises the lowest time an append may have (a block now covers everything below).
    pub(crate) fn raise_floor(&self, t: i64) {
        self.min_valid_floor.fetch_max(t, Relaxed);
    }

    /// The lowest time an append may have because of persisted blocks.
    pub(crate) fn floor(&self) -> i64 {
        self.min_valid_floor.load(Relaxed)
    }

    /// Starts tracking the lowest time applied from now on (call under the WAL lock, before
    /// scanning the series for [`Head::end_truncation`]).
    pub(crate) fn begin_truncation(&self) {
        self.low_water.store(i64::MAX, Relaxed);
    }

    /// After truncation at `mint`, the head starts at its oldest remaining sample: the lowest
    /// chunk start the scan found (`scanned`) or a sample applied since `begin_truncation`,
    /// never below `mint` (as Prometheus' `gc` sets `minTime` to the actual lowest time, so
    /// empty windows are not cut one by one). Call under the WAL lock.
    pub(crate) fn end_truncation(&self, mint: i64, scanned: i64) {
        let lowest = scanned.min(self.low_water.load(Relaxed));
        self.min_time.store(if lowest == i64::MAX { mint } else { lowest.max(mint) }, Relaxed);
    }

    /// Number of series.
    pub(crate) fn num_series(&self) -> u64 {
        self.num_series.load(Relaxed)
    }

    /// Lowest sample timestamp (`i64::MAX` when empty).
    pub(crate) fn min_time(&self) -> i64 {
        self.min_time.load(Relaxed)
    }

    /// Highest sample timestamp (`i64::MIN` when empty).
    pub(crate) fn max_time(&self) -> i64 {
        self.max_time.load(Relaxed)
    }

    /// Sets both bounds to `t` if the head has never held a sample (Prometheus' `initTime`).
    pub(crate) fn init_time(&self, t: i64) {
        if self.min_time.compare_exchange(i64::MAX, t, Relaxed, Relaxed).is_ok() {
            let _ = self.max_time.compare_exchange(i64::MIN, t, Relaxed, Relaxed);
        }
    }

    /// Widens the head's time bounds.
    pub(crate) fn update_min_max(&self, mint: i64, maxt: i64) {
        if mint <= maxt {
            self.min_time.fetch_min(mint, Relaxed);
            self.low_water.fetch_min(mint, Relaxed);
            self.max_time.fetch_max(maxt, Relaxed);
        }
    }

    /// The oldest timestamp an in-order append may have: half a chunk range behind the newest
    /// sample, and never inside a persisted block.
    pub(crate) fn appendable_min_valid_time(&self) -> i64 {
        let max = self.max_time();
        let window = if max == i64::MIN { i64::MIN } else { max.saturating_sub(self.chunk_range / 2) };
        window.max(self.min_valid_floor.load(Relaxed))
    }

    /// Calls `f` for every series (stripe by stripe; no global lock).
    pub(crate) fn for_each_series(&self, mut f: impl FnMut(&Arc<MemSeries>)) {
        for stripe in self.stripes.iter() {
            let series: Vec<Arc<MemSeries>> = stripe.lock().iter().cloned().collect();
            for s in &series {
                f(s);
            }
        }
    }

    /// The labels of `s` (hold the symbol gate).
    pub(crate) fn labels_of(&self, s: &MemSeries) -> Labels {
        Labels(
            s.labels
                .chunks_exact(2)
                .map(|p| Label { name: self.symbols.get(p[0]), value: self.symbols.get(p[1]) })
                .collect(),
        )
    }
}
