//! Completed head chunks off the heap: `chunks_head/%06d` files in Prometheus' format (shared
//! spec prometheus-formats §7.1), so a series keeps only its open chunk in memory and a
//! 24-byte reference per completed chunk.
//!
//! File: magic 0x0130BC91, version 1, 3 zero bytes; then chunks as `seriesRef (8 BE) ‖ mint
//! (8 BE) ‖ maxt (8 BE) ‖ encoding ‖ uvarint len ‖ data ‖ CRC32C(all of the above)`. A reference
//! is `file number << 32 | offset`. Files are cut at 128 MiB.
//!
//! Writes go to an in-memory buffer that is written out with one `write(2)` per 256 KiB, so
//! cutting a chunk on the append path costs a copy, not a syscall. Reads come from the buffer
//! or with one `pread(2)` per chunk (two for the few longer than `FIRST_READ`). (Memory-mapping
//! the files was measured and dropped: the chunks of one series lie far apart, so reading a
//! block's worth faulted in a page, and the kernel's fault-around 16 pages, per chunk, and the
//! resident set grew by more than half of the head during a block cut.) The files are a cache
//! of what the WAL holds: a torn or corrupt file is cut back at the first bad chunk on
//! open and the WAL replay rebuilds the rest. Without a directory (read-only tools) the
//! buffer is never written out.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block::ENCODING_XOR;
use crate::encoding::{Decoder, put_uvarint};

/// Magic number of a head chunk file.
pub const MAGIC_HEAD_CHUNKS: u32 = 0x0130_BC91;
const HEADER_SIZE: u64 = 8;
/// Bytes of a chunk record before its data: series ref, mint, maxt, encoding (and the length).
const CHUNK_FIXED: usize = 8 + 8 + 8 + 1;
/// Maximum size of a file.
pub const MAX_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Buffered bytes written out at once.
const FLUSH_AT: usize = 256 << 10;

/// A completed chunk found in the files when they were opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MappedChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) chunk_ref: u64,
}

/// The longest chunk record: fixed fields, a 5-byte length, an XOR chunk (cut after 1005 bytes,
/// plus at most one 19-byte sample) and the CRC, with room to spare.
const MAX_RECORD: usize = CHUNK_FIXED + 5 + 1100 + 4;

/// Bytes of a record read by the first `pread(2)`: a full chunk of 120 samples takes 150-250
/// bytes, so most records need no second read, and the kernel copies a few hundred bytes
/// instead of [`MAX_RECORD`].
const FIRST_READ: usize = 320;

struct Writer {
    /// File number of the file being written (0 before the first).
    cur: u32,
    file: Option<File>,
    /// Bytes of `cur` on disk.
    flushed: u64,
    /// Bytes after `flushed`, not yet written.
    buf: Vec<u8>,
    /// Per file: the newest chunk end it holds.
    max_t: BTreeMap<u32, i64>,
}

/// The head chunk files of one TSDB.
pub(crate) struct ChunkDiskMapper {
    dir: Option<PathBuf>,
    w: Mutex<Writer>,
    /// Open files for reading.
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    /// Chunks that could not be written (e.g. a full disk), kept in memory under references
    /// with file number 0 (files are numbered from 1): a chunk is never lost.
    fallback: Mutex<BTreeMap<u64, Fallback>>,
}

/// A chunk kept in memory because it could not be written: its end time and its data.
type Fallback = (i64, Box<[u8]>);

/// Errors of the head chunk files.
#[derive(Debug, thiserror::Error)]
pub enum ChunkDiskError {
    /// An I/O error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A reference that does not point at a valid chunk.
    #[error("head chunk {0:#x}: {1}")]
    BadRef(u64, String),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ChunkDiskError + 'a {
    move |source| ChunkDiskError::Io { op, path: path.to_owned(), source }
}

fn file_name(n: u32) -> String {
    format!("{n:06}")
}

