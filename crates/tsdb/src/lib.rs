//! ringest-tsdb: the embedded, Prometheus-compatible time-series database of ringest.
//!
//! One [`Tsdb`] per tenant directory: an in-memory head of XOR chunks fed through a
//! write-ahead log in Prometheus' `wlog` format, so promtool and Prometheus can read what
//! ringest wrote and ringest can replay what it wrote after a crash.
//!
//! This crate is synchronous std code on purpose: no async runtime, no network crates. Callers
//! run it on blocking threads. It knows nothing of HTTP, tenants or metrics libraries; it
//! exposes atomic counters ([`metrics`]) that the server renders.
//!
//! Invariants:
//! - a sample is applied to memory only after the WAL write holding it returned (see [`db`]);
//! - memory applies samples in WAL order, so replay rebuilds exactly the acknowledged head;
//! - chunk bytes, WAL records and CRCs are bit-compatible with Prometheus (shared spec
//!   prometheus-formats §2, §3, §6).

pub mod block;
pub mod chunkenc;
pub mod db;
pub mod encoding;
pub mod failpoint;
pub mod fsutil;
mod head;
pub mod labels;
pub mod metrics;
pub mod postings;
pub mod symbols;
pub mod wal;

pub use db::{AppendBuffers, Appender, CommitOutcome, OpenReport, Options, SeriesOutcome, Tsdb, TsdbError};
pub use head::series::Verdict;
pub use labels::{
    Label, LabelError, LabelRef, LabelTable, Labels, RawChunk, SeriesChunks, StringList, validate_request_order,
};

/// Asks the CPU to start loading the cache line at `p`: a hint that never faults, whatever the
/// address, and changes nothing. Loops over scattered objects issue it some iterations ahead so
/// that their memory arrives while earlier ones are worked on.
#[inline]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address, and changes nothing.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
