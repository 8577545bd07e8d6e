//! The label sets of one read (a StoreAPI selection of up to millions of series), as ids into
//! one table of their distinct strings.
//!
//! Series share their label names and most of their values, so a selection holds each string
//! once and each set as a run of `u32` ids (name, value, name, value, ...) in one buffer: about
//! a fifth of the memory of packed strings for typical series, and no allocation per series.
//! Once every set is in, [`LabelTable::rank`] renumbers the strings in byte order, after which
//! comparing two sets' id runs orders them exactly as Prometheus orders label sets (label by
//! label, name then value, a prefix first), with integer compares instead of string compares.
//!
//! Sets can be finished as they are added ([`LabelTable::set_merge`]): labels merged in by name
//! (they win over a series' own label of that name) and names dropped, as a receiver's external
//! labels and `without_replica_labels` change the labels it answers with.

use std::cmp::Ordering;
use std::hash::BuildHasher;

use super::{Label, Labels};

/// A label set in a [`LabelTable`].
#[derive(Clone, Copy, Debug)]
pub struct SetRef {
    start: usize,
    len: u32,
}

/// Distinct strings and the label sets made of them (see the module docs).
#[derive(Default)]
pub struct LabelTable {
    /// The strings back to back; string `id` is `text[bounds[id]..bounds[id + 1]]`.
    text: String,
    bounds: Vec<usize>,
    /// String ids by the hash of their text (until [`LabelTable::rank`]).
    find: hashbrown::HashTable<u32>,
    state: hashbrown::DefaultHashBuilder,
    /// Every set's ids back to back.
    sets: Vec<u32>,
    /// Strings are numbered in byte order: no more may be added.
    ranked: bool,
    merge: Merge,
}

/// How sets are finished as they are added.
#[derive(Default)]
struct Merge {
    /// `(name, value)` ids of the labels merged in, by name.
    extra: Vec<(u32, u32)>,
    /// Names dropped.
    dropped: Vec<String>,
    /// Per name id seen in a set: how many extra labels sort before it, whether one has its
    /// name, and whether it is dropped.
    placed: hashbrown::HashMap<u32, (u32, bool, bool)>,
    /// Scratch for the set being finished.
    out: Vec<u32>,
}

impl LabelTable {
    /// The id of `s`, added if new. Panics once ranked.
    pub fn intern(&mut self, s: &str) -> u32 {
        assert!(!self.ranked, "strings added to a ranked label table");
        if self.bounds.is_empty() {
            self.bounds.push(0);
        }
        let hash = self.state.hash_one(s);
        let (text, bounds) = (&self.text, &self.bounds);
        if let Some(&id) = self.find.find(hash, |&id| string(text, bounds, id) == s) {
            return id;
        }
        let id = u32::try_from(self.bounds.len() - 1).expect("fewer than 2^32 distinct strings");
        self.text.push_str(s);
        self.bounds.push(self.text.len());
        let (text, bounds, state) = (&self.text, &self.bounds, &self.state);
        self.find.insert_unique(hash, id, |&id| state.hash_one(string(text, bounds, id)));
        id
    }

    /// The string of `id`.
    pub fn str(&self, id: u32) -> &str {
        string(&self.text, &self.bounds, id)
    }

