//! Head compaction: cutting the head into 2h blocks, truncating memory, checkpointing the WAL,
//! and local retention.
//!
//! Cutting `[mint, maxt)`:
//! 1. under the WAL lock, the head's append floor is raised to `maxt`; a commit re-checks the
//!    floor under that lock, so from here on nothing can be added below `maxt`;
//! 2. the block is written from the head without stopping appends (one series lock at a time,
//!    chunk bytes streamed straight from the head into the chunk file);
//! 3. memory is truncated: chunks ending before `maxt` are dropped, and series left without
//!    chunks are removed (under the WAL lock, so a commit never applies to a removed series; a
//!    commit that finds one of its series removed recreates it);
//! 4. the WAL is checkpointed (Prometheus' `truncateWAL`): the older two thirds of the segments
//!    are folded into `checkpoint.N` with the live series and the samples at or after `maxt`.
//!
//! A crash between any two steps loses nothing: the block is complete or absent (temporary
//! directories are removed on open), and until the checkpoint is renamed into place the WAL
//! still holds everything. On replay, samples below the newest block's end are skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hashbrown::HashSet;

use super::{Tsdb, TsdbError, io};
use crate::block::{self, Block, BlockMeta, BlockWriter, LabelRefs};
use crate::fsutil::MappedFile;
use crate::head::MemSeries;
use crate::labels::LabelRef;
use crate::wal::record::{self, kind};
use crate::wal::{self, SegmentReader, WalWriter};

/// End of the aligned window of width `range` containing `t` (Go integer division).
pub(crate) fn window_end(t: i64, range: i64) -> i64 {
    (t / range) * range + range
}

/// A series' labels as block symbol references: comparing these compares the label sets the
/// way Prometheus' `labels.Compare` does (symbols are numbered in byte order).
fn rank_key<'a>(s: &'a MemSeries, rank: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    s.labels.iter().map(move |&id| rank[id as usize])
}

impl Tsdb {
    /// Whether a compaction, flush or retention pass is running: appends may then wait for
    /// it (head truncation holds the WAL lock while it removes series, and label strings are
    /// freed with appenders held back).
    pub fn maintaining(&self) -> bool {
        self.compaction.is_locked()
    }

    /// Whether the head spans more than 1.5 chunk ranges (Prometheus' `compactable`).
    pub fn compactable(&self) -> bool {
        let (mn, mx) = (self.head.min_time(), self.head.max_time());
        mn != i64::MAX && mx != i64::MIN && mx - mn > self.head.chunk_range / 2 * 3
    }

    /// Cuts the oldest aligned range of the head into a block while the head is compactable,
    /// then truncates memory and the WAL after each block. Returns the new blocks.
    pub fn compact(&self) -> Result<Vec<BlockMeta>, TsdbError> {
        let _g = self.compaction.lock();
        let mut out = Vec::new();
        while self.compactable() {
            let mint = self.head.min_time();
            let maxt = window_end(mint, self.head.chunk_range);
            let meta = self.cut(mint, maxt, false)?;
            out.extend(meta);
        }
        Ok(out)
    }

    /// Cuts the whole head into blocks, one per aligned window (the final flush before a node
    /// goes away), and checkpoints the WAL completely. Appends must have stopped.
    pub fn flush_head(&self) -> Result<Vec<BlockMeta>, TsdbError> {
        let _g = self.compaction.lock();
        let mut out = Vec::new();
        loop {
            let (mn, mx) = (self.head.min_time(), self.head.max_time());
            if mn == i64::MAX || mx == i64::MIN || mn > mx {
                break;
            }
            let maxt = window_end(mn, self.head.chunk_range).min(mx + 1);
            out.extend(self.cut(mn, maxt, maxt == mx + 1)?);
        }
        Ok(out)
    }

    /// One block `[mint, maxt)`, then truncation and checkpoint (`all`: fold every segment).
    fn cut(&self, mint: i64, maxt: i64, all: bool) -> Result<Option<BlockMeta>, TsdbError> {
        let m = &self.metrics;
        let start = Instant::now();
        {
            let _wal = self.wal.lock();
            self.head.raise_floor(maxt);
        }
        let written = self.write_block(mint, maxt);
        let meta = match written {
            Ok(meta) => meta,
            Err(e) => {
                m.compactions_failed.inc();
                return Err(e);
            }
        };
        m.compactions.inc();
        m.compaction_duration.observe(start.elapsed().as_secs_f64());
        if let Some(meta) = &meta {
            tracing::info!(
                mint = meta.min_time,
                maxt = meta.max_time,
                ulid = %meta.ulid,
                duration = ?start.elapsed(),
                "write block"
            );
            let b = Block::open(&self.dir.join(&meta.ulid))?;
            self.blocks.write().push(Arc::new(b));
            m.blocks_loaded.set(self.blocks.read().len() as i64);
        }
        crate::failpoint::hit("compact.before_truncate");
        let t = Instant::now();
        {
            let _readers = self.read_gate.write();
            self.truncate_head(maxt);
        }
        self.metrics.head_gc_duration.observe(t.elapsed().as_secs_f64());
        tracing::info!(duration = ?t.elapsed(), "Head GC completed");
        if let Err(e) = self.truncate_wal(maxt, all) {
            self.metrics.wal.truncations_failed.inc();
            self.metrics.checkpoint_creations_failed.inc();
            return Err(e);
        }
        Ok(meta)
    }

