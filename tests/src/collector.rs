//! A loopback trace collector (`tests/tracing/collector.py`): OTLP over gRPC and HTTP, Jaeger
//! Thrift over UDP and HTTP, decoded by independent implementations (grpcio,
//! opentelemetry-proto, thriftpy2 with Jaeger's own IDL). Every span it receives is kept as
//! JSON: `via`, `meta` (request headers or metadata), `service`, `name`, `kind`, `trace_id`,
//! `span_id`, `parent_span_id`, `attributes`, `status_error`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The Jaeger IDL module the collector reads (Thanos' build downloads the same one).
const JAEGER_IDL: &str = "github.com/jaegertracing/jaeger-idl@v0.6.0";

/// A running collector.
pub struct Collector {
    child: Child,
    /// OTLP/gRPC port.
    pub otlp_grpc: u16,
    /// HTTP port: OTLP/HTTP on any path but `/api/traces`, Jaeger's collector API there.
    pub http: u16,
    /// Jaeger agent port (UDP).
    pub jaeger_udp: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

/// The jaeger-idl module directory: `$JAEGER_IDL_DIR` (the test command sets it), else
/// downloaded through the Go module proxy.
fn idl_dir() -> PathBuf {
    if let Ok(d) = std::env::var("JAEGER_IDL_DIR") {
        return PathBuf::from(d);
    }
    let out = Command::new("go")
        .args(["mod", "download", "-json", JAEGER_IDL])
        .output()
        .expect("go mod download (set JAEGER_IDL_DIR to skip it)");
    assert!(out.status.success(), "go mod download {JAEGER_IDL}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("go mod download -json");
    PathBuf::from(v["Dir"].as_str().expect("Dir"))
}

impl Collector {
    /// Starts the collector and reads back its ports.
    pub fn start() -> Collector {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tracing").join("collector.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(idl_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("collector ports").expect("read collector ports");
        let ports: Value = serde_json::from_str(&first).expect("ports line");
        let port = |k: &str| ports[k].as_u64().unwrap_or_else(|| panic!("no {k} in {first}")) as u16;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("collector line {line:?}: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        Collector { otlp_grpc: port("otlp_grpc"), http: port("http"), jaeger_udp: port("jaeger_udp"), child, spans }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of trace `trace_id` once `done` holds for them (panics after `timeout`).
    pub fn trace(&self, trace_id: &str, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let of_trace = || -> Vec<Value> { self.spans().into_iter().filter(|s| s["trace_id"] == trace_id).collect() };
        crate::wait_for(&format!("the spans of trace {trace_id}"), timeout, || done(&of_trace()));
        of_trace()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spans named `name` of `kind` among `spans`.
pub fn named<'a>(spans: &'a [Value], name: &str, kind: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name && s["kind"] == kind).collect()
}

/// The children of `parent` among `spans`.
pub fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["parent_span_id"] == parent["span_id"]).collect()
}

/// A short description of `spans` for failure messages.
pub fn describe(spans: &[Value]) -> String {
    spans
        .iter()
        .map(|s| format!("{} {} {} <- {} {}", s["kind"], s["name"], s["span_id"], s["parent_span_id"], s["attributes"]))
        .collect::<Vec<_>>()
        .join("\n")
}