    /// Finishes the sets added from now on: `extra` (sorted by name) merged in, winning over a
    /// set's own label of the same name, and the names `dropped` left out (of both).
    pub fn set_merge<'a>(&mut self, extra: impl IntoIterator<Item = (&'a str, &'a str)>, dropped: &[&str]) {
        let extra: Vec<(&str, &str)> = extra.into_iter().filter(|(n, _)| !dropped.contains(n)).collect();
        let extra = extra.into_iter().map(|(n, v)| (self.intern(n), self.intern(v))).collect();
        self.merge = Merge {
            extra,
            dropped: dropped.iter().map(|d| d.to_string()).collect(),
            placed: Default::default(),
            out: std::mem::take(&mut self.merge.out),
        };
    }

    /// Adds the set of `ids` (name, value, ... by name), finished as [`LabelTable::set_merge`]
    /// last said.
    pub fn push(&mut self, ids: &[u32]) -> SetRef {
        let start = self.sets.len();
        if self.merge.extra.is_empty() && self.merge.dropped.is_empty() {
            self.sets.extend_from_slice(ids);
        } else {
            let mut out = std::mem::take(&mut self.merge.out);
            out.clear();
            let mut next = 0;
            for pair in ids.chunks_exact(2) {
                let (before, same, dropped) = self.place(pair[0]);
                while next < before {
                    let (n, v) = self.merge.extra[next as usize];
                    out.extend_from_slice(&[n, v]);
                    next += 1;
                }
                if !same && !dropped {
                    out.extend_from_slice(pair);
                }
            }
            for &(n, v) in &self.merge.extra[next as usize..] {
                out.extend_from_slice(&[n, v]);
            }
            self.sets.extend_from_slice(&out);
            self.merge.out = out;
        }
        SetRef { start, len: (self.sets.len() - start) as u32 }
    }

    /// Where name `name` goes among the extra labels (see [`Merge::placed`]).
    fn place(&mut self, name: u32) -> (u32, bool, bool) {
        if let Some(&p) = self.merge.placed.get(&name) {
            return p;
        }
        let text = self.str(name);
        let before = self.merge.extra.iter().filter(|&&(n, _)| self.str(n) < text).count() as u32;
        let same = self.merge.extra.iter().any(|&(n, _)| self.str(n) == text);
        let dropped = self.merge.dropped.iter().any(|d| d == text);
        self.merge.placed.insert(name, (before, same, dropped));
        (before, same, dropped)
    }

    /// Makes room for `n` more sets of about `ids` ids each (before a selection of known
    /// size: growing by doubling would copy the ids, and hold both copies for a moment).
    pub fn reserve(&mut self, n: usize, ids: usize) {
        self.sets.reserve(n * (ids + 2 * self.merge.extra.len()));
    }

    /// Takes back the last set added (`r`), when it is not wanted after all.
    pub fn pop(&mut self, r: SetRef) {
        debug_assert_eq!(r.start + r.len as usize, self.sets.len(), "only the last set can be taken back");
        self.sets.truncate(r.start);
    }

    /// The ids of set `r`: name, value, name, value, ...
    pub fn ids(&self, r: SetRef) -> &[u32] {
        &self.sets[r.start..r.start + r.len as usize]
    }

    /// The labels of set `r` as `(name, value)`, by name.
    pub fn pairs(&self, r: SetRef) -> Pairs<'_> {
        Pairs { table: self, ids: self.ids(r).chunks_exact(2) }
    }

    /// The labels of set `r`, unpacked.
    pub fn labels(&self, r: SetRef) -> Labels {
        Labels(self.pairs(r).map(|(n, v)| Label { name: n.to_owned(), value: v.to_owned() }).collect())
    }

    /// The value of label `name` in set `r`.
    pub fn get(&self, r: SetRef, name: &str) -> Option<&str> {
        self.pairs(r).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Renumbers the strings in byte order, so that [`LabelTable::cmp`] orders sets; no string
    /// can be added afterwards.
    pub fn rank(&mut self) {
        let mut order: Vec<u32> = (0..self.bounds.len().saturating_sub(1) as u32).collect();
        order.sort_unstable_by(|&a, &b| self.str(a).cmp(self.str(b)));
        let mut renamed = vec![0u32; order.len()];
        let mut text = String::with_capacity(self.text.len());
        let mut bounds = Vec::with_capacity(self.bounds.len());
        bounds.push(0);
        for (new, &old) in order.iter().enumerate() {
            renamed[old as usize] = new as u32;
            text.push_str(self.str(old));
            bounds.push(text.len());
        }
        for id in &mut self.sets {
            *id = renamed[*id as usize];
        }
        (self.text, self.bounds, self.ranked) = (text, bounds, true);
        self.find = Default::default();
        self.merge = Merge::default();
    }

    /// Orders two sets as their labels are ordered (after [`LabelTable::rank`]).
    pub fn cmp(&self, a: SetRef, b: SetRef) -> Ordering {
        debug_assert!(self.ranked, "sets compared before ranking");
        self.ids(a).cmp(self.ids(b))
    }
}

