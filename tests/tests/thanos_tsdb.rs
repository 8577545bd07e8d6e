//! Each implementation opens the head the other left behind when it was killed with -9: the
//! WAL and the head chunk files (`chunks_head/`), Prometheus 3.x's as Thanos v0.42 writes them
//! and ringest's. The workload is large enough that both have written megabytes of head chunks
//! (Prometheus buffers 4 MiB of them, ringest 256 KiB) before the kill, so the successor must
//! read them, not just the WAL. The successor then takes more writes of the same series, is
//! stopped cleanly (its head flushed into blocks), and promtool must find every acknowledged
//! sample.

use std::time::Duration;

use ringest_e2e::Impl::{self, Ringest as R, Thanos as T};
use ringest_e2e::ring::{layout_from_block_start, run_load, run_rounds};
use ringest_e2e::{Receiver, wait_for};

const TENANT: &str = "default-tenant";

fn successor_reads_the_head_of(first: Impl, second: Impl, series: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut a = Receiver::unstarted_as(first, &data);
    a.relaunch();
    a.wait_ready(Duration::from_secs(60));
    let l = layout_from_block_start("handover", series, 130, 2);
    let before = run_load(&l, 125, &a.rw_addr, None, None);
    before.assert_all_2xx_first_time(&format!("{first:?}"));
    // ringest writes a cut chunk out with the next 256 KiB; Prometheus 3.x moves cut chunks to
    // its files once a minute (its block-reload tick), so Thanos' are on disk within a minute.
    wait_for(&format!("{first:?} to write head chunks"), Duration::from_secs(90), || {
        a.head_chunk_bytes(TENANT) > 1 << 20
    });
    a.kill9();

    let mut b = Receiver::unstarted_as(second, &data);
    b.log = tmp.path().join("second.log");
    b.relaunch();
    b.wait_ready(Duration::from_secs(120));
    let series_now = b.metric(&format!("prometheus_tsdb_head_series{{tenant=\"{TENANT}\"}}"));
    assert_eq!(series_now, Some(series as f64), "{second:?} after {first:?}:\n{}", b.logs());
    let corrupt = b.metric(&format!("prometheus_tsdb_mmap_chunk_corruptions_total{{tenant=\"{TENANT}\"}}"));
    assert_eq!(corrupt, Some(0.0), "{second:?} found {first:?}'s head chunk files corrupt:\n{}", b.logs());
    if second == R {
        // ringest says how many chunks it took from the files (a full chunk per series at least).
        let line =
            b.logs().lines().find(|l| l.contains("On-disk memory mappable chunks replay completed")).map(String::from);
        let chunks: usize = line
            .as_deref()
            .and_then(|l| l.split(" chunks=").nth(1)?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no chunk count in {line:?}"));
        assert!(chunks >= series / 2, "ringest read {chunks} chunks of {first:?}'s files");
    }

    let after = run_rounds(&l, 125..130, &b.rw_addr, None, None);
    after.assert_all_2xx_first_time(&format!("{second:?} after {first:?}"));
    let st = b.terminate();
    assert!(st.success(), "{second:?} exited with {st}:\n{}", b.logs());
    let run = before.then(after);
    let rep = run.check(&b.tenant_dir(TENANT));
    assert!(rep.ok() && rep.intact == rep.acked, "{second:?} after {first:?}: {rep:?}");
}

#[test]
fn ringest_opens_the_wal_and_head_chunks_thanos_left() {
    // 30k series: Thanos' head chunks pass its 4 MiB write buffer.
    successor_reads_the_head_of(T, R, 30_000);
}

#[test]
fn thanos_opens_the_wal_and_head_chunks_ringest_left() {
    successor_reads_the_head_of(R, T, 10_000);
}
