//! Chunk segment files of a block (`chunks/000001`, ...): an 8-byte header (magic 0x85BD40DD,
//! version 1, padding), then chunks as `uvarint len ‖ encoding ‖ data ‖ CRC32C(encoding ‖ data)`.
//! A chunk reference is `segment index (0-based) << 32 | offset of the chunk's len`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::BlockError;
use crate::encoding::{Decoder, put_uvarint};

/// Magic number of a chunk segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// Size of the segment header.
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Default maximum size of a segment file (512 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// XOR chunk encoding.
pub const ENCODING_XOR: u8 = 1;

/// File name of segment `index` (0-based): `%06d` of `index + 1`.
pub fn segment_name(index: u32) -> String {
    format!("{:06}", index + 1)
}

/// Writes the chunk segments of a block, in order.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    file: Option<(BufWriter<File>, PathBuf)>,
    /// 0-based index of the open segment (`u32::MAX` before the first).
    index: u32,
    offset: u64,
    buf: Vec<u8>,
    /// Names of the finished segments.
    pub segments: Vec<String>,
}

impl ChunkWriter {
    /// A writer into `dir` (created).
    pub fn new(dir: &Path, segment_size: u64) -> Result<Self, BlockError> {
        std::fs::create_dir_all(dir).map_err(BlockError::io("create", dir))?;
        Ok(ChunkWriter {
            dir: dir.to_owned(),
            segment_size,
            file: None,
            index: u32::MAX,
            offset: 0,
            buf: Vec::with_capacity(2048),
            segments: Vec::new(),
        })
    }

    fn finish_segment(&mut self) -> Result<(), BlockError> {
        if let Some((w, path)) = self.file.take() {
            let f = w.into_inner().map_err(|e| BlockError::io("write", &path)(e.into_error()))?;
            f.sync_all().map_err(BlockError::io("fsync", &path))?;
            self.segments.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), BlockError> {
        self.finish_segment()?;
        self.index = self.index.wrapping_add(1);
        let path = self.dir.join(segment_name(self.index));
        let f = File::create(&path).map_err(BlockError::io("create", &path))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
        header[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        header[4] = 1;
        w.write_all(&header).map_err(BlockError::io("write", &path))?;
        self.file = Some((w, path));
        self.offset = SEGMENT_HEADER_SIZE;
        Ok(())
    }

    /// Appends one chunk and returns its reference.
    pub fn write(&mut self, encoding: u8, data: &[u8]) -> Result<u64, BlockError> {
        let estimate = 5 + 1 + data.len() as u64 + 4;
        if self.file.is_none() || (self.offset > SEGMENT_HEADER_SIZE && self.offset + estimate > self.segment_size) {
            self.cut()?;
        }
        let r = ((self.index as u64) << 32) | self.offset;
        self.buf.clear();
        put_uvarint(&mut self.buf, data.len() as u64);
        let crc_start = self.buf.len();
        self.buf.push(encoding);
        self.buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&self.buf[crc_start..]);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        let (w, path) = self.file.as_mut().expect("segment open");
        w.write_all(&self.buf).map_err(BlockError::io("write", path))?;
        self.offset += self.buf.len() as u64;
        Ok(r)
    }

    /// Flushes and fsyncs the last segment; returns the segment file names.
    pub fn finish(mut self) -> Result<Vec<String>, BlockError> {
        self.finish_segment()?;
        Ok(self.segments)
    }
}

/// Reads chunks of a block by reference (segments memory-mapped).
pub struct ChunkReader {
    segments: Vec<(PathBuf, Mmap)>,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader").field("segments", &self.segments.len()).finish()
    }
}

