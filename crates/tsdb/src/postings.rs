//! Label matchers and set operations on sorted postings lists (series ids), with Prometheus'
//! selection semantics (`PostingsForMatchers`): a matcher that matches the empty string also
//! selects series that lack the label. Blocks and the head both answer through [`select`].

use regex::Regex;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored regular expression)
    Regex,
    /// `!~`
    NotRegex,
}

/// A matcher whose regular expression does not compile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct InvalidMatcher {
    /// The pattern as given.
    pub pattern: String,
    /// Why it does not compile.
    pub reason: String,
}

/// A label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub kind: MatchKind,
    /// Value or pattern.
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// A matcher; regular expressions are anchored at both ends, as in Prometheus.
    pub fn new(kind: MatchKind, name: &str, value: &str) -> Result<Self, InvalidMatcher> {
        let re = match kind {
            MatchKind::Regex | MatchKind::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| InvalidMatcher { pattern: value.to_owned(), reason: e.to_string() })?,
            ),
            _ => None,
        };
        Ok(Matcher { name: name.to_owned(), kind, value: value.to_owned(), re })
    }

    /// Whether `v` satisfies the matcher.
    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchKind::Equal => v == self.value,
            MatchKind::NotEqual => v != self.value,
            MatchKind::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchKind::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// Union of sorted lists.
pub fn union(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap(),
        _ => {
            let mut out: Vec<u32> = lists.concat();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Intersection of two sorted lists.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the ids of sorted `b`.
pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|&x| {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            !(j < b.len() && b[j] == x)
        })
        .collect()
}

/// Where [`select`] reads postings from: a block's index or the head's.
pub(crate) trait Source {
    type Error;
    /// The ids of `name="value"`, sorted (empty if the pair does not occur).
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, Self::Error>;
    /// Union of the postings of the values of `name` that satisfy `keep`, sorted.
    fn postings_where(&self, name: &str, keep: &mut dyn FnMut(&str) -> bool) -> Result<Vec<u32>, Self::Error>;
    /// Every id, sorted.
    fn all(&self) -> Result<Vec<u32>, Self::Error>;
}

/// The ids of `src` selected by all `matchers`, ascending.
pub(crate) fn select<S: Source>(src: &S, matchers: &[Matcher]) -> Result<Vec<u32>, S::Error> {
    let mut include: Vec<Vec<u32>> = Vec::new();
    let mut exclude: Vec<Vec<u32>> = Vec::new();
    for m in matchers {
        if m.matches("") {
            // Series lacking the label match; of those that have it, drop the failing values.
            exclude.push(src.postings_where(&m.name, &mut |v| !m.matches(v))?);
        } else {
            let hit = match m.kind {
                MatchKind::Equal => src.postings(&m.name, &m.value)?,
                _ => src.postings_where(&m.name, &mut |v| m.matches(v))?,
            };
            if hit.is_empty() {
                return Ok(Vec::new());
            }
            include.push(hit);
        }
    }
    include.sort_by_key(|l| l.len());
    let mut it = include.into_iter();
    let mut out = match it.next() {
        Some(first) => first,
        None => src.all()?,
    };
    for l in it {
        out = intersect(&out, &l);
    }
    for l in exclude {
        if !out.is_empty() {
            out = subtract(&out, &l);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5, 8]), vec![3, 5]);
        assert_eq!(subtract(&[1, 3, 5, 7], &[3, 4, 7]), vec![1, 5]);
        assert_eq!(union(vec![vec![1, 5], vec![2, 5, 9], vec![]]), vec![1, 2, 5, 9]);
    }

    #[test]
    fn regex_is_anchored_and_negations_match_missing_labels() {
        let m = Matcher::new(MatchKind::Regex, "a", "fo+").unwrap();
        assert!(m.matches("foo") && !m.matches("xfoo") && !m.matches("foox") && !m.matches(""));
        let m = Matcher::new(MatchKind::NotEqual, "a", "x").unwrap();
        assert!(m.matches("") && m.matches("y") && !m.matches("x"));
        let m = Matcher::new(MatchKind::Regex, "a", "x|").unwrap();
        assert!(m.matches("") && m.matches("x"));
        assert!(Matcher::new(MatchKind::Regex, "a", "(").is_err());
    }
}
