//! Helpers shared by the TSDB's integration tests.

use std::collections::BTreeMap;
use std::path::Path;

use ringest_tsdb::{Labels, Tsdb};

/// Every series with samples and its samples as `(timestamp, value bits)`.
pub type Model = BTreeMap<Labels, Vec<(i64, u64)>>;

/// What `db` holds, as a [`Model`].
pub fn dump(db: &Tsdb) -> Model {
    db.dump()
        .into_iter()
        .filter(|s| !s.samples.is_empty())
        .map(|s| (s.labels, s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()))
        .collect()
}

/// Copies a directory tree, without its `lock` file.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), &p).unwrap();
        }
    }
}
