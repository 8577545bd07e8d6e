//! A read held open across many series: the StoreAPI streams a selection series by series
//! without holding all their chunks at once.
//!
//! A [`Reader`] fixes, when it is made, the blocks it reads and the floor under which the head
//! is left out (the newest block's end), and holds the read gate so head truncation waits for
//! it: every sample is read exactly once, from a block or from the head, however long the read
//! takes and whatever block is cut meanwhile. Its blocks' files are opened (mapped) at once, so
//! retention may delete them while the read goes on. Appenders never wait for a reader: a
//! series' lock is held for the copy of its chunks only.

use std::sync::Arc;

use parking_lot::RwLockReadGuard;
use smallvec::SmallVec;

use super::{Tsdb, TsdbError};
use crate::block::Block;
use crate::head::{Head, MemSeries};
use crate::labels::{LabelTable, RawChunk, SetRef};
use crate::postings::Matcher;

/// One TSDB read at a fixed set of blocks over `[mint, maxt]`.
pub struct Reader<'a> {
    head: &'a Head,
    _gate: RwLockReadGuard<'a, ()>,
    blocks: Vec<Arc<Block>>,
    /// The head holds nothing before this for this read: the blocks hold it.
    floor: i64,
    mint: i64,
    maxt: i64,
}

/// Where one selected series' data lies.
enum Part {
    /// Series id in the reader's block of that position.
    Block(usize, u32),
    /// The head series.
    Head(Arc<MemSeries>),
}

/// A series chosen by [`Reader::select`]: its labels and where its chunks are.
pub struct Selected {
    /// The series' labels, in the selection's table.
    pub labels: SetRef,
    /// Where its chunks are.
    pub parts: Parts,
}

/// Where a selected series' chunks are: in blocks of its reader, in the head, or both.
pub struct Parts(SmallVec<[Part; 1]>);

/// The series a selection found so far.
struct Found {
    selected: Vec<Selected>,
    /// When several sources are read: each found series' own labels (before the table
    /// finishes them), to find it again in another source. Own, not final, labels: two series
    /// that only differ in a removed label stay two series, as in one source.
    own: Option<OwnLabels>,
}

impl Found {
    /// Adds the series with own label ids `ids` found at `part`, or adds `part` to it if
    /// another source had it.
    fn add(&mut self, ids: &[u32], part: Part, table: &mut LabelTable) {
        if let Some(own) = &mut self.own {
            if let Some(i) = own.find(ids) {
                self.selected[i].parts.0.push(part);
                return;
            }
            own.add(ids, self.selected.len());
        }
        self.selected.push(Selected { labels: table.push(ids), parts: Parts(smallvec::smallvec![part]) });
    }
}

/// Own label ids of found series, back to back, with a hash table of their positions.
#[derive(Default)]
struct OwnLabels {
    ids: Vec<u32>,
    /// `(start, len)` in `ids` of each found series, in found order.
    spans: Vec<(usize, usize)>,
    at: hashbrown::HashTable<usize>,
    state: hashbrown::DefaultHashBuilder,
}

impl OwnLabels {
    fn get(&self, i: usize) -> &[u32] {
        let (start, len) = self.spans[i];
        &self.ids[start..start + len]
    }

    /// The position of the series with own labels `ids`, if found before.
    fn find(&self, ids: &[u32]) -> Option<usize> {
        let hash = std::hash::BuildHasher::hash_one(&self.state, ids);
        self.at.find(hash, |&i| self.get(i) == ids).copied()
    }

    /// Records that the series with own labels `ids` is at position `i` (the next one).
    fn add(&mut self, ids: &[u32], i: usize) {
        debug_assert_eq!(i, self.spans.len(), "positions are added in order");
        self.spans.push((self.ids.len(), ids.len()));
        self.ids.extend_from_slice(ids);
        let hash = std::hash::BuildHasher::hash_one(&self.state, ids);
        let (all, spans, state) = (&self.ids, &self.spans, &self.state);
        self.at.insert_unique(hash, i, |&j| {
            let (start, len) = spans[j];
            std::hash::BuildHasher::hash_one(state, &all[start..start + len])
        });
    }
}

