//! Series and section hashes, bit-compatible with Thanos.
//!
//! The series hash is XXH64 (seed 0) over
//! `tenant 0xFF name1 0xFF value1 0xFF name2 0xFF value2 0xFF …` with the labels
//! in the order they appear in the request (no sorting, no dedup). Streaming
//! ([`SeriesHasher`]) and one-shot ([`series_hash`]) XXH64 give the same result.
//!
//! The ketama section hash is XXH64 of `address ":" decimal(i)`.

use xxhash_rust::xxh64::{Xxh64, xxh64};

const SEP: [u8; 1] = [0xFF];

/// Incremental form of [`series_hash`], for callers that walk labels in a
/// form other than an iterator of byte-slice pairs.
#[derive(Clone)]
pub struct SeriesHasher {
    state: Xxh64,
}

impl std::fmt::Debug for SeriesHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesHasher").finish_non_exhaustive()
    }
}

impl SeriesHasher {
    /// Starts a series hash for `tenant`.
    #[inline]
    pub fn new(tenant: &[u8]) -> SeriesHasher {
        let mut state = Xxh64::new(0);
        state.update(tenant);
        state.update(&SEP);
        SeriesHasher { state }
    }

    /// Adds one label (call in request order).
    #[inline]
    pub fn label(&mut self, name: &[u8], value: &[u8]) {
        self.state.update(name);
        self.state.update(&SEP);
        self.state.update(value);
        self.state.update(&SEP);
    }

    /// The final hash.
    #[inline]
    pub fn finish(&self) -> u64 {
        self.state.digest()
    }
}

/// Thanos' placement hash of one series (`labelpb.HashWithPrefix`).
///
/// `labels` must be in request order, after relabelling and after removing
/// the split-tenant label. The bytes are gathered in a per-thread buffer and
/// hashed in one pass: the streaming hasher's per-slice bookkeeping cost more
/// than the copy for label-sized pieces (measured on the replication path).
#[inline]
pub fn series_hash<'a>(tenant: &[u8], labels: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        buf.extend_from_slice(tenant);
        buf.push(0xFF);
        for (name, value) in labels {
            buf.extend_from_slice(name);
            buf.push(0xFF);
            buf.extend_from_slice(value);
            buf.push(0xFF);
        }
        let h = xxh64(&buf, 0);
        if buf.capacity() > 1 << 16 {
            *buf = Vec::new();
        }
        h
    })
}

/// Hash of ketama section `i` (1-based) of the endpoint with `address`:
/// XXH64 of `address ":" decimal(i)`.
pub fn section_hash(address: &str, i: usize) -> u64 {
    let mut buf = Vec::with_capacity(address.len() + 21);
    section_hash_with(&mut buf, address, i)
}

/// [`section_hash`] reusing `buf` as scratch space.
pub(crate) fn section_hash_with(buf: &mut Vec<u8>, address: &str, i: usize) -> u64 {
    buf.clear();
    buf.extend_from_slice(address.as_bytes());
    buf.push(b':');
    push_decimal(buf, i);
    xxh64(buf, 0)
}

fn push_decimal(buf: &mut Vec<u8>, mut v: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend(digits[..n].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_series_hash() {
        let labels: [(&[u8], &[u8]); 3] =
            [(b"__name__", b"up"), (b"instance", b"localhost:9090"), (b"job", b"prometheus")];
        let h = series_hash(b"default-tenant", labels);
        assert_eq!(h, 0xcb7a3eb434a9984c);
        assert_eq!(h, 14662100480556636236);
        let raw = b"default-tenant\xff__name__\xffup\xffinstance\xfflocalhost:9090\xffjob\xffprometheus\xff";
        assert_eq!(xxh64(raw, 0), h);
    }

    #[test]
    fn golden_section_hash() {
        assert_eq!(section_hash("receive-0:10901", 1), 0x989ad7f1fbebbbc2);
        assert_eq!(section_hash("receive-0:10901", 1), xxh64(b"receive-0:10901:1", 0));
    }

    #[test]
    fn decimal_formatting() {
        for i in [0usize, 1, 9, 10, 99, 100, 999, 1000, 123456789, usize::MAX] {
            let mut buf = Vec::new();
            push_decimal(&mut buf, i);
            assert_eq!(buf, i.to_string().into_bytes());
        }
    }

    #[test]
    fn streaming_matches_one_shot_for_long_series() {
        // Past 1 KiB Thanos switches to a streaming hasher; both must agree.
        let long = "v".repeat(3000);
        let labels: Vec<(String, String)> = (0..20).map(|i| (format!("name{i}"), long.clone())).collect();
        let mut raw = b"tenant\xff".to_vec();
        for (n, v) in &labels {
            raw.extend_from_slice(n.as_bytes());
            raw.push(0xff);
            raw.extend_from_slice(v.as_bytes());
            raw.push(0xff);
        }
        let h = series_hash(b"tenant", labels.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        assert_eq!(h, xxh64(&raw, 0));
    }

    #[test]
    fn no_labels() {
        assert_eq!(series_hash(b"t", std::iter::empty()), xxh64(b"t\xff", 0));
    }
}
