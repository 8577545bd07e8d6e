//! Latency checks made from outside: percentiles of a client's answers, and clients that stand
//! in for remote ones.

use std::time::Duration;

/// The 99th percentile of `v` (the nearest-rank one; zero for no values).
pub fn p99(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get((v.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default()
}

/// Puts the calling thread at the lowest CPU priority there is (`SCHED_IDLE`). A test's load or
/// attacking clients stand in for clients on other machines: on one 2-core box their own CPU
/// would otherwise be taken from the receiver and the client being measured, which a remote
/// client cannot do. Nice 19 is not enough for that: Linux's scheduler (EEVDF, 6.6 on) lets a
/// running nice-19 thread finish its time slice (1.4 ms on 2 cores) before a thread that wakes
/// gets the core, while any thread that wakes preempts a `SCHED_IDLE` one at once.
pub fn as_remote_client() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: with pid 0, sched_setscheduler changes the calling thread only; `param` outlives
    // the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    assert_eq!(rc, 0, "sched_setscheduler: {}", std::io::Error::last_os_error());
}
