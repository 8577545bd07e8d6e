//! Where a write's CPU work runs: the smallest writes on the async worker that received them,
//! small ones on tokio's blocking threads, large ones on a few threads of the lowest CPU
//! priority.
//!
//! Decompressing and decoding is the CPU a write costs, and it grows with the request: a
//! Prometheus batch (2,000 samples by default) decompresses to a few hundred KiB, a decode bomb
//! to 32 MiB. On one pool, twenty clients sending 32 MiB requests take every core from the
//! writers of normal batches, whose latency then grows a hundredfold. Here a write is sized by
//! its decompressed length (read from the body's first bytes, before any work) and one larger
//! than `--ringest.write.bulk-bytes` runs on the bulk lane: threads on half the cores (rounded
//! up) at `SCHED_IDLE` ([`crate::sched`]), fed by a bounded queue. At most half the cores do bulk
//! work at any time, and a bulk thread gives way at once to any other thread that wakes, so
//! large writes still progress on a busy node but do not delay the others.
//! Measured by the attack test (tests/tests/hostile_clients.rs) on 2 cores: a normal writer's
//! p99 under 20 clients sending decode bombs went from 20-25 ms on one pool to 0.5-2.3 ms (idle:
//! 0.5 ms; every phase in benches/README.md). The queue holds at most as many jobs as the
//! in-flight budget admits requests (`--ringest.write.max-inflight-requests`), and is never
//! waited on: a full queue is a busy node.
//!
//! A write of at most [`INLINE_BYTES`] decompressed, tens of microseconds of work, runs on the
//! worker that received it when its caller allows it (its tenant open and no compaction
//! running, so nothing it does waits on the disk or on a long lock) and it is not bound for the
//! bulk lane. Handing it to a blocking thread and back costs two thread wake-ups, and on a busy
//! node each can wait for a core until the kernel's next tick (4 ms at 250 Hz): a woken thread
//! does not preempt a running one that has not used its slice yet, and slices are only checked
//! again at a wake-up or a tick. In the attack test those two waits were most of the normal
//! writer's p99.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;

use crate::admission::WriteLimits;
use crate::outcome::{Outcome, WriteStatus};

type Job = Box<dyn FnOnce() + Send>;

/// The largest write (decompressed bytes) that may run on the async worker that received it.
pub const INLINE_BYTES: u64 = 16 << 10;

/// Why a job did not run to its end.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LaneError {
    /// The bulk lane's queue is full.
    #[error("server busy: {0} large writes are queued (--ringest.write.max-inflight-requests)")]
    Busy(usize),
    /// The job panicked (a bug: the panic is logged by the panic hook).
    #[error("internal server error: a write's worker thread panicked")]
    Panicked,
}

impl From<LaneError> for WriteStatus {
    fn from(e: LaneError) -> WriteStatus {
        let outcome = match e {
            LaneError::Busy(_) => Outcome::Busy,
            LaneError::Panicked => Outcome::Internal,
        };
        WriteStatus::new(outcome, e.to_string())
    }
}

/// The two lanes.
#[derive(Debug)]
pub struct Lanes {
    bulk: SyncSender<Job>,
    capacity: usize,
    bulk_bytes: u64,
}

impl Lanes {
    /// Starts the lanes for `limits`: the bulk lane's threads on half the cores, as many jobs
    /// queued as requests may be in flight.
    pub fn start(limits: &WriteLimits) -> std::io::Result<Lanes> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Lanes::with(cores.div_ceil(2), limits.max_inflight_requests, limits.bulk_bytes)
    }

    /// The lanes with `threads` bulk threads at the lowest priority, at most `capacity` jobs
    /// queued, and writes larger than `bulk_bytes` sent there. The threads end when the `Lanes`
    /// is dropped.
    fn with(threads: usize, capacity: usize, bulk_bytes: u64) -> std::io::Result<Lanes> {
        let (tx, rx) = sync_channel::<Job>(capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("ringest-bulk-{i}")).spawn(move || bulk_worker(&rx))?;
        }
        Ok(Lanes { bulk: tx, capacity, bulk_bytes })
    }

    /// Runs `f` for a write of `size` decompressed bytes on its lane and returns its result:
    /// here when `size` is at most [`INLINE_BYTES`] and `may_run_here()` (asked only then: the
    /// caller knows whether `f` can wait on the disk or a long lock), else on a blocking or a
    /// bulk thread.
    pub async fn run<T: Send + 'static>(
        &self,
        size: u64,
        may_run_here: impl FnOnce() -> bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LaneError> {
        if size <= INLINE_BYTES.min(self.bulk_bytes) && may_run_here() {
            return std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| LaneError::Panicked);
        }
        if size <= self.bulk_bytes {
            return tokio::task::spawn_blocking(f).await.map_err(|_| LaneError::Panicked);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.bulk.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(LaneError::Busy(self.capacity)),
            Err(TrySendError::Disconnected(_)) => return Err(LaneError::Panicked),
        }
        // A job that panicked dropped its sender.
        rx.await.map_err(|_| LaneError::Panicked)
    }
}

