//! WAL replay: checkpoint (if any), then segments, into the head.

use std::path::Path;
use std::sync::Arc;

use hashbrown::HashMap;

use super::{OpenReport, TsdbError};
use crate::head::series::{Verdict, verdict};
use crate::head::{Head, MemSeries};
use crate::labels::{LabelRef, SeriesHasher, validate_sorted};
use crate::wal::record::{self, kind};
use crate::wal::{self, Corruption, SegmentReader};

/// Series by WAL reference. References are dense from 1 in WALs written by ringest and by
/// Prometheus, so a vector indexed by reference is the common case; sparse ones go to a map.
#[derive(Default)]
struct Refs {
    dense: Vec<Option<Arc<MemSeries>>>,
    sparse: HashMap<u64, Arc<MemSeries>>,
}

impl Refs {
    /// References up to this many slots past the current length stay dense.
    const GROWTH: u64 = 1 << 20;

    fn insert(&mut self, r: u64, s: Arc<MemSeries>) {
        if r < self.dense.len() as u64 + Self::GROWTH {
            if r as usize >= self.dense.len() {
                self.dense.resize(r as usize + 1, None);
            }
            self.dense[r as usize] = Some(s);
        } else {
            self.sparse.insert(r, s);
        }
    }

    #[inline]
    fn get(&self, r: u64) -> Option<&Arc<MemSeries>> {
        match self.dense.get(r as usize) {
            Some(s) => s.as_ref(),
            None => self.sparse.get(&r),
        }
    }
}

struct Replayer<'h> {
    head: &'h Head,
    refs: Refs,
    hasher: SeriesHasher,
    samples: Vec<(u64, i64, f64)>,
    report: OpenReport,
    chunks_created: u64,
    mint: i64,
    maxt: i64,
}

impl Replayer<'_> {
    fn apply(&mut self, rec: &[u8]) -> Result<(), record::RecordError> {
        match rec.first() {
            Some(&kind::SERIES) => {
                let mut scratch = Vec::new();
                let head = self.head;
                let refs = &mut self.refs;
                let hasher = &mut self.hasher;
                let report = &mut self.report;
                record::decode_series(rec, &mut scratch, |r, labels: &[LabelRef<'_>]| {
                    report.series += 1;
                    let mut sorted = Vec::new();
                    let key = hasher.key(labels, &mut sorted);
                    let canonical = if key.sorted { labels } else { &sorted[..] };
                    if validate_sorted(canonical).is_err() {
                        tracing::warn!(series_ref = r, "skipping WAL series record with invalid labels");
                        return;
                    }
                    // A second record for the same labels (possibly another ref) maps to the
                    // series that already exists.
                    let (s, _) = head.get_or_create(key.hash, canonical, Some(r));
                    s.logged.store(true, std::sync::atomic::Ordering::Relaxed);
                    refs.insert(r, s);
                })
            }
            Some(&kind::SAMPLES) => {
                record::decode_samples(rec, &mut self.samples)?;
                for &(r, t, v) in &self.samples {
                    let Some(s) = self.refs.get(r) else {
                        self.report.unknown_ref_samples += 1;
                        self.head.metrics.head.replay_unknown_refs.inc();
                        continue;
                    };
                    let mut st = s.state.lock();
                    if verdict(st.last(), t, v.to_bits(), i64::MIN) == Verdict::Append {
                        if st.append(t, v, self.head.chunk_range) {
                            self.chunks_created += 1;
                        }
                        self.report.samples += 1;
                        self.mint = self.mint.min(t);
                        self.maxt = self.maxt.max(t);
                    } else {
                        self.report.skipped_samples += 1;
                    }
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

    /// Replays one segment; returns the corruption that stopped it, if any.
    fn segment(&mut self, index: u32, data: &[u8]) -> Option<Corruption> {
        let mut r = SegmentReader::new(index, data);
        loop {
            let (offset, res) = match r.next() {
                None => return None,
                Some(Err(c)) => return Some(c),
                Some(Ok(rec)) => (rec.offset, self.apply(rec.data)),
            };
            if let Err(e) = res {
                return Some(Corruption { segment: index, offset, reason: e.to_string() });
            }
        }
    }
}

/// Replays `wal_dir` into `head`. A corruption in a WAL segment stops the replay and is
/// returned in the report for the caller to repair; one in a checkpoint is an error.
pub(super) fn replay(head: &Head, wal_dir: &Path) -> Result<OpenReport, TsdbError> {
    let mut rp = Replayer {
        head,
        refs: Refs::default(),
        hasher: SeriesHasher::default(),
        samples: Vec::new(),
        report: OpenReport::default(),
        chunks_created: 0,
        mint: i64::MAX,
        maxt: i64::MIN,
    };
    let mut first_segment = 0;
    if let Some((n, cp_dir)) = wal::last_checkpoint(wal_dir)? {
        for i in wal::list_segments(&cp_dir)? {
            let p = wal::segment_path(&cp_dir, i);
            let data = std::fs::read(&p).map_err(|e| TsdbError::Io { op: "read", path: p.clone(), source: e })?;
            if let Some(c) = rp.segment(i, &data) {
                return Err(TsdbError::Replay(format!("checkpoint {}: {c}", cp_dir.display())));
            }
        }
        first_segment = n + 1;
    }
    let segments: Vec<u32> = wal::list_segments(wal_dir)?.into_iter().filter(|&i| i >= first_segment).collect();
    let max_segment = segments.last().copied().unwrap_or(0);
    for i in segments {
        let p = wal::segment_path(wal_dir, i);
        let start = std::time::Instant::now();
        let data = std::fs::read(&p).map_err(|e| TsdbError::Io { op: "read", path: p.clone(), source: e })?;
        rp.report.segments += 1;
        let corruption = rp.segment(i, &data);
        tracing::info!(segment = i, maxSegment = max_segment, duration = ?start.elapsed(), "WAL segment loaded");
        if let Some(c) = corruption {
            rp.report.repaired = Some(c);
            break;
        }
    }
    head.update_min_max(rp.mint, rp.maxt);
    head.metrics.head.chunks_created.add(rp.chunks_created);
    head.metrics.head.chunks.add(rp.chunks_created as i64);
    Ok(rp.report)
}
