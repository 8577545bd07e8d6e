//! A concurrent string interner for label names and values.
//!
//! Symbols are sharded by hash; each shard is a short critical section. Interning happens only
//! when a series is created, never per sample. [`Symbols::retain`] frees the strings no series
//! uses any more (after head truncation removed series); freed ids are reused, and every cached
//! id (the per-thread front cache, callers' caches keyed by [`Symbols::generation`]) is
//! invalidated. The caller makes sure no id is in use while it runs.
//!
//! A small per-thread front cache (direct-mapped, short strings only, checked byte for byte)
//! answers the strings most series share (label names, common values) without touching a
//! shard lock: when several threads create series at once they would otherwise all queue on the
//! same few shards.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use parking_lot::Mutex;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Strings up to this many bytes go through the front cache.
const CACHED_LEN: usize = 46;
/// Slots of the front cache (per thread).
const CACHE_SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    /// The owning `Symbols` (0: empty slot).
    owner: u64,
    hash: u64,
    id: SymbolId,
    len: u8,
    bytes: [u8; CACHED_LEN],
}

const EMPTY: Slot = Slot { owner: 0, hash: 0, id: 0, len: 0, bytes: [0; CACHED_LEN] };

thread_local! {
    static FRONT: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Distinguishes `Symbols` instances in the front cache (never reused, unlike addresses).
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// Identifier of an interned string.
pub type SymbolId = u32;

#[derive(Default)]
struct Shard {
    index: HashTable<u32>,
    /// Valid UTF-8 (callers validate before interning); `None`: freed.
    strings: Vec<Option<Box<[u8]>>>,
    /// Freed slots.
    free: Vec<u32>,
}

/// The interner.
pub struct Symbols {
    shards: Box<[Mutex<Shard>]>,
    /// Front-cache owner tag; changes when ids are freed.
    owner: AtomicU64,
}

impl Default for Symbols {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols").field("len", &self.len()).finish()
    }
}

fn hash(s: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s)
}

impl Symbols {
    /// An empty interner.
    pub fn new() -> Self {
        Symbols {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            owner: AtomicU64::new(NEXT_OWNER.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Interns `s` (which must be valid UTF-8: label strings are validated when their series is
    /// created, so interning does not check them again) and returns its id.
    pub fn intern(&self, s: &[u8]) -> SymbolId {
        let h = hash(s);
        if s.len() > CACHED_LEN {
            return self.intern_shard(h, s);
        }
        let slot = ((h >> SHARD_BITS) as usize) & (CACHE_SLOTS - 1);
        let owner = self.owner.load(Ordering::Acquire);
        let hit = FRONT.with(|c| {
            let c = c.borrow();
            let e = c.get(slot)?;
            (e.owner == owner && e.hash == h && e.len as usize == s.len() && &e.bytes[..s.len()] == s).then_some(e.id)
        });
        if let Some(id) = hit {
            return id;
        }
        let id = self.intern_shard(h, s);
        FRONT.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_empty() {
                c.resize(CACHE_SLOTS, EMPTY);
            }
            let mut e = Slot { owner, hash: h, id, len: s.len() as u8, bytes: [0; CACHED_LEN] };
            e.bytes[..s.len()].copy_from_slice(s);
            c[slot] = e;
        });
        id
    }

    fn intern_shard(&self, h: u64, s: &[u8]) -> SymbolId {
        let shard_no = (h as usize) & (SHARDS - 1);
        let mut shard = self.shards[shard_no].lock();
        let Shard { index, strings, free } = &mut *shard;
        if let Some(&i) = index.find(h, |&i| strings[i as usize].as_deref() == Some(s)) {
            return (i << SHARD_BITS) | shard_no as u32;
        }
        let i = match free.pop() {
            Some(i) => {
                strings[i as usize] = Some(s.into());
                i
            }
            None => {
                let i = strings.len() as u32;
                assert!(i < (1 << (32 - SHARD_BITS)), "symbol table shard is full");
                strings.push(Some(s.into()));
                i
            }
        };
        index.insert_unique(h, i, |&j| hash(strings[j as usize].as_deref().unwrap_or_default()));
        (i << SHARD_BITS) | shard_no as u32
    }

    /// Changes whenever ids are freed: a cache of ids must be dropped when this changes.
    pub fn generation(&self) -> u64 {
        self.owner.load(Ordering::Acquire)
    }

    /// Frees every string whose id `live` rejects and hands them back (to be dropped outside
    /// the caller's critical section). No freed id may be in use (the caller excludes
    /// interning and lookups while this runs).
    pub fn retain(&self, live: impl Fn(SymbolId) -> bool) -> Vec<Box<[u8]>> {
        let mut freed = Vec::new();
        for (shard_no, shard) in self.shards.iter().enumerate() {
            let mut shard = shard.lock();
            let Shard { index, strings, free } = &mut *shard;
            for (i, slot) in strings.iter_mut().enumerate() {
                let id = ((i as u32) << SHARD_BITS) | shard_no as u32;
                let Some(s) = slot else { continue };
                if live(id) {
                    continue;
                }
                if let Ok(e) = index.find_entry(hash(s), |&j| j == i as u32) {
                    e.remove();
                }
                freed.extend(slot.take());
                free.push(i as u32);
            }
        }
        if !freed.is_empty() {
            self.owner.store(NEXT_OWNER.fetch_add(1, Ordering::Relaxed), Ordering::Release);
        }
        freed
    }

    /// One past the largest id handed out so far.
    pub fn id_bound(&self) -> u32 {
        self.shards
            .iter()
            .enumerate()
            .map(|(n, s)| ((s.lock().strings.len() as u32) << SHARD_BITS) | n as u32)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// The id of `s`, if interned (nothing is added).
    pub fn lookup(&self, s: &[u8]) -> Option<SymbolId> {
        let h = hash(s);
        let shard_no = (h as usize) & (SHARDS - 1);
        let shard = self.shards[shard_no].lock();
        let strings = &shard.strings;
        shard
            .index
            .find(h, |&i| strings[i as usize].as_deref() == Some(s))
            .map(|&i| (i << SHARD_BITS) | shard_no as u32)
    }

    /// Calls `f` with the string of `id` (without copying it; invalid UTF-8 reads as empty).
    pub fn with_str<R>(&self, id: SymbolId, f: impl FnOnce(&str) -> R) -> R {
        let shard = self.shards[(id as usize) & (SHARDS - 1)].lock();
        let bytes = shard.strings.get((id >> SHARD_BITS) as usize).and_then(|s| s.as_deref()).unwrap_or_default();
        f(std::str::from_utf8(bytes).unwrap_or_default())
    }

    /// The string of `id`, copied.
    pub fn get(&self, id: SymbolId) -> String {
        let shard = self.shards[(id as usize) & (SHARDS - 1)].lock();
        String::from_utf8_lossy(shard.strings[(id >> SHARD_BITS) as usize].as_deref().unwrap_or_default()).into_owned()
    }

    /// The bytes of `id`, copied.
    pub fn bytes(&self, id: SymbolId) -> Vec<u8> {
        let shard = self.shards[(id as usize) & (SHARDS - 1)].lock();
        shard.strings[(id >> SHARD_BITS) as usize].as_deref().unwrap_or_default().to_vec()
    }

    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.strings.len() - s.free.len()
            })
            .sum()
    }