fn bulk_worker(rx: &Mutex<Receiver<Job>>) {
    crate::sched::bulk_thread();
    loop {
        let job = rx.lock().recv();
        let Ok(job) = job else { return };
        // A panic is a bug in the job, reported by the panic hook and to its caller (its result
        // sender is dropped); the thread goes on serving the queue.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BULK_BYTES: u64 = 1 << 20;

    fn policy_of_this_thread() -> libc::c_int {
        // SAFETY: sched_getscheduler only reads the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[tokio::test]
    async fn large_writes_run_at_the_lowest_priority_and_small_ones_do_not() {
        let lanes = Lanes::with(1, 4, BULK_BYTES).unwrap();
        assert_eq!(lanes.run(BULK_BYTES + 1, || false, policy_of_this_thread).await, Ok(libc::SCHED_IDLE));
        assert_eq!(lanes.run(BULK_BYTES, || false, policy_of_this_thread).await, Ok(libc::SCHED_OTHER));
        // A bulk write is never run here, whatever its caller allows.
        assert_eq!(lanes.run(BULK_BYTES + 1, || true, policy_of_this_thread).await, Ok(libc::SCHED_IDLE));
    }

    #[tokio::test]
    async fn the_smallest_writes_run_here_when_their_caller_allows_it() {
        let lanes = Lanes::with(1, 4, BULK_BYTES).unwrap();
        let here = std::thread::current().id();
        let thread = || std::thread::current().id();
        assert_eq!(lanes.run(INLINE_BYTES, || true, thread).await, Ok(here));
        assert_ne!(lanes.run(INLINE_BYTES, || false, thread).await, Ok(here));
        assert_ne!(lanes.run(INLINE_BYTES + 1, || true, thread).await, Ok(here));
        assert_eq!(lanes.run(1, || true, || panic!("a bug")).await, Err::<(), _>(LaneError::Panicked));
        // Below the bulk lane's bound only.
        let lanes = Lanes::with(1, 4, 100).unwrap();
        assert_eq!(lanes.run(101, || true, policy_of_this_thread).await, Ok(libc::SCHED_IDLE));
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_and_a_panic_is_an_error_not_a_lost_thread() {
        use std::time::Duration;
        let lanes = Lanes::with(1, 1, BULK_BYTES).unwrap();
        assert_eq!(lanes.run(BULK_BYTES + 1, || false, || panic!("a bug")).await, Err::<(), _>(LaneError::Panicked));
        // The one thread is held until `release` is sent, the queue holds one more job, and a
        // third is refused as busy. (A zero timeout polls a future once: enough to queue it.)
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, is_started) = tokio::sync::oneshot::channel();
        let first = lanes.run(
            BULK_BYTES + 1,
            || false,
            move || {
                let _ = started.send(());
                held.recv().unwrap();
                1
            },
        );
        tokio::pin!(first);
        assert!(tokio::time::timeout(Duration::ZERO, &mut first).await.is_err());
        is_started.await.unwrap();
        let second = lanes.run(BULK_BYTES + 1, || false, || 2);
        tokio::pin!(second);
        assert!(tokio::time::timeout(Duration::ZERO, &mut second).await.is_err());
        assert_eq!(lanes.run(BULK_BYTES + 1, || false, || 3).await, Err(LaneError::Busy(1)));
        release.send(()).unwrap();
        assert_eq!(first.await, Ok(1));
        assert_eq!(second.await, Ok(2));
    }
}
