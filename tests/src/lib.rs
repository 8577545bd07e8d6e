//! End-to-end test harness: starts real `ringest` processes (and the real Thanos, Prometheus
//! 2.42, promtool) on loopback ports and talks to them from outside, as a user's tools would.
//!
//! The binary under test is `$RINGEST_BIN` if set (the test command builds a release binary
//! and sets it), else it is built with `cargo build -p ringest` on first use. Thanos is
//! `$THANOS_BIN`, else built by `scripts/thanos.sh` on first use.

pub mod client;
pub mod collector;
pub mod faultproxy;
pub mod label_matrix;
pub mod latency;
pub mod oracle;
pub mod pki;
pub mod process;
pub mod read;
pub mod ring;
pub mod s3;
pub mod thanos;
pub mod workload;

pub use client::{HttpResponse, RemoteWriter, http_get, http_request};
pub use process::{Impl, Receiver, free_port, ringest_bin};

/// A binary that a script of `scripts/` builds and caches: `$env` when set (the test command
/// sets it), else the path the script prints (it builds on first use).
pub fn built_by_script(env: &str, script: &str) -> std::path::PathBuf {
    if let Ok(p) = std::env::var(env) {
        return p.into();
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join(script);
    let out = std::process::Command::new(&path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    String::from_utf8(out.stdout).expect("path").trim().into()
}

/// Polls `ok` every 250 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
