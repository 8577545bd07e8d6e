//! Latency checks made from outside: percentiles of a client's answers, and clients that stand
//! in for remote ones.

use std::time::Duration;

/// The 99th percentile of `v` (the nearest-rank one; zero for no values).
pub fn p99(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get((v.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default()
}

/// Lowers the calling thread's CPU priority to the least (nice 19). A test's load or attacking
/// clients stand in for clients on other machines: on one 2-core box their own CPU would
/// otherwise be taken from the receiver and the client being measured, which a remote client
/// cannot do.
pub fn as_remote_client() {
    // SAFETY: on Linux, PRIO_PROCESS with who = 0 sets the nice value of the calling thread only.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    assert_eq!(rc, 0, "setpriority: {}", std::io::Error::last_os_error());
}
