//! A small pool of reusable request buffers.
//!
//! Decoding reuses its buffers across requests, so that a busy node does not fault in fresh
//! pages for every request. Keeping them per thread would keep one set per blocking thread
//! that ever decoded, hundreds under a burst; this pool keeps at most a few sets, each under a
//! size cap, and everything else is freed when its request ends.

use std::sync::OnceLock;

use parking_lot::Mutex;

/// Buffers larger than this are freed after their request instead of being kept.
pub const KEEP_BYTES: usize = 2 << 20;

/// Called after a buffer too large to keep was freed (see [`set_release`]).
static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Sets what gives freed memory back to the system at once after a large buffer was freed. The
/// binary's allocator keeps freed memory for a while, which suits the many small allocations of
/// normal writes; a request buffer of many MiB freed and kept that way would add its size to the
/// resident memory again and again under a stream of large (or hostile) requests.
pub fn set_release(f: fn()) {
    let _ = RELEASE.set(f);
}

/// Buffers of type `T`, at most `max` of them kept.
#[derive(Debug)]
pub struct Pool<T> {
    items: Mutex<Vec<T>>,
    max: usize,
}

impl<T: Default> Pool<T> {
    /// An empty pool keeping at most `max` buffers.
    pub const fn new(max: usize) -> Pool<T> {
        Pool { items: Mutex::new(Vec::new()), max }
    }

    /// A kept buffer, or a new one.
    pub fn take(&self) -> T {
        self.items.lock().pop().unwrap_or_default()
    }

    /// Returns a buffer for reuse when it is `small` enough to keep and the pool has room;
    /// otherwise it is freed, and a large one's memory given back at once.
    pub fn give(&self, item: T, small: bool) {
        if small {
            let mut items = self.items.lock();
            if items.len() < self.max {
                items.push(item);
            }
            return;
        }
        drop(item);
        release_memory();
    }
}

/// Gives the memory freed on this thread back to the system now (see [`set_release`]): after
/// a large buffer, and after a block cut, whose thread may then sleep for hours with the cut's
/// freed memory still resident.
pub fn release_memory() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_max_and_only_what_it_is_asked_to() {
        let pool: Pool<Vec<u8>> = Pool::new(2);
        for n in 1..=3 {
            pool.give(vec![0; n], true);
        }
        pool.give(vec![0; 100], false);
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert_eq!((a.len(), b.len(), c.len()), (2, 1, 0), "two kept, the third and the unwanted one freed");
    }
}
