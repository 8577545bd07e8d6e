//! The WAL segment reader on arbitrary bytes: records and corruptions come out, never a panic,
//! and every record's series and samples decode or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest_tsdb::wal::SegmentReader;
use ringest_tsdb::wal::record::{decode_samples, decode_series};

fuzz_target!(|data: &[u8]| {
    let mut r = SegmentReader::new(0, data);
    let mut samples = Vec::new();
    while let Some(rec) = r.next() {
        let Ok(rec) = rec else { break };
        let _ = decode_samples(rec.data, &mut samples);
        let mut series = Vec::new();
        let _ = decode_series(rec.data, &mut series, |_, _| {});
    }
});