impl Tsdb {
    /// A reader of the blocks and head overlapping `[mint, maxt]` as they are now.
    pub fn reader(&self, mint: i64, maxt: i64) -> Result<Reader<'_>, TsdbError> {
        let gate = self.read_gate.read();
        let all = self.blocks();
        let floor = all.iter().map(|b| b.meta().max_time).max().unwrap_or(i64::MIN);
        let blocks: Vec<Arc<Block>> =
            all.into_iter().filter(|b| b.meta().max_time > mint && b.meta().min_time <= maxt).collect();
        for b in &blocks {
            b.index()?;
            b.chunks()?;
        }
        Ok(Reader { head: &self.head, _gate: gate, blocks, floor, mint, maxt })
    }

    /// The series selected by `matchers` with their chunks overlapping `[mint, maxt]` from the
    /// blocks and the head together, sorted by labels, each sample exactly once (see
    /// [`Reader`]).
    pub fn select_chunks(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<crate::labels::SeriesChunks>, TsdbError> {
        let reader = self.reader(mint, maxt)?;
        let mut table = LabelTable::default();
        let mut selected = reader.select(matchers, &mut table)?;
        table.rank();
        selected.sort_unstable_by(|a, b| table.cmp(a.labels, b.labels));
        let mut out = Vec::new();
        for s in selected {
            let mut chunks = Vec::new();
            reader.chunks(&s.parts, &mut chunks)?;
            if !chunks.is_empty() {
                out.push(crate::labels::SeriesChunks { labels: table.labels(s.labels), chunks });
            }
        }
        Ok(out)
    }
}

