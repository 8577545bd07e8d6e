//! One stripe of the series index: a mutex over a small open-addressing table of
//! `(tag, series)` slots (linear probing, at most 3/4 full, backward-shift deletion).
//!
//! Written here instead of using a general hash table so that a lookup can be prefetched
//! without the lock: the stripe keeps a copy of its slot array's address and mask in atomics
//! next to the mutex, and [`Stripe::prefetch_slot`] asks the CPU to load the line where a probe
//! for a tag starts. A stale copy (the table grew in between) only prefetches a useless address;
//! nothing reads through it. Tags and series sit in the same slot, so a found lookup costs the
//! stripe's line, one slot line and the series.

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};

use parking_lot::{Mutex, MutexGuard};

use super::MemSeries;
use crate::prefetch;

/// A slot: the series' tag (the high half of its label hash) and the series.
#[derive(Default)]
struct Slot {
    tag: u64,
    series: Option<Arc<MemSeries>>,
}

/// The slots of one stripe.
#[derive(Default)]
pub(crate) struct Table {
    slots: Box<[Slot]>,
    len: usize,
    /// Series inserted since the head index last took them (see `head::index`).
    new: Vec<Arc<MemSeries>>,
}

/// A stripe, aligned so that its lock and hints share one cache line with nothing else.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct Stripe {
    table: Mutex<Table>,
    /// The slot array's address and `len - 1`, for prefetching only (see the module docs).
    slots_hint: AtomicPtr<Slot>,
    mask_hint: AtomicUsize,
}

/// The tag of a label hash within its stripe.
#[inline]
pub(crate) fn tag_of(hash: u128) -> u64 {
    (hash >> 64) as u64
}

impl Stripe {
    /// Locks the stripe.
    #[inline]
    pub(crate) fn lock(&self) -> StripeGuard<'_> {
        StripeGuard { stripe: self, table: self.table.lock() }
    }

    /// Asks the CPU to load the stripe's own line (lock and hints).
    #[inline]
    pub(crate) fn prefetch(&self) {
        prefetch(self as *const Stripe as *const u8);
    }

    /// Asks the CPU to load the slot line where a probe for `hash` starts. Best after
    /// [`Stripe::prefetch`] had time to bring in the hints.
    #[inline]
    pub(crate) fn prefetch_slot(&self, hash: u128) {
        let slots = self.slots_hint.load(Relaxed);
        if !slots.is_null() {
            let i = tag_of(hash) as usize & self.mask_hint.load(Relaxed);
            prefetch(slots.wrapping_add(i) as *const u8);
        }
    }
}

/// A locked stripe.
pub(crate) struct StripeGuard<'a> {
    stripe: &'a Stripe,
    table: MutexGuard<'a, Table>,
}

