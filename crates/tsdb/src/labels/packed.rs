//! A label set packed into two allocations, for reads that hold many series' labels at once
//! (a StoreAPI selection of a million series): every name and value in one string, and where
//! each one ends. About a fifth of [`Labels`]' size for typical series.

use std::cmp::Ordering;
use std::fmt;

use super::{Label, Labels};

/// A label set sorted by name, packed. Ordered as [`Labels`] (label by label, name then value,
/// a prefix first), which is Prometheus' order.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct PackedLabels {
    text: Box<str>,
    /// End of each name and value in `text`, alternately.
    ends: Box<[u32]>,
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
            let pair = (&self.text[*start..n], &self.text[n..v]);
            *start = v;
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
        self.iter().cmp(other.iter())
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
}

impl PackedBuilder {
    /// Appends a label; its name must sort after the previous one's.
    pub fn push(&mut self, name: &str, value: &str) {
        self.push_str(name);
        self.push_str(value);
    }

    /// Appends a name, or the value of the name just appended.
    pub fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    /// The packed set (a name without its value gets an empty one).
    pub fn finish(mut self) -> PackedLabels {
        if self.ends.len() % 2 == 1 {
            self.ends.push(self.text.len() as u32);
        }
        PackedLabels { text: self.text.into_boxed_str(), ends: self.ends.into_boxed_slice() }
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
}
