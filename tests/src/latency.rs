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

/// Gives the calling thread the shortest time slice Linux allows (100 µs, Linux 6.12 on; older
/// kernels ignore it), as the receiver's async threads have. The client whose latency a test
/// measures stands in for a client on another machine, which wakes on its own core when its
/// answer arrives: here it shares two cores with the receiver, and with the default slice (1.4
/// ms) it waited behind the receiver's threads for up to a slice at each answer, which a remote
/// client does not.
pub fn as_measured_client() {
    /// sched_setattr(2)'s `struct sched_attr`, first version (48 bytes).
    #[repr(C)]
    struct Attr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = Attr { size: 48, policy: 0, flags: 0, nice: 0, priority: 0, runtime: 100_000, deadline: 0, period: 0 };
    // SAFETY: with pid 0, sched_setattr changes the calling thread only; it reads `attr`, of the
    // size it declares, during the call.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const Attr, 0) };
    if rc != 0 {
        eprintln!("the measured client keeps the default time slice: {}", std::io::Error::last_os_error());
    }
}
