//! Sorted lists of distinct strings in one buffer: the answer to LabelValues, which can hold a
//! million values. One allocation for the lot instead of one per value, for the head, the
//! blocks and their union alike.

use std::fmt;

/// Distinct strings, sorted bytewise (Go's string order), in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StringList {
    text: String,
    /// End of each string in `text`.
    ends: Vec<u32>,
}

impl StringList {
    /// A list of `strings`, which must be sorted and distinct.
    pub fn from_sorted<'a>(strings: impl IntoIterator<Item = &'a str>) -> StringList {
        let mut out = StringList::default();
        for s in strings {
            out.push(s);
        }
        out
    }

    /// Appends `s`, which must sort after every string already in the list.
    pub fn push(&mut self, s: &str) {
        debug_assert!(self.last().is_none_or(|last| last < s), "{s:?} out of order");
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    /// The last string.
    fn last(&self) -> Option<&str> {
        let end = *self.ends.last()? as usize;
        let start = self.ends.len().checked_sub(2).map_or(0, |i| self.ends[i] as usize);
        Some(&self.text[start..end])
    }

    /// Room for `n` more strings.
    pub fn reserve(&mut self, n: usize) {
        self.ends.reserve(n);
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The strings, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.ends.iter().scan(0usize, |start, &end| {
            let s = &self.text[*start..end as usize];
            *start = end as usize;
            Some(s)
        })
    }

    /// Keeps the first `n` strings.
    pub fn truncate(&mut self, n: usize) {
        if n < self.ends.len() {
            self.ends.truncate(n);
            self.text.truncate(self.ends.last().map_or(0, |&e| e as usize));
        }
    }

    /// The union of sorted lists, sorted, each string once (one list is taken as it is).
    pub fn merge(mut lists: Vec<StringList>) -> StringList {
        lists.retain(|l| !l.is_empty());
        if lists.len() <= 1 {
            return lists.pop().unwrap_or_default();
        }
        let mut out = StringList::default();
        let mut heads: Vec<_> = lists.iter().map(|l| l.iter().peekable()).collect();
        while let Some(min) = heads.iter_mut().filter_map(|h| h.peek().copied()).min() {
            for h in heads.iter_mut() {
                if h.peek() == Some(&min) {
                    h.next();
                }
            }
            out.push(min);
        }
        out
    }
}

impl fmt::Debug for StringList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merging keeps each string once, in order, empty strings and prefixes included.
    #[test]
    fn merge_is_the_sorted_union() {
        let a = StringList::from_sorted(["", "a", "ab", "b"]);
        let b = StringList::from_sorted(["a", "aa", "c"]);
        let c = StringList::from_sorted([]);
        let got = StringList::merge(vec![a.clone(), b, c]);
        assert_eq!(got.iter().collect::<Vec<_>>(), ["", "a", "aa", "ab", "b", "c"]);
        assert_eq!(StringList::merge(vec![a.clone()]), a);
        assert!(StringList::merge(vec![]).is_empty());
        let mut t = got.clone();
        t.truncate(3);
        assert_eq!(t.iter().collect::<Vec<_>>(), ["", "a", "aa"]);
        t.push("zz");
        assert_eq!(t.iter().collect::<Vec<_>>(), ["", "a", "aa", "zz"]);
    }
}
