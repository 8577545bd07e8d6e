//! The remote write 2.0 translation on arbitrary bytes: it never panics, `measure` bounds what
//! `translate` writes (exactly when no series is left out), the size stays within the limit,
//! and what it writes is a remote write 1.0 request that the 1.0 decoder reads, series for
//! series.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::remote_write::v2::{Scratch, measure, translate};
use ringest::remote_write::{Decoded, decode_write_request};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut sc = Scratch::default();
    let Ok(bound) = measure(data, &mut sc, LIMIT) else { return };
    let mut out = Vec::new();
    let t = translate(data, &mut sc, LIMIT, &mut out).expect("what measures translates");
    assert!(t.len <= bound);
    if t.refused.is_empty() {
        assert_eq!(t.len, bound);
    }
    assert_eq!(t.len, out.len());
    assert!(out.len() <= LIMIT);
    let mut d = Decoded::default();
    decode_write_request(&out, &mut d).expect("the 1.0 form decodes");
    assert_eq!(d.series.len() as u64, t.series);
    assert_eq!(d.samples.len() as u64, t.samples);
});
