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
#[derive(Clone, Default)]
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
        self.spans().map(|(start, n, v)| {
            // SAFETY: every end was recorded right after a whole `&str` was pushed, and every
            // start is just past a NUL byte, so all are char boundaries of `text`.
            unsafe { (self.text.get_unchecked(start..n), self.text.get_unchecked(n + 1..v)) }
        })
    }

    /// Per label: where its name starts, where its name ends and where its value ends.
    fn spans(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.ends.chunks_exact(2).scan(0usize, |start, e| {
            let (n, v) = (e[0] as usize, e[1] as usize);
            let span = (*start, n, v);
            *start = v + 1;
            Some(span)
        })
    }

    /// Per label, the lengths of its name and value in bytes.
    pub fn lens(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.spans().map(|(start, n, v)| (n - start, v - n - 1))
    }

    /// This set merged by name with `extra`, whose labels win over this set's of the same
    /// name, without the names `keep` refuses; packed with `b`, whole labels copied at once.
    pub fn merged(&self, extra: &PackedLabels, keep: impl Fn(&str) -> bool, b: &mut PackedBuilder) -> PackedLabels {
        let mut own = self.iter().zip(self.spans()).peekable();
        let mut ext = extra.iter().zip(extra.spans()).peekable();
        loop {
            let (from, (name, _), span) = match (own.peek(), ext.peek()) {
                (Some(o), Some(e)) if o.0.0 < e.0.0 => (self, o.0, own.next().expect("peeked").1),
                (Some(o), Some(e)) if o.0.0 == e.0.0 => {
                    own.next();
                    (extra, e.0, ext.next().expect("peeked").1)
                }
                (_, Some(e)) => (extra, e.0, ext.next().expect("peeked").1),
                (Some(o), None) => (self, o.0, own.next().expect("peeked").1),
                (None, None) => break,
            };
            if keep(name) {
                b.push_span(from, span);
            }
        }
        b.take()
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

impl PartialEq for PackedLabels {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.ends == other.ends
    }
}

impl Eq for PackedLabels {}

impl std::hash::Hash for PackedLabels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
        self.ends.hash(state);
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

    /// Appends the label of `from` at `span` (from [`PackedLabels::spans`]) as it is packed.
    fn push_span(&mut self, from: &PackedLabels, (start, n, v): (usize, usize, usize)) {
        let base = self.text.len();
        self.text.push_str(&from.text[start..=v]);
        self.ends.push((base + n - start) as u32);
        self.ends.push((base + v - start) as u32);
        self.nul |= !from.plain;
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

    /// Merging with external labels matches merging the unpacked sets.
    #[test]
    fn merged_sets_are_the_merged_label_sets() {
        let own = PackedLabels::from_sorted([("a", "1"), ("b", "own"), ("replica", "x"), ("z", "9\u{0}")]);
        let ext = PackedLabels::from_sorted([("b", "ext"), ("rack", "r1"), ("tenant_id", "t")]);
        let got = own.merged(&ext, |n| n != "replica" && n != "rack", &mut PackedBuilder::default());
        let want = PackedLabels::from_sorted([("a", "1"), ("b", "ext"), ("tenant_id", "t"), ("z", "9\u{0}")]);
        assert_eq!(got, want);
        let dropped = own.merged(&ext, |n| n != "z", &mut PackedBuilder::default());
        let want =
            PackedLabels::from_sorted([("a", "1"), ("b", "ext"), ("rack", "r1"), ("replica", "x"), ("tenant_id", "t")]);
        assert_eq!(dropped, want, "equal whatever the sets they came from");
        assert_eq!(dropped.cmp(&want), std::cmp::Ordering::Equal);
        assert_eq!(got.lens().collect::<Vec<_>>(), [(1, 1), (1, 3), (9, 1), (1, 2)]);
        let all = own.merged(&ext, |_| true, &mut PackedBuilder::default());
        assert_eq!(all.to_string(), r#"{a="1", b="ext", rack="r1", replica="x", tenant_id="t", z="9\x00"}"#);
        assert_eq!(PackedLabels::default().merged(&ext, |_| true, &mut PackedBuilder::default()), ext);
        assert_eq!(own.merged(&PackedLabels::default(), |_| true, &mut PackedBuilder::default()), own);
    }
}
