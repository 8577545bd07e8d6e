//! A concurrent string interner for label names and values.
//!
//! Symbols are sharded by hash; each shard is a short critical section. Interning happens only
//! when a series is created, never per sample. Symbols are not freed; the block issue rebuilds
//! the table when the head is truncated.

use hashbrown::HashTable;
use parking_lot::Mutex;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Identifier of an interned string.
pub type SymbolId = u32;

#[derive(Default)]
struct Shard {
    index: HashTable<u32>,
    strings: Vec<Box<str>>,
}

/// The interner.
pub struct Symbols {
    shards: Box<[Mutex<Shard>]>,
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
        Symbols { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect() }
    }

    /// Interns `s` (which must be valid UTF-8) and returns its id.
    pub fn intern(&self, s: &str) -> SymbolId {
        let h = hash(s.as_bytes());
        let shard_no = (h as usize) & (SHARDS - 1);
        let mut shard = self.shards[shard_no].lock();
        let Shard { index, strings } = &mut *shard;
        if let Some(&i) = index.find(h, |&i| &*strings[i as usize] == s) {
            return (i << SHARD_BITS) | shard_no as u32;
        }
        let i = strings.len() as u32;
        assert!(i < (1 << (32 - SHARD_BITS)), "symbol table shard is full");
        strings.push(s.into());
        index.insert_unique(h, i, |&j| hash(strings[j as usize].as_bytes()));
        (i << SHARD_BITS) | shard_no as u32
    }

    /// Calls `f` with the string of `id`.
    pub fn with<R>(&self, id: SymbolId, f: impl FnOnce(&str) -> R) -> R {
        let shard = self.shards[(id as usize) & (SHARDS - 1)].lock();
        f(&shard.strings[(id >> SHARD_BITS) as usize])
    }

    /// The string of `id`, copied.
    pub fn get(&self, id: SymbolId) -> String {
        self.with(id, str::to_owned)
    }

    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().strings.len()).sum()
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
        let a = s.intern("job");
        let b = s.intern("instance");
        assert_ne!(a, b);
        assert_eq!(s.intern("job"), a);
        assert_eq!(s.get(a), "job");
        assert_eq!(s.get(b), "instance");
        for i in 0..10_000 {
            let id = s.intern(&format!("v{i}"));
            assert_eq!(s.get(id), format!("v{i}"));
        }
        assert_eq!(s.len(), 10_002);
    }
}
