//! The WAL segment writer: records into fragments into 32 KiB pages, Prometheus' layout.
//!
//! A batch of records is one `log` call: full pages are written as they fill and the final
//! partial page once at the end, so a request costs one or two `write(2)` calls. If a write
//! fails, the segment is truncated back to where the batch started and the partial page is
//! reloaded from disk, so a failed batch never leaves a torn record that a later batch would
//! follow (which would make a restart's repair drop acknowledged data). If even that fails, the
//! writer refuses every later batch until it can restore a clean tail.
//!
//! A finished segment is fsynced in the background. If that fails, its pages may already be
//! gone from the page cache (Linux reports a failed writeback once), so the writer refuses
//! every batch until the current segment is fsynced and a new one is safely open: a write is
//! not acknowledged on a WAL that is failing to reach the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{HEADER_SIZE, PAGE_SIZE, WalError, frag, io_err, segment_path};
use crate::fsutil::fsync_dir;
use crate::metrics::WalMetrics;

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Snappy-compress records that shrink (`--tsdb.wal-compression`).
    pub compress: bool,
    /// Maximum segment size; a multiple of the page size.
    pub segment_size: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { compress: true, segment_size: super::DEFAULT_SEGMENT_SIZE }
    }
}

/// Appends records to the current segment of a WAL directory.
pub struct WalWriter {
    dir: PathBuf,
    opts: WalOptions,
    file: File,
    index: u32,
    page: Box<[u8]>,
    alloc: usize,
    flushed: usize,
    done_pages: usize,
    encoder: snap::raw::Encoder,
    snappy_buf: Vec<u8>,
    /// Length of the current segment when the running batch started.
    batch_start: u64,
    /// Set when a failed batch could not be rolled back.
    broken: Option<String>,
    /// Set by the background fsync of a finished segment when it failed.
    unsynced: Arc<AtomicBool>,
    closed: bool,
    metrics: Arc<WalMetrics>,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter").field("dir", &self.dir).field("segment", &self.index).finish()
    }
}

fn create_segment(dir: &Path, index: u32) -> Result<File, WalError> {
    let path = segment_path(dir, index);
    // O_APPEND (as Prometheus): after a failed batch is truncated away, the next write lands at
    // the new end of the file, not at the old file position.
    OpenOptions::new()
        .append(true)
        .read(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io_err("create segment", &path, e))
}

impl WalWriter {
    /// Creates segment `index` in `dir` (which must not exist yet) and writes to it.
    pub fn create(dir: &Path, index: u32, opts: WalOptions, metrics: Arc<WalMetrics>) -> Result<Self, WalError> {
        assert!(opts.segment_size >= PAGE_SIZE && opts.segment_size.is_multiple_of(PAGE_SIZE));
        std::fs::create_dir_all(dir).map_err(|e| io_err("create dir", dir, e))?;
        let file = create_segment(dir, index)?;
        fsync_dir(dir).map_err(|e| io_err("fsync", dir, e))?;
        metrics.segment_current.set(index as i64);
        Ok(WalWriter {
            dir: dir.to_owned(),
            opts,
            file,
            index,
            page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            alloc: 0,
            flushed: 0,
            done_pages: 0,
            encoder: snap::raw::Encoder::new(),
            snappy_buf: Vec::new(),
            batch_start: 0,
            broken: None,
            unsynced: Arc::new(AtomicBool::new(false)),
            closed: false,
            metrics,
        })
    }

    /// Index of the segment being written.
    pub fn segment(&self) -> u32 {
        self.index
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pages_per_segment(&self) -> usize {
        self.opts.segment_size / PAGE_SIZE
    }

    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < HEADER_SIZE
    }

    fn segment_len(&self) -> u64 {
        (self.done_pages * PAGE_SIZE + self.flushed) as u64
    }

    fn current_path(&self) -> PathBuf {
        segment_path(&self.dir, self.index)
    }

