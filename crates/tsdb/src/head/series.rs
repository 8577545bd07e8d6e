//! One in-memory series: its open XOR chunk, its completed chunks, and Prometheus' append
//! rules and chunk-cutting rules (`memSeries.appendable` / `appendPreprocessor`).
//!
//! Cutting: a chunk never spans a chunk-range (2h) boundary; at 30 samples the end of the chunk
//! is re-estimated so the rest of the range splits into chunks of about 120 samples; hard cuts at
//! 240 samples and when the chunk's bytes exceed 1024 − 19.

use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;

use super::chunk_disk::ChunkDiskMapper;
use crate::chunkenc::{XorAppender, XorIter};
use crate::symbols::SymbolId;

/// Target samples per chunk (Prometheus' default `samplesPerChunk`).
pub(crate) const SAMPLES_PER_CHUNK: u16 = 120;
/// Hard byte limit of an XOR chunk, minus the largest possible sample (19 bytes).
const MAX_BYTES_PER_XOR_CHUNK: usize = 1024 - 19;

/// A series in the head.
///
/// `repr(C)` with the fields every append touches first: behind the `Arc` counters come the
/// hash (compared on lookup), the WAL reference, the lock and the open chunk's appender state
/// (the latest sample's time and value), so a lookup and its validation cost one cache line,
/// not three. The `Arc` allocation takes 192 bytes (three cache lines, aligned to one), and
/// everything an append reads or writes lies in the first two.
#[repr(C)]
pub(crate) struct MemSeries {
    /// XXH3-128 of the canonical labels.
    pub(crate) hash: u128,
    /// The series reference used in WAL records.
    pub(crate) series_ref: u64,
    pub(crate) state: Mutex<SeriesState>,
    /// Whether a WAL series record for this series has been written.
    pub(crate) logged: AtomicBool,
    /// Set (under the WAL lock) when head truncation removed the series from the index.
    pub(crate) removed: AtomicBool,
    /// Interned `name, value, name, value, ...`, sorted by name.
    pub(crate) labels: Box<[SymbolId]>,
}

impl MemSeries {
    pub(crate) fn new(hash: u128, series_ref: u64, labels: Box<[SymbolId]>) -> Self {
        MemSeries {
            hash,
            state: Mutex::new(SeriesState::default()),
            series_ref,
            logged: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            labels,
        }
    }
}

/// The chunk currently being appended to (appender state first: see [`MemSeries`]).
#[repr(C)]
pub(crate) struct HeadChunk {
    pub(crate) app: XorAppender,
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) bytes: Vec<u8>,
}

/// A completed chunk: its time range and where it is in the head chunk files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClosedChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) chunk_ref: u64,
}

/// What appending needs besides the series state: the chunk range and where completed chunks
/// go.
pub(crate) struct AppendCtx<'a> {
    pub(crate) chunk_range: i64,
    pub(crate) disk: &'a ChunkDiskMapper,
    pub(crate) series_ref: u64,
}

/// Mutable state of a series (open chunk first: see [`MemSeries`]).
#[repr(C)]
#[derive(Default)]
pub(crate) struct SeriesState {
    pub(crate) head: Option<HeadChunk>,
    pub(crate) next_at: i64,
    pub(crate) closed: Vec<ClosedChunk>,
}

/// The samples of XOR chunk `bytes` whose time `keep` accepts, as a new chunk with its first
/// and last time; `None` if it accepts none.
fn reencoded(bytes: &[u8], keep: impl Fn(i64) -> bool) -> Option<(i64, i64, Vec<u8>)> {
    let mut app = XorAppender::new();
    let mut buf = vec![0u8, 0];
    let (mut first, mut last) = (None, 0);
    for (t, v) in XorIter::new(bytes).filter(|&(t, _)| keep(t)) {
        app.append(&mut buf, t, v);
        first.get_or_insert(t);
        last = t;
    }
    first.map(|first| (first, last, buf))
}

