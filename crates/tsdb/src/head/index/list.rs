//! One postings list of the head index: the ids of the series with one label pair, ascending.
//!
//! Most values of a high-cardinality label belong to a few series: their ids stay inline (up to
//! four, no allocation) or in a short vector. A pair many series share (a job, a metric name, a
//! label every series has) goes into a compressed bitmap once it holds more than [`MANY`] ids:
//! ids are handed out in creation order, so a target's or a metric's series lie in runs and
//! clusters, which a bitmap keeps in two bytes an id or less (a list of every series in a few
//! bytes per 65536), against four bytes an id in a vector.

use roaring::RoaringBitmap;
use smallvec::SmallVec;

/// Ids beyond which a list becomes a bitmap.
const MANY: usize = 32;

/// Ids a bitmap takes at once: its `push` looks for its highest id first, which scans a dense
/// container's words, so ids wait in a short vector and go in by the batch.
const BATCH: usize = 4096;

/// Series ids with one label pair, ascending.
pub(crate) enum List {
    Few(SmallVec<[u32; 4]>),
    Many(Box<Many>),
}

/// A long list: a bitmap, then ids above it not added yet.
pub(crate) struct Many {
    bits: RoaringBitmap,
    tail: Vec<u32>,
}

impl Many {
    fn new(ids: impl IntoIterator<Item = u32>) -> Box<Many> {
        Box::new(Many { bits: RoaringBitmap::from_sorted_iter(ids).expect("sorted ids"), tail: Vec::new() })
    }

    fn flush(&mut self) {
        let added = self.bits.append(self.tail.drain(..));
        debug_assert!(added.is_ok(), "ids are pushed in order");
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().chain(self.tail.iter().copied())
    }
}

impl List {
    /// A list of one id.
    pub(crate) fn one(id: u32) -> List {
        List::Few(smallvec::smallvec![id])
    }

    /// Appends `id`, above every id in the list.
    pub(crate) fn push(&mut self, id: u32) {
        match self {
            List::Few(ids) => {
                debug_assert!(ids.last().is_none_or(|&l| l < id), "ids are pushed in order");
                ids.push(id);
                if ids.len() > MANY {
                    *self = List::Many(Many::new(ids.iter().copied()));
                }
            }
            List::Many(m) => {
                debug_assert!(m.tail.last().is_none_or(|&l| l < id), "ids are pushed in order");
                m.tail.push(id);
                if m.tail.len() >= BATCH {
                    m.flush();
                }
            }
        }
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        match self {
            List::Few(ids) => ids.len(),
            List::Many(m) => m.bits.len() as usize + m.tail.len(),
        }
    }

    /// The ids, ascending.
    pub(crate) fn to_vec(&self) -> Vec<u32> {
        match self {
            List::Few(ids) => ids.to_vec(),
            List::Many(m) => m.iter().collect(),
        }
    }

    /// Renumbers the ids through `remap` (ascending where defined; `u32::MAX`: dropped).
    /// Returns whether any id is left.
    pub(crate) fn remap(&mut self, remap: &[u32]) -> bool {
        match self {
            List::Few(ids) => {
                ids.retain(|id| match remap[*id as usize] {
                    u32::MAX => false,
                    n => {
                        *id = n;
                        true
                    }
                });
                !ids.is_empty()
            }
            List::Many(m) => {
                let kept: Vec<u32> = m.iter().map(|id| remap[id as usize]).filter(|&n| n != u32::MAX).collect();
                *self = if kept.len() <= MANY { List::Few(kept.into()) } else { List::Many(Many::new(kept)) };
                self.len() > 0
            }
        }
    }

    /// Gives back room the list grew into: a vector that doubled keeps an eighth for the next
    /// ids; a bitmap's containers take their smallest form (runs where ids are consecutive).
    pub(crate) fn trim(&mut self) {
        match self {
            List::Few(ids) => {
                let (len, cap) = (ids.len(), ids.capacity());
                if ids.spilled() && cap > len + len / 2 {
                    ids.grow(len + len / 8);
                }
            }
            List::Many(m) => {
                m.flush();
                m.tail = Vec::new();
                m.bits.optimize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list holds what was pushed, across the change of form both ways and through remaps.
    #[test]
    fn a_list_is_its_ids_in_either_form() {
        let mut list = List::one(3);
        let mut want = vec![3u32];
        for id in (10..200).step_by(3).chain(1000..70_000) {
            list.push(id);
            want.push(id);
            assert_eq!(list.len(), want.len());
        }
        assert!(matches!(list, List::Many(_)));
        assert_eq!(list.to_vec(), want, "ids waiting to go into the bitmap count");
        list.trim();
        assert_eq!(list.to_vec(), want);
        // Keep every 5000th id, renumbered densely.
        let mut remap = vec![u32::MAX; 70_000];
        let mut kept = Vec::new();
        for (n, &id) in want.iter().filter(|&&id| id % 5000 == 0).enumerate() {
            remap[id as usize] = n as u32;
            kept.push(n as u32);
        }
        assert!(list.remap(&remap));
        assert_eq!(list.to_vec(), kept);
        assert!(matches!(list, List::Few(_)), "a short list leaves the bitmap");
        list.push(500);
        kept.push(500);
        assert_eq!(list.to_vec(), kept);
        assert!(!list.remap(&vec![u32::MAX; 501]), "nothing left");
    }
}