    /// Writes the block `[mint, maxt)` from the head (no block if it holds no samples).
    pub(super) fn write_block(&self, mint: i64, maxt: i64) -> Result<Option<BlockMeta>, TsdbError> {
        let head = &self.head;
        let mut series: Vec<Arc<MemSeries>> = Vec::new();
        head.for_each_series(|s| {
            if s.state.lock().has_data_in(mint, maxt - 1) {
                series.push(s.clone());
            }
        });
        if series.is_empty() {
            return Ok(None);
        }
        // Symbols used by these series, sorted by bytes; rank = symbol reference in the block.
        let mut used: HashSet<u32> = HashSet::new();
        for s in &series {
            used.extend(s.labels.iter().copied());
        }
        // (Symbols are freed only by this thread, after truncation, so the ids stay valid.)
        let mut syms: Vec<(Box<[u8]>, u32)> =
            used.into_iter().map(|id| (head.symbols.bytes(id).into_boxed_slice(), id)).collect();
        syms.push((Box::default(), u32::MAX));
        syms.sort_unstable();
        syms.dedup_by(|a, b| a.0 == b.0);
        let max_id = syms.iter().filter(|s| s.1 != u32::MAX).map(|s| s.1).max().unwrap_or(0);
        let mut rank = vec![u32::MAX; max_id as usize + 1];
        for (i, (_, id)) in syms.iter().enumerate() {
            if *id != u32::MAX {
                rank[*id as usize] = i as u32;
            }
        }
        let mut w = BlockWriter::create(&self.dir, mint, maxt, syms.iter().map(|s| &s.0[..]))?;
        drop(syms);
        series.sort_unstable_by(|a, b| rank_key(a, &rank).cmp(rank_key(b, &rank)));
        let mut refs: Vec<LabelRefs> = Vec::new();
        let fill = |s: &MemSeries, refs: &mut Vec<LabelRefs>| {
            refs.clear();
            refs.extend(s.labels.chunks_exact(2).map(|p| (rank[p[0] as usize], rank[p[1] as usize])));
        };
        for s in &series {
            fill(s, &mut refs);
            w.count_series(&refs);
        }
        crate::failpoint::hit("block.before_chunks");
        let res = (|| {
            for s in &series {
                fill(s, &mut refs);
                let mut chunks = Vec::new();
                s.state.lock().chunks_in(mint, maxt - 1, &head.disk, &mut chunks)?;
                let slices: Vec<(i64, i64, &[u8])> = chunks.iter().map(|(a, b, c)| (*a, *b, &c[..])).collect();
                if !slices.is_empty() {
                    w.add_series(&refs, &slices)?;
                }
            }
            Ok::<_, TsdbError>(())
        })();
        if let Err(e) = res {
            w.abort();
            return Err(e);
        }
        Ok(w.finish()?)
    }

    /// Drops head data below `mint` and removes series left without chunks.
    fn truncate_head(&self, mint: i64) {
        let head = &self.head;
        let m = &self.metrics.head;
        let mut empty: Vec<Arc<MemSeries>> = Vec::new();
        let mut removed_chunks = 0u64;
        let mut lowest = i64::MAX;
        {
            let _wal = self.wal.lock();
            head.begin_truncation();
        }
        head.for_each_series(|s| {
            let mut st = s.state.lock();
            removed_chunks += st.truncate_before(mint) as u64;
            match st.min_time() {
                Some(t) => lowest = lowest.min(t),
                None => empty.push(s.clone()),
            }
        });
        match head.disk.truncate_before(mint) {
            Ok(n) if n > 0 => tracing::debug!(files = n, "deleted head chunk files"),
            Ok(_) => {}
            Err(e) => tracing::error!(err = %e, "deleting head chunk files failed"),
        }
        m.chunks_removed.add(removed_chunks);
        m.chunks.add(-(removed_chunks as i64));
        // Removal under the WAL lock: commits apply under it, so a series seen empty here
        // cannot receive a sample before it is gone, and a later commit sees the flag.
        let removed = {
            let _wal = self.wal.lock();
            head.end_truncation(mint, lowest);
            let mut n = 0u64;
            for s in &empty {
                let st = s.state.lock();
                if st.is_empty() && head.remove(s) {
                    s.removed.store(true, Ordering::Release);
                    n += 1;
                }
            }
            n
        };
        m.series_removed.add(removed);
        self.metrics.head_truncations.inc();
        if removed > 0 {
            head.unindex_removed();
            let t = Instant::now();
            let freed = head.gc_symbols();
            tracing::debug!(freed, duration = ?t.elapsed(), "freed label strings of removed series");
        }
    }

