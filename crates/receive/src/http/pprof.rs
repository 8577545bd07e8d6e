//! `/debug/pprof/` on the ops port, where Thanos serves Go's profiler: a CPU profile in
//! pprof's protobuf format (`go tool pprof` reads it), sampled at 100 Hz as Go samples, and
//! the command line. The other Go profiles (heap, allocs, goroutine...) have no counterpart
//! here: mimalloc does not sample allocations and there are no goroutines, so they answer
//! 501 naming what to use instead.

use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::text_error;

/// Go's sampling rate for CPU profiles.
const FREQUENCY_HZ: i32 = 100;
/// The longest profile asked for (Go bounds it by the server's write timeout; Thanos has none).
const MAX_SECONDS: u64 = 600;

/// One CPU profile at a time: the sampler is process-wide (SIGPROF).
static PROFILING: AtomicBool = AtomicBool::new(false);

/// `/debug/pprof/`: what is served.
pub async fn index() -> Response {
    let body = "ringest profiles (Go's /debug/pprof/ names):\n\
                profile   CPU profile in pprof's format; ?seconds=N (default 30, at most 600)\n\
                cmdline   the command line, arguments separated by NUL bytes\n\
                heap, allocs, goroutine, block, mutex, threadcreate, trace: not available \
                (see each for why)\n";
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// `/debug/pprof/cmdline`: the arguments, NUL-separated, as Go serves them.
pub async fn cmdline() -> Response {
    let args: Vec<String> = std::env::args().collect();
    let mut r = (StatusCode::OK, args.join("\0")).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// `/debug/pprof/{name}` for the profiles ringest cannot take, and unknown names.
pub async fn other(Path(name): Path<String>) -> Response {
    let why = match name.as_str() {
        "heap" | "allocs" => {
            "the allocator (mimalloc) does not sample allocations; see process_resident_memory_bytes \
             and the per-tenant head metrics"
        }
        "goroutine" | "threadcreate" => "ringest has no goroutines; take a CPU profile (profile) instead",
        "block" | "mutex" | "trace" => "not implemented by ringest; take a CPU profile (profile) instead",
        _ => return text_error(StatusCode::NOT_FOUND, "Unknown profile"),
    };
    text_error(StatusCode::NOT_IMPLEMENTED, &format!("{name} profile is not available: {why}"))
}

fn seconds(query: Option<&str>) -> Result<u64, String> {
    let Some(q) = query else { return Ok(30) };
    match form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "seconds") {
        None => Ok(30),
        Some((_, v)) => match v.parse::<u64>() {
            Ok(s @ 1..=MAX_SECONDS) => Ok(s),
            _ => Err(format!("seconds={v:?}: must be a whole number from 1 to {MAX_SECONDS}")),
        },
    }
}

/// `/debug/pprof/profile?seconds=N`: samples every thread for N seconds and answers the
/// profile (protobuf, uncompressed: `go tool pprof` reads both).
pub async fn profile(RawQuery(query): RawQuery) -> Response {
    let secs = match seconds(query.as_deref()) {
        Ok(s) => s,
        Err(msg) => return text_error(StatusCode::BAD_REQUEST, &msg),
    };
    if PROFILING.swap(true, Ordering::AcqRel) {
        return text_error(
            StatusCode::CONFLICT,
            "Could not enable CPU profiling: a CPU profile is already being taken",
        );
    }
    // The sampler is not Send; its own thread holds it while the request waits.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("pprof".into()).spawn(move || {
        let result = take(Duration::from_secs(secs));
        PROFILING.store(false, Ordering::Release);
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        PROFILING.store(false, Ordering::Release);
        return text_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("Could not enable CPU profiling: {e}"));
    }
    match rx.await {
        Ok(Ok(body)) => {
            let mut r = (StatusCode::OK, body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"profile\""));
            r
        }
        Ok(Err(msg)) => text_error(StatusCode::INTERNAL_SERVER_ERROR, &msg),
        Err(_) => text_error(StatusCode::INTERNAL_SERVER_ERROR, "CPU profiler thread ended without a profile"),
    }
}

fn take(d: Duration) -> Result<Vec<u8>, String> {
    use pprof::protos::Message;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| format!("Could not enable CPU profiling: {e}"))?;
    std::thread::sleep(d);
    let report = guard.report().build().map_err(|e| format!("CPU profile report: {e}"))?;
    let profile = report.pprof().map_err(|e| format!("CPU profile encoding: {e}"))?;
    let mut body = Vec::with_capacity(profile.encoded_len());
    profile.encode(&mut body).map_err(|e| format!("CPU profile encoding: {e}"))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_and_bounds() {
        assert_eq!(seconds(None), Ok(30));
        assert_eq!(seconds(Some("debug=1")), Ok(30));
        assert_eq!(seconds(Some("seconds=5")), Ok(5));
        assert_eq!(seconds(Some("seconds=600")), Ok(600));
        for bad in ["seconds=0", "seconds=601", "seconds=x", "seconds=-1"] {
            assert!(seconds(Some(bad)).unwrap_err().contains("from 1 to 600"), "{bad}");
        }
    }
}
