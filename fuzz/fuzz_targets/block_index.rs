//! The block index reader on arbitrary files: opening refuses what is malformed, and what opens
//! can be walked (names, values, postings, series) without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest_tsdb::block::IndexReader;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index");
    std::fs::write(&path, data).expect("write index");
    let Ok(r) = IndexReader::open(&path) else { return };
    let names: Vec<String> = r.label_names().map(str::to_owned).collect();
    for n in &names {
        let values: Vec<String> = r.label_values(n).map(str::to_owned).collect();
        for v in values.iter().take(16) {
            if let Ok(ids) = r.postings(n, v) {
                for id in ids.into_iter().take(16) {
                    let _ = r.series(id);
                }
            }
        }
    }
    let _ = r.all_postings();
    for i in 0..r.num_symbols().min(64) {
        let _ = r.symbol(i as u32);
    }
});