/// The length of the chunk record at the start of `data`, from its header (`None` while the
/// header is cut short).
fn record_len(data: &[u8]) -> Option<usize> {
    let mut d = Decoder::new(data.get(CHUNK_FIXED..)?);
    let len = usize::try_from(d.uvarint()?).ok()?;
    (data.len() - d.remaining()).checked_add(len)?.checked_add(4)
}

/// One chunk record parsed from `data` at `off`: (series ref, mint, maxt, data range, end).
fn parse_chunk(data: &[u8], off: usize) -> Result<(u64, i64, i64, std::ops::Range<usize>, usize), String> {
    if off + CHUNK_FIXED + 1 > data.len() {
        return Err("truncated chunk header".into());
    }
    let be = |o: usize| u64::from_be_bytes(data[o..o + 8].try_into().unwrap());
    let (sref, mint, maxt) = (be(off), be(off + 8) as i64, be(off + 16) as i64);
    let mut d = Decoder::new(&data[off + CHUNK_FIXED..]);
    let len = d.uvarint().ok_or("truncated chunk length")? as usize;
    let start = data.len() - d.remaining();
    // `len` comes from the file (up to 2^64 - 1): every sum is checked.
    let end = start
        .checked_add(len)
        .filter(|&e| e.checked_add(4).is_some_and(|e| e <= data.len()))
        .ok_or("chunk runs past the end")?;
    let crc = u32::from_be_bytes(data[end..end + 4].try_into().unwrap());
    if crc32c::crc32c(&data[off..end]) != crc {
        return Err("checksum mismatch".into());
    }
    if data[off + 24] != ENCODING_XOR {
        return Err(format!("unsupported chunk encoding {}", data[off + 24]));
    }
    Ok((sref, mint, maxt, start..end, end + 4))
}

/// What [`ChunkDiskMapper::open`] found.
pub(crate) struct Opened {
    /// The mapper, writing after the last file.
    pub mapper: ChunkDiskMapper,
    /// The chunks still needed, by series reference, in write order.
    pub chunks: BTreeMap<u64, Vec<MappedChunk>>,
    /// Whether a corrupt file was cut back.
    pub corrupt: bool,
}

impl ChunkDiskMapper {
    /// Keeps every chunk in memory (read-only opens).
    pub(crate) fn in_memory() -> Self {
        ChunkDiskMapper {
            dir: None,
            w: Mutex::new(Writer { cur: 1, file: None, flushed: HEADER_SIZE, buf: Vec::new(), max_t: BTreeMap::new() }),
            files: RwLock::new(BTreeMap::new()),
            fallback: Mutex::new(BTreeMap::new()),
        }
    }

