//! One tenant's TSDB: opening (WAL replay and repair), appending, closing, and reading back.
//!
//! Commit protocol (the durability contract): an [`Appender`] validates samples against the
//! series' current state in parallel with other appenders; [`Appender::commit`] then takes the
//! WAL lock, writes the batch's series and samples records with one `write(2)` batch, and only
//! after that write returned applies the samples to the in-memory chunks, still under the WAL
//! lock. So memory never holds a sample the WAL lacks, memory applies samples in WAL order (a
//! restart rebuilds exactly the same head), and a caller that sees `commit` succeed may
//! acknowledge: the samples are in the page cache and survive a process kill.

mod appender;
mod compact;
mod read;
mod replay;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

pub use crate::labels::SeriesData;
pub use appender::{AppendBuffers, Appender, CommitOutcome, SeriesOutcome};
pub use read::{Candidates, Parts, Reader, Selected};
pub use stats::{Cardinality, HeadStats, Stat};

use crate::block::{self, Block, BlockError};
use crate::fsutil::LockFile;
use crate::head::Head;
use crate::head::chunk_disk::ChunkDiskMapper;
use crate::metrics::TsdbMetrics;
use crate::wal::{self, Corruption, WalError, WalOptions, WalWriter};

/// Settings of one TSDB.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Chunk range in milliseconds (the minimum block duration, 2h by default).
    pub chunk_range: i64,
    /// WAL writer settings.
    pub wal: WalOptions,
    /// Hold an exclusive `lock` file in the directory while open.
    pub lockfile: bool,
    /// Local block retention in milliseconds (0: keep blocks forever).
    pub retention_ms: i64,
    /// Open a WAL with a missing segment by setting the segments after the gap aside (their
    /// samples are lost); without it such a WAL fails the open, as in Prometheus.
    pub wal_discard_after_gap: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_range: 2 * 3600 * 1000,
            wal: WalOptions::default(),
            lockfile: true,
            retention_ms: 15 * 86_400_000,
            wal_discard_after_gap: false,
        }
    }
}

/// Errors of opening and writing a TSDB.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// A WAL error.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// An I/O error on a path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The WAL is corrupt in a way repair cannot handle (e.g. in a checkpoint).
    #[error("WAL replay failed: {0}")]
    Replay(String),
    /// A block error.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A head chunk file error.
    #[error(transparent)]
    ChunkDisk(#[from] crate::head::chunk_disk::ChunkDiskError),
    /// The TSDB is closed (shutting down).
    #[error("TSDB is closed")]
    Closed,
}

pub(crate) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TsdbError + 'a {
    move |source| TsdbError::Io { op, path: path.to_owned(), source }
}

/// What opening found on disk.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Series records read.
    pub series: u64,
    /// Samples applied to the head.
    pub samples: u64,
    /// Samples skipped because they were not newer than their series' latest sample.
    pub skipped_samples: u64,
    /// Samples whose series reference was never defined.
    pub unknown_ref_samples: u64,
    /// Records of types this TSDB does not store (histograms, exemplars, ...).
    pub skipped_records: u64,
    /// Segments replayed.
    pub segments: u32,
    /// The corruption that was repaired, if any.
    pub repaired: Option<Corruption>,
    /// Replay time in seconds.
    pub duration_seconds: f64,
}

/// A tenant TSDB.
pub struct Tsdb {
    dir: PathBuf,
    opts: Options,
    pub(crate) head: Head,
    pub(crate) wal: Mutex<Option<WalWriter>>,
    /// Persisted blocks.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Held shared by readers of blocks and head together, exclusively by head truncation: a
    /// reader whose block list predates a new block still finds that block's samples in the
    /// head.
    read_gate: RwLock<()>,
    /// Serializes compaction, flush and retention.
    compaction: Mutex<()>,
    metrics: Arc<TsdbMetrics>,
    _lock: Option<LockFile>,
}

impl std::fmt::Debug for Tsdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsdb").field("dir", &self.dir).field("series", &self.head.num_series()).finish()
    }
}

/// Restores a segment left half-repaired by a crash during repair (`N.repair` holds the original).
fn recover_interrupted_repair(wal_dir: &Path) -> Result<(), TsdbError> {
    let Ok(rd) = std::fs::read_dir(wal_dir) else {
        return Ok(());
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_suffix(".repair") else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let seg = wal_dir.join(num);
        tracing::warn!(segment = num, "found an interrupted WAL repair, restoring the original segment");
        if seg.exists() {
            std::fs::remove_file(&seg).map_err(io("remove", &seg))?;
        }
        std::fs::rename(entry.path(), &seg).map_err(io("rename", &seg))?;
    }
    Ok(())
}