/// The verdict on one sample (`memSeries.appendable` with out-of-order ingestion disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than the latest sample: append.
    Append,
    /// Same timestamp and bit-identical value as the latest sample: accepted, nothing to do.
    Duplicate,
    /// Same timestamp as the latest sample with another value.
    DuplicateOtherValue,
    /// Older than the latest sample.
    OutOfOrder,
    /// Older than the oldest appendable time of the head.
    OutOfBounds,
}

/// Decides whether `(t, vbits)` may follow `last` given the head's oldest appendable time.
#[inline]
pub(crate) fn verdict(last: Option<(i64, u64)>, t: i64, vbits: u64, min_valid: i64) -> Verdict {
    if t < min_valid {
        return Verdict::OutOfBounds;
    }
    match last {
        None => Verdict::Append,
        Some((lt, _)) if t > lt => Verdict::Append,
        Some((lt, lv)) if t == lt => {
            if lv == vbits {
                Verdict::Duplicate
            } else {
                Verdict::DuplicateOtherValue
            }
        }
        Some(_) => Verdict::OutOfOrder,
    }
}

/// End of the chunk-range window containing `t` (Go integer division, as Prometheus).
#[inline]
fn range_for_timestamp(t: i64, width: i64) -> i64 {
    (t / width) * width + width
}

/// Prometheus' `computeChunkEndTime`.
fn compute_chunk_end_time(start: i64, cur: i64, max_t: i64, ratio_to_full: f64) -> i64 {
    let n = (max_t - start) as f64 / ((cur - start + 1) as f64 * ratio_to_full);
    if n <= 1.0 {
        return max_t;
    }
    (start as f64 + (max_t - start) as f64 / n.floor()) as i64
}

impl SeriesState {
    /// The latest sample's timestamp and value bits. Without an open chunk (all of the
    /// series' samples are in completed chunks, e.g. right after a restart) the last completed
    /// chunk is read.
    #[inline]
    pub(crate) fn last(&self, disk: &ChunkDiskMapper) -> Option<(i64, u64)> {
        match &self.head {
            Some(c) => Some((c.app.last_t(), c.app.last_v_bits())),
            None => self.last_closed(disk),
        }
    }

    #[cold]
    fn last_closed(&self, disk: &ChunkDiskMapper) -> Option<(i64, u64)> {
        let c = self.closed.last()?;
        let bytes = disk.read(c.chunk_ref).ok()?;
        XorIter::new(&bytes).last().map(|(t, v)| (t, v.to_bits()))
    }

    /// End of the last completed chunk when there is no open chunk (replay skips the WAL's
    /// samples up to there: the chunk files hold them).
    #[inline]
    pub(crate) fn closed_only_max_t(&self) -> Option<i64> {
        if self.head.is_some() { None } else { self.closed.last().map(|c| c.max_t) }
    }

    fn cut(&mut self, t: i64, ctx: &AppendCtx<'_>) {
        if let Some(old) = self.head.take() {
            let chunk_ref = ctx.disk.write(ctx.series_ref, old.min_t, old.max_t, &old.bytes);
            self.closed.push(ClosedChunk { min_t: old.min_t, max_t: old.max_t, chunk_ref });
        }
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(&[0, 0]);
        self.head = Some(HeadChunk { app: XorAppender::new(), min_t: t, max_t: i64::MIN, bytes });
        self.next_at = range_for_timestamp(t, ctx.chunk_range);
    }

    /// Appends a sample that [`verdict`] accepted as [`Verdict::Append`]. Returns whether a new
    /// chunk was started.
    pub(crate) fn append(&mut self, t: i64, v: f64, ctx: &AppendCtx<'_>) -> bool {
        let mut created = false;
        match &self.head {
            None => {
                self.cut(t, ctx);
                created = true;
            }
            Some(c) if c.bytes.len() > MAX_BYTES_PER_XOR_CHUNK => {
                self.cut(t, ctx);
                created = true;
            }
            Some(_) => {}
        }
        let (min_t, max_t, n) = {
            let c = self.head.as_ref().expect("head chunk exists");
            (c.min_t, c.max_t, c.app.num_samples())
        };
        if n == SAMPLES_PER_CHUNK / 4 {
            self.next_at = compute_chunk_end_time(min_t, max_t, self.next_at, 4.0);
        }
        if n > 0 && (t >= self.next_at || n >= SAMPLES_PER_CHUNK * 2) {
            self.cut(t, ctx);
            created = true;
        }
        let c = self.head.as_mut().expect("head chunk exists");
        c.app.append(&mut c.bytes, t, v);
        c.max_t = t;
        created
    }

