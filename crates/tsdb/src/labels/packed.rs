//! A label set packed into two allocations, for reads that hold many series' labels at once
//! (a StoreAPI selection of a million series): every name and value in one string, and where
//! each one ends. About a fifth of [`Labels`]' size for typical series.
//!
//! Each string is followed by a NUL byte. Without a NUL inside any name or value, comparing
//! two such strings byte by byte orders them exactly as their label sets (a shorter name or
//! value ends with NUL, below any byte that continues the other), so sorting a selection costs
//! one `memcmp` per comparison; a set with a NUL inside is compared label by label.

use std::cmp::Ordering;
use std::fmt;

use super::{Label, Labels};

/// A label set sorted by name, packed. Ordered as [`Labels`] (label by label, name then value,
/// a prefix first), which is Prometheus' order.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct PackedLabels {
    /// Every name and value, in order, each followed by a NUL byte.
    text: Box<str>,
    /// End of each name and value in `text` (where its NUL is), alternately.
    ends: Box<[u32]>,
    /// No name or value holds a NUL: `text` compares as the label set does.
    plain: bool,
}

impl PackedLabels {
    /// Packs `pairs`, which must be sorted by name.
    pub fn from_sorted<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> PackedLabels {
        let mut b = PackedBuilder::default();
        for (n, v) in pairs {
            b.push(n, v);
        }
        b.finish()
    }

    /// The labels as `(name, value)`, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.ends.chunks_exact(2).scan(0usize, |start, e| {
            let (n, v) = (e[0] as usize, e[1] as usize);
            let pair = (&self.text[*start..n], &self.text[n + 1..v]);
            *start = v + 1;
            Some(pair)
        })
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there is no label.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The labels unpacked.
    pub fn to_labels(&self) -> Labels {
        Labels(self.iter().map(|(n, v)| Label { name: n.to_owned(), value: v.to_owned() }).collect())
    }
}

impl Ord for PackedLabels {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.plain && other.plain { self.text.cmp(&other.text) } else { self.iter().cmp(other.iter()) }
    }
}

impl PartialOrd for PackedLabels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PackedLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_labels().fmt(f)
    }
}

impl fmt::Debug for PackedLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Builds a [`PackedLabels`] label by label (names in order).
#[derive(Default)]
pub struct PackedBuilder {
    text: String,
    ends: Vec<u32>,
    /// Some name or value holds a NUL byte.
    nul: bool,
}

impl PackedBuilder {
    /// Appends a label; its name must sort after the previous one's.
    pub fn push(&mut self, name: &str, value: &str) {
        self.push_str(name);
        self.push_str(value);
    }

    /// Appends a name, or the value of the name just appended.
    pub fn push_str(&mut self, s: &str) {
        self.nul |= memchr::memchr(0, s.as_bytes()).is_some();
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
        self.text.push('\0');
    }

    /// The packed set (a name without its value gets an empty one).
    pub fn finish(mut self) -> PackedLabels {
        self.take()
    }

    /// The packed set so far, in allocations of its exact size; the builder starts again empty
    /// and keeps its buffers (one builder packs a whole selection without growing each set).
    pub fn take(&mut self) -> PackedLabels {
        if self.ends.len() % 2 == 1 {
            self.push_str("");
        }
        let out = PackedLabels { text: self.text.as_str().into(), ends: self.ends.as_slice().into(), plain: !self.nul };
        self.text.clear();
        self.ends.clear();
        self.nul = false;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed sets order, compare and read back exactly as the label sets they pack.
    #[test]
    fn packed_sets_behave_as_label_sets() {
        let sets: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("a", "")],
            vec![("a", "1")],
            vec![("a", "1"), ("b", "1")],
            vec![("a", "1"), ("c", "0")],
            vec![("a", "10")],
            vec![("a", "2")],
            vec![("ab", "")],
            vec![("b", "")],
            vec![("__name__", "up"), ("job", "x\u{0}y"), ("z", "é")],
            vec![("__name__", "up"), ("job", "x"), ("z", "é")],
            vec![("__name__", "up"), ("job", "x\u{0}"), ("z", "é")],
            vec![("__name__", "up"), ("job", "x\u{1}"), ("z", "é")],
            vec![("__name__", "up"), ("job", "x"), ("z\u{0}", "")],
        ];
        let unpacked: Vec<Labels> = sets.iter().map(|s| Labels::from_pairs(s.iter().copied())).collect();
        let packed: Vec<PackedLabels> = sets.iter().map(|s| PackedLabels::from_sorted(s.iter().copied())).collect();
        for (i, p) in packed.iter().enumerate() {
            assert_eq!(p.to_labels(), unpacked[i]);
            assert_eq!(p.len(), sets[i].len());
            assert_eq!(p.to_string(), unpacked[i].to_string());
            for (n, v) in &sets[i] {
                assert_eq!(p.get(n), Some(*v));
            }
            assert_eq!(p.get("nope"), None);
            for (j, q) in packed.iter().enumerate() {
                assert_eq!(p.cmp(q), unpacked[i].cmp(&unpacked[j]), "{p} vs {q}");
                assert_eq!(p == q, i == j);
            }
        }
    }

    /// Random label sets over a tiny alphabet (shared prefixes, empty values, some NULs) sort
    /// packed exactly as unpacked.
    #[test]
    fn packed_order_is_label_order() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let alphabet = ["", "a", "b", "ab", "a\u{0}", "aa", "b\u{1}"];
        let mut sets = Vec::new();
        for _ in 0..300 {
            let mut pairs: Vec<(String, String)> = Vec::new();
            for _ in 0..next(4) {
                let name = format!("n{}", alphabet[next(7) as usize]);
                if pairs.iter().all(|(n, _)| *n != name) {
                    pairs.push((name, alphabet[next(7) as usize].to_string()));
                }
            }
            pairs.sort();
            sets.push(pairs);
        }
        let mut packed: Vec<PackedLabels> =
            sets.iter().map(|s| PackedLabels::from_sorted(s.iter().map(|(n, v)| (n.as_str(), v.as_str())))).collect();
        let mut unpacked: Vec<Labels> = sets.iter().map(|s| Labels::from_pairs(s.clone())).collect();
        packed.sort();
        unpacked.sort();
        assert_eq!(packed.iter().map(PackedLabels::to_labels).collect::<Vec<_>>(), unpacked);
    }
}