impl Reader<'_> {
    /// The series selected by `matchers` (Prometheus' semantics; none: every series) with data
    /// in the read's range, in no particular order, without their chunks; their labels go into
    /// `table`, finished as its [`LabelTable::set_merge`] says.
    pub fn select(&self, matchers: &[Matcher], table: &mut LabelTable) -> Result<Vec<Selected>, TsdbError> {
        let mut found = Found {
            selected: Vec::new(),
            // Blocks and head each hold a series once: equal labels in several are one series.
            own: (!self.blocks.is_empty()).then(OwnLabels::default),
        };
        let mut ids: Vec<u32> = Vec::new();
        // Table ids by the source's own string ids: a string shared by many series is looked
        // up and hashed once per selection.
        let mut seen: hashbrown::HashMap<u32, u32> = hashbrown::HashMap::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let index = b.index()?;
            seen.clear();
            let selected = b.select_ids(matchers, self.mint, self.maxt)?;
            found.selected.reserve(selected.len());
            table.reserve(selected.len(), selected.first().map_or(0, |(_, refs)| 2 * refs.len()));
            for (id, refs) in selected {
                ids.clear();
                for (n, v) in refs {
                    for r in [n, v] {
                        let t = match seen.get(&r) {
                            Some(&t) => t,
                            None => *seen.entry(r).or_insert(table.intern(index.symbol(r)?)),
                        };
                        ids.push(t);
                    }
                }
                found.add(&ids, Part::Block(i, id), table);
            }
        }
        let head_mint = self.mint.max(self.floor);
        if self.head.min_time() <= self.maxt && self.head.max_time() >= head_mint {
            let series = if matchers.is_empty() {
                let mut all = Vec::new();
                self.head.for_each_series(|s| all.push(s.clone()));
                all
            } else {
                self.head.select(matchers)
            };
            let _symbols = self.head.symbol_gate.read();
            seen.clear();
            found.selected.reserve(series.len());
            table.reserve(series.len(), series.first().map_or(0, |s| s.labels.len()));
            for s in series {
                if !s.state.lock().has_data_in(head_mint, self.maxt) {
                    continue;
                }
                ids.clear();
                for &id in s.labels.iter() {
                    let t = match seen.get(&id) {
                        Some(&t) => t,
                        None => {
                            let t = self.head.symbols.with_str(id, |text| table.intern(text));
                            seen.insert(id, t);
                            t
                        }
                    };
                    ids.push(t);
                }
                found.add(&ids, Part::Head(s), table);
            }
        }
        Ok(found.selected)
    }

    /// Appends the chunks of `s` overlapping the read's range, by first sample time: block
    /// chunks whole as stored, head chunks from the floor on (one reaching under it re-encoded
    /// from the floor), the open head chunk as it is now. Empty when a series' only head
    /// samples were left behind by the floor.
    pub fn chunks(&self, parts: &Parts, out: &mut Vec<RawChunk>) -> Result<(), TsdbError> {
        let start = out.len();
        for p in &parts.0 {
            match p {
                Part::Block(i, id) => self.blocks[*i].chunks_of(*id, self.mint, self.maxt, out)?,
                Part::Head(series) => {
                    series.state.lock().raw_chunks(self.mint, self.maxt, self.floor, &self.head.disk, out)?
                }
            }
        }
        out[start..].sort_by_key(|c| c.min_time);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::block::Block;
    use crate::chunkenc::XorIter;
    use crate::{AppendBuffers, LabelRef, Options, Tsdb};

    const H: i64 = 3_600_000;
    const T0: i64 = 1_699_999_200_000;

    /// After a cut published its block and before the head is truncated, the head still holds
    /// the block's samples: a read then takes each of them once, from the block.
    #[test]
    fn a_read_between_cut_and_truncation_takes_each_sample_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
        let mut bufs = AppendBuffers::default();
        let times: Vec<i64> = (0..180).map(|k| T0 + k * 60_000).collect();
        for &t in &times {
            let mut app = db.appender(&mut bufs);
            for id in ["a", "b", "c"] {
                let labels =
                    [LabelRef { name: b"__name__", value: b"m" }, LabelRef { name: b"id", value: id.as_bytes() }];
                app.append(&labels, &[(t, 1.0)], i64::MAX).unwrap();
            }
            app.commit().unwrap();
        }
        // The steps of a cut of the first 2h window, without the truncation.
        let maxt = T0 + 2 * H;
        db.head.raise_floor(maxt);
        let meta = db.write_block(T0, maxt).unwrap().expect("a block");
        db.blocks.write().push(Arc::new(Block::open(&db.dir.join(&meta.ulid)).unwrap()));
        let got = db.select_chunks(&[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), 3);
        for s in got {
            let ts: Vec<i64> = s.chunks.iter().flat_map(|c| XorIter::new(&c.data).map(|(t, _)| t)).collect();
            assert_eq!(ts, times, "{}: every sample once", s.labels);
            let straddling = s.chunks.iter().filter(|c| c.min_time < maxt && c.max_time >= maxt).count();
            assert_eq!(straddling, 0, "{}: no chunk reaches across the block's end", s.labels);
        }
    }

    /// Across a block and the head, a series found in both is one series with both parts; two
    /// series that only differ in a label the read removes stay two (as in one source), each
    /// with its own parts.
    #[test]
    fn series_are_matched_across_sources_on_their_own_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
        let mut bufs = AppendBuffers::default();
        for k in 0..180 {
            let mut app = db.appender(&mut bufs);
            for replica in ["a", "b"] {
                let labels = [
                    LabelRef { name: b"__name__", value: b"m" },
                    LabelRef { name: b"replica", value: replica.as_bytes() },
                ];
                app.append(&labels, &[(T0 + k * 60_000, 1.0)], i64::MAX).unwrap();
            }
            app.commit().unwrap();
        }
        let maxt = T0 + 2 * H;
        db.head.raise_floor(maxt);
        let meta = db.write_block(T0, maxt).unwrap().expect("a block");
        db.blocks.write().push(Arc::new(Block::open(&db.dir.join(&meta.ulid)).unwrap()));
        let reader = db.reader(i64::MIN, i64::MAX).unwrap();
        let mut table = crate::LabelTable::default();
        table.set_merge([("site", "x")], &["replica"]);
        let selected = reader.select(&[], &mut table).unwrap();
        assert_eq!(selected.len(), 2, "one series per replica");
        for s in &selected {
            assert_eq!(s.parts.0.len(), 2, "block and head");
            assert_eq!(table.labels(s.labels).to_string(), "{__name__=\"m\", site=\"x\"}");
            let mut chunks = Vec::new();
            reader.chunks(&s.parts, &mut chunks).unwrap();
            let ts: Vec<i64> = chunks.iter().flat_map(|c| XorIter::new(&c.data).map(|(t, _)| t)).collect();
            assert_eq!(ts, (0..180).map(|k| T0 + k * 60_000).collect::<Vec<_>>(), "each sample once, in order");
        }
    }
}