    /// Every sample in time order.
    #[cfg(test)]
    pub(crate) fn samples(&self, disk: &ChunkDiskMapper) -> Vec<(i64, f64)> {
        self.samples_in(i64::MIN, i64::MAX, disk)
    }

    /// The samples of the open chunk, in time order (none without one): what a retry of a
    /// recent write sends again.
    pub(crate) fn open_samples(&self) -> Vec<(i64, f64)> {
        self.head.as_ref().map(|c| XorIter::new(&c.bytes).collect()).unwrap_or_default()
    }

    /// The samples with `mint <= t <= maxt`, in time order; chunks outside the range are
    /// skipped without being read.
    pub(crate) fn samples_in(&self, mint: i64, maxt: i64, disk: &ChunkDiskMapper) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for (min_t, max_t, bytes) in self.chunk_bytes(disk) {
            if max_t < mint || min_t > maxt {
                continue;
            }
            if let Some(bytes) = bytes {
                out.extend(XorIter::new(&bytes).filter(|&(t, _)| t >= mint && t <= maxt));
            }
        }
        out
    }

    /// Chunks as `(min_t, max_t, bytes)` in time order, read lazily (`None`: unreadable).
    fn chunk_bytes<'a>(&'a self, disk: &'a ChunkDiskMapper) -> impl Iterator<Item = (i64, i64, Option<Vec<u8>>)> + 'a {
        let closed = self.closed.iter().map(move |c| {
            let b = disk.read(c.chunk_ref);
            if let Err(e) = &b {
                tracing::error!(err = %e, "reading a head chunk failed");
            }
            (c.min_t, c.max_t, b.ok())
        });
        let open = self.head.as_ref().map(|c| (c.min_t, c.max_t, Some(c.bytes.clone())));
        closed.chain(open)
    }

    /// Chunks as `(min_t, max_t, bytes)` in time order.
    #[cfg(test)]
    pub(crate) fn chunks(&self, disk: &ChunkDiskMapper) -> Vec<(i64, i64, Vec<u8>)> {
        self.chunk_bytes(disk).map(|(a, b, c)| (a, b, c.unwrap())).collect()
    }

    /// Start of the series' oldest chunk (`None`: no chunk).
    pub(crate) fn min_time(&self) -> Option<i64> {
        self.closed.first().map(|c| c.min_t).or(self.head.as_ref().map(|c| c.min_t))
    }

    /// Whether the series holds no chunk at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none() && self.closed.is_empty()
    }

    fn ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let open = self.head.as_ref().map(|c| (c.min_t, c.max_t));
        self.closed.iter().map(|c| (c.min_t, c.max_t)).chain(open)
    }

    /// Whether some chunk overlaps `[mint, maxt]` (and so, chunks being non-empty, a sample
    /// may lie there; [`SeriesState::chunks_in`] decides).
    pub(crate) fn has_data_in(&self, mint: i64, maxt: i64) -> bool {
        self.ranges().any(|(mn, mx)| mx >= mint && mn <= maxt)
    }

    /// The chunks with samples in `[mint, maxt]` as `(min_t, max_t, bytes)`: chunks inside the
    /// range as they are; a chunk reaching outside it re-encoded with only its samples inside.
    pub(crate) fn chunks_in(
        &self,
        mint: i64,
        maxt: i64,
        disk: &ChunkDiskMapper,
        out: &mut Vec<(i64, i64, Vec<u8>)>,
    ) -> Result<(), super::chunk_disk::ChunkDiskError> {
        for (i, (mn, mx)) in self.ranges().enumerate() {
            if mx < mint || mn > maxt {
                continue;
            }
            let bytes = match self.closed.get(i) {
                Some(c) => disk.read(c.chunk_ref)?,
                None => self.head.as_ref().expect("open chunk").bytes.clone(),
            };
            if mn >= mint && mx <= maxt {
                out.push((mn, mx, bytes));
            } else if let Some(c) = reencoded(&bytes, |t| t >= mint && t <= maxt) {
                out.push(c);
            }
        }
        Ok(())
    }

    /// The chunks overlapping `[mint, maxt]`, whole as stored (the open one copied), except
    /// that samples before `floor` are left out: a chunk reaching below it is re-encoded with
    /// only its samples from `floor` on, a chunk entirely below it is skipped.
    pub(crate) fn raw_chunks(
        &self,
        mint: i64,
        maxt: i64,
        floor: i64,
        disk: &ChunkDiskMapper,
        out: &mut Vec<crate::labels::RawChunk>,
    ) -> Result<(), super::chunk_disk::ChunkDiskError> {
        for (i, (mn, mx)) in self.ranges().enumerate() {
            if mx < mint || mn > maxt || mx < floor {
                continue;
            }
            let bytes = match self.closed.get(i) {
                Some(c) => disk.read(c.chunk_ref)?,
                None => self.head.as_ref().expect("open chunk").bytes.clone(),
            };
            let chunk = if mn >= floor { Some((mn, mx, bytes)) } else { reencoded(&bytes, |t| t >= floor) };
            if let Some((min_time, max_time, data)) = chunk {
                out.push(crate::labels::RawChunk { min_time, max_time, data });
            }
        }
        Ok(())
    }

    /// Drops the chunks that end before `mint` (the open chunk too). Returns how many.
    pub(crate) fn truncate_before(&mut self, mint: i64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|c| c.max_t >= mint);
        let mut n = before - self.closed.len();
        if self.head.as_ref().is_some_and(|c| c.max_t < mint) {
            self.head = None;
            n += 1;
        }
        if self.closed.capacity() > self.closed.len() * 2 {
            self.closed.shrink_to_fit();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::xor_num_samples;

    const RANGE: i64 = 2 * 3600 * 1000;

    /// What replay prefetches (two cache lines from the start of the `Arc` allocation, which
    /// mimalloc's 192-byte size class aligns to a line) holds everything an append touches.
    #[test]
    fn an_append_touches_the_first_two_cache_lines_of_a_series() {
        let arc_counters = 2 * std::mem::size_of::<usize>();
        let size = arc_counters + std::mem::size_of::<MemSeries>();
        assert!(size > 160 && size <= 192, "the Arc allocation of a series takes {size} bytes");
        let s = MemSeries::new(1, 2, Box::new([]));
        let base = std::ptr::from_ref(&s) as usize;
        let state = s.state.data_ptr() as usize - base;
        let ends = [
            std::mem::offset_of!(MemSeries, hash) + 16,
            std::mem::offset_of!(MemSeries, series_ref) + 8,
            state + std::mem::offset_of!(SeriesState, head) + std::mem::size_of::<Option<HeadChunk>>(),
            state + std::mem::offset_of!(SeriesState, next_at) + 8,
        ];
        for end in ends {
            assert!(arc_counters + end <= 128, "a field an append uses ends at byte {}", arc_counters + end);
        }
    }

    fn ctx(disk: &ChunkDiskMapper) -> AppendCtx<'_> {
        AppendCtx { chunk_range: RANGE, disk, series_ref: 1 }
    }

    fn chunk_sizes(samples: &[(i64, f64)]) -> Vec<u16> {
        let disk = ChunkDiskMapper::in_memory();
        let mut s = SeriesState::default();
        for &(t, v) in samples {
            assert_eq!(verdict(s.last(&disk), t, v.to_bits(), i64::MIN), Verdict::Append);
            s.append(t, v, &ctx(&disk));
        }
        s.chunks(&disk).iter().map(|(_, _, b)| xor_num_samples(b)).collect()
    }

    /// Verified on Prometheus 2.42: 241 samples at 15 s produced chunks of 45 then 120 samples
    /// (spec prometheus-formats §3.3). The first sample sits in the middle of a 2 h window.
    #[test]
    fn cuts_like_prometheus() {
        // Start 1h 3m45s before the end of a window: 45 samples fit before the boundary.
        let window_end = 1_700_006_400_000i64; // a multiple of 2h
        let start = window_end - 45 * 15_000;
        let samples: Vec<(i64, f64)> = (0..241).map(|i| (start + i * 15_000, i as f64)).collect();
        let sizes = chunk_sizes(&samples);
        assert_eq!(sizes[0], 45);
        assert_eq!(sizes[1], 120);
        assert_eq!(sizes.iter().map(|&n| n as usize).sum::<usize>(), 241);
    }

    #[test]
    fn chunks_never_cross_the_range_boundary() {
        let samples: Vec<(i64, f64)> = (0..2000).map(|i| (i * 17_000 + 5, (i % 7) as f64)).collect();
        let disk = ChunkDiskMapper::in_memory();
        let mut s = SeriesState::default();
        for &(t, v) in &samples {
            s.append(t, v, &ctx(&disk));
        }
        for (min_t, max_t, _) in s.chunks(&disk) {
            assert_eq!(min_t / RANGE, max_t / RANGE, "chunk {min_t}..{max_t} crosses a boundary");
        }
        // Without an open chunk the latest sample comes from the last completed chunk.
        let mut closed = SeriesState { head: None, next_at: 0, closed: s.closed.clone() };
        let last_closed = closed.closed.last().unwrap().max_t;
        assert_eq!(closed.last(&disk).map(|(t, _)| t), Some(last_closed));
        closed.closed.clear();
        assert_eq!(closed.last(&disk), None);
        let got: Vec<(i64, f64)> = s.samples(&disk);
        assert_eq!(got, samples);
    }

    #[test]
    fn hard_cut_at_240_and_by_size() {
        // 1 ms apart: the estimate keeps the whole range, so the 240 cap applies.
        let samples: Vec<(i64, f64)> = (0..500).map(|i| (i, 1.0)).collect();
        let sizes = chunk_sizes(&samples);
        assert!(sizes.iter().all(|&n| n <= 240), "{sizes:?}");
        // Random values grow a chunk fast: the byte limit cuts it.
        let mut x = 1u64;
        let samples: Vec<(i64, f64)> = (0..400)
            .map(|i| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (i * 1000, f64::from_bits(x >> 2))
            })
            .collect();
        let disk = ChunkDiskMapper::in_memory();
        let mut s = SeriesState::default();
        for &(t, v) in &samples {
            s.append(t, v, &ctx(&disk));
        }
        for (_, _, b) in s.chunks(&disk) {
            assert!(b.len() <= 1024, "chunk of {} bytes", b.len());
        }
        assert!(s.closed.len() >= 3);
    }

    #[test]
    fn verdicts() {
        let nan = f64::NAN.to_bits();
        let stale = 0x7ff0_0000_0000_0002u64;
        assert_eq!(verdict(None, 5, 0, 0), Verdict::Append);
        assert_eq!(verdict(None, 5, 0, 6), Verdict::OutOfBounds);
        assert_eq!(verdict(Some((5, nan)), 5, nan, 0), Verdict::Duplicate);
        assert_eq!(verdict(Some((5, nan)), 5, stale, 0), Verdict::DuplicateOtherValue);
        assert_eq!(verdict(Some((5, 0)), 4, 0, 0), Verdict::OutOfOrder);
        assert_eq!(verdict(Some((5, 0)), 4, 0, 5), Verdict::OutOfBounds);
        assert_eq!(verdict(Some((5, 0)), 6, 0, 0), Verdict::Append);
    }
}
