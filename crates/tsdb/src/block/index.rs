//! The block index, format v2: symbol table, series (16-byte aligned, id = offset / 16),
//! postings lists, postings offset table and TOC, every section CRC32C-checked. Label indices
//! are not written (as Prometheus >= 3.7; readers of v2 do not need them).
//!
//! The writer streams: symbols first (all known up front), then one series at a time in label
//! order, then the postings. Postings are laid out in two passes over the series: a counting
//! pass ([`IndexWriter::count_series`]) sizes every list, so the writing pass drops each series
//! id straight into one flat array instead of growing a vector per label pair.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hashbrown::HashMap;
use memmap2::Mmap;

use super::BlockError;
use crate::encoding::{Decoder, put_uvarint, put_varint};

/// Magic number of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Length of the TOC at the end of the file.
const TOC_LEN: usize = 6 * 8 + 4;

/// A chunk as the index lists it: first and last sample time (inclusive) and its reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// Chunk reference (segment index << 32 | offset).
    pub chunk_ref: u64,
}

/// A label as a pair of symbol references.
pub type LabelRefs = (u32, u32);

fn pair_key(l: LabelRefs) -> u64 {
    (l.0 as u64) << 32 | l.1 as u64
}

/// Writes an index file.
pub struct IndexWriter {
    path: PathBuf,
    w: BufWriter<File>,
    pos: u64,
    buf: Vec<u8>,
    /// Symbol bytes, concatenated, with their start offsets (for the postings offset table).
    sym_bytes: Vec<u8>,
    sym_starts: Vec<u32>,
    toc_series: u64,
    /// Counting pass: list lengths; after `layout`: index into `pairs`.
    counts: HashMap<u64, u32>,
    /// Label pairs in (name, value) order with the start of their list in `postings`.
    pairs: Vec<(u64, u32)>,
    cursors: Vec<u32>,
    postings: Vec<u32>,
    all: Vec<u32>,
    laid_out: bool,
    last_labels: Vec<LabelRefs>,
}