    /// Prometheus' `truncateWAL`: start a new segment, fold the older two thirds of the
    /// finished segments (all of them with `all`) into `checkpoint.N`, delete what it replaces.
    fn truncate_wal(&self, mint: i64, all: bool) -> Result<(), TsdbError> {
        let wal_dir = self.dir.join("wal");
        let (first, last) = {
            let mut wal = self.wal.lock();
            let Some(w) = wal.as_mut() else { return Ok(()) };
            w.next_segment()?;
            let segs = wal::list_segments(&wal_dir)?;
            let (Some(&first), Some(&cur)) = (segs.first(), segs.last()) else { return Ok(()) };
            (first, cur - 1)
        };
        if last < first {
            return Ok(());
        }
        let n = if all { last } else { first + (last - first) * 2 / 3 };
        if !all && n <= first {
            return Ok(());
        }
        let start = Instant::now();
        let live: HashSet<u64> = {
            let mut live = HashSet::with_capacity(self.head.num_series() as usize);
            self.head.for_each_series(|s| {
                live.insert(s.series_ref);
            });
            live
        };
        let stats = write_checkpoint(&wal_dir, first, n, mint, &live, self.opts.wal)?;
        self.metrics.checkpoint_creations.inc();
        crate::failpoint::hit("checkpoint.before_delete_segments");
        for i in first..=n {
            let p = wal::segment_path(&wal_dir, i);
            std::fs::remove_file(&p).map_err(io("remove", &p))?;
        }
        self.metrics.wal.truncations.inc();
        for (i, dir) in wal::list_checkpoints(&wal_dir)? {
            if i < n {
                std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
                self.metrics.checkpoint_deletions.inc();
            }
        }
        let _ = crate::fsutil::fsync_dir(&wal_dir);
        tracing::info!(
            first = first,
            last = n,
            duration = ?start.elapsed(),
            series = stats.0,
            samples = stats.1,
            "WAL checkpoint complete"
        );
        Ok(())
    }

    /// Deletes blocks beyond the retention (their end older than the newest block's end minus
    /// the retention) for which `may_delete` agrees. Returns the deleted blocks.
    pub fn apply_retention(&self, may_delete: &dyn Fn(&BlockMeta) -> bool) -> Result<Vec<BlockMeta>, TsdbError> {
        let retention = self.opts.retention_ms;
        if retention <= 0 {
            return Ok(Vec::new());
        }
        let _g = self.compaction.lock();
        let doomed: Vec<Arc<Block>> = {
            let blocks = self.blocks.read();
            let Some(newest) = blocks.iter().map(|b| b.meta().max_time).max() else { return Ok(Vec::new()) };
            blocks.iter().filter(|b| newest - b.meta().max_time >= retention && may_delete(b.meta())).cloned().collect()
        };
        let mut out = Vec::new();
        for b in doomed {
            self.blocks.write().retain(|x| !Arc::ptr_eq(x, &b));
            block::delete_block(b.dir())?;
            tracing::info!(block = %b.meta().ulid, "Deleting obsolete block");
            self.metrics.time_retentions.inc();
            out.push(b.meta().clone());
        }
        self.metrics.blocks_loaded.set(self.blocks.read().len() as i64);
        Ok(out)
    }

    /// Bytes of the blocks on disk.
    pub fn blocks_bytes(&self) -> u64 {
        self.blocks.read().iter().map(|b| crate::fsutil::dir_size(b.dir())).sum()
    }

    /// The lowest timestamp stored: the oldest block's start, else the head's (`i64::MAX` when
    /// empty, as Prometheus reports an empty database).
    pub fn lowest_timestamp(&self) -> i64 {
        let blocks = self.blocks.read().iter().map(|b| b.meta().min_time).min().unwrap_or(i64::MAX);
        blocks.min(self.head.min_time())
    }

