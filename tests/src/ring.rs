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
        Self::start_with_hashrings(kinds, extra, |eps| format!("[{{\"hashring\": \"default\", \"endpoints\": {eps}}}]"))
    }

    /// [`Ring::start`] with the hashrings file `hashrings` makes of the nodes' endpoints (a
    /// JSON array of their gRPC addresses), e.g. more hashrings for some tenants.
    pub fn start_with_hashrings(kinds: &[Impl], extra: &[String], hashrings: impl Fn(&str) -> String) -> Ring {
        let dir = tempfile::tempdir().expect("temp dir");
        let ring_file = dir.path().join("hashrings.json");
        let mut nodes: Vec<Receiver> = kinds
            .iter()
            .enumerate()
            .map(|(i, &imp)| Receiver::unstarted_as(imp, &dir.path().join(format!("node{i}"))))
            .collect();
        let eps: Vec<String> = nodes.iter().map(|r| format!("\"{}\"", r.grpc_addr)).collect();
        std::fs::write(&ring_file, hashrings(&format!("[{}]", eps.join(", ")))).expect("write hashring");
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
    /// update replaces a pod: SIGTERM (the old one flushes and uploads) or, with `crash`,
    /// kill -9 (the new one finds the old one's WAL and head chunks), then start the new one
    /// with the same flags and wait until it is ready. Returns the old process' log.
    pub fn replace(&mut self, i: usize, imp: Impl, crash: bool) -> String {
        let old = &mut self.nodes[i];
        if crash {
            old.kill9();
        } else {
            let st = old.terminate();
            assert!(st.success(), "{:?} node {i} exited with {st}:\n{}", old.imp, old.logs());
        }
        let mut new = Receiver::unstarted_as(imp, &old.data);
        new.grpc_addr = old.grpc_addr.clone();
        new.extra = old.extra.clone();
        new.relaunch();
        new.wait_ready(Duration::from_secs(120));
        std::mem::replace(&mut self.nodes[i], new).logs()
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
    Layout { shape, shards, max_samples_per_send: 200, remote_write_v2: false }
}

/// Like [`layout`], but starting on the 2h block boundary before it, so that a head cuts each
/// series' first chunk at 120 samples whatever the time of day. (A head ends its chunks at the
/// next block boundary and spreads samples evenly until it: a history that starts half an hour
/// before a boundary stays in one open chunk, and nothing reaches `chunks_head/`.) The history
/// is at most 2h plus `rounds` intervals old, well within the 3h a head spans before it is
/// compacted.
pub fn layout_from_block_start(prefix: &str, series: usize, rounds: usize, shards: usize) -> Layout {
    const BLOCK_MS: i64 = 2 * 3600 * 1000;
    let mut l = layout(prefix, series, rounds, shards);
    l.shape.start_ms = l.shape.start_ms.div_euclid(BLOCK_MS) * BLOCK_MS;
    l
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
    /// Every request answered 2xx at the first attempt (else the failures and errors seen).
    pub fn assert_all_2xx_first_time(&self, what: &str) {
        assert_2xx_at_once(what, self.outcomes.iter(), &self.errors);
    }

    /// This run and a later one of the same workload as one run.
    pub fn then(mut self, later: LoadRun) -> LoadRun {
        assert_eq!(self.log.header.end_round, later.log.header.first_round, "consecutive rounds");
        self.outcomes.extend(later.outcomes);
        self.errors.extend(later.errors);
        self.log.acked.extend(later.log.acked);
        self.log.header.end_round = later.log.header.end_round;
        self
    }

    /// Checks the log against a promtool dump of `dir`.
    pub fn check(&self, dir: &Path) -> CheckReport {
        let dump = check::promtool_dump(dir).unwrap_or_else(|e| panic!("promtool dump of {}: {e}", dir.display()));
        check::check(&self.log, &dump)
    }
}

fn assert_2xx_at_once<'a>(what: &str, outcomes: impl Iterator<Item = &'a Outcome>, errors: &[String]) {
    let all: Vec<&Outcome> = outcomes.collect();
    let bad: Vec<&&Outcome> = all.iter().filter(|o| !(200..300).contains(&o.status) || o.attempts != 1).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} requests were not answered 2xx at once (first {:?}); errors: {errors:?}",
        bad.len(),
        all.len(),
        bad.first()
    );
}

/// Sends all rounds of `layout` to `addr` (tenant header if given), paced at `rate` samples/s.
pub fn run_load(layout: &Layout, rounds: usize, addr: &str, tenant: Option<&str>, rate: Option<f64>) -> LoadRun {
    run_rounds(layout, 0..rounds, addr, tenant, rate)
}