impl ChunkReader {
    /// Opens every numbered file of `dir`, in numeric order.
    pub fn open(dir: &Path) -> Result<Self, BlockError> {
        let rd = std::fs::read_dir(dir).map_err(BlockError::io("list", dir))?;
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        for e in rd {
            let e = e.map_err(BlockError::io("list", dir))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                files.push((name.parse().unwrap_or(u64::MAX), e.path()));
            }
        }
        files.sort();
        let mut segments = Vec::with_capacity(files.len());
        for (_, path) in files {
            let f = File::open(&path).map_err(BlockError::io("open", &path))?;
            // SAFETY: block files are immutable once written (blocks are never modified in
            // place; deletion renames the directory first), so the mapping does not change.
            let map = unsafe { Mmap::map(&f) }.map_err(BlockError::io("mmap", &path))?;
            if map.len() < SEGMENT_HEADER_SIZE as usize
                || u32::from_be_bytes(map[..4].try_into().unwrap()) != MAGIC_CHUNKS
                || map[4] != 1
            {
                return Err(BlockError::Corrupt { path, reason: "invalid chunk segment header".into() });
            }
            segments.push((path, map));
        }
        Ok(ChunkReader { segments })
    }

    /// The encoding and data of the chunk at `r`, CRC-checked.
    pub fn chunk(&self, r: u64) -> Result<(u8, &[u8]), BlockError> {
        let (seg, off) = ((r >> 32) as usize, (r & 0xffff_ffff) as usize);
        let Some((path, map)) = self.segments.get(seg) else {
            return Err(BlockError::Corrupt {
                path: PathBuf::new(),
                reason: format!("chunk ref {r:#x}: segment index {seg} does not exist"),
            });
        };
        let bad = |reason: String| BlockError::Corrupt { path: path.clone(), reason };
        if off < SEGMENT_HEADER_SIZE as usize || off >= map.len() {
            return Err(bad(format!("chunk ref {r:#x}: offset {off} outside the file")));
        }
        let mut d = Decoder::new(&map[off..]);
        let len = d.uvarint().ok_or_else(|| bad(format!("chunk at {off}: truncated length")))? as usize;
        let start = off + (map.len() - off - d.remaining());
        // `len` comes from the file (up to 2^64 - 1): every sum is checked.
        let end = len.checked_add(1 + 4).and_then(|n| start.checked_add(n)).filter(|&e| e <= map.len());
        let Some(end) = end else {
            return Err(bad(format!("chunk at {off}: {len} bytes run past the end of the file")));
        };
        let body = &map[start..end - 4];
        let crc = u32::from_be_bytes(map[end - 4..end].try_into().unwrap());
        if crc32c::crc32c(body) != crc {
            return Err(bad(format!("chunk at {off}: checksum mismatch")));
        }
        Ok((body[0], &body[1..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// promtool 2.42's 87-byte chunk file starts with this chunk (spec prometheus-formats §2).
    #[test]
    fn golden_chunk_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        let data = hex("000180a0abfef962401400000000000000");
        let r = w.write(ENCODING_XOR, &data).unwrap();
        assert_eq!(r, 8);
        assert_eq!(w.finish().unwrap(), vec!["000001"]);
        let file = std::fs::read(dir.path().join("000001")).unwrap();
        assert_eq!(
            file,
            hex(format!("85bd40dd01000000{}{}{}", "1101", "000180a0abfef962401400000000000000", "cea9fb97"))
        );
        let rd = ChunkReader::open(dir.path()).unwrap();
        assert_eq!(rd.chunk(8).unwrap(), (ENCODING_XOR, &data[..]));
    }

    #[test]
    fn segments_are_cut_and_refs_are_zero_based() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path(), 100).unwrap();
        let refs: Vec<u64> = (0..5u8).map(|i| w.write(ENCODING_XOR, &[i; 40]).unwrap()).collect();
        assert_eq!(refs, vec![8, 1 << 32 | 8, 2 << 32 | 8, 3 << 32 | 8, 4 << 32 | 8]);
        assert_eq!(w.finish().unwrap().len(), 5);
        let rd = ChunkReader::open(dir.path()).unwrap();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(rd.chunk(*r).unwrap().1, &[i as u8; 40][..]);
        }
        // A flipped bit is caught.
        let p = dir.path().join("000002");
        let mut b = std::fs::read(&p).unwrap();
        b[20] ^= 1;
        std::fs::write(&p, b).unwrap();
        let rd = ChunkReader::open(dir.path()).unwrap();
        assert!(rd.chunk(refs[1]).unwrap_err().to_string().contains("checksum mismatch"));
    }

    #[test]
    fn a_chunk_length_that_wraps_around_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        // The segment header, then a chunk whose length is 2^64 - 4 (1 + len + 4 wraps to 1).
        let mut file = hex("85bd40dd01000000");
        file.extend([0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        file.extend([0u8; 16]);
        std::fs::write(dir.path().join("000001"), file).unwrap();
        let rd = ChunkReader::open(dir.path()).unwrap();
        let err = rd.chunk(8).unwrap_err().to_string();
        assert!(err.contains("run past the end of the file"), "{err}");
    }

    fn hex(s: impl AsRef<str>) -> Vec<u8> {
        let s = s.as_ref();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