impl IndexWriter {
    /// Creates the file and writes the header and the symbol table. `symbols` must be strictly
    /// ascending in byte order and contain every label name and value of the series to come.
    pub fn create<'a>(path: &Path, symbols: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, BlockError> {
        let f = File::create(path).map_err(BlockError::io("create", path))?;
        let mut iw = IndexWriter {
            path: path.to_owned(),
            w: BufWriter::with_capacity(1 << 20, f),
            pos: 0,
            buf: Vec::new(),
            sym_bytes: Vec::new(),
            sym_starts: Vec::new(),
            toc_series: 0,
            counts: HashMap::new(),
            pairs: Vec::new(),
            cursors: Vec::new(),
            postings: Vec::new(),
            all: Vec::new(),
            laid_out: false,
            last_labels: Vec::new(),
        };
        let mut head = MAGIC_INDEX.to_be_bytes().to_vec();
        head.push(2);
        iw.write(&head)?;
        // Symbol table: len | count | entries | CRC(count ‖ entries).
        let mut body = Vec::new();
        let mut prev: Option<&[u8]> = None;
        let mut n = 0u32;
        for s in symbols {
            if prev.is_some_and(|p| p >= s) {
                return Err(BlockError::Invalid(format!("index symbols not strictly sorted at {:?}", lossy(s))));
            }
            prev = Some(s);
            put_uvarint(&mut body, s.len() as u64);
            body.extend_from_slice(s);
            iw.sym_starts.push(iw.sym_bytes.len() as u32);
            iw.sym_bytes.extend_from_slice(s);
            n += 1;
        }
        iw.sym_starts.push(iw.sym_bytes.len() as u32);
        let mut content = n.to_be_bytes().to_vec();
        content.extend_from_slice(&body);
        iw.write_section(&content)?;
        iw.toc_series = iw.pos;
        Ok(iw)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), BlockError> {
        self.w.write_all(b).map_err(BlockError::io("write", &self.path))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// `len (4 BE) ‖ content ‖ CRC32C(content)`.
    fn write_section(&mut self, content: &[u8]) -> Result<(), BlockError> {
        self.write(&(content.len() as u32).to_be_bytes())?;
        self.write(content)?;
        self.write(&crc32c::crc32c(content).to_be_bytes())
    }

    fn pad_to(&mut self, align: u64) -> Result<(), BlockError> {
        let pad = (align - self.pos % align) % align;
        self.write(&[0u8; 16][..pad as usize])
    }

    fn symbol(&self, r: u32) -> &[u8] {
        &self.sym_bytes[self.sym_starts[r as usize] as usize..self.sym_starts[r as usize + 1] as usize]
    }

    /// Counting pass: call once per series, in any order, before the first `add_series`.
    pub fn count_series(&mut self, labels: &[LabelRefs]) {
        for &l in labels {
            *self.counts.entry(pair_key(l)).or_insert(0) += 1;
        }
    }

    fn layout(&mut self) {
        let mut pairs: Vec<(u64, u32)> = self.counts.iter().map(|(&k, &c)| (k, c)).collect();
        pairs.sort_unstable();
        let mut start = 0u32;
        for (i, (k, c)) in pairs.iter_mut().enumerate() {
            let n = *c;
            *c = start;
            start += n;
            *self.counts.get_mut(k).expect("counted pair") = i as u32;
        }
        self.cursors = pairs.iter().map(|&(_, s)| s).collect();
        self.pairs = pairs;
        self.postings = vec![0; start as usize];
        self.laid_out = true;
    }

    /// Writes one series (labels sorted by name, series in label order, at least one chunk,
    /// chunks in time order without overlap) and returns its id.
    pub fn add_series(&mut self, labels: &[LabelRefs], chunks: &[ChunkMeta]) -> Result<u32, BlockError> {
        if !self.laid_out {
            self.layout();
        }
        if chunks.is_empty() {
            return Err(BlockError::Invalid("series without chunks".into()));
        }
        if !self.last_labels.is_empty() && labels <= &self.last_labels[..] {
            return Err(BlockError::Invalid("series not added in label order".into()));
        }
        self.last_labels.clear();
        self.last_labels.extend_from_slice(labels);
        self.pad_to(16)?;
        let id =
            u32::try_from(self.pos / 16).map_err(|_| BlockError::Invalid("index series section over 64 GiB".into()))?;
        let mut content = std::mem::take(&mut self.buf);
        content.clear();
        put_uvarint(&mut content, labels.len() as u64);
        for &(n, v) in labels {
            put_uvarint(&mut content, n as u64);
            put_uvarint(&mut content, v as u64);
        }
        put_uvarint(&mut content, chunks.len() as u64);
        let c0 = chunks[0];
        put_varint(&mut content, c0.min_time);
        put_uvarint(&mut content, (c0.max_time - c0.min_time) as u64);
        put_uvarint(&mut content, c0.chunk_ref);
        for w in chunks.windows(2) {
            let (p, c) = (w[0], w[1]);
            if c.min_time <= p.max_time || c.max_time < c.min_time {
                return Err(BlockError::Invalid(format!("chunks overlap or are out of order at {}", c.min_time)));
            }
            put_uvarint(&mut content, (c.min_time - p.max_time) as u64);
            put_uvarint(&mut content, (c.max_time - c.min_time) as u64);
            put_varint(&mut content, c.chunk_ref as i64 - p.chunk_ref as i64);
        }
        let mut len = Vec::with_capacity(5);
        put_uvarint(&mut len, content.len() as u64);
        self.write(&len)?;
        self.write(&content)?;
        self.write(&crc32c::crc32c(&content).to_be_bytes())?;
        self.buf = content;
        for &l in labels {
            let Some(&i) = self.counts.get(&pair_key(l)) else {
                return Err(BlockError::Invalid("series label missing from the counting pass".into()));
            };
            let cur = &mut self.cursors[i as usize];
            self.postings[*cur as usize] = id;
            *cur += 1;
        }
        self.all.push(id);
        Ok(id)
    }

    /// Writes the postings, the postings offset table and the TOC, and fsyncs the file.
    pub fn finish(mut self) -> Result<u64, BlockError> {
        if !self.laid_out {
            self.layout();
        }
        self.pad_to(4)?;
        let postings_start = self.pos;
        // Postings offset table entries, built as the lists are written.
        let mut table = Vec::new();
        let mut entries = 0u32;
        let mut list = Vec::new();
        let mut put_entry = |table: &mut Vec<u8>, name: &[u8], value: &[u8], off: u64| {
            table.push(2);
            put_uvarint(table, name.len() as u64);
            table.extend_from_slice(name);
            put_uvarint(table, value.len() as u64);
            table.extend_from_slice(value);
            put_uvarint(table, off);
            entries += 1;
        };
        let all = std::mem::take(&mut self.all);
        put_entry(&mut table, b"", b"", self.pos);
        encode_list(&mut list, &all);
        self.write_section(&list)?;
        let pairs = std::mem::take(&mut self.pairs);
        let postings = std::mem::take(&mut self.postings);
        for (i, &(k, start)) in pairs.iter().enumerate() {
            let end = pairs.get(i + 1).map_or(postings.len(), |p| p.1 as usize);
            if self.cursors[i] as usize != end {
                return Err(BlockError::Invalid("counting pass and series disagree".into()));
            }
            self.pad_to(4)?;
            let off = self.pos;
            let (n, v) = ((k >> 32) as u32, k as u32);
            put_entry(&mut table, self.symbol(n), self.symbol(v), off);
            encode_list(&mut list, &postings[start as usize..end]);
            self.write_section(&list)?;
        }
        let pot = self.pos;
        let mut content = entries.to_be_bytes().to_vec();
        content.extend_from_slice(&table);
        self.write_section(&content)?;
        let mut toc = Vec::with_capacity(TOC_LEN);
        for v in [5, self.toc_series, postings_start, pot, postings_start, pot] {
            toc.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&toc);
        toc.extend_from_slice(&crc.to_be_bytes());
        self.write(&toc)?;
        let f = self.w.into_inner().map_err(|e| BlockError::io("write", &self.path)(e.into_error()))?;
        f.sync_all().map_err(BlockError::io("fsync", &self.path))?;
        Ok(self.pos)
    }
}

