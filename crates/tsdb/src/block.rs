//! Persistent blocks in Prometheus' format: `<ulid>/{meta.json, index, chunks/%06d, tombstones}`
//! (shared spec prometheus-formats §1-§5), their writer and their reader.
//!
//! A block is written into `<ulid>.tmp-for-creation/` (chunks, index, tombstones and meta.json,
//! each fsynced), which is fsynced and renamed to `<ulid>/`, and the parent directory fsynced.
//! A block is deleted by renaming it to `<ulid>.tmp-for-deletion/` first. Leftover `.tmp-for-*`
//! directories are removed when the TSDB opens, so a crash at any step leaves either no block
//! or a complete one.

pub mod chunks;
pub mod index;
mod meta;

use std::path::{Path, PathBuf};

pub use chunks::{ChunkReader, ChunkWriter, ENCODING_XOR};
pub use index::{ChunkMeta, IndexReader, IndexWriter, LabelRefs};
pub use meta::{BlockMeta, BlockStats, Compaction, META_FILENAME};

pub use crate::postings::{MatchKind, Matcher};

use crate::chunkenc::{XorIter, xor_num_samples};
use crate::labels::{Label, Labels};
use crate::labels::{RawChunk, SeriesData};

/// Suffix of a block being written.
pub const TMP_CREATION_SUFFIX: &str = ".tmp-for-creation";
/// Suffix of a block being deleted.
pub const TMP_DELETION_SUFFIX: &str = ".tmp-for-deletion";
/// The empty tombstones file: magic 0x0130BA30, version 1, CRC32C of no entries.
const EMPTY_TOMBSTONES: [u8; 9] = [0x01, 0x30, 0xBA, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00];

/// Errors of writing and reading blocks.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
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
    /// A file does not hold what its format requires.
    #[error("corrupt block file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The caller broke a writer invariant, or gave an invalid matcher.
    #[error("{0}")]
    Invalid(String),
}

impl BlockError {
    pub(crate) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlockError + 'a {
        move |source| BlockError::Io { op, path: path.to_owned(), source }
    }
}

/// A new block ULID: the current time in milliseconds and 80 random bits.
pub fn new_ulid() -> String {
    ulid::Ulid::new().to_string()
}

/// Whether `name` is a block directory name (a ULID).
pub fn is_block_name(name: &str) -> bool {
    name.len() == 26 && ulid::Ulid::from_string(name).is_ok()
}