/// The first gap replay would meet in the WAL of `wal_dir` (see [`wal::first_gap`]): the
/// number before it and the segment after it.
fn wal_gap(wal_dir: &Path) -> Result<Option<(u32, u32)>, TsdbError> {
    let checkpoint = wal::last_checkpoint(wal_dir)?.map(|(n, _)| n);
    Ok(wal::first_gap(&wal::list_segments_unchecked(wal_dir)?, checkpoint))
}

/// The repair asked for by [`Options::wal_discard_after_gap`]: when the WAL has a gap, every
/// segment after its first gap is moved to `wal/discarded.<first>/` (kept for the operator,
/// never replayed), so that replay keeps everything before it. It counts as a corruption.
fn discard_after_gap(wal_dir: &Path, metrics: &TsdbMetrics) -> Result<(), TsdbError> {
    if let Some((before, after)) = wal_gap(wal_dir)? {
        let aside = wal_dir.join(format!("discarded.{after:08}"));
        std::fs::create_dir_all(&aside).map_err(io("create", &aside))?;
        let moved: Vec<u32> = wal::list_segments_unchecked(wal_dir)?.into_iter().filter(|&i| i >= after).collect();
        for &i in &moved {
            let (from, to) = (wal::segment_path(wal_dir, i), wal::segment_path(&aside, i));
            std::fs::rename(&from, &to).map_err(io("rename", &from))?;
        }
        crate::fsutil::fsync_dir(wal_dir).map_err(io("sync", wal_dir))?;
        metrics.wal.corruptions.inc();
        tracing::warn!(
            missing = format!("{:08}", before + 1),
            discarded = moved.len(),
            dir = %aside.display(),
            "WAL segments are not sequential: the segments after the gap were set aside and will not be replayed"
        );
    }
    Ok(())
}

/// Rewrites the corrupted segment with the records before the corruption and deletes every
/// later segment (Prometheus' `WL.Repair`).
fn repair(wal_dir: &Path, c: &Corruption, opts: WalOptions, metrics: &Arc<TsdbMetrics>) -> Result<(), TsdbError> {
    for i in wal::list_segments_unchecked(wal_dir)? {
        if i > c.segment {
            let p = wal::segment_path(wal_dir, i);
            std::fs::remove_file(&p).map_err(io("remove", &p))?;
        }
    }
    tracing::warn!(segment = c.segment, "Rewrite corrupted segment");
    let seg = wal::segment_path(wal_dir, c.segment);
    let tmp = seg.with_extension("repair");
    std::fs::rename(&seg, &tmp).map_err(io("rename", &seg))?;
    let data = std::fs::read(&tmp).map_err(io("read", &tmp))?;
    let mut w = WalWriter::create(wal_dir, c.segment, opts, metrics.wal.clone())?;
    let mut r = wal::SegmentReader::new(c.segment, &data);
    while let Some(Ok(rec)) = r.next() {
        if rec.end > c.offset {
            break;
        }
        w.log(&[rec.data])?;
    }
    w.close()?;
    std::fs::remove_file(&tmp).map_err(io("remove", &tmp))?;
    let _ = crate::fsutil::fsync_dir(wal_dir);
    Ok(())
}

/// Opens the blocks of `dir`; returns them and the newest block's end, below which the head
/// takes no sample (so replay skips WAL samples a block already holds). A block whose
/// `meta.json` cannot be read is left on disk, unread, and reported (logged and counted in
/// `metrics.blocks_unreadable`): Prometheus would refuse to open the whole TSDB, which for a
/// receiver means refusing the tenant's writes for one damaged block of past data.
fn load_blocks(dir: &Path, metrics: &TsdbMetrics) -> Result<(Vec<Arc<Block>>, i64), TsdbError> {
    let mut blocks = Vec::new();
    let mut floor = i64::MIN;
    let mut unreadable = 0;
    for d in block::list_block_dirs(dir)? {
        match Block::open(&d) {
            Ok(b) => {
                floor = floor.max(b.meta().max_time);
                blocks.push(Arc::new(b));
            }
            Err(e) => {
                unreadable += 1;
                tracing::error!(
                    block = %d.display(),
                    err = %e,
                    "skipping a block that cannot be opened: it is left on disk, not read and not compacted"
                );
            }
        }
    }
    metrics.blocks_unreadable.set(unreadable);
    Ok((blocks, floor))
}

impl Tsdb {
    fn assemble(
        dir: &Path,
        opts: Options,
        head: Head,
        wal: Option<WalWriter>,
        blocks: Vec<Arc<Block>>,
        lock: Option<LockFile>,
    ) -> Tsdb {
        let metrics = head.metrics.clone();
        Tsdb {
            dir: dir.to_owned(),
            opts,
            head,
            wal: Mutex::new(wal),
            blocks: RwLock::new(blocks),
            read_gate: RwLock::new(()),
            compaction: Mutex::new(()),
            metrics,
            _lock: lock,
        }
    }

