//! Helpers shared by the TSDB's integration tests.

use std::path::Path;

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