    /// The loaded blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        let mut v = self.blocks.read().clone();
        v.sort_by_key(|b| b.meta().min_time);
        v
    }
}

/// Writes `checkpoint.N` from the previous checkpoint and segments `first..=n`: series records
/// of live series, samples at or after `mint`. Returns (series, samples) kept.
fn write_checkpoint(
    wal_dir: &Path,
    first: u32,
    n: u32,
    mint: i64,
    live: &HashSet<u64>,
    opts: wal::WalOptions,
) -> Result<(u64, u64), TsdbError> {
    let final_dir = wal_dir.join(format!("checkpoint.{n:08}"));
    let tmp = wal_dir.join(format!("checkpoint.{n:08}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
    }
    let mut inputs: Vec<PathBuf> = Vec::new();
    if let Some((_, cp)) = wal::last_checkpoint(wal_dir)? {
        for i in wal::list_segments(&cp)? {
            inputs.push(wal::segment_path(&cp, i));
        }
    }
    inputs.extend((first..=n).map(|i| wal::segment_path(wal_dir, i)));
    let kept = fill_checkpoint(&tmp, &inputs, mint, live, opts);
    if kept.is_err() {
        crate::fsutil::remove_unfinished(&tmp, "checkpoint");
    }
    let kept = kept?;
    crate::failpoint::hit("checkpoint.before_rename");
    std::fs::rename(&tmp, &final_dir).map_err(io("rename", &tmp))?;
    crate::fsutil::fsync_dir(wal_dir).map_err(io("fsync", wal_dir))?;
    Ok(kept)
}

/// Writes the checkpoint of `inputs` into `tmp` (see [`write_checkpoint`]), synced.
fn fill_checkpoint(
    tmp: &Path,
    inputs: &[PathBuf],
    mint: i64,
    live: &HashSet<u64>,
    opts: wal::WalOptions,
) -> Result<(u64, u64), TsdbError> {
    let mut w = WalWriter::create(tmp, 0, opts, Default::default())?;
    let (mut kept_series, mut kept_samples) = (0u64, 0u64);
    let mut decoded = Vec::new();
    let mut out_series = Vec::new();
    let mut out_samples = Vec::new();
    for path in inputs {
        let seg = MappedFile::open(path).map_err(io("map", path))?;
        let mut r = SegmentReader::new(0, seg.data());
        while let Some(rec) = r.next() {
            let rec = rec.map_err(|c| TsdbError::Replay(format!("checkpoint input {}: {c}", path.display())))?;
            seg.release_before(rec.offset);
            let bad = |e: record::RecordError| TsdbError::Replay(format!("checkpoint input {}: {e}", path.display()));
            match rec.data.first() {
                Some(&kind::SERIES) => {
                    out_series.clear();
                    record::begin_series(&mut out_series);
                    let mut any = false;
                    let mut scratch = Vec::new();
                    record::decode_series(rec.data, &mut scratch, |r, labels: &[LabelRef<'_>]| {
                        if live.contains(&r) {
                            record::push_series(&mut out_series, r, labels.iter().copied());
                            any = true;
                            kept_series += 1;
                        }
                    })
                    .map_err(bad)?;
                    if any {
                        w.log(&[&out_series])?;
                    }
                }
                Some(&kind::SAMPLES) => {
                    record::decode_samples(rec.data, &mut decoded).map_err(bad)?;
                    decoded.retain(|&(r, t, _)| t >= mint && live.contains(&r));
                    if !decoded.is_empty() {
                        kept_samples += decoded.len() as u64;
                        record::encode_samples(&mut out_samples, decoded.iter().copied());
                        w.log(&[&out_samples])?;
                    }
                }
                _ => {}
            }
        }
    }
    w.close()?;
    crate::fsutil::fsync_dir(tmp).map_err(io("fsync", tmp))?;
    Ok((kept_series, kept_samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint that fails (here on a damaged input; a full disk fails the same way) gives
    /// its temporary directory back at once.
    #[test]
    fn a_failed_checkpoint_leaves_no_temporary_directory() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path();
        // A segment whose first record header announces more than the segment holds.
        let mut seg = vec![0u8; 32 * 1024];
        seg[0] = 1;
        seg[1] = 0xff;
        seg[2] = 0xff;
        std::fs::write(wal::segment_path(wal_dir, 0), &seg).unwrap();
        let opts = wal::WalOptions::default();
        assert!(write_checkpoint(wal_dir, 0, 0, 0, &HashSet::new(), opts).is_err());
        let left: Vec<String> = std::fs::read_dir(wal_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["00000000"], "only the input segment is left");
    }
}