/// [`run_load`] of rounds `rounds` only (a later part of the same workload).
pub fn run_rounds(
    layout: &Layout,
    rounds: std::ops::Range<usize>,
    addr: &str,
    tenant: Option<&str>,
    rate: Option<f64>,
) -> LoadRun {
    let plan = Plan::build(layout, rounds.clone());
    let mut target = Target { addr: addr.to_string(), path: "/api/v1/receive".into(), headers: Vec::new(), tls: None };
    if let Some(t) = tenant {
        target = target.with_header("THANOS-TENANT", t);
    }
    // Retries are allowed (a real sender retries 5xx) but counted: callers that expect every
    // write to succeed at once check the attempts.
    let opts = SendOptions { rate, give_up_after: Duration::from_secs(20), ..SendOptions::default() };
    let acked: Mutex<Vec<ReqId>> = Mutex::new(Vec::new());
    let res = send::send(&target, &plan, rounds.clone(), &opts, &|id| acked.lock().unwrap().push(id));
    LoadRun {
        outcomes: res.outcomes,
        errors: res.errors,
        log: AckLog {
            header: LogHeader { layout: layout.clone(), first_round: rounds.start, end_round: rounds.end },
            acked: acked.into_inner().unwrap(),
        },
    }
}

/// A load that goes on across steps: one sample per series a second (the timestamps follow the
/// wall clock, as a scraper's do), sent a round at a time through whichever node the caller
/// names, with every acknowledgement recorded under a tag.
pub struct Load {
    layout: Layout,
    started: std::time::Instant,
    next_round: usize,
    acked: Vec<(&'static str, usize, ReqId)>,
    /// The step recorded with every acknowledgement from now on (for diagnosis).
    pub step: usize,
    /// Every request's outcome, with the tag of its step.
    pub outcomes: Vec<(&'static str, Outcome)>,
    /// The first error bodies.
    pub errors: Vec<String>,
}

impl Load {
    /// `series` series named `<prefix>...`, starting now.
    pub fn new(prefix: &str, series: usize) -> Load {
        let mut shape = Shape::node(series);
        shape.prefix = prefix.into();
        shape.interval_ms = 1000;
        shape.start_ms = now_ms();
        Load {
            layout: Layout { shape, shards: 2, max_samples_per_send: 200, remote_write_v2: false },
            started: std::time::Instant::now(),
            next_round: 0,
            step: 0,
            acked: Vec::new(),
            outcomes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Sends the next round through `addr`, recording under `tag`: round `r` goes out `r`
    /// seconds after the first (at once if late).
    pub fn round(&mut self, addr: &str, tag: &'static str) {
        let r = self.next_round;
        let due = self.started + Duration::from_secs(r as u64);
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        let plan = Plan::build(&self.layout, r..r + 1);
        let target = Target { addr: addr.to_string(), path: "/api/v1/receive".into(), headers: Vec::new(), tls: None };
        let opts = SendOptions { give_up_after: Duration::from_secs(20), ..SendOptions::default() };
        let acked: Mutex<Vec<ReqId>> = Mutex::new(Vec::new());
        let res = send::send(&target, &plan, r..r + 1, &opts, &|id| acked.lock().unwrap().push(id));
        self.acked.extend(acked.into_inner().unwrap().into_iter().map(|id| (tag, self.step, id)));
        self.outcomes.extend(res.outcomes.into_iter().map(|o| (tag, o)));
        self.errors.extend(res.errors.into_iter().take(5usize.saturating_sub(self.errors.len())));
        self.next_round += 1;
    }

    /// Sends `n` rounds through `addr` under `tag`.
    pub fn rounds(&mut self, addr: &str, n: usize, tag: &'static str) {
        for _ in 0..n {
            self.round(addr, tag);
        }
    }

    /// Sends rounds through `addr` under `tag` until `done` says so (at least one).
    pub fn until(&mut self, addr: &str, tag: &'static str, done: &std::sync::atomic::AtomicBool) {
        loop {
            self.round(addr, tag);
            if done.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
        }
    }

    /// Every request answered 2xx at the first attempt.
    pub fn assert_all_2xx_first_time(&self) {
        assert_2xx_at_once("the load", self.outcomes.iter().map(|(_, o)| o), &self.errors);
    }

    /// The acknowledgement log of the requests tagged with one of `tags` (every round sent is
    /// in its range, so the others count as sent, not acknowledged).
    pub fn log(&self, tags: &[&str]) -> AckLog {
        self.log_of_step(tags, None)
    }

    /// [`Load::log`] of one step only (`None`: every step).
    pub fn log_of_step(&self, tags: &[&str], step: Option<usize>) -> AckLog {
        AckLog {
            header: LogHeader { layout: self.layout.clone(), first_round: 0, end_round: self.next_round },
            acked: self
                .acked
                .iter()
                .filter(|(t, s, _)| tags.contains(t) && step.is_none_or(|x| x == *s))
                .map(|(_, _, id)| *id)
                .collect(),
        }
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
