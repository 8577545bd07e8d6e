//! Crash points for durability tests. When the environment variable `RINGEST_FAILPOINT` names a
//! point, the process kills itself with SIGKILL on reaching it, exactly as `kill -9` would at
//! that instant (no destructors, no flushing). Unset, a point costs one load of a cached value.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Kills the process if `name` is the armed failpoint.
pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("RINGEST_FAILPOINT").ok().filter(|s| !s.is_empty()));
    if armed.as_deref() == Some(name) {
        eprintln!("failpoint {name} reached: killing the process");
        // SAFETY: sends a signal to our own process; no memory is involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}
