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
use crate::head::index::HeadIndex;
use crate::head::{Head, MemSeries};
use crate::labels::{LabelTable, METRIC_NAME, RawChunk, SetRef};
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

/// The series a read selected, by where their data lies, without their labels; grouped by the
/// value of their metric name, so a caller can take the groups one at a time in the order of
/// their names (unless [`Candidates::misordered`]) and hold one group's labels at a time.
///
/// Prometheus orders label sets label by label, and `__name__` sorts before every label name
/// but those starting with an upper-case letter or with `__` followed by a letter before `n`:
/// without such names, every series with a metric name comes before every series without one,
/// and series with different names come in the order of their names.
#[derive(Default)]
pub struct Candidates {
    /// Each group's metric name; `None`: the series without one.
    names: Vec<Option<String>>,
    /// Groups by metric name.
    by_name: hashbrown::HashMap<String, u32>,
    /// The group of the series without a metric name, once one is found.
    unnamed: Option<u32>,
    /// Whether some series' first label sorts before `__name__`.
    misordered: bool,
    /// `(group, head index id)`, sorted: eight bytes a series where a reference would take
    /// sixteen and a count on each series (the head's ids hold while the reader's gate does).
    head: Vec<(u32, u32)>,
    /// `(group, block, series id)`, sorted.
    blocks: Vec<(u32, u32, u32)>,
}

impl Candidates {
    /// The groups, each with its metric name (`None`: the series without one), in no
    /// particular order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, Option<&str>)> + '_ {
        self.names.iter().enumerate().map(|(g, n)| (g as u32, n.as_deref()))
    }

    /// Whether some series' first label name sorts before `__name__`: the groups' order is then
    /// not the order of their series, and a caller must sort them all together.
    pub fn misordered(&self) -> bool {
        self.misordered
    }

    /// Whether a series whose first label is named `name` has a metric name (it is first when
    /// present); notes one that sorts before it.
    fn first_name(&mut self, name: &str) -> bool {
        self.misordered |= name < METRIC_NAME;
        name == METRIC_NAME
    }

    /// The group of metric name `value` (each source asks once per value).
    fn named(&mut self, value: &str) -> u32 {
        if let Some(&g) = self.by_name.get(value) {
            return g;
        }
        let g = u32::try_from(self.names.len()).expect("fewer than 2^32 metric names");
        self.names.push(Some(value.to_owned()));
        self.by_name.insert(value.to_owned(), g);
        g
    }

    /// The group of the series without a metric name.
    fn unnamed(&mut self) -> u32 {
        *self.unnamed.get_or_insert_with(|| {
            self.names.push(None);
            u32::try_from(self.names.len() - 1).expect("fewer than 2^32 metric names")
        })
    }
}

/// One source's series put into groups, each of its string ids read once.
#[derive(Default)]
struct Grouping {
    /// Whether a name id is `__name__`.
    first_names: hashbrown::HashMap<u32, bool>,
    /// Groups by value id of the metric name.
    groups: hashbrown::HashMap<u32, u32>,
}

impl Grouping {
    /// The group in `c` of a series whose first label is `first` (name and value ids of the
    /// source, whose texts `text` reads).
    fn group<E>(
        &mut self,
        c: &mut Candidates,
        first: Option<(u32, u32)>,
        text: impl Fn(u32) -> Result<String, E>,
    ) -> Result<u32, E> {
        let Some((n, v)) = first else { return Ok(c.unnamed()) };
        let is_name = match self.first_names.get(&n) {
            Some(&is) => is,
            None => *self.first_names.entry(n).or_insert(c.first_name(&text(n)?)),
        };
        if !is_name {
            return Ok(c.unnamed());
        }
        Ok(match self.groups.get(&v) {
            Some(&g) => g,
            None => *self.groups.entry(v).or_insert(c.named(&text(v)?)),
        })
    }
}

/// The series a selection found so far.
struct Found {
    selected: Vec<Selected>,
    /// Where this selection's series start in `selected`.
    base: usize,
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
                self.selected[self.base + i].parts.0.push(part);
                return;
            }
            own.add(ids, self.selected.len() - self.base);
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

/// How many series ahead a loop over scattered head series asks for the memory it will read
/// (see [`prefetch_series`]).
const AHEAD: usize = 8;