    /// True when nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_stable() {
        let s = Symbols::new();
        let a = s.intern(b"job");
        let b = s.intern(b"instance");
        assert_ne!(a, b);
        assert_eq!(s.intern(b"job"), a);
        assert_eq!(s.get(a), "job");
        assert_eq!(s.get(b), "instance");
        for i in 0..10_000 {
            let id = s.intern(format!("v{i}").as_bytes());
            assert_eq!(s.get(id), format!("v{i}"));
        }
        assert_eq!(s.len(), 10_002);
    }

    #[test]
    fn retain_frees_and_reuses_ids_and_invalidates_caches() {
        let s = Symbols::new();
        let ids: Vec<SymbolId> = (0..1000).map(|i| s.intern(format!("v{i}").as_bytes())).collect();
        let keep: std::collections::HashSet<SymbolId> = ids.iter().copied().step_by(2).collect();
        let gen0 = s.generation();
        let bound = s.id_bound();
        assert_eq!(s.retain(|id| keep.contains(&id)).len(), 500);
        assert_ne!(s.generation(), gen0);
        assert_eq!(s.len(), 500);
        for (i, &id) in ids.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(s.get(id), format!("v{i}"));
                // The front cache and the shard agree after the purge.
                assert_eq!(s.intern(format!("v{i}").as_bytes()), id);
            }
        }
        // Freed strings come back (reusing slots), distinct from every kept id.
        let again: Vec<SymbolId> =
            (0..1000).filter(|i| i % 2 == 1).map(|i| s.intern(format!("v{i}").as_bytes())).collect();
        assert_eq!(s.len(), 1000);
        assert!(again.iter().all(|id| !keep.contains(id)));
        assert_eq!(s.id_bound(), bound, "freed slots were reused");
    }

    #[test]
    fn front_cache_never_crosses_instances_or_collides() {
        let a = Symbols::new();
        let b = Symbols::new();
        // Fill b first so ids differ between the two tables.
        for i in 0..100 {
            b.intern(format!("b{i}").as_bytes());
        }
        let ia = a.intern(b"shared");
        let ib = b.intern(b"shared");
        assert_eq!(a.intern(b"shared"), ia);
        assert_eq!(b.intern(b"shared"), ib);
        assert_ne!(ia, ib);
        // Many strings through the same slots: every answer is the right string.
        let long = "y".repeat(100);
        for i in 0..50_000 {
            let s = format!("{i}");
            let id = a.intern(s.as_bytes());
            assert_eq!(a.get(id), s);
        }
        assert_eq!(a.get(a.intern(long.as_bytes())), long);
        // From another thread, the same ids.
        let ids: Vec<SymbolId> = (0..1000).map(|i| a.intern(format!("{i}").as_bytes())).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, &id) in ids.iter().enumerate() {
                    assert_eq!(a.intern(format!("{i}").as_bytes()), id);
                }
            });
        });
    }
}