    /// Opens `dir` (created if missing): reads every chunk of the existing files (those with
    /// `max_t < min_valid` are skipped), cuts the files back at the first bad chunk (deleting
    /// later files), and starts a new file for writes. Returns the chunks by series reference.
    /// Opens the files of `dir`: the mapper (writing after the last file) and every chunk that
    /// ends at or after `min_valid`, by series reference. A corrupt file is cut back at its
    /// first bad chunk and later files are deleted; `corrupt` says whether that happened.
    pub(crate) fn open(dir: &Path, min_valid: i64) -> Result<Opened, ChunkDiskError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut numbers: Vec<u32> = std::fs::read_dir(dir)
            .map_err(io("list", dir))?
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.to_owned();
                (n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok()).flatten()
            })
            .collect();
        numbers.sort_unstable();
        let mut chunks: BTreeMap<u64, Vec<MappedChunk>> = BTreeMap::new();
        let mut max_t = BTreeMap::new();
        let mut broken = false;
        for &n in &numbers {
            let path = dir.join(file_name(n));
            if broken {
                std::fs::remove_file(&path).map_err(io("remove", &path))?;
                continue;
            }
            let file = crate::fsutil::MappedFile::open(&path).map_err(io("map", &path))?;
            let data = file.data();
            let header_ok = data.len() >= HEADER_SIZE as usize
                && u32::from_be_bytes(data[..4].try_into().unwrap()) == MAGIC_HEAD_CHUNKS
                && data[4] == 1;
            let mut off = HEADER_SIZE as usize;
            let mut file_max = i64::MIN;
            let mut cut_at = None;
            if !header_ok {
                cut_at = Some(0);
            }
            while cut_at.is_none() && off + CHUNK_FIXED < data.len() {
                // A zeroed tail (a preallocated file) ends the file.
                if data[off..(off + CHUNK_FIXED).min(data.len())].iter().all(|&b| b == 0) {
                    break;
                }
                file.release_before(off);
                match parse_chunk(data, off) {
                    Ok((sref, mint, maxt, _, end)) => {
                        if maxt >= min_valid {
                            let chunk_ref = (n as u64) << 32 | off as u64;
                            chunks.entry(sref).or_default().push(MappedChunk { min_t: mint, max_t: maxt, chunk_ref });
                        }
                        file_max = file_max.max(maxt);
                        off = end;
                    }
                    Err(reason) => {
                        tracing::warn!(file = %path.display(), offset = off, reason, "corrupt head chunk file, deleting from here on");
                        cut_at = Some(off);
                    }
                }
            }
            match cut_at {
                Some(0) => {
                    std::fs::remove_file(&path).map_err(io("remove", &path))?;
                    broken = true;
                }
                Some(off) => {
                    let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io("open", &path))?;
                    f.set_len(off as u64).map_err(io("truncate", &path))?;
                    max_t.insert(n, file_max);
                    broken = true;
                }
                None => {
                    max_t.insert(n, file_max);
                }
            }
        }
        // A chunk's series may have chunks in several files; keep each series' chunks in time
        // order (files and offsets are in write order already).
        let next = numbers.last().map_or(1, |&n| n + 1);
        let mapper = ChunkDiskMapper {
            dir: Some(dir.to_owned()),
            w: Mutex::new(Writer { cur: next - 1, file: None, flushed: MAX_FILE_SIZE, buf: Vec::new(), max_t }),
            files: RwLock::new(BTreeMap::new()),
            fallback: Mutex::new(BTreeMap::new()),
        };
        Ok(Opened { mapper, chunks, corrupt: broken })
    }

    fn start_file(&self, w: &mut Writer) -> Result<(), ChunkDiskError> {
        self.flush_locked(w)?;
        w.cur += 1;
        w.flushed = HEADER_SIZE;
        let mut header = [0u8; HEADER_SIZE as usize];
        header[..4].copy_from_slice(&MAGIC_HEAD_CHUNKS.to_be_bytes());
        header[4] = 1;
        match &self.dir {
            Some(dir) => {
                let path = dir.join(file_name(w.cur));
                let mut f = File::create(&path).map_err(io("create", &path))?;
                f.write_all(&header).map_err(io("write", &path))?;
                w.file = Some(f);
            }
            None => {
                w.buf.clear();
            }
        }
        Ok(())
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<(), ChunkDiskError> {
        if let (Some(f), Some(dir)) = (&w.file, &self.dir)
            && !w.buf.is_empty()
        {
            let path = dir.join(file_name(w.cur));
            f.write_all_at(&w.buf, w.flushed).map_err(io("write", &path))?;
            w.flushed += w.buf.len() as u64;
            w.buf.clear();
        }
        Ok(())
    }

    /// Writes out buffered chunks.
    pub(crate) fn flush(&self) -> Result<(), ChunkDiskError> {
        let mut w = self.w.lock();
        self.flush_locked(&mut w)
    }

    /// Stores a completed XOR chunk of series `sref` and returns its reference. If the file
    /// cannot be written the chunk stays in memory (logged), so this never fails.
    pub(crate) fn write(&self, sref: u64, min_t: i64, max_t: i64, data: &[u8]) -> u64 {
        match self.try_write(sref, min_t, max_t, data) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(err = %e, "writing a head chunk to disk failed; keeping it in memory");
                let mut fb = self.fallback.lock();
                let r = fb.last_key_value().map_or(1, |(k, _)| k + 1);
                fb.insert(r, (max_t, data.into()));
                r
            }
        }
    }

    fn try_write(&self, sref: u64, min_t: i64, max_t: i64, data: &[u8]) -> Result<u64, ChunkDiskError> {
        let mut w = self.w.lock();
        let size = (CHUNK_FIXED + 5 + data.len() + 4) as u64;
        let pos = w.flushed + w.buf.len() as u64;
        if (w.file.is_none() && self.dir.is_some())
            || (pos > HEADER_SIZE && pos + size > MAX_FILE_SIZE && self.dir.is_some())
        {
            self.start_file(&mut w)?;
        }
        let off = w.flushed + w.buf.len() as u64;
        let r = (w.cur as u64) << 32 | off;
        let start = w.buf.len();
        w.buf.extend_from_slice(&sref.to_be_bytes());
        w.buf.extend_from_slice(&min_t.to_be_bytes());
        w.buf.extend_from_slice(&max_t.to_be_bytes());
        w.buf.push(ENCODING_XOR);
        put_uvarint(&mut w.buf, data.len() as u64);
        w.buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&w.buf[start..]);
        w.buf.extend_from_slice(&crc.to_be_bytes());
        let cur = w.cur;
        let e = w.max_t.entry(cur).or_insert(i64::MIN);
        *e = (*e).max(max_t);
        if self.dir.is_some() && w.buf.len() >= FLUSH_AT {
            self.flush_locked(&mut w)?;
        }
        Ok(r)
    }

    /// The XOR data of chunk `r`.
    pub(crate) fn read(&self, r: u64) -> Result<Vec<u8>, ChunkDiskError> {
        let (file, off) = ((r >> 32) as u32, r & 0xffff_ffff);
        if file == 0 {
            let fb = self.fallback.lock();
            let (_, data) = fb.get(&r).ok_or_else(|| ChunkDiskError::BadRef(r, "no such chunk".into()))?;
            return Ok(data.to_vec());
        }
        {
            let w = self.w.lock();
            if file == w.cur && off >= w.flushed {
                let o = (off - w.flushed) as usize;
                let (_, _, _, range, _) = parse_chunk(&w.buf, o).map_err(|e| ChunkDiskError::BadRef(r, e))?;
                return Ok(w.buf[range].to_vec());
            }
        }
        let f = self.file_for(file)?;
        let bad = |e: std::io::Error| ChunkDiskError::BadRef(r, e.to_string());
        let mut buf = [0u8; MAX_RECORD];
        let mut n = read_at_most(&f, &mut buf[..FIRST_READ], off).map_err(bad)?;
        if n == FIRST_READ {
            let need = record_len(&buf[..n]).unwrap_or(MAX_RECORD).min(MAX_RECORD);
            if need > n {
                n += read_at_most(&f, &mut buf[n..need], off + n as u64).map_err(bad)?;
            }
        }
        let (_, _, _, range, _) = parse_chunk(&buf[..n], 0).map_err(|e| ChunkDiskError::BadRef(r, e))?;
        Ok(buf[range].to_vec())
    }

    fn file_for(&self, file: u32) -> Result<Arc<File>, ChunkDiskError> {
        if let Some(f) = self.files.read().get(&file) {
            return Ok(f.clone());
        }
        let Some(dir) = &self.dir else {
            return Err(ChunkDiskError::BadRef((file as u64) << 32, "no such chunk file".into()));
        };
        let path = dir.join(file_name(file));
        let f = Arc::new(File::open(&path).map_err(io("open", &path))?);
        self.files.write().insert(file, f.clone());
        Ok(f)
    }

    /// Deletes the files whose chunks all end before `mint` (never the one being written).
    pub(crate) fn truncate_before(&self, mint: i64) -> Result<usize, ChunkDiskError> {
        self.fallback.lock().retain(|_, (max_t, _)| *max_t >= mint);
        let Some(dir) = &self.dir else { return Ok(0) };
        let mut w = self.w.lock();
        let cur = w.cur;
        let doomed: Vec<u32> = w.max_t.iter().filter(|&(&n, &mx)| n != cur && mx < mint).map(|(&n, _)| n).collect();
        let mut files = self.files.write();
        for n in &doomed {
            files.remove(n);
            w.max_t.remove(n);
            let path = dir.join(file_name(*n));
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
        Ok(doomed.len())
    }

    /// Bytes of chunk data held in memory (the write buffer; everything without a directory).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.w.lock().buf.len()
    }
}