/// The two steps of hiding the cache misses of a loop over head series by index id: `far`'s
/// series is asked for (its first lines, with its state's lock and chunk ranges, and the line
/// with its labels' address), and `near`'s labels, whose address came with its series
/// [`AHEAD`] iterations ago. Each series and its labels lie anywhere on the heap: without
/// this, finding a group's labels waited on memory for most of its time.
fn prefetch_series(ix: &HeadIndex, far: Option<u32>, near: Option<u32>) {
    if let Some(id) = far {
        let s = ix.series(id);
        let start = Arc::as_ptr(s).cast::<u8>();
        crate::prefetch(start);
        crate::prefetch(start.wrapping_add(64));
        crate::prefetch(&raw const s.labels);
    }
    if let Some(id) = near {
        crate::prefetch(ix.series(id).labels.as_ptr());
    }
}

impl Tsdb {
    /// Brings the head's index up to date with the series created since it was last used, so
    /// that reads find it ready (the receiver calls this every few seconds; a read does it
    /// itself otherwise). Readers wait while it runs; appenders never do.
    pub fn index_new_series(&self) {
        self.head.fold_index();
    }

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
        let candidates = self.candidates(matchers)?;
        let mut out = Vec::new();
        for (group, _) in candidates.groups() {
            self.finish(&candidates, group, table, &mut out)?;
        }
        Ok(out)
    }

    /// The series selected by `matchers` with data in the read's range, without their labels,
    /// grouped by the value of their metric name (see [`Candidates`]).
    pub fn candidates(&self, matchers: &[Matcher]) -> Result<Candidates, TsdbError> {
        let mut c = Candidates::default();
        for (i, b) in self.blocks.iter().enumerate() {
            let index = b.index()?;
            let mut grouping = Grouping::default();
            let block = u32::try_from(i).expect("fewer than 2^32 blocks");
            for (id, first) in b.select_ids(matchers, self.mint, self.maxt)? {
                let group = grouping.group(&mut c, first, |r| index.symbol(r).map(str::to_owned))?;
                c.blocks.push((group, block, id));
            }
        }
        let head_mint = self.mint.max(self.floor);
        if self.head.min_time() <= self.maxt && self.head.max_time() >= head_mint {
            let ix = self.head.index();
            let selected = (!matchers.is_empty()).then(|| self.head.select_ids(&ix, matchers));
            // No matchers: every series.
            let ids =
                selected.unwrap_or_else(|| (0..u32::try_from(ix.len()).expect("fewer than 2^32 series")).collect());
            let _symbols = self.head.symbol_gate.read();
            let mut grouping = Grouping::default();
            c.head.reserve(ids.len());
            for (k, &id) in ids.iter().enumerate() {
                prefetch_series(&ix, ids.get(k + 2 * AHEAD).copied(), ids.get(k + AHEAD).copied());
                let s = ix.series(id);
                if s.removed.load(std::sync::atomic::Ordering::Relaxed)
                    || !s.state.lock().has_data_in(head_mint, self.maxt)
                {
                    continue;
                }
                let first = match *s.labels {
                    [n, v, ..] => Some((n, v)),
                    _ => None,
                };
                let Ok(group) =
                    grouping.group(&mut c, first, |id| Ok::<_, std::convert::Infallible>(self.head.symbols.get(id)));
                c.head.push((group, id));
            }
        }
        c.head.sort_unstable();
        c.blocks.sort_unstable();
        Ok(c)
    }

    /// Appends the series of `group` in `c` to `out`, their labels in `table` (finished as its
    /// [`LabelTable::set_merge`] says); a series found in several sources is one, with a part
    /// in each.
    pub fn finish(
        &self,
        c: &Candidates,
        group: u32,
        table: &mut LabelTable,
        out: &mut Vec<Selected>,
    ) -> Result<(), TsdbError> {
        let blocks = &c.blocks[c.blocks.partition_point(|b| b.0 < group)..c.blocks.partition_point(|b| b.0 <= group)];
        let head = &c.head[c.head.partition_point(|h| h.0 < group)..c.head.partition_point(|h| h.0 <= group)];
        let mut found = Found {
            base: out.len(),
            selected: std::mem::take(out),
            // Blocks and head each hold a series once: equal labels in several are one series.
            own: (!blocks.is_empty()).then(OwnLabels::default),
        };
        found.selected.reserve(blocks.len() + head.len());
        let mut ids: Vec<u32> = Vec::new();
        // Table ids by the source's own string ids: a string shared by many series is looked
        // up and hashed once per group.
        let mut seen: hashbrown::HashMap<u32, u32> = hashbrown::HashMap::new();
        for run in blocks.chunk_by(|a, b| a.1 == b.1) {
            let i = run[0].1 as usize;
            let index = self.blocks[i].index()?;
            seen.clear();
            for &(_, _, id) in run {
                ids.clear();
                for (n, v) in index.series(id)?.0 {
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
        if !head.is_empty() {
            let ix = self.head.index();
            let _symbols = self.head.symbol_gate.read();
            seen.clear();
            table.reserve(head.len(), ix.series(head[0].1).labels.len());
            for (k, &(_, id)) in head.iter().enumerate() {
                prefetch_series(&ix, head.get(k + 2 * AHEAD).map(|h| h.1), head.get(k + AHEAD).map(|h| h.1));
                let s = ix.series(id);
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
                found.add(&ids, Part::Head(s.clone()), table);
            }
        }
        *out = found.selected;
        Ok(())
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

    /// The steps of a cut of the first 2h window, without the head's truncation; returns the
    /// window's end.
    fn cut_first_window(db: &Tsdb) -> i64 {
        let maxt = T0 + 2 * H;
        db.head.raise_floor(maxt);
        let meta = db.write_block(T0, maxt).unwrap().expect("a block");
        db.blocks.write().push(Arc::new(Block::open(&db.dir.join(&meta.ulid)).unwrap()));
        maxt
    }

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
        let maxt = cut_first_window(&db);
        let got = db.select_chunks(&[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), 3);
        for s in got {
            let ts: Vec<i64> = s.chunks.iter().flat_map(|c| XorIter::new(&c.data).map(|(t, _)| t)).collect();
            assert_eq!(ts, times, "{}: every sample once", s.labels);
            let straddling = s.chunks.iter().filter(|c| c.min_time < maxt && c.max_time >= maxt).count();
            assert_eq!(straddling, 0, "{}: no chunk reaches across the block's end", s.labels);
        }
    }

    /// Candidates are grouped by metric name (the series without one together), across a
    /// block and the head; a first label that sorts before `__name__` marks them misordered.
    #[test]
    fn candidates_are_grouped_by_metric_name() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Tsdb::open(dir.path(), Options::default()).unwrap();
        let mut bufs = AppendBuffers::default();
        let sets: [&[(&str, &str)]; 6] = [
            &[("__name__", "a"), ("i", "1")],
            &[("__name__", "a"), ("i", "2")],
            &[("__name__", "b"), ("i", "1")],
            &[("i", "1")],
            &[("j", "1")],
            &[("A", "1"), ("__name__", "a")],
        ];
        for k in 0..180 {
            let mut app = db.appender(&mut bufs);
            for (n, set) in sets.iter().enumerate() {
                // The last set only in the head, after the block's range.
                if n == 5 && k < 150 {
                    continue;
                }
                let labels: Vec<LabelRef<'_>> =
                    set.iter().map(|(n, v)| LabelRef { name: n.as_bytes(), value: v.as_bytes() }).collect();
                app.append(&labels, &[(T0 + k * 60_000, 1.0)], i64::MAX).unwrap();
            }
            app.commit().unwrap();
        }
        cut_first_window(&db);
        let reader = db.reader(i64::MIN, i64::MAX).unwrap();
        let i_set = [crate::postings::Matcher::new(crate::postings::MatchKind::Equal, "i", "1").unwrap()];
        let c = reader.candidates(&i_set).unwrap();
        assert!(!c.misordered());
        let mut groups: Vec<(Option<&str>, usize)> = c
            .groups()
            .map(|(g, name)| {
                let (mut table, mut out) = (crate::LabelTable::default(), Vec::new());
                reader.finish(&c, g, &mut table, &mut out).unwrap();
                assert!(out.iter().all(|s| table.get(s.labels, "__name__") == name), "{name:?}");
                (name, out.len())
            })
            .collect();
        groups.sort();
        assert_eq!(groups, [(None, 1), (Some("a"), 1), (Some("b"), 1)], "one series per group, block and head merged");
        assert!(reader.candidates(&[]).unwrap().misordered(), "`A` sorts before `__name__`");
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
        cut_first_window(&db);
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
