//! The head's inverted index: for every label pair, the series that carry it, by dense id.
//!
//! Appenders never touch it: a new series goes onto its stripe's list of new series, under the
//! stripe lock its insertion holds anyway. A reader that finds series created since the last
//! fold folds them in first (each gets the next id, so every list stays sorted), then looks up;
//! otherwise readers share the index. Head truncation drops the removed series and renumbers the
//! rest in order, so the lists stay sorted without sorting. Until the first read nothing is
//! built: a receiver nobody queries keeps only the lists of new series.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Acquire;

use hashbrown::HashMap;

use super::MemSeries;
use crate::postings::{Source, union};
use crate::symbols::{SymbolId, Symbols};

mod list;

use list::List;

/// Series by id and, per label name and value, their ids.
#[derive(Default)]
pub(crate) struct HeadIndex {
    series: Vec<Arc<MemSeries>>,
    postings: HashMap<SymbolId, HashMap<SymbolId, List>>,
    /// The head's count of created series when new series were last folded in.
    pub(crate) folded: u64,
    /// Per label name asked for, its values in string order (see [`HeadIndex::sorted_values`]).
    sorted: parking_lot::Mutex<HashMap<SymbolId, SortedValues>>,
}

/// A label name's values sorted by their strings, the values new since, and the sorted
/// strings themselves once made (the interner's strings are scattered over the heap: reading a
/// million of them costs far more than copying one buffer).
#[derive(Default)]
struct SortedValues {
    ids: Vec<SymbolId>,
    added: Vec<SymbolId>,
    strings: Option<crate::labels::StringList>,
}

impl HeadIndex {
    /// Adds a series (not already in the index) under the next id; a removed one is skipped.
    pub(crate) fn add(&mut self, s: Arc<MemSeries>) {
        if s.removed.load(Acquire) {
            return;
        }
        let id = u32::try_from(self.series.len()).expect("fewer than 2^32 head series");
        let sorted = self.sorted.get_mut();
        for pair in s.labels.chunks_exact(2) {
            match self.postings.entry(pair[0]).or_default().entry(pair[1]) {
                hashbrown::hash_map::Entry::Occupied(mut e) => e.get_mut().push(id),
                hashbrown::hash_map::Entry::Vacant(e) => {
                    e.insert(List::one(id));
                    if let Some(v) = sorted.get_mut(&pair[0]) {
                        v.added.push(pair[1]);
                    }
                }
            }
        }
        self.series.push(s);
    }

    /// Gives back the slack of lists that doubled while series were folded in, keeping an
    /// eighth for the next ones (a list of a million ids may hold room for a million more).
    pub(crate) fn trim(&mut self) {
        for values in self.postings.values_mut() {
            for list in values.values_mut() {
                list.trim();
            }
        }
        if self.series.capacity() > self.series.len() + self.series.len() / 2 {
            self.series.shrink_to(self.series.len() + self.series.len() / 8);
        }
    }

    /// The series with id `id`.
    pub(crate) fn series(&self, id: u32) -> &Arc<MemSeries> {
        &self.series[id as usize]
    }

    /// Number of series indexed.
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// Drops the series marked removed and renumbers the rest, keeping their order. Call it
    /// before the removed series' label strings are freed: the keys of their pairs go with them.
    pub(crate) fn drop_removed(&mut self) {
        // Values may have gone: sorted lists are made again when next asked for.
        self.sorted.get_mut().clear();
        let keep: Vec<bool> = self.series.iter().map(|s| !s.removed.load(Acquire)).collect();
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut remap = vec![u32::MAX; keep.len()];
        let mut next = 0u32;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                remap[i] = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.series.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.postings.retain(|_, values| {
            values.retain(|_, list| list.remap(&remap));
            values.shrink_to_fit();
            !values.is_empty()
        });
    }

