//! How ringest's threads ask the kernel for CPU: the threads that answer writes first, bulk work
//! only when nothing else wants the CPU.
//!
//! Linux's fair scheduler (EEVDF, since 6.6) lets a running thread keep its CPU for its time
//! slice (1.4 ms on a 2-core node) when another one wakes, whatever their nice values: nice sets
//! a thread's share of the CPU, not how soon it runs. So a bulk-lane thread at nice 19 still
//! held a core for up to a slice each time a runtime thread woke with a normal writer's request,
//! and a writer's request wakes several (the connection's worker, a blocking thread for the
//! append, the worker again for the answer). Measured with the attack test
//! (tests/tests/hostile_clients.rs, benches/README.md): the writer's p99 in its phases was
//! 4.8-11.9 ms with the bulk lane at nice 19 and the default slice, 1.7-4.5 ms with both changes
//! here (idle: 0.6-0.7 ms). Neither helps alone.
//!
//! - [`bulk_thread`]: `SCHED_IDLE`, which any other thread preempts at once when it wakes (it
//!   still gets CPU under full load: Linux weighs it a fifth of nice 19).
//! - [`latency_thread`]: the async runtime's threads (workers and blocking pool) ask for the
//!   shortest slice Linux allows (100 µs, `sched_setattr`'s `sched_runtime`, honoured since
//!   Linux 6.12): a thread with a shorter slice has an earlier deadline, so it preempts a
//!   running thread when it wakes instead of waiting for that thread's slice to end. Older
//!   kernels ignore the request.
//!
//! - [`background_thread`]: the uploads' threads at nice 10.
//!
//! Each is best effort: a refusal leaves the thread as it was (logged once at debug level for
//! the bulk and runtime threads).

use std::sync::Once;

/// The slice the runtime's threads ask for: the shortest Linux takes.
const LATENCY_SLICE_NS: u64 = 100_000;

/// `struct sched_attr` of sched_setattr(2) (its first version, 48 bytes, which every kernel
/// since 3.14 takes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Makes the calling thread a bulk one: `SCHED_IDLE`, or nice 19 where that is refused.
pub fn bulk_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: with pid 0, sched_setscheduler changes the calling thread only; `param` outlives
    // the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    let idle_err = std::io::Error::last_os_error();
    // SAFETY: on Linux, PRIO_PROCESS with who = 0 sets the nice value of the calling thread only.
    let nice_ok = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } == 0;
    static LOGGED: Once = Once::new();
    LOGGED
        .call_once(|| tracing::debug!(err = %idle_err, nice_19 = nice_ok, "bulk threads could not be made SCHED_IDLE"));
}

/// Makes the calling thread a background one (the uploads): nice 10, so that hashing and
/// signing large uploads gives way to the write path; left as it is if that is refused.
pub fn background_thread() {
    // SAFETY: on Linux, PRIO_PROCESS with who = 0 sets the nice value of the calling thread only.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
}

/// Asks the kernel for the shortest time slice for the calling thread (see the module's doc).
pub fn latency_thread() {
    // sched_setattr sets the nice value too: the thread's own is kept (ringest may run niced).
    // SAFETY: getpriority only reads the calling thread's nice value.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        nice,
        runtime: LATENCY_SLICE_NS,
        ..Default::default()
    };
    // SAFETY: sched_setattr with pid 0 changes the calling thread only and reads `attr`, a
    // sched_attr of the size it declares, during the call.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        static LOGGED: Once = Once::new();
        LOGGED.call_once(|| tracing::debug!(err = %err, "the runtime's threads keep the default time slice"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's fair-scheduler slice in nanoseconds, where the kernel shows it.
    fn slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_bulk_thread_is_sched_idle() {
        let policy = std::thread::spawn(|| {
            bulk_thread();
            // SAFETY: reads the calling thread's policy.
            unsafe { libc::sched_getscheduler(0) }
        });
        assert_eq!(policy.join().unwrap(), libc::SCHED_IDLE);
    }

    #[test]
    fn a_background_thread_is_at_nice_10() {
        let nice = std::thread::spawn(|| {
            background_thread();
            // SAFETY: reads the calling thread's nice value.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        });
        assert_eq!(nice.join().unwrap(), 10);
    }

    #[test]
    fn a_latency_thread_asks_for_the_shortest_slice_and_keeps_its_nice_value() {
        let (before, after) = std::thread::spawn(|| {
            let before = slice_ns();
            // SAFETY: on Linux, PRIO_PROCESS with who = 0 sets and reads the calling thread's
            // nice value only.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) }, 0);
            latency_thread();
            // SAFETY: reads the calling thread's policy and nice value.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 5, "its nice value is kept");
            (before, slice_ns())
        })
        .join()
        .unwrap();
        if after != before {
            assert_eq!(after, Some(LATENCY_SLICE_NS));
        } else if after != Some(LATENCY_SLICE_NS) {
            // A kernel before 6.12 shows no slice, or one that a request does not change.
            eprintln!("this kernel does not take custom slices (se.slice {after:?}): not checked");
        }
    }
}
