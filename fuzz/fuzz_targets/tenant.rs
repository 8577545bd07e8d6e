//! Tenant names (from a header or a gRPC request, then a directory name) on arbitrary bytes: a
//! name that is accepted is exactly one plain path component, so it can never point outside
//! the data directory, and made of whitelisted characters only.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use ringest::tenancy::validate_tenant;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else { return };
    if validate_tenant(name).is_err() {
        return;
    }
    let parts: Vec<Component<'_>> = Path::new(name).components().collect();
    assert_eq!(parts.len(), 1, "{name:?} has {} path components", parts.len());
    assert!(matches!(parts[0], Component::Normal(p) if p == name), "{name:?} is not a plain file name");
    assert!(!name.contains('\0') && !name.starts_with("__") && name.len() <= 150, "{name:?}");
    let whitelisted = |b: u8| b.is_ascii_alphanumeric() || b"!_.*'()-".contains(&b);
    assert!(name.bytes().all(whitelisted), "{name:?} has a character outside the whitelist");
});