    /// Label names with at least one series, as symbol ids.
    pub(crate) fn names(&self) -> impl Iterator<Item = SymbolId> + '_ {
        self.postings.keys().copied()
    }

    /// The values of label `name` (with at least one series), sorted. The order, and the
    /// strings, are kept between calls: values new since the last call are inserted (a few) or
    /// the list sorted again (many); truncation drops it.
    pub(crate) fn sorted_values(&self, name: SymbolId, symbols: &Symbols) -> crate::labels::StringList {
        let mut cache = self.sorted.lock();
        let sorted = cache.entry(name).or_default();
        if sorted.ids.is_empty() || sorted.added.len() > sorted.ids.len() / 16 {
            let mut all: Vec<(Vec<u8>, SymbolId)> = self.values(name).map(|v| (symbols.bytes(v), v)).collect();
            all.sort_unstable();
            sorted.ids = all.into_iter().map(|(_, v)| v).collect();
            sorted.added.clear();
            sorted.strings = None;
        }
        for v in std::mem::take(&mut sorted.added) {
            let text = symbols.bytes(v);
            let at = sorted.ids.partition_point(|&x| symbols.with_str(x, |s| s.as_bytes() < text.as_slice()));
            sorted.ids.insert(at, v);
            sorted.strings = None;
        }
        sorted
            .strings
            .get_or_insert_with(|| {
                let mut out = crate::labels::StringList::default();
                out.reserve(sorted.ids.len());
                for &v in &sorted.ids {
                    symbols.with_str(v, |s| out.push(s));
                }
                out
            })
            .clone()
    }

    /// Values of label `name` with at least one series, as symbol ids.
    pub(crate) fn values(&self, name: SymbolId) -> impl Iterator<Item = SymbolId> + '_ {
        self.postings.get(&name).into_iter().flat_map(|v| v.keys().copied())
    }
}

/// The index read through the head's symbols (hold the symbol gate while it is used).
pub(crate) struct Lookup<'a> {
    pub(crate) index: &'a HeadIndex,
    pub(crate) symbols: &'a Symbols,
}

