//! The real Thanos as oracle and peer: the `thanos` binary at the pinned release
//! (`scripts/thanos.sh` builds and caches it; the test command exports `THANOS_BIN`), its
//! query, store and compact components on loopback ports, and its bucket tools.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::client::http_get;
use crate::process::free_port;

/// Path of the `thanos` binary: `$THANOS_BIN`, else whatever `scripts/thanos.sh` prints (it
/// builds the pinned release on first use and caches it; nothing else downloads Thanos).
pub fn thanos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| crate::built_by_script("THANOS_BIN", "scripts/thanos.sh")).clone()
}

/// Runs `thanos <args>` to completion and returns its exit status, stdout and stderr.
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(thanos_bin()).args(args).output().expect("run thanos");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A long-running Thanos component (`query`, `store`, ...) with an HTTP and a gRPC port.
pub struct Component {
    child: Option<Child>,
    /// HTTP address (`--http-address`).
    pub http_addr: String,
    /// gRPC address (`--grpc-address`).
    pub grpc_addr: String,
    /// Log file.
    pub log: PathBuf,
}

impl Component {
    /// Starts `thanos <component> <args>` with fresh HTTP and gRPC ports and waits until
    /// `/-/ready` answers 200.
    pub fn start(component: &str, dir: &Path, args: &[String]) -> Component {
        std::fs::create_dir_all(dir).expect("component dir");
        let http_addr = format!("127.0.0.1:{}", free_port());
        let grpc_addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("{component}.log"));
        let logf = std::fs::File::create(&log).expect("log");
        let child = Command::new(thanos_bin())
            .arg(component)
            .arg(format!("--http-address={http_addr}"))
            .arg(format!("--grpc-address={grpc_addr}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .expect("start thanos");
        let mut c = Component { child: Some(child), http_addr, grpc_addr, log };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Some(Ok(Some(st))) = c.child.as_mut().map(|c| c.try_wait()) {
                panic!("thanos {component} exited with {st}:\n{}", c.logs());
            }
            if http_get(&c.http_addr, "/-/ready").map(|r| r.status == 200).unwrap_or(false) {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("thanos {component} not ready:\n{}", c.logs());
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the HTTP port, parsed as JSON; panics unless Prometheus' API says success.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let r = http_get(&self.http_addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()));
        assert_eq!(v["status"], "success", "GET {path}: {v}");
        v
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Thanos' objstore YAML for bucket `bucket` of a loopback S3 server.
pub fn s3_objstore(endpoint: &str, bucket: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: {endpoint}\n  access_key: test\n  secret_key: test\n  \
         insecure: true\n"
    )
}

/// Percent-encodes a query-string value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