impl StripeGuard<'_> {
    /// The series with label hash `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u128) -> Option<&Arc<MemSeries>> {
        let slots = &self.table.slots;
        if slots.is_empty() {
            return None;
        }
        let (tag, mask) = (tag_of(hash), slots.len() - 1);
        let mut i = tag as usize & mask;
        loop {
            let slot = &slots[i];
            match &slot.series {
                None => return None,
                Some(s) if slot.tag == tag && s.hash == hash => return Some(s),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Adds a series whose hash is not in the stripe yet.
    pub(crate) fn insert(&mut self, series: Arc<MemSeries>) {
        if (self.table.len + 1) * 4 > self.table.slots.len() * 3 {
            self.grow();
        }
        self.table.new.push(series.clone());
        put(&mut self.table.slots, Slot { tag: tag_of(series.hash), series: Some(series) });
        self.table.len += 1;
    }

    /// The series inserted since the last call.
    pub(crate) fn take_new(&mut self) -> Vec<Arc<MemSeries>> {
        std::mem::take(&mut self.table.new)
    }

    /// Drops removed series from the series inserted since the last [`StripeGuard::take_new`].
    pub(crate) fn forget_removed(&mut self) {
        self.table.new.retain(|s| !s.removed.load(std::sync::atomic::Ordering::Acquire));
    }

    /// Removes exactly this series (not another one with the same hash). Returns whether it
    /// was there.
    pub(crate) fn remove(&mut self, series: &Arc<MemSeries>) -> bool {
        let slots = &mut self.table.slots;
        if slots.is_empty() {
            return false;
        }
        let mask = slots.len() - 1;
        let mut i = tag_of(series.hash) as usize & mask;
        loop {
            match &slots[i].series {
                None => return false,
                Some(s) if Arc::ptr_eq(s, series) => break,
                Some(_) => i = (i + 1) & mask,
            }
        }
        slots[i] = Slot::default();
        // Backward shift: pull later entries of the probe run into the hole unless that would
        // move them before their home slot.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if slots[j].series.is_none() {
                break;
            }
            let home = slots[j].tag as usize & mask;
            // Distance from home to j versus from home to the hole, both around the ring.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                slots[hole] = std::mem::take(&mut slots[j]);
                hole = j;
            }
        }
        self.table.len -= 1;
        true
    }

    /// The stripe's series.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.table.slots.iter().filter_map(|s| s.series.as_ref())
    }

    fn grow(&mut self) {
        let cap = (self.table.slots.len() * 2).max(8);
        let old = std::mem::replace(&mut self.table.slots, (0..cap).map(|_| Slot::default()).collect());
        for slot in old.into_vec().into_iter().filter(|s| s.series.is_some()) {
            put(&mut self.table.slots, slot);
        }
        self.stripe.slots_hint.store(self.table.slots.as_ptr() as *mut Slot, Relaxed);
        self.stripe.mask_hint.store(cap - 1, Relaxed);
    }
}

/// Puts `slot` in the first free slot of its probe run (there is one: the table is never full).
fn put(slots: &mut [Slot], slot: Slot) {
    let mask = slots.len() - 1;
    let mut i = slot.tag as usize & mask;
    while slots[i].series.is_some() {
        i = (i + 1) & mask;
    }
    slots[i] = slot;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(hash: u128) -> Arc<MemSeries> {
        Arc::new(MemSeries::new(hash, hash as u64, Box::new([])))
    }

    /// Random inserts and removals (many tags sharing home slots, some equal tags with
    /// different hashes) checked against a map after every step.
    #[test]
    fn matches_a_map_under_inserts_and_removals() {
        let stripe = Stripe::default();
        let mut model: std::collections::HashMap<u128, Arc<MemSeries>> = Default::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000 {
            let r = next();
            // Few distinct tags (collisions and long runs) and a low half that tells equal
            // tags apart.
            let hash = (((r % 97) as u128 * 0x9e37_79b9) << 64) | (r % 5) as u128;
            let mut g = stripe.lock();
            if step % 3 == 0 {
                if let Some(s) = model.remove(&hash) {
                    assert!(g.remove(&s));
                    assert!(!g.remove(&s));
                }
            } else if let std::collections::hash_map::Entry::Vacant(e) = model.entry(hash) {
                let s = series(hash);
                g.insert(s.clone());
                e.insert(s);
            }
            for (h, s) in &model {
                assert!(Arc::ptr_eq(g.find(*h).expect("present"), s));
            }
            assert_eq!(g.iter().count(), model.len());
            assert!(g.find(hash ^ (1 << 100)).is_none() || model.contains_key(&(hash ^ (1 << 100))));
        }
    }

    #[test]
    fn remove_needs_the_same_series_not_just_the_same_hash() {
        let stripe = Stripe::default();
        let mut g = stripe.lock();
        let a = series(7 << 64);
        g.insert(a.clone());
        assert!(!g.remove(&series(7 << 64)));
        assert!(g.remove(&a));
        assert!(g.find(7 << 64).is_none());
    }

    #[test]
    fn hints_follow_the_table() {
        let stripe = Stripe::default();
        stripe.prefetch_slot(1); // empty: no address yet, nothing happens
        let mut g = stripe.lock();
        for h in 0..100u128 {
            g.insert(series(h << 64));
        }
        let (ptr, mask) = (stripe.slots_hint.load(Relaxed), stripe.mask_hint.load(Relaxed));
        assert_eq!(ptr as *const Slot, g.table.slots.as_ptr());
        assert_eq!(mask + 1, g.table.slots.len());
        assert!(g.table.slots.len() * 3 >= 100 * 4);
    }
}