    /// Opens (creating if needed) the TSDB in `dir`, replays its WAL (repairing a corrupt tail
    /// the way Prometheus does) and starts a new WAL segment.
    pub fn open(dir: &Path, opts: Options) -> Result<(Tsdb, OpenReport), TsdbError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let lock = if opts.lockfile { Some(LockFile::acquire(dir).map_err(io("lock", dir))?) } else { None };
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(io("create", &wal_dir))?;
        recover_interrupted_repair(&wal_dir)?;
        wal::remove_tmp_checkpoints(&wal_dir)?;
        for name in block::remove_tmp_dirs(dir)? {
            tracing::info!(dir = name, "Removed leftover temporary block directory");
        }
        let metrics = Arc::new(TsdbMetrics::default());
        let (blocks, floor) = load_blocks(dir, &metrics)?;
        metrics.blocks_loaded.set(blocks.len() as i64);
        tracing::info!("Replaying on-disk memory mappable chunks if any");
        let start = Instant::now();
        let chunk_files = ChunkDiskMapper::open(&dir.join("chunks_head"), floor)?;
        if chunk_files.corrupt {
            metrics.mmap_chunk_corruptions.inc();
        }
        let mapped = chunk_files.chunks;
        tracing::info!(
            duration = ?start.elapsed(),
            chunks = mapped.values().map(Vec::len).sum::<usize>(),
            "On-disk memory mappable chunks replay completed"
        );
        let head = Head::new(opts.chunk_range, metrics.clone(), Arc::new(chunk_files.mapper));
        head.raise_floor(floor);
        if opts.wal_discard_after_gap {
            discard_after_gap(&wal_dir, &metrics)?;
        }
        let start = Instant::now();
        tracing::info!("Replaying WAL, this may take a while");
        let mut report = replay::replay(&head, &wal_dir, mapped)?;
        if let Some(c) = &report.repaired {
            tracing::warn!(err = %c, "Encountered WAL read error, attempting repair");
            metrics.wal.corruptions.inc();
            repair(&wal_dir, c, opts.wal, &metrics)?;
        }
        let next = match wal::list_segments_unchecked(&wal_dir)?.last() {
            Some(&last) => last + 1,
            None => wal::last_checkpoint(&wal_dir)?.map(|(n, _)| n + 1).unwrap_or(0),
        };
        let writer = WalWriter::create(&wal_dir, next, opts.wal, metrics.wal.clone())?;
        report.duration_seconds = start.elapsed().as_secs_f64();
        metrics.replay_duration_seconds.set(report.duration_seconds);
        tracing::info!(
            total_replay_duration = ?start.elapsed(),
            series = report.series,
            samples = report.samples,
            "WAL replay completed"
        );
        Ok((Tsdb::assemble(dir, opts, head, Some(writer), blocks, lock), report))
    }

    /// Replays the WAL of `dir` into memory without writing anything (no repair, no new segment,
    /// no lock). Reading stops at the first corruption, which is reported.
    pub fn open_read_only(dir: &Path, opts: Options) -> Result<(Tsdb, OpenReport), TsdbError> {
        let metrics = Arc::new(TsdbMetrics::default());
        // The head chunk files are a cache of the WAL: a read-only open replays the WAL alone
        // and keeps completed chunks in memory.
        let head = Head::new(opts.chunk_range, metrics.clone(), Arc::new(ChunkDiskMapper::in_memory()));
        let (blocks, floor) = load_blocks(dir, &metrics)?;
        head.raise_floor(floor);
        let report = replay::replay(&head, &dir.join("wal"), Default::default())?;
        Ok((Tsdb::assemble(dir, opts, head, None, blocks, None), report))
    }

    /// The TSDB directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Metrics of this TSDB.
    pub fn metrics(&self) -> &Arc<TsdbMetrics> {
        &self.metrics
    }

    /// Starts an append transaction using `bufs` for scratch space.
    pub fn appender<'a>(&'a self, bufs: &'a mut AppendBuffers) -> Appender<'a> {
        Appender::new(self, bufs)
    }

    /// Number of series in the head.
    pub fn num_series(&self) -> u64 {
        self.head.num_series()
    }

    /// Number of interned label strings (names and values) of the head.
    pub fn num_symbols(&self) -> usize {
        self.head.symbols.len()
    }

    /// Size of the WAL directory in bytes.
    pub fn wal_size_bytes(&self) -> u64 {
        crate::fsutil::dir_size(&self.dir.join("wal"))
    }

    /// Flushes and fsyncs the WAL and refuses further appends.
    pub fn close(&self) -> Result<(), TsdbError> {
        if let Err(e) = self.head.disk.flush() {
            tracing::warn!(err = %e, "writing out head chunks failed (the WAL holds them)");
        }
        let mut wal = self.wal.lock();
        if let Some(mut w) = wal.take() {
            w.close()?;
        }
        Ok(())
    }
}
