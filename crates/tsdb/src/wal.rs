//! The write-ahead log in Prometheus' `wlog` format.
//!
//! `<tenant>/wal/%08d` segments of 32 KiB pages; each record is optionally snappy-compressed and
//! split into fragments with a 7-byte header (type/flags, length, CRC32C). A writer never appends
//! to an existing segment: every open starts a new one. Readers detect torn and corrupt records
//! and report the offset of the first bad record, which repair truncates at (as Prometheus does).

mod reader;
pub mod record;
mod writer;

use std::path::{Path, PathBuf};

pub use reader::{Corruption, SegmentReader, read_segment_file};
pub use writer::{WalOptions, WalWriter};

/// Page size of a segment.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Fragment header size: type byte, 2-byte length, 4-byte CRC32C.
pub const HEADER_SIZE: usize = 7;
/// Default segment size (128 MiB), as Prometheus.
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;

/// Fragment types (low 3 bits of the header byte).
pub(crate) mod frag {
    pub const PAGE_TERM: u8 = 0;
    pub const FULL: u8 = 1;
    pub const FIRST: u8 = 2;
    pub const MIDDLE: u8 = 3;
    pub const LAST: u8 = 4;
    pub const SNAPPY: u8 = 0x08;
    pub const ZSTD: u8 = 0x10;
    pub const TYPE_MASK: u8 = 0x07;
}

/// Errors of WAL I/O.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error on a named file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Segment numbers have a gap, or the first segment after a checkpoint is missing;
    /// Prometheus refuses to start in this case too.
    #[error(
        "WAL segments are not sequential: segment {missing:08} is missing between {before:08} and {after:08} in {dir} \
         (to start with the segments from {after:08} on set aside, losing their samples: \
         --ringest.tsdb.wal-discard-after-gap)"
    )]
    NotSequential {
        /// The WAL directory.
        dir: PathBuf,
        /// Segment before the gap.
        before: u32,
        /// First missing number.
        missing: u32,
        /// Segment after the gap.
        after: u32,
    },
    /// The writer failed earlier and could not restore a clean segment tail.
    #[error("WAL writer is unusable after an earlier write failure: {0}")]
    Broken(String),
    /// The writer was closed.
    #[error("WAL is closed")]
    Closed,
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> WalError {
    WalError::Io { op, path: path.to_owned(), source }
}

/// Name of segment `i` in `dir`.
pub fn segment_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("{i:08}"))
}

/// Names of the entries of `dir` (none if it does not exist).
fn entry_names(dir: &Path) -> Result<Vec<String>, WalError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Parses an all-digits name.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Lists the numbered segment files of `dir` in order and checks they are contiguous.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>, WalError> {
    let out = list_segments_unchecked(dir)?;
    match first_gap(&out, None) {
        Some((before, after)) => {
            Err(WalError::NotSequential { dir: dir.to_owned(), before, missing: before + 1, after })
        }
        None => Ok(out),
    }
}

/// The numbered segment files of `dir` in order, gaps or not.
pub fn list_segments_unchecked(dir: &Path) -> Result<Vec<u32>, WalError> {
    let mut out: Vec<u32> = entry_names(dir)?.iter().filter_map(|n| number(n)).collect();
    out.sort_unstable();
    Ok(out)
}

/// The first gap in `segments` (sorted): the number before it and the segment after it. With
/// `checkpoint` (the number of the newest checkpoint, which holds every segment up to it),
/// only the segments after it count, and the first of them must follow it.
pub fn first_gap(segments: &[u32], checkpoint: Option<u32>) -> Option<(u32, u32)> {
    let after_checkpoint = |&&i: &&u32| checkpoint.is_none_or(|c| i > c);
    let mut prev = checkpoint;
    for &i in segments.iter().filter(after_checkpoint) {
        if let Some(p) = prev
            && i != p + 1
        {
            return Some((p, i));
        }
        prev = Some(i);
    }
    None
}

/// The newest complete checkpoint directory (`checkpoint.%08d`) in `dir`, with its number.
pub fn last_checkpoint(dir: &Path) -> Result<Option<(u32, PathBuf)>, WalError> {
    Ok(list_checkpoints(dir)?.pop())
}

/// Every complete checkpoint directory of `dir` with its number, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u32, PathBuf)>, WalError> {
    let mut out: Vec<(u32, PathBuf)> = entry_names(dir)?
        .iter()
        // `checkpoint.N.tmp` (incomplete) does not parse as a number.
        .filter_map(|n| {
            n.strip_prefix("checkpoint.").filter(|num| num.len() == 8).and_then(number).map(|i| (i, dir.join(n)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Removes `checkpoint.N.tmp` directories left by a crash while a checkpoint was written.
pub fn remove_tmp_checkpoints(dir: &Path) -> Result<(), WalError> {
    for n in entry_names(dir)? {
        if n.starts_with("checkpoint.") && n.ends_with(".tmp") {
            let p = dir.join(&n);
            std::fs::remove_dir_all(&p).map_err(|e| io_err("remove", &p, e))?;
            tracing::info!(dir = n, "Removed leftover temporary checkpoint directory");
        }
    }
    Ok(())
}