/// Block directories of `dir` (ULID names only), sorted by name.
pub fn list_block_dirs(dir: &Path) -> Result<Vec<PathBuf>, BlockError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BlockError::io("list", dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(BlockError::io("list", dir))?;
        if e.file_name().to_str().is_some_and(is_block_name) && e.path().is_dir() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `*.tmp-for-creation` and `*.tmp-for-deletion` directories left by a crash. Returns
/// their names.
pub fn remove_tmp_dirs(dir: &Path) -> Result<Vec<String>, BlockError> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_CREATION_SUFFIX) || name.ends_with(TMP_DELETION_SUFFIX) {
            std::fs::remove_dir_all(e.path()).map_err(BlockError::io("remove", &e.path()))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Deletes a block directory: rename to `.tmp-for-deletion`, then remove.
pub fn delete_block(dir: &Path) -> Result<(), BlockError> {
    let mut tmp = dir.as_os_str().to_owned();
    tmp.push(TMP_DELETION_SUFFIX);
    let tmp = PathBuf::from(tmp);
    std::fs::rename(dir, &tmp).map_err(BlockError::io("rename", dir))?;
    std::fs::remove_dir_all(&tmp).map_err(BlockError::io("remove", &tmp))?;
    if let Some(parent) = dir.parent() {
        let _ = crate::fsutil::fsync_dir(parent);
    }
    Ok(())
}

/// Writes one block. Callers pass the sorted symbols, then every series once to
/// [`BlockWriter::count_series`], then the same series in label order to
/// [`BlockWriter::add_series`], then call [`BlockWriter::finish`].
pub struct BlockWriter {
    parent: PathBuf,
    ulid: String,
    tmp: PathBuf,
    min_time: i64,
    max_time: i64,
    chunks: ChunkWriter,
    index: IndexWriter,
    stats: BlockStats,
    metas: Vec<ChunkMeta>,
}

impl BlockWriter {
    /// Starts block `[min_time, max_time)` in `parent/<ulid>.tmp-for-creation`.
    pub fn create<'a>(
        parent: &Path,
        min_time: i64,
        max_time: i64,
        symbols: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, BlockError> {
        let ulid = new_ulid();
        let tmp = parent.join(format!("{ulid}{TMP_CREATION_SUFFIX}"));
        std::fs::create_dir_all(&tmp).map_err(BlockError::io("create", &tmp))?;
        let chunks = ChunkWriter::new(&tmp.join("chunks"), chunks::DEFAULT_SEGMENT_SIZE)?;
        let index = IndexWriter::create(&tmp.join("index"), symbols)?;
        Ok(BlockWriter {
            parent: parent.to_owned(),
            ulid,
            tmp,
            min_time,
            max_time,
            chunks,
            index,
            stats: BlockStats::default(),
            metas: Vec::new(),
        })
    }

    /// The new block's ULID.
    pub fn ulid(&self) -> &str {
        &self.ulid
    }

    /// Counting pass (see the type's docs).
    pub fn count_series(&mut self, labels: &[LabelRefs]) {
        self.index.count_series(labels);
    }

    /// Writes a series and its XOR chunks `(min_t, max_t, bytes)`, which must lie inside the
    /// block's range.
    pub fn add_series(&mut self, labels: &[LabelRefs], chunks: &[(i64, i64, &[u8])]) -> Result<(), BlockError> {
        self.metas.clear();
        for &(min_t, max_t, bytes) in chunks {
            if min_t < self.min_time || max_t >= self.max_time {
                return Err(BlockError::Invalid(format!(
                    "chunk {min_t}..={max_t} outside the block range {}..{}",
                    self.min_time, self.max_time
                )));
            }
            let chunk_ref = self.chunks.write(ENCODING_XOR, bytes)?;
            self.metas.push(ChunkMeta { min_time: min_t, max_time: max_t, chunk_ref });
            let n = xor_num_samples(bytes) as u64;
            self.stats.num_samples += n;
            self.stats.num_float_samples += n;
        }
        self.index.add_series(labels, &self.metas)?;
        self.stats.num_series += 1;
        self.stats.num_chunks += chunks.len() as u64;
        Ok(())
    }

    /// Completes the block: index, tombstones, meta.json, rename into place. A block without
    /// samples is not kept (`None`), as in Prometheus. On failure (a full disk, say) the
    /// unfinished block's directory is removed: nothing is left for the next start to clean.
    pub fn finish(self) -> Result<Option<BlockMeta>, BlockError> {
        let tmp = self.tmp.clone();
        let res = self.complete();
        if res.is_err() {
            crate::fsutil::remove_unfinished(&tmp, "block");
        }
        res
    }

    fn complete(self) -> Result<Option<BlockMeta>, BlockError> {
        crate::failpoint::hit("block.before_index");
        self.chunks.finish()?;
        self.index.finish()?;
        if self.stats.num_samples == 0 {
            std::fs::remove_dir_all(&self.tmp).map_err(BlockError::io("remove", &self.tmp))?;
            return Ok(None);
        }
        crate::failpoint::hit("block.before_meta");
        let ts = self.tmp.join("tombstones");
        write_synced(&ts, &EMPTY_TOMBSTONES)?;
        let meta = BlockMeta::new_level1(self.ulid.clone(), self.min_time, self.max_time, self.stats);
        meta.write(&self.tmp)?;
        crate::fsutil::fsync_dir(&self.tmp.join("chunks")).map_err(BlockError::io("fsync", &self.tmp))?;
        crate::fsutil::fsync_dir(&self.tmp).map_err(BlockError::io("fsync", &self.tmp))?;
        crate::failpoint::hit("block.before_rename");
        let dst = self.parent.join(&self.ulid);
        std::fs::rename(&self.tmp, &dst).map_err(BlockError::io("rename", &self.tmp))?;
        crate::fsutil::fsync_dir(&self.parent).map_err(BlockError::io("fsync", &self.parent))?;
        Ok(Some(meta))
    }

    /// Removes the unfinished block.
    pub fn abort(self) {
        drop(self.index);
        drop(self.chunks);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Writes `data` to a new file at `path` and fsyncs it.
pub(crate) fn write_synced(path: &Path, data: &[u8]) -> Result<(), BlockError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(BlockError::io("create", path))?;
    f.write_all(data).map_err(BlockError::io("write", path))?;
    f.sync_all().map_err(BlockError::io("fsync", path))
}

/// A block: its meta.json, and its index and chunk readers, opened on first use (a block that
/// is never read costs its meta only; an opened index maps the file and keeps its symbol and
/// postings offset tables in memory).
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    readers: std::sync::OnceLock<(IndexReader, ChunkReader)>,
}

impl Block {
    /// The block in `dir` (reads its meta.json).
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta = BlockMeta::read(dir)?;
        Ok(Block { dir: dir.to_owned(), meta, readers: std::sync::OnceLock::new() })
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    fn readers(&self) -> Result<&(IndexReader, ChunkReader), BlockError> {
        if let Some(r) = self.readers.get() {
            return Ok(r);
        }
        let r = (IndexReader::open(&self.dir.join("index"))?, ChunkReader::open(&self.dir.join("chunks"))?);
        let _ = self.readers.set(r);
        Ok(self.readers.get().expect("just set"))
    }

    /// Its index.
    pub fn index(&self) -> Result<&IndexReader, BlockError> {
        Ok(&self.readers()?.0)
    }

    /// Its chunks.
    pub fn chunks(&self) -> Result<&ChunkReader, BlockError> {
        Ok(&self.readers()?.1)
    }

    /// The labels of series `id`.
    pub fn labels(&self, refs: &[LabelRefs]) -> Result<Labels, BlockError> {
        let index = self.index()?;
        let mut out = Vec::with_capacity(refs.len());
        for &(n, v) in refs {
            out.push(Label { name: index.symbol(n)?.to_owned(), value: index.symbol(v)?.to_owned() });
        }
        Ok(Labels(out))
    }

    /// The ids of the series selected by `matchers` with a chunk overlapping `[mint, maxt]`,
    /// ascending (label order), with the references of their first label.
    pub fn select_ids(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(u32, Option<LabelRefs>)>, BlockError> {
        let index = self.index()?;
        let mut out = Vec::new();
        for id in crate::postings::select(index, matchers)? {
            let (refs, metas) = index.series(id)?;
            if metas.iter().any(|m| m.max_time >= mint && m.min_time <= maxt) {
                out.push((id, refs.first().copied()));
            }
        }
        Ok(out)
    }

    /// Appends the XOR chunks of series `id` overlapping `[mint, maxt]`, whole as stored;
    /// any other encoding is an error.
    pub fn chunks_of(&self, id: u32, mint: i64, maxt: i64, out: &mut Vec<RawChunk>) -> Result<(), BlockError> {
        let (_, metas) = self.index()?.series(id)?;
        for (m, data) in self.overlapping(id, &metas, mint, maxt)? {
            out.push(RawChunk { min_time: m.min_time, max_time: m.max_time, data: data.to_vec() });
        }
        Ok(())
    }

    /// The chunks in `metas` (of series `id`) overlapping `[mint, maxt]`, with their bytes.
    fn overlapping<'a>(
        &'a self,
        id: u32,
        metas: &'a [ChunkMeta],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(&'a ChunkMeta, &'a [u8])>, BlockError> {
        let chunks = self.chunks()?;
        let mut out = Vec::new();
        for m in metas.iter().filter(|m| m.max_time >= mint && m.min_time <= maxt) {
            let (enc, data) = chunks.chunk(m.chunk_ref)?;
            if enc != ENCODING_XOR {
                return Err(BlockError::Corrupt {
                    path: self.dir.clone(),
                    reason: format!("series {id}: chunk encoding {enc} is not supported"),
                });
            }
            out.push((m, data));
        }
        Ok(out)
    }

    /// Calls `f` with each series selected by `matchers` (its label references) and its XOR
    /// chunks overlapping `[mint, maxt]` (`(meta, bytes)`); any other encoding is an error.
    fn for_each_selected(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(u32, &[LabelRefs], Vec<(&ChunkMeta, &[u8])>) -> Result<(), BlockError>,
    ) -> Result<(), BlockError> {
        let index = self.index()?;
        for id in crate::postings::select(index, matchers)? {
            let (refs, metas) = index.series(id)?;
            f(id, &refs, self.overlapping(id, &metas, mint, maxt)?)?;
        }
        Ok(())
    }

    /// The series selected by `matchers` with their samples in `[mint, maxt]`, in label order;
    /// series without samples there are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesData>, BlockError> {
        let mut out = Vec::new();
        self.for_each_selected(matchers, mint, maxt, |id, refs, chunks| {
            let mut samples = Vec::new();
            for (m, data) in chunks {
                let mut it = XorIter::new(data);
                samples.extend(it.by_ref().filter(|&(t, _)| t >= mint && t <= maxt));
                if it.is_corrupt() {
                    return Err(BlockError::Corrupt {
                        path: self.dir.clone(),
                        reason: format!("series {id}: chunk {:#x} does not decode", m.chunk_ref),
                    });
                }
            }
            if !samples.is_empty() {
                out.push(SeriesData { labels: self.labels(refs)?, samples });
            }
            Ok(())
        })?;
        Ok(out)
    }
}
