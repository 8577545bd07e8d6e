//! Fault points for durability tests, armed by the environment variable `RINGEST_FAILPOINT`.
//!
//! - `RINGEST_FAILPOINT=<name>`: the process kills itself with SIGKILL on reaching crash point
//!   `name` ([`hit`]), exactly as `kill -9` would at that instant (no destructors, no flushing).
//! - `RINGEST_FAILPOINT=<name>:<n>`: the first `n` calls at error point `name` ([`io_error`])
//!   fail with EIO, as a failing disk would answer.
//!
//! Unset, a point costs one load of a cached value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    /// Errors left to inject (error points only).
    errors: Option<AtomicU64>,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let v = std::env::var("RINGEST_FAILPOINT").ok().filter(|s| !s.is_empty())?;
            Some(match v.split_once(':') {
                Some((name, n)) => Armed { name: name.to_string(), errors: n.parse().ok().map(AtomicU64::new) },
                None => Armed { name: v, errors: None },
            })
        })
        .as_ref()
}

/// Kills the process if `name` is the armed crash point.
pub fn hit(name: &str) {
    if armed().is_some_and(|a| a.name == name && a.errors.is_none()) {
        eprintln!("failpoint {name} reached: killing the process");
        // SAFETY: sends a signal to our own process; no memory is involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// An EIO to return instead of doing the operation, while `name` is the armed error point and
/// errors are left to inject.
pub fn io_error(name: &str) -> Option<std::io::Error> {
    let a = armed().filter(|a| a.name == name)?;
    let left = a.errors.as_ref()?;
    left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).ok()?;
    eprintln!("failpoint {name}: injecting EIO");
    Some(std::io::Error::from_raw_os_error(libc::EIO))
}