fn encode_list(out: &mut Vec<u8>, ids: &[u32]) {
    out.clear();
    out.reserve(4 + ids.len() * 4);
    out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads an index file (memory-mapped). The symbol table and the postings offset table are
/// loaded; series and postings lists are read from the mapping on demand.
pub struct IndexReader {
    path: PathBuf,
    map: Mmap,
    /// Start offsets of the symbols' bytes, plus the end of the last.
    symbols: Vec<(u32, u32)>,
    /// Label name -> (value, offset of its postings list), values in byte order.
    postings: BTreeMap<String, Vec<(String, u64)>>,
}

impl std::fmt::Debug for IndexReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader").field("path", &self.path).finish()
    }
}

impl IndexReader {
    /// Opens and checks an index file.
    pub fn open(path: &Path) -> Result<Self, BlockError> {
        let f = File::open(path).map_err(BlockError::io("open", path))?;
        // SAFETY: index files are immutable once their block is complete.
        let map = unsafe { Mmap::map(&f) }.map_err(BlockError::io("mmap", path))?;
        let bad = |reason: String| BlockError::Corrupt { path: path.to_owned(), reason };
        if map.len() < 5 + TOC_LEN || u32::from_be_bytes(map[..4].try_into().unwrap()) != MAGIC_INDEX {
            return Err(bad("invalid index magic".into()));
        }
        if map[4] != 2 && map[4] != 1 {
            return Err(bad(format!("unsupported index version {}", map[4])));
        }
        let toc = &map[map.len() - TOC_LEN..];
        if crc32c::crc32c(&toc[..48]) != u32::from_be_bytes(toc[48..].try_into().unwrap()) {
            return Err(bad("TOC checksum mismatch".into()));
        }
        let at = |i: usize| u64::from_be_bytes(toc[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
        let (sym_off, pot_off) = (at(0), at(5));
        let mut r = IndexReader { path: path.to_owned(), map, symbols: Vec::new(), postings: BTreeMap::new() };
        let syms = r.section(sym_off)?;
        let mut d = Decoder::new(syms);
        let n = d.be32().ok_or_else(|| bad("symbol table too short".into()))?;
        let mut symbols = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let s = d.uvarint_bytes().ok_or_else(|| bad("symbol table truncated".into()))?;
            let start = s.as_ptr() as usize - r.map.as_ptr() as usize;
            std::str::from_utf8(s).map_err(|_| bad("symbol is not UTF-8".into()))?;
            symbols.push((start as u32, (start + s.len()) as u32));
        }
        r.symbols = symbols;
        let table = r.section(pot_off)?;
        let mut d = Decoder::new(table);
        let n = d.be32().ok_or_else(|| bad("postings offset table too short".into()))?;
        let mut postings: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for _ in 0..n {
            let entry = (|| {
                if d.uvarint()? != 2 {
                    return None;
                }
                let name = d.uvarint_bytes()?;
                let value = d.uvarint_bytes()?;
                Some((name, value, d.uvarint()?))
            })();
            let (name, value, off) = entry.ok_or_else(|| bad("postings offset table truncated".into()))?;
            postings.entry(lossy(name)).or_default().push((lossy(value), off));
        }
        r.postings = postings;
        Ok(r)
    }

    /// The content of the section at `off` (`len ‖ content ‖ CRC`), CRC-checked.
    fn section(&self, off: usize) -> Result<&[u8], BlockError> {
        let bad = |reason: String| BlockError::Corrupt { path: self.path.clone(), reason };
        let m = &self.map[..];
        if off.checked_add(4).is_none_or(|e| e > m.len()) {
            return Err(bad(format!("section at {off} outside the file")));
        }
        let len = u32::from_be_bytes(m[off..off + 4].try_into().unwrap()) as usize;
        let end = off + 4 + len;
        if end.checked_add(4).is_none_or(|e| e > m.len()) {
            return Err(bad(format!("section at {off} runs past the end of the file")));
        }
        let content = &m[off + 4..end];
        if crc32c::crc32c(content) != u32::from_be_bytes(m[end..end + 4].try_into().unwrap()) {
            return Err(bad(format!("section at {off}: checksum mismatch")));
        }
        Ok(content)
    }

    /// The symbol with reference `r`.
    pub fn symbol(&self, r: u32) -> Result<&str, BlockError> {
        let &(s, e) = self.symbols.get(r as usize).ok_or_else(|| BlockError::Corrupt {
            path: self.path.clone(),
            reason: format!("symbol reference {r} out of range"),
        })?;
        // Checked to be UTF-8 on open.
        Ok(std::str::from_utf8(&self.map[s as usize..e as usize]).expect("validated"))
    }

    /// Number of symbols.
    pub fn num_symbols(&self) -> usize {
        self.symbols.len()
    }

    /// Label names in byte order.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.postings.keys().map(String::as_str).filter(|n| !n.is_empty())
    }