    /// Writes `records` as one batch: all of them or (after an error) none of them.
    pub fn log(&mut self, records: &[&[u8]]) -> Result<(), WalError> {
        if self.closed {
            return Err(WalError::Closed);
        }
        if self.broken.is_some() {
            self.restore()?;
        }
        if self.unsynced.load(Ordering::Acquire)
            && let Err(e) = self.resync()
        {
            self.metrics.writes_failed.inc();
            return Err(e);
        }
        self.batch_start = self.segment_len();
        let n = records.len();
        for (i, rec) in records.iter().enumerate() {
            if let Err(e) = self.log_one(rec, i + 1 == n) {
                self.metrics.writes_failed.inc();
                self.broken = Some(e.to_string());
                if let Err(re) = self.restore() {
                    tracing::error!(err = %re, "failed to roll back a failed WAL write");
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Truncates the current segment to where the failed batch started and reloads the partial
    /// page from disk.
    fn restore(&mut self) -> Result<(), WalError> {
        let path = self.current_path();
        let len = self.batch_start;
        let res: std::io::Result<()> = (|| {
            self.file.set_len(len)?;
            let partial = (len % PAGE_SIZE as u64) as usize;
            self.page.fill(0);
            if partial > 0 {
                self.file.read_exact_at(&mut self.page[..partial], len - partial as u64)?;
            }
            self.done_pages = (len / PAGE_SIZE as u64) as usize;
            self.alloc = partial;
            self.flushed = partial;
            Ok(())
        })();
        match res {
            Ok(()) => {
                self.broken = None;
                Ok(())
            }
            Err(e) => {
                let msg = format!("{}: {e}", path.display());
                self.broken = Some(msg.clone());
                Err(WalError::Broken(msg))
            }
        }
    }

    fn log_one(&mut self, rec: &[u8], last: bool) -> Result<(), WalError> {
        if self.page_full() {
            self.flush_page(true)?;
        }
        let mut buf = std::mem::take(&mut self.snappy_buf);
        let mut compressed = false;
        let mut data: &[u8] = rec;
        if self.opts.compress && !rec.is_empty() {
            buf.resize(snap::raw::max_compress_len(rec.len()), 0);
            if let Ok(n) = self.encoder.compress(rec, &mut buf)
                && n < rec.len()
            {
                buf.truncate(n);
                data = &buf;
                compressed = true;
                self.metrics.record_bytes_saved.add((rec.len() - n) as u64);
            }
        }
        let res = self.write_fragments(data, compressed, last);
        self.snappy_buf = buf;
        res
    }

    fn write_fragments(&mut self, mut data: &[u8], compressed: bool, last: bool) -> Result<(), WalError> {
        // Records never cross segments: start a new one if this record does not fit.
        // (A record larger than a whole segment makes its segment larger than the maximum, as in
        // Prometheus; the segment after it starts with the next record.)
        // Signed, as in Prometheus: an over-full segment has negative room and always rotates.
        let left = (PAGE_SIZE - self.alloc) as i64 - HEADER_SIZE as i64
            + (PAGE_SIZE - HEADER_SIZE) as i64 * (self.pages_per_segment() as i64 - self.done_pages as i64 - 1);
        if data.len() as i64 > left {
            self.next_segment()?;
        }
        let mut i = 0;
        while i == 0 || !data.is_empty() {
            let room = PAGE_SIZE - self.alloc - HEADER_SIZE;
            let l = data.len().min(room);
            let (part, rest) = data.split_at(l);
            let mut typ = match (i == 0, rest.is_empty()) {
                (true, true) => frag::FULL,
                (false, true) => frag::LAST,
                (true, false) => frag::FIRST,
                (false, false) => frag::MIDDLE,
            };
            if compressed {
                typ |= frag::SNAPPY;
            }
            let a = self.alloc;
            self.page[a] = typ;
            self.page[a + 1..a + 3].copy_from_slice(&(l as u16).to_be_bytes());
            self.page[a + 3..a + 7].copy_from_slice(&crc32c::crc32c(part).to_be_bytes());
            self.page[a + 7..a + 7 + l].copy_from_slice(part);
            self.alloc += HEADER_SIZE + l;
            self.metrics.record_part_writes.inc();
            self.metrics.record_parts_bytes_written.add((HEADER_SIZE + l) as u64);
            if self.page_full() {
                self.flush_page(true)?;
            }
            data = rest;
            i += 1;
        }
        if last && self.alloc > 0 {
            self.flush_page(false)?;
        }
        Ok(())
    }

    fn flush_page(&mut self, clear: bool) -> Result<(), WalError> {
        self.metrics.page_flushes.inc();
        let clear = clear || self.page_full();
        if clear {
            self.alloc = PAGE_SIZE;
        }
        if self.alloc > self.flushed
            && let Err(e) = self.file.write_all(&self.page[self.flushed..self.alloc])
        {
            return Err(io_err("write", &self.current_path(), e));
        }
        self.flushed = self.alloc;
        if clear {
            self.page.fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
            self.metrics.completed_pages.inc();
        }
        Ok(())
    }

    /// Finishes the current segment (padded, fsynced in the background) and starts the next.
    pub fn next_segment(&mut self) -> Result<(), WalError> {
        let prev = self.rotate()?;
        let _ = fsync_dir(&self.dir);
        // Do not block writers on the fsync of the finished segment.
        let (metrics, unsynced, path) =
            (self.metrics.clone(), self.unsynced.clone(), segment_path(&self.dir, self.index - 1));
        std::thread::Builder::new()
            .name("wal-fsync".into())
            .spawn(move || {
                let start = Instant::now();
                let synced = match crate::failpoint::io_error("wal.fsync") {
                    Some(e) => Err(e),
                    None => prev.sync_all(),
                };
                if let Err(e) = synced {
                    tracing::error!(segment = %path.display(), err = %e, "fsync of finished WAL segment failed: writes are refused until a new segment is safely open");
                    unsynced.store(true, Ordering::Release);
                }
                metrics.fsync_duration.observe(start.elapsed().as_secs_f64());
            })
            .map_err(|e| io_err("spawn fsync thread", &self.dir, e))?;
        Ok(())
    }

    /// Pads the current segment's last page and makes the next segment current; returns the
    /// finished one's file.
    fn rotate(&mut self) -> Result<File, WalError> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        let next = create_segment(&self.dir, self.index + 1)?;
        let prev = std::mem::replace(&mut self.file, next);
        self.index += 1;
        self.done_pages = 0;
        self.batch_start = 0;
        self.metrics.segment_current.set(self.index as i64);
        Ok(prev)
    }

    /// After a finished segment failed to fsync: fsyncs the current segment, finishes it and
    /// opens the next one, fsynced with its directory, all before the next batch.
    fn resync(&mut self) -> Result<(), WalError> {
        self.sync()?;
        let prev = self.rotate()?;
        prev.sync_all().map_err(|e| io_err("fsync", &segment_path(&self.dir, self.index - 1), e))?;
        self.sync()?;
        fsync_dir(&self.dir).map_err(|e| io_err("fsync", &self.dir, e))?;
        self.unsynced.store(false, Ordering::Release);
        tracing::info!(segment = self.index, "WAL writes resumed on a new segment after a failed fsync");
        Ok(())
    }

    /// fsyncs the current segment.
    pub fn sync(&mut self) -> Result<(), WalError> {
        let start = Instant::now();
        let synced = match crate::failpoint::io_error("wal.fsync") {
            Some(e) => Err(e),
            None => self.file.sync_data(),
        };
        synced.map_err(|e| io_err("fsync", &self.current_path(), e))?;
        self.metrics.fsync_duration.observe(start.elapsed().as_secs_f64());
        Ok(())
    }

    /// Pads the last page, fsyncs and closes. Later `log` calls fail with [`WalError::Closed`].
    pub fn close(&mut self) -> Result<(), WalError> {
        if self.closed {
            return Ok(());
        }
        if self.broken.is_some() {
            self.restore()?;
        }
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.sync()?;
        self.closed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{SegmentReader, list_segments};

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in list_segments(dir).unwrap() {
            let data = std::fs::read(segment_path(dir, i)).unwrap();
            let mut r = SegmentReader::new(i, &data);
            while let Some(rec) = r.next() {
                out.push(rec.expect("no corruption").data.to_vec());
            }
        }
        out
    }

    fn records(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let len = match i % 5 {
                    0 => 0,
                    1 => (x % 100) as usize,
                    2 => (x % 40_000) as usize,
                    3 => (x % 100_000) as usize,
                    _ => PAGE_SIZE - HEADER_SIZE,
                };
                let mut y = x;
                (0..len)
                    .map(|j| {
                        y = y.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if i % 2 == 0 { (j % 7) as u8 } else { (y >> 56) as u8 }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn round_trip_across_pages_and_segments() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let opts = WalOptions { compress, segment_size: 4 * PAGE_SIZE };
            let mut w = WalWriter::create(dir.path(), 0, opts, Default::default()).unwrap();
            let recs = records(60, 7);
            for chunk in recs.chunks(3) {
                let refs: Vec<&[u8]> = chunk.iter().map(|r| r.as_slice()).collect();
                w.log(&refs).unwrap();
            }
            w.close().unwrap();
            assert!(list_segments(dir.path()).unwrap().len() >= 2);
            assert_eq!(read_all(dir.path()), recs);
            for i in list_segments(dir.path()).unwrap() {
                let len = std::fs::metadata(segment_path(dir.path(), i)).unwrap().len();
                assert_eq!(len % PAGE_SIZE as u64, 0, "closed segments are page aligned");
            }
        }
    }

    #[test]
    fn record_larger_than_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions { compress: false, segment_size: 2 * PAGE_SIZE };
        let mut w = WalWriter::create(dir.path(), 0, opts, Default::default()).unwrap();
        let big: Vec<u8> = (0..5 * PAGE_SIZE).map(|i| i as u8).collect();
        w.log(&[b"small"]).unwrap();
        w.log(&[&big]).unwrap();
        w.log(&[b"after", b"more"]).unwrap();
        w.close().unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![0, 1, 2]);
        assert_eq!(read_all(dir.path()), vec![b"small".to_vec(), big, b"after".to_vec(), b"more".to_vec()]);
    }

    #[test]
    fn golden_fragment_header() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions { compress: false, segment_size: PAGE_SIZE * 4 };
        let mut w = WalWriter::create(dir.path(), 0, opts, Default::default()).unwrap();
        w.log(&[b"hello"]).unwrap();
        let data = std::fs::read(segment_path(dir.path(), 0)).unwrap();
        assert_eq!(data.len(), HEADER_SIZE + 5, "partial page written while running");
        assert_eq!(data[0], frag::FULL);
        assert_eq!(&data[1..3], &[0, 5]);
        assert_eq!(&data[3..7], &crc32c::crc32c(b"hello").to_be_bytes());
    }

    #[test]
    fn failed_batch_is_rolled_back() {
        let opts = WalOptions { compress: false, segment_size: 64 * PAGE_SIZE };
        let clean = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(clean.path(), 0, opts, Default::default()).unwrap();
        w.log(&[b"first"]).unwrap();
        w.log(&[b"second"]).unwrap();
        let want = std::fs::read(segment_path(clean.path(), 0)).unwrap();
        // The same, with a failed multi-page batch in between: write it, then roll back.
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(dir.path(), 0, opts, Default::default()).unwrap();
        w.log(&[b"first"]).unwrap();
        let big = vec![7u8; 3 * PAGE_SIZE + 100];
        w.batch_start = w.segment_len();
        w.log_one(&big, true).unwrap();
        w.restore().unwrap();
        w.log(&[b"second"]).unwrap();
        let got = std::fs::read(segment_path(dir.path(), 0)).unwrap();
        assert_eq!(got, want, "byte-identical to a WAL that never saw the failed batch");
        w.close().unwrap();
        assert_eq!(read_all(dir.path()), vec![b"first".to_vec(), b"second".to_vec()]);
    }

    /// After a finished segment failed to fsync, nothing is written until the current segment
    /// is synced and a new one is open: while that cannot be done (the directory is gone here),
    /// every batch fails; once it can, batches go to the new segment and every acknowledged
    /// record reads back.
    #[test]
    fn a_failed_background_fsync_stops_writes_until_a_new_segment_is_open() {
        let opts = WalOptions { compress: false, segment_size: 64 * PAGE_SIZE };
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("wal");
        let metrics = Arc::new(WalMetrics::default());
        let mut w = WalWriter::create(&dir, 0, opts, metrics.clone()).unwrap();
        w.log(&[b"first"]).unwrap();
        w.next_segment().unwrap();
        w.log(&[b"second"]).unwrap();
        // What the background fsync of segment 0 reports when it fails.
        w.unsynced.store(true, Ordering::Release);
        let moved = parent.path().join("moved");
        std::fs::rename(&dir, &moved).unwrap();
        for _ in 0..3 {
            assert!(w.log(&[b"refused"]).is_err(), "no new segment can be opened");
        }
        assert_eq!(metrics.writes_failed.get(), 3);
        std::fs::rename(&moved, &dir).unwrap();
        w.log(&[b"third"]).unwrap();
        assert!(w.segment() >= 2, "the batch went to a new segment");
        assert!(!w.unsynced.load(Ordering::Acquire));
        w.close().unwrap();
        assert_eq!(read_all(&dir), vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]);
    }
}