/// Reads up to `buf.len()` bytes at `off` (fewer at the end of the file).
fn read_at_most(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_length_that_wraps_around_is_corrupt() {
        // Series ref, mint, maxt, encoding, then a length that puts the end at 2^64 - 2.
        let mut data = vec![0u8; CHUNK_FIXED];
        data[24] = ENCODING_XOR;
        let len = u64::MAX - 1 - (CHUNK_FIXED as u64 + 10);
        put_uvarint(&mut data, len);
        data.extend([0u8; 8]);
        assert_eq!(parse_chunk(&data, 0).unwrap_err(), "chunk runs past the end");
    }

    #[test]
    fn write_read_reopen_and_cut_back_at_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let Opened { mapper: m, chunks: found, corrupt } = ChunkDiskMapper::open(dir.path(), i64::MIN).unwrap();
        assert!(found.is_empty() && !corrupt);
        // Records shorter and longer than a first read, one byte either side of it, and the
        // longest; the file's last record shorter than a first read.
        let data = |i: u64| vec![i as u8; [1, 40, 250, FIRST_READ - 31, FIRST_READ - 30, 300, 1100][(i % 7) as usize]];
        let refs: Vec<u64> =
            (0..5000u64).map(|i| m.write(i % 7 + 1, i as i64 * 10, i as i64 * 10 + 5, &data(i))).collect();
        // Some from the buffer, some from the file.
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(m.read(*r).unwrap(), data(i as u64));
        }
        m.flush().unwrap();
        drop(m);
        let Opened { mapper: m, chunks: found, corrupt } = ChunkDiskMapper::open(dir.path(), 20_000).unwrap();
        assert!(!corrupt);
        let n: usize = found.values().map(Vec::len).sum();
        assert_eq!(n, 5000 - 2000, "chunks ending before min_valid are skipped");
        for (sref, cs) in &found {
            assert!(cs.windows(2).all(|w| w[0].max_t < w[1].min_t));
            for c in cs {
                let i = (c.min_t / 10) as u64;
                assert_eq!(i % 7 + 1, *sref);
                assert_eq!(m.read(c.chunk_ref).unwrap(), data(i));
            }
        }
        drop(m);
        // Flip a byte in the middle of file 1: chunks from there on are dropped.
        let p = dir.path().join("000001");
        let mut data = std::fs::read(&p).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        let Opened { chunks: found, corrupt, .. } = ChunkDiskMapper::open(dir.path(), i64::MIN).unwrap();
        let n: usize = found.values().map(Vec::len).sum();
        assert!(n > 1000 && n < 5000, "{n}");
        assert!(corrupt);
        assert!(std::fs::metadata(&p).unwrap().len() <= mid as u64);
    }

    #[test]
    fn in_memory_keeps_everything() {
        let m = ChunkDiskMapper::in_memory();
        let r = m.write(1, 0, 5, b"abc");
        assert_eq!(&*m.read(r).unwrap(), b"abc");
        assert!(m.buffered() > 0);
    }
}