    /// Values of label `name` in byte order.
    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.postings.get(name).into_iter().flatten().map(|(v, _)| v.as_str())
    }

    fn list_at(&self, off: u64) -> Result<Vec<u32>, BlockError> {
        let c = self.section(off as usize)?;
        let n = c.len().checked_sub(4).map(|l| l / 4).unwrap_or(0);
        let declared = c.get(..4).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize);
        if declared != Some(n) || c.len() != 4 + n * 4 {
            return Err(BlockError::Corrupt { path: self.path.clone(), reason: format!("postings list at {off}") });
        }
        Ok(c[4..].chunks_exact(4).map(|b| u32::from_be_bytes(b.try_into().unwrap())).collect())
    }

    /// The series ids of `name="value"` (empty if the pair does not occur).
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, BlockError> {
        let Some(values) = self.postings.get(name) else { return Ok(Vec::new()) };
        match values.binary_search_by(|(v, _)| v.as_str().cmp(value)) {
            Ok(i) => self.list_at(values[i].1),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Every series id (the ("", "") list).
    pub fn all_postings(&self) -> Result<Vec<u32>, BlockError> {
        self.postings("", "")
    }

    /// Union of the postings of the values of `name` that satisfy `keep`.
    pub fn postings_where(&self, name: &str, mut keep: impl FnMut(&str) -> bool) -> Result<Vec<u32>, BlockError> {
        let mut lists = Vec::new();
        for (v, off) in self.postings.get(name).into_iter().flatten() {
            if keep(v) {
                lists.push(self.list_at(*off)?);
            }
        }
        Ok(crate::postings::union(lists))
    }

    /// The labels (as symbol references) and chunks of series `id`.
    pub fn series(&self, id: u32) -> Result<(Vec<LabelRefs>, Vec<ChunkMeta>), BlockError> {
        let bad = |reason: String| BlockError::Corrupt { path: self.path.clone(), reason };
        let off = id as usize * 16;
        if off >= self.map.len() {
            return Err(bad(format!("series {id} outside the file")));
        }
        let mut d = Decoder::new(&self.map[off..]);
        let len = d.uvarint().ok_or_else(|| bad(format!("series {id}: truncated")))? as usize;
        let start = self.map.len() - d.remaining();
        // `len` is read from the file: up to 2^64 - 1, so the sum is checked, not wrapped.
        if start.checked_add(len).and_then(|e| e.checked_add(4)).is_none_or(|e| e > self.map.len()) {
            return Err(bad(format!("series {id}: runs past the end of the file")));
        }
        let content = &self.map[start..start + len];
        if crc32c::crc32c(content) != u32::from_be_bytes(self.map[start + len..start + len + 4].try_into().unwrap()) {
            return Err(bad(format!("series {id}: checksum mismatch")));
        }
        let parse = || -> Option<(Vec<LabelRefs>, Vec<ChunkMeta>)> {
            let mut d = Decoder::new(content);
            let nl = d.uvarint()? as usize;
            let mut labels = Vec::with_capacity(nl.min(64));
            for _ in 0..nl {
                labels.push((u32::try_from(d.uvarint()?).ok()?, u32::try_from(d.uvarint()?).ok()?));
            }
            let nc = d.uvarint()? as usize;
            let mut chunks: Vec<ChunkMeta> = Vec::with_capacity(nc.min(1024));
            for i in 0..nc {
                if i == 0 {
                    let min_time = d.varint()?;
                    let max_time = min_time.checked_add(d.uvarint()? as i64)?;
                    chunks.push(ChunkMeta { min_time, max_time, chunk_ref: d.uvarint()? });
                } else {
                    let p = chunks[i - 1];
                    let min_time = p.max_time.checked_add(d.uvarint()? as i64)?;
                    let max_time = min_time.checked_add(d.uvarint()? as i64)?;
                    let chunk_ref = (p.chunk_ref as i64).checked_add(d.varint()?)? as u64;
                    chunks.push(ChunkMeta { min_time, max_time, chunk_ref });
                }
            }
            (d.remaining() == 0).then_some((labels, chunks))
        };
        parse().ok_or_else(|| bad(format!("series {id}: malformed entry")))
    }
}

impl crate::postings::Source for IndexReader {
    type Error = BlockError;

    fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, BlockError> {
        IndexReader::postings(self, name, value)
    }

    fn postings_where(&self, name: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<u32>, BlockError> {
        IndexReader::postings_where(self, name, keep)
    }

    fn all(&self) -> Result<Vec<u32>, BlockError> {
        self.all_postings()
    }
}