/// String `id` of a table's `text` and `bounds`.
#[inline]
fn string<'a>(text: &'a str, bounds: &[usize], id: u32) -> &'a str {
    let id = id as usize;
    &text[bounds[id]..bounds[id + 1]]
}

/// The labels of a set as `(name, value)`.
#[derive(Clone)]
pub struct Pairs<'a> {
    table: &'a LabelTable,
    ids: std::slice::ChunksExact<'a, u32>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        self.ids.next().map(|p| (self.table.str(p[0]), self.table.str(p[1])))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(t: &mut LabelTable, pairs: &[(&str, &str)]) -> SetRef {
        let ids: Vec<u32> = pairs.iter().flat_map(|(n, v)| [t.intern(n), t.intern(v)]).collect();
        t.push(&ids)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels(pairs.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect())
    }

    /// Ranked sets order as `Labels` do (Prometheus' order), prefixes and bytes above ASCII
    /// included; each string is held once.
    #[test]
    fn ranked_sets_order_as_labels() {
        let sets: Vec<Vec<(&str, &str)>> = vec![
            vec![("a", "1"), ("b", "2")],
            vec![("a", "1")],
            vec![("a", "10")],
            vec![("a", "1"), ("c", "0")],
            vec![("__name__", "up"), ("job", "é")],
            vec![("__name__", "up"), ("job", "z")],
            vec![("a", "1"), ("b", "10")],
            vec![("ab", "1")],
            vec![],
            vec![("a", "1"), ("b", "2")],
        ];
        let mut t = LabelTable::default();
        let refs: Vec<SetRef> = sets.iter().map(|s| push(&mut t, s)).collect();
        assert_eq!(t.bounds.len(), 14, "each distinct string once");
        let mut want: Vec<Labels> = sets.iter().map(|s| labels(s)).collect();
        want.sort();
        t.rank();
        let mut got = refs.clone();
        got.sort_by(|&a, &b| t.cmp(a, b));
        let got: Vec<Labels> = got.into_iter().map(|r| t.labels(r)).collect();
        assert_eq!(got, want);
        assert_eq!(t.cmp(refs[0], refs[9]), Ordering::Equal);
        assert_eq!(t.get(refs[4], "job"), Some("é"));
    }

    /// Extra labels are merged in by name and win; dropped names go from both sides; a set
    /// taken back leaves nothing.
    #[test]
    fn sets_are_finished_as_they_are_added() {
        let mut t = LabelTable::default();
        t.set_merge([("b", "ext"), ("rack", "r1"), ("tenant_id", "t")], &["replica", "rack"]);
        let r = push(&mut t, &[("a", "1"), ("b", "own"), ("replica", "x"), ("z", "9")]);
        assert_eq!(t.labels(r), labels(&[("a", "1"), ("b", "ext"), ("tenant_id", "t"), ("z", "9")]));
        let only_extra = push(&mut t, &[]);
        assert_eq!(t.labels(only_extra), labels(&[("b", "ext"), ("tenant_id", "t")]));
        t.pop(only_extra);
        t.set_merge([], &[]);
        let plain = push(&mut t, &[("a", "1"), ("replica", "x")]);
        assert_eq!(t.labels(plain), labels(&[("a", "1"), ("replica", "x")]));
        assert_eq!(t.sets.len(), 8 + 4);
    }
}
