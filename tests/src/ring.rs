//! Rings of receivers on loopback (ringest, the real Thanos, or both) sharing one hashring file,
//! and load from the load generator (`ringest-loadgen` as a library) with an acknowledgement
//! log that the checker compares with what each node stored.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ringest_loadgen::check::{self, AckLog, CheckReport, LogHeader};
use ringest_loadgen::plan::{Layout, Plan, ReqId};
use ringest_loadgen::send::{self, Outcome, SendOptions, Target};
use ringest_loadgen::shape::Shape;

use crate::process::{Impl, Receiver};

/// Receivers sharing a hashring file (one ring, `default`, every node in it).
pub struct Ring {
    /// Holds every node's data directory and log.
    pub dir: tempfile::TempDir,
    /// The hashring file.
    pub ring_file: PathBuf,
    /// The nodes, in hashring order.
    pub nodes: Vec<Receiver>,
}

/// Flags every node of a ring gets: the hashring, its own endpoint, a replica label of its own.
fn node_flags(ring_file: &Path, r: &Receiver, index: usize, extra: &[String]) -> Vec<String> {
    let mut f = vec![
        format!("--receive.hashrings-file={}", ring_file.display()),
        format!("--receive.local-endpoint={}", r.grpc_addr),
        "--receive.hashrings-file-refresh-interval=1s".into(),
        format!("--label=receive_replica=\"node{index}\""),
    ];
    f.extend(extra.iter().cloned());
    f
}

impl Ring {
    /// Starts one node per entry of `kinds`, all in the hashring, each with `extra` flags, and
    /// waits until every node is ready.
    pub fn start(kinds: &[Impl], extra: &[String]) -> Ring {
        let dir = tempfile::tempdir().expect("temp dir");
        let ring_file = dir.path().join("hashrings.json");
        let mut nodes: Vec<Receiver> = kinds
            .iter()
            .enumerate()
            .map(|(i, &imp)| Receiver::unstarted_as(imp, &dir.path().join(format!("node{i}"))))
            .collect();
        let eps: Vec<String> = nodes.iter().map(|r| format!("\"{}\"", r.grpc_addr)).collect();
        std::fs::write(&ring_file, format!("[{{\"hashring\": \"default\", \"endpoints\": [{}]}}]", eps.join(", ")))
            .expect("write hashring");
        for (i, r) in nodes.iter_mut().enumerate() {
            r.extra = node_flags(&ring_file, r, i, extra);
            r.relaunch();
        }
        for r in &mut nodes {
            r.wait_ready(Duration::from_secs(120));
        }
        Ring { dir, ring_file, nodes }
    }

    /// Replaces node `i` by `imp` on the same data directory and gRPC endpoint, as a rolling
    /// update replaces a pod: SIGTERM (the old one flushes and uploads), then start the new one
    /// with the same flags and wait until it is ready.
    pub fn replace(&mut self, i: usize, imp: Impl) {
        let old = &mut self.nodes[i];
        let st = old.terminate();
        assert!(st.success(), "{:?} node {i} exited with {st}:\n{}", old.imp, old.logs());
        let mut new = Receiver::unstarted_as(imp, &old.data);
        new.grpc_addr = old.grpc_addr.clone();
        new.extra = old.extra.clone();
        new.relaunch();
        new.wait_ready(Duration::from_secs(120));
        self.nodes[i] = new;
    }

    /// Keeps the nodes' data and logs for diagnosis (the directory is not removed) and
    /// returns where they are.
    pub fn keep(&mut self) -> String {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        dir.keep().display().to_string()
    }

    /// Default-tenant directory of every node.
    pub fn tenant_dirs(&self, tenant: &str) -> Vec<PathBuf> {
        self.nodes.iter().map(|r| r.tenant_dir(tenant)).collect()
    }
}

/// A load-generator workload: series named `<prefix>...`, `rounds` samples each, 15 s apart,
/// the last round a little before now.
pub fn layout(prefix: &str, series: usize, rounds: usize, shards: usize) -> Layout {
    let mut shape = Shape::node(series);
    shape.prefix = prefix.into();
    shape.start_ms = now_ms() - (rounds as i64 + 2) * shape.interval_ms;
    Layout { shape, shards, max_samples_per_send: 200 }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// What a load run did: every request's outcome and the acknowledgement log.
pub struct LoadRun {
    /// One outcome per request.
    pub outcomes: Vec<Outcome>,
    /// The first error bodies.
    pub errors: Vec<String>,
    /// Acknowledged requests.
    pub log: AckLog,
}

impl LoadRun {
    /// Requests that did not get a 2xx at the first attempt, with the errors seen.
    pub fn assert_all_2xx_first_time(&self, what: &str) {
        let bad: Vec<&Outcome> =
            self.outcomes.iter().filter(|o| !(200..300).contains(&o.status) || o.attempts != 1).collect();
        assert!(
            bad.is_empty(),
            "{what}: {} of {} requests were not answered 2xx at once (first {:?}); errors: {:?}",
            bad.len(),
            self.outcomes.len(),
            bad.first(),
            self.errors
        );
    }

    /// Checks the log against a promtool dump of `dir`.
    pub fn check(&self, dir: &Path) -> CheckReport {
        let dump = check::promtool_dump(dir).unwrap_or_else(|e| panic!("promtool dump of {}: {e}", dir.display()));
        check::check(&self.log, &dump)
    }
}

/// Sends all rounds of `layout` to `addr` (tenant header if given), paced at `rate` samples/s.
pub fn run_load(layout: &Layout, rounds: usize, addr: &str, tenant: Option<&str>, rate: Option<f64>) -> LoadRun {
    let plan = Plan::build(layout, 0..rounds);
    let mut target = Target { addr: addr.to_string(), path: "/api/v1/receive".into(), headers: Vec::new() };
    if let Some(t) = tenant {
        target = target.with_header("THANOS-TENANT", t);
    }
    // Retries are allowed (a real sender retries 5xx) but counted: callers that expect every
    // write to succeed at once check the attempts.
    let opts = SendOptions { rate, give_up_after: Duration::from_secs(20), ..SendOptions::default() };
    let acked: Mutex<Vec<ReqId>> = Mutex::new(Vec::new());
    let res = send::send(&target, &plan, 0..rounds, &opts, &|id| acked.lock().unwrap().push(id));
    LoadRun {
        outcomes: res.outcomes,
        errors: res.errors,
        log: AckLog {
            header: LogHeader { layout: layout.clone(), first_round: 0, end_round: rounds },
            acked: acked.into_inner().unwrap(),
        },
    }
}

/// Sum of the values of metric `name` over the series whose labels include every `(k, v)` of
/// `labels`, in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').map(|(n, r)| (n, r.trim_end_matches('}'))).unwrap_or((series, ""));
            if n != name {
                return None;
            }
            let ok = labels.iter().all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