impl Source for Lookup<'_> {
    type Error = Infallible;

    fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, Infallible> {
        let list = (|| {
            let values = self.index.postings.get(&self.symbols.lookup(name.as_bytes())?)?;
            values.get(&self.symbols.lookup(value.as_bytes())?)
        })();
        Ok(list.map(|l| l.to_vec()).unwrap_or_default())
    }

    fn postings_where(&self, name: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<u32>, Infallible> {
        let Some(values) = self.symbols.lookup(name.as_bytes()).and_then(|n| self.index.postings.get(&n)) else {
            return Ok(Vec::new());
        };
        let lists =
            values.iter().filter(|(v, _)| self.symbols.with_str(**v, |s| keep(s))).map(|(_, l)| l.to_vec()).collect();
        Ok(union(lists))
    }

    fn all(&self) -> Result<Vec<u32>, Infallible> {
        Ok((0..self.index.len() as u32).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::head::chunk_disk::ChunkDiskMapper;
    use crate::head::{Head, LabelIds};
    use crate::labels::{LabelRef, Labels, SeriesHasher};
    use crate::postings::{MatchKind, Matcher};

    /// A small xorshift generator: the test is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn create(head: &Head, pairs: &[(String, String)], ids: &mut LabelIds) -> Arc<MemSeries> {
        let labels: Vec<LabelRef<'_>> =
            pairs.iter().map(|(n, v)| LabelRef { name: n.as_bytes(), value: v.as_bytes() }).collect();
        let key = SeriesHasher::default().key(&labels, &mut Vec::new());
        head.get_or_create(key.hash, &labels, None, ids).0
    }

    /// Label sets from a small vocabulary: labels are often missing, values often shared.
    fn random_pairs(rng: &mut Rng, k: u64) -> Vec<(String, String)> {
        let mut pairs = vec![("__name__".to_string(), format!("m{}", rng.next(3))), ("id".to_string(), k.to_string())];
        for name in ["a", "b", "c"] {
            if rng.next(3) > 0 {
                pairs.push((name.to_string(), format!("v{}", rng.next(4))));
            }
        }
        pairs.sort();
        pairs
    }

    fn random_matcher(rng: &mut Rng) -> Matcher {
        let name = ["__name__", "a", "b", "c", "zz"][rng.next(5) as usize];
        let kind = [MatchKind::Equal, MatchKind::NotEqual, MatchKind::Regex, MatchKind::NotRegex][rng.next(4) as usize];
        let value = match (kind, rng.next(5)) {
            (MatchKind::Regex | MatchKind::NotRegex, 0) => ".*".to_string(),
            (MatchKind::Regex | MatchKind::NotRegex, 1) => "v[01]|".to_string(),
            (MatchKind::Regex | MatchKind::NotRegex, 2) => ".+".to_string(),
            (_, 3) => String::new(),
            (_, _) => format!("v{}", rng.next(4)),
        };
        Matcher::new(kind, name, &value).unwrap()
    }

    /// What Prometheus selects: every matcher holds, a missing label reading as "".
    fn model(series: &[(Labels, bool)], matchers: &[Matcher]) -> BTreeSet<String> {
        series
            .iter()
            .filter(|(l, removed)| !removed && matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .map(|(l, _)| l.to_string())
            .collect()
    }

    /// Selections match the model while series are created between reads (folded in at the
    /// next read) and removed by truncation (renumbered away), for matchers of every kind.
    #[test]
    fn select_matches_the_model_through_creation_and_removal() {
        let head = Head::new(7_200_000, Default::default(), Arc::new(ChunkDiskMapper::in_memory()));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ids = LabelIds::default();
        let mut all: Vec<(Arc<MemSeries>, Labels, bool)> = Vec::new();
        let mut k = 0;
        for round in 0..30 {
            for _ in 0..rng.next(40) {
                k += 1;
                let pairs = random_pairs(&mut rng, k);
                let s = create(&head, &pairs, &mut ids);
                all.push((s, Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))), false));
            }
            if round % 4 == 3 {
                // Truncation: some series leave the head and the index.
                for (s, _, removed) in all.iter_mut().filter(|(_, _, r)| !r) {
                    if rng.next(4) == 0 {
                        assert!(head.remove(s));
                        s.removed.store(true, std::sync::atomic::Ordering::Release);
                        *removed = true;
                    }
                }
                head.unindex_removed();
            }
            let view: Vec<(Labels, bool)> = all.iter().map(|(_, l, r)| (l.clone(), *r)).collect();
            // Sorted values kept between reads: new values inserted, truncation starts over.
            for name in ["id", "a", "__name__"] {
                let mut want: Vec<String> =
                    view.iter().filter(|(_, r)| !r).filter_map(|(l, _)| l.get(name).map(str::to_owned)).collect();
                want.sort();
                want.dedup();
                assert_eq!(head.label_values(name).iter().collect::<Vec<_>>(), want, "round {round}, {name}");
            }
            for _ in 0..20 {
                let matchers: Vec<Matcher> = (0..1 + rng.next(3)).map(|_| random_matcher(&mut rng)).collect();
                let got: BTreeSet<String> =
                    head.select(&matchers).iter().map(|s| head.labels_of(s).to_string()).collect();
                assert_eq!(got, model(&view, &matchers), "round {round}, {matchers:?}");
            }
        }
        let live = all.iter().filter(|(_, _, r)| !r).count();
        assert_eq!(head.index.read().len(), live, "removed series are out of the index");
        let names = head.label_names();
        let names: Vec<&str> = names.iter().collect();
        assert!(names.contains(&"__name__") && names.contains(&"id"), "{names:?}");
        let mut want: Vec<String> =
            all.iter().filter(|(_, _, r)| !r).map(|(_, l, _)| l.get("id").unwrap().to_string()).collect();
        want.sort();
        assert_eq!(head.label_values("id").iter().collect::<Vec<_>>(), want);
        assert!(head.label_values("nope").is_empty());
    }
}
