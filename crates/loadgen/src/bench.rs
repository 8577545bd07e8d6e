//! The side-by-side benchmark: the same pre-encoded workload against ringest, Thanos Receive
//! (the real binary, one node and an RF=3 ring, started with ringest's flags), Prometheus 2.42
//! (`--web.enable-remote-write-receiver`) and VictoriaMetrics, one after the other in one run,
//! and one table of ringest's ratios to each peer (rings against ringest's ring).
//!
//! Per workload size: a creation phase (round 0: every series new), a steady phase (as fast as
//! the receiver acknowledges), a latency phase at a fixed offered load, a read phase (single
//! nodes with a StoreAPI, ringest and Thanos Receive: see [`crate::read`]; first reads alone,
//! then the same reads over and over while as many rounds as the latency phase's are written at
//! its offered load; the other receivers just take those rounds at that load), then kill -9 and
//! the time from start to ready on the same data (WAL replay; not applicable to
//! VictoriaMetrics). Every workload writes 24 samples per series in total. After the restart,
//! the acknowledged samples are read back (promtool for ringest, the StoreAPI for ringest and
//! Thanos Receive) for workloads up to [`CHECK_MAX_SERIES`].
//!
//! Variants of ringest measure what a feature costs, against plain ringest in the same run:
//! mutual TLS on the remote-write port, mutual TLS on every link of an RF=3 ring, and a limits
//! file that sets every limit (none reached).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::check::{self, AckLog, CheckReport, LogHeader};
use crate::http;
use crate::plan::{Layout, Plan, ReqId};
use crate::port::free_port;
use crate::procstat::{Usage, Watch};
use crate::read::{self, Iterations, ReadReport};
use crate::report::{PhaseReport, table};
use crate::send::{self, SendOptions, Target};
use crate::shape::Shape;
use crate::store::{self, Store};

/// The limits file of [`Kind::RingestLimits`]: every limit set, none reached by the bench's
/// workloads (up to a few million series, 2,000 samples per request).
const LIMITS_FILE: &str = "write:
  global:
    max_concurrency: 64
  default:
    request:
      size_bytes_limit: 67108864
      series_limit: 1000000
      samples_limit: 10000000
    head_series_limit: 1000000000
    max_label_names_per_series: 64
    max_label_name_length: 1024
    max_label_value_length: 4096
    ingestion_rate: 1000000000
    ingestion_burst_size: 1000000000
";

/// Total samples per series written by a bench workload.
pub const ROUNDS: usize = 24;
/// Largest workload whose acknowledged samples the bench checks with promtool.
pub const CHECK_MAX_SERIES: usize = 200_000;

/// A receiver under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// ringest receive.
    Ringest,
    /// Prometheus 2.42 with the remote-write receiver.
    Prometheus,
    /// VictoriaMetrics single node.
    VictoriaMetrics,
    /// Three ringest processes in one hashring, RF=3 (quorum 2), written through the first;
    /// CPU and RSS are the three processes' sums.
    RingestRf3,
    /// Thanos Receive, the real `thanos` binary, with the same flags as ringest.
    Thanos,
    /// Three Thanos Receive processes in one hashring, RF=3, as [`Kind::RingestRf3`].
    ThanosRf3,
    /// ringest with mutual TLS on its remote-write port (the load generator presents a client
    /// certificate).
    RingestTls,
    /// [`Kind::RingestRf3`] with mutual TLS on every link: the client's and the peers'.
    RingestRf3Mtls,
    /// ringest with a limits file that sets every limit, none of them reached.
    RingestLimits,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ringest => "ringest",
            Kind::Prometheus => "Prometheus 2.42",
            Kind::VictoriaMetrics => "VictoriaMetrics",
            Kind::RingestRf3 => "ringest RF=3 x3",
            Kind::Thanos => "Thanos Receive",
            Kind::ThanosRf3 => "Thanos RF=3 x3",
            Kind::RingestTls => "ringest mTLS",
            Kind::RingestRf3Mtls => "ringest RF=3 mTLS x3",
            Kind::RingestLimits => "ringest limits",
        }
    }

    /// Whether this is a ring of three processes.
    pub fn is_ring(self) -> bool {
        matches!(self, Kind::RingestRf3 | Kind::ThanosRf3 | Kind::RingestRf3Mtls)
    }

    /// Whether this is ringest (which the ratios are about), a variant included.
    pub fn is_ringest(self) -> bool {
        matches!(self, Kind::Ringest | Kind::RingestRf3) || self.baseline().is_some()
    }

    /// For a variant of ringest, the ringest it is compared with.
    pub fn baseline(self) -> Option<Kind> {
        match self {
            Kind::RingestTls | Kind::RingestLimits => Some(Kind::Ringest),
            Kind::RingestRf3Mtls => Some(Kind::RingestRf3),
            _ => None,
        }
    }

    /// Whether the bench reads it through the StoreAPI (single nodes that serve one).
    pub fn reads(self) -> bool {
        matches!(self, Kind::Ringest | Kind::Thanos)
    }

    /// The ringest receiver to compare this peer with: a ring with a ring, a node with a node.
    fn counterpart(self) -> Kind {
        if self.is_ring() { Kind::RingestRf3 } else { Kind::Ringest }
    }
}

/// A receiver could not bind a port found free a moment before (another process took it in
/// between); starting again on fresh ports is the remedy.
#[derive(Debug, thiserror::Error)]
#[error("{receiver} lost a just-probed port to another process; the end of its log:\n{log}")]
pub struct PortTaken {
    receiver: &'static str,
    log: String,
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    kind: Kind,
    child: Option<Child>,
    args: Vec<String>,
    program: PathBuf,
    /// Where remote-write requests go.
    pub target: Target,
    /// Its gRPC (StoreAPI) address, for ringest and Thanos Receive.
    pub grpc: Option<String>,
    ready_addr: String,
    ready_path: &'static str,
    /// Its data directory.
    pub data: PathBuf,
    log: PathBuf,
    /// The other nodes of a ring.
    peers: Vec<Receiver>,
}

/// `receive` flags, the same for ringest and Thanos, plus what a Thanos needs here: its own
/// Cap'n Proto port (every Thanos binds 0.0.0.0:19391 otherwise) and no retention (v0.42.5's
/// idle-tenant pruning, which runs in the first minute of every fourth hour when retention is
/// set, can crash on a tenant still opening).
fn receive_args(thanos: bool, data: &Path, rw: &str, ops: &str, grpc: &str) -> Vec<String> {
    let mut args = vec![
        "receive".into(),
        "--label=receive_replica=\"bench\"".into(),
        format!("--tsdb.path={}", data.display()),
        format!("--remote-write.address={rw}"),
        format!("--http-address={ops}"),
        format!("--grpc-address={grpc}"),
    ];
    if thanos {
        args.push(format!("--receive.capnproto-address=127.0.0.1:{}", free_port()));
        args.push("--tsdb.retention=0d".into());
    }
    args
}

/// The receiver binaries the bench runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `ringest`.
    pub ringest: PathBuf,
    /// `thanos` (needed for the Thanos receivers only).
    pub thanos: Option<PathBuf>,
}

impl Binaries {
    fn of(&self, kind: Kind) -> anyhow::Result<PathBuf> {
        match kind {
            Kind::Thanos | Kind::ThanosRf3 => self.thanos.clone().ok_or_else(|| {
                anyhow::anyhow!("{} needs the thanos binary: --thanos (scripts/thanos.sh builds it)", kind.name())
            }),
            _ => Ok(self.ringest.clone()),
        }
    }
}

impl Receiver {
    /// Starts a receiver of `kind` with data under `dir`.
    pub fn start(kind: Kind, dir: &Path, bins: &Binaries) -> anyhow::Result<Receiver> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.join("data");
        let (program, args, path, ready_addr, ready_path): (PathBuf, Vec<String>, &str, String, &'static str) =
            match kind {
                Kind::Ringest
                | Kind::RingestRf3
                | Kind::Thanos
                | Kind::ThanosRf3
                | Kind::RingestTls
                | Kind::RingestRf3Mtls
                | Kind::RingestLimits => {
                    let ops = format!("127.0.0.1:{}", free_port());
                    let grpc = format!("127.0.0.1:{}", free_port());
                    let thanos = matches!(kind, Kind::Thanos | Kind::ThanosRf3);
                    (
                        bins.of(kind)?,
                        receive_args(thanos, &data, &addr, &ops, &grpc),
                        "/api/v1/receive",
                        ops,
                        "/-/ready",
                    )
                }
                Kind::Prometheus => {
                    let cfg = dir.join("prometheus.yml");
                    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n")?;
                    (
                        "prometheus".into(),
                        vec![
                            format!("--config.file={}", cfg.display()),
                            format!("--storage.tsdb.path={}", data.display()),
                            format!("--web.listen-address={addr}"),
                            "--web.enable-remote-write-receiver".into(),
                            "--storage.tsdb.retention.time=1d".into(),
                        ],
                        "/api/v1/write",
                        addr.clone(),
                        "/-/ready",
                    )
                }
                Kind::VictoriaMetrics => (
                    "victoria-metrics".into(),
                    vec![
                        format!("-storageDataPath={}", data.display()),
                        format!("-httpListenAddr={addr}"),
                        "-retentionPeriod=100y".into(),
                    ],
                    "/api/v1/write",
                    addr.clone(),
                    "/health",
                ),
            };
        let mut r = Receiver {
            kind,
            child: None,
            args,
            program,
            target: Target { addr, path: path.to_string(), headers: Vec::new(), tls: None },
            grpc: None,
            ready_addr,
            ready_path,
            data,
            log: dir.join(format!("{}.log", kind.name().replace([' ', '='], "_"))),
            peers: Vec::new(),
        };
        r.grpc = r.args.iter().find_map(|a| a.strip_prefix("--grpc-address=")).map(str::to_string);
        // What a variant adds, on every node of a ring.
        let mut node_args = Vec::new();
        match kind {
            Kind::RingestTls | Kind::RingestRf3Mtls => {
                let pki = crate::tls::Pki::new(&dir.join("pki"))?;
                node_args.extend(pki.remote_write_flags());
                if kind == Kind::RingestRf3Mtls {
                    node_args.extend(pki.peer_flags());
                }
                r.target.tls = Some(pki.client()?);
            }
            Kind::RingestLimits => {
                let file = dir.join("limits.yaml");
                std::fs::write(&file, LIMITS_FILE)?;
                node_args.push(format!("--receive.limits-config-file={}", file.display()));
            }
            _ => {}
        }
        r.args.extend(node_args.iter().cloned());
        if kind.is_ring() {
            r.make_ring(dir, &node_args)?;
        }
        r.spawn()?;
        r.wait_ready(Duration::from_secs(300))?;
        for p in &mut r.peers {
            p.wait_ready(Duration::from_secs(300))?;
        }
        Ok(r)
    }

    /// Turns this receiver into the first of three nodes of an RF=3 hashring and starts the
    /// other two (the same program).
    fn make_ring(&mut self, dir: &Path, node_args: &[String]) -> anyhow::Result<()> {
        let thanos = self.kind == Kind::ThanosRf3;
        let grpc = |args: &[String]| {
            args.iter().find_map(|a| a.strip_prefix("--grpc-address=")).map(str::to_string).unwrap_or_default()
        };
        let mut peers = Vec::new();
        for i in 1..3 {
            let (rw, ops, g) = (free_port(), free_port(), free_port());
            let data = dir.join(format!("node{i}"));
            let (rw_addr, ops_addr, grpc_addr) =
                (format!("127.0.0.1:{rw}"), format!("127.0.0.1:{ops}"), format!("127.0.0.1:{g}"));
            let mut args = receive_args(thanos, &data, &rw_addr, &ops_addr, &grpc_addr);
            args.extend(node_args.iter().cloned());
            peers.push(Receiver {
                kind: self.kind,
                child: None,
                args,
                program: self.program.clone(),
                target: Target {
                    addr: format!("127.0.0.1:{rw}"),
                    path: "/api/v1/receive".into(),
                    headers: Vec::new(),
                    tls: None,
                },
                grpc: Some(grpc_addr.clone()),
                ready_addr: format!("127.0.0.1:{ops}"),
                ready_path: "/-/ready",
                data,
                log: dir.join(format!("node{i}.log")),
                peers: Vec::new(),
            });
        }
        let endpoints: Vec<String> =
            std::iter::once(grpc(&self.args)).chain(peers.iter().map(|p| grpc(&p.args))).collect();
        let ring = dir.join("hashrings.json");
        let quoted: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        std::fs::write(&ring, format!("[{{\"hashring\": \"default\", \"endpoints\": [{}]}}]", quoted.join(", ")))?;
        for (node, ep) in std::iter::once(&mut *self).chain(peers.iter_mut()).zip(&endpoints) {
            node.args.push(format!("--receive.hashrings-file={}", ring.display()));
            node.args.push(format!("--receive.local-endpoint={ep}"));
            node.args.push("--receive.replication-factor=3".into());
        }
        for p in &mut peers {
            p.spawn()?;
        }
        self.peers = peers;
        Ok(())
    }

    /// Process ids: this receiver and the other nodes of its ring.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.pid()).chain(self.peers.iter().map(Receiver::pid)).collect()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| anyhow::anyhow!("start {} ({}): {e}", self.kind.name(), self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Polls the readiness endpoint until it answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                // The log goes with the work directory: its end is quoted here.
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                if log.contains("address already in use") {
                    return Err(PortTaken { receiver: self.kind.name(), log: tail }.into());
                }
                anyhow::bail!("{} exited with {st}; the end of its log:\n{tail}", self.kind.name());
            }
            if http::get(&self.ready_addr, self.ready_path).map(|r| r.status == 200).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        anyhow::bail!("{} not ready after {timeout:?}; log: {}", self.kind.name(), self.log.display())
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9, start again on the same data and ports, and return the time from start to ready.
    pub fn crash_restart(&mut self) -> anyhow::Result<Duration> {
        self.kill9();
        let start = Instant::now();
        self.spawn()?;
        self.wait_ready(Duration::from_secs(600))?;
        Ok(start.elapsed())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Settings of a bench run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Workload sizes (active series).
    pub sizes: Vec<usize>,
    /// Receivers, in order.
    pub receivers: Vec<Kind>,
    /// The receiver binaries.
    pub bins: Binaries,
    /// Concurrent senders.
    pub shards: usize,
    /// Samples per request.
    pub max_samples_per_send: usize,
    /// Offered load of the latency phase (samples per second).
    pub latency_rate: f64,
    /// Where receivers keep their data (a temporary directory if `None`).
    pub workdir: Option<PathBuf>,
    /// Calls of the read phase.
    pub read_iterations: Iterations,
    /// Rounds over every receiver, one after the other (the summary gives medians).
    pub repeat: usize,
}

/// One receiver on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The round of the bench (from 0; see [`BenchOptions::repeat`]).
    pub round: usize,
    /// The receiver.
    pub receiver: Kind,
    /// Active series.
    pub series: usize,
    /// Creation phase.
    pub creation: PhaseReport,
    /// Steady phase.
    pub steady: PhaseReport,
    /// Latency phase.
    pub latency: PhaseReport,
    /// Read phase, reads alone (ringest and Thanos Receive).
    pub read: Option<ReadReport>,
    /// The latency phase's offered load again, with the read phase's calls over and over
    /// (ringest and Thanos Receive; the other receivers take these rounds without reads).
    pub under_reads: Option<PhaseReport>,
    /// Read calls completed during [`RunResult::under_reads`].
    pub reads_during_writes: u64,
    /// Start to ready after kill -9 (seconds), where applicable.
    pub restart_seconds: Option<f64>,
    /// Check of the acknowledged samples against what promtool reads (ringest only).
    pub check: Option<CheckReport>,
    /// The same check through the StoreAPI of the restarted receiver (ringest and Thanos
    /// Receive).
    pub store_check: Option<CheckReport>,
}

/// Everything a bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Per receiver and size.
    pub runs: Vec<RunResult>,
    /// Shards x samples per request.
    pub shards: usize,
    /// Samples per request.
    pub max_samples_per_send: usize,
    /// Offered load of the latency phase.
    pub latency_rate: f64,
}

fn phase(
    name: &str,
    r: &Receiver,
    plan: &Plan,
    rounds: std::ops::Range<usize>,
    opts: &SendOptions,
    series: usize,
    acked: &std::sync::Mutex<Vec<ReqId>>,
) -> PhaseReport {
    let pids = r.pids();
    let watch = Watch::start(&pids);
    let res = send::send(&r.target, plan, rounds, opts, &|id| acked.lock().unwrap().push(id));
    // A ring is measured as one receiver: CPU and peak RSS summed over its processes.
    let usage = watch.finish().into_iter().reduce(|a, b| Usage {
        cpu_seconds: a.cpu_seconds + b.cpu_seconds,
        peak_rss: a.peak_rss + b.peak_rss,
        end_rss: a.end_rss + b.end_rss,
    });
    PhaseReport::new(name, &res, &[(pids[0], usage.unwrap_or_default())], series)
}

/// Runs the bench; prints progress to stderr.
pub fn run(o: &BenchOptions) -> anyhow::Result<BenchResult> {
    let tmp = tempfile::tempdir()?;
    let root = o.workdir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut runs = Vec::new();
    for &size in &o.sizes {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let mut shape = Shape::avalanche(size);
        shape.start_ms = now - (ROUNDS as i64 + 4) * shape.interval_ms;
        let layout =
            Layout { shape, shards: o.shards, max_samples_per_send: o.max_samples_per_send, remote_write_v2: false };
        let t = Instant::now();
        let plan = Plan::build(&layout, 0..ROUNDS);
        eprintln!(
            "{size} series: encoded {} samples ({:.0} MiB) in {:.1}s",
            plan.samples(),
            plan.bytes() as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
        // Latency phase: about 10 s at the offered load, at least one round, at most three; as
        // many again for the writes under reads.
        let latency_rounds = ((10.0 * o.latency_rate / size as f64).ceil() as usize).clamp(1, 3);
        let steady_end = ROUNDS - 2 * latency_rounds;
        let latency_end = steady_end + latency_rounds;
        let queries = read::queries(&layout.shape, o.read_iterations);
        let range = store::workload_range(&layout, 0, ROUNDS);
        let rounds = (0..o.repeat.max(1)).flat_map(|round| o.receivers.iter().map(move |&kind| (round, kind)));
        for (round, kind) in rounds {
            let dir = root.join(format!("{}-{size}", kind.name().replace(' ', "_")));
            let _ = std::fs::remove_dir_all(&dir);
            let mut r = start_on_free_ports(kind, &dir, &o.bins)?;
            let acked = std::sync::Mutex::new(Vec::new());
            let fast = SendOptions::default();
            let paced = SendOptions { rate: Some(o.latency_rate), ..SendOptions::default() };
            let creation = phase("creation", &r, &plan, 0..1, &fast, size, &acked);
            let steady = phase("steady", &r, &plan, 1..steady_end, &fast, size, &acked);
            let latency = phase("latency", &r, &plan, steady_end..latency_end, &paced, size, &acked);
            let (mut read, mut under_reads, mut reads_during_writes) = (None, None, 0);
            if let (true, Some(addr)) = (kind.reads(), r.grpc.clone()) {
                let s = Store::connect(&addr)?;
                let rep = read::measure(&s, r.pid(), &queries, range, o.read_iterations.label_values)?;
                eprintln!("{} / {size} series, reads: {}", kind.name(), serde_json::to_string(&rep)?);
                read = Some(rep);
                let stop = std::sync::atomic::AtomicBool::new(false);
                let (p, calls) = std::thread::scope(|sc| {
                    let reader = sc.spawn(|| read::cycle(&s, &queries, range, &stop));
                    let p = phase("under reads", &r, &plan, latency_end..ROUNDS, &paced, size, &acked);
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    (p, reader.join())
                });
                reads_during_writes = calls.map_err(|_| anyhow::anyhow!("reader panicked"))??;
                under_reads = Some(p);
            } else {
                // The same rounds at the same load, unmeasured, so every receiver restarts on
                // the same data.
                let p = phase("tail", &r, &plan, latency_end..ROUNDS, &paced, size, &acked);
                anyhow::ensure!(p.samples_dropped == 0, "{}: tail rounds dropped: {:?}", kind.name(), p.errors);
            }
            let mut phases = vec![creation.clone(), steady.clone(), latency.clone()];
            phases.extend(under_reads.clone());
            eprintln!("{} / {size} series:\n{}", kind.name(), table(&phases));
            let restart_seconds = match kind {
                // A variant restarts as ringest does.
                Kind::VictoriaMetrics | Kind::RingestRf3 | Kind::ThanosRf3 => None,
                k if k.baseline().is_some() => None,
                _ => Some(r.crash_restart()?.as_secs_f64()),
            };
            // promtool's text dump of more than a few million samples takes minutes: check the
            // smaller workloads (the smoke run included).
            let log = AckLog {
                header: LogHeader { layout: layout.clone(), first_round: 0, end_round: ROUNDS },
                acked: acked.into_inner().unwrap(),
            };
            let store_check = match (&r.grpc, kind.reads() && size <= CHECK_MAX_SERIES) {
                (Some(addr), true) => {
                    let dump = store::dump(
                        &Store::connect(addr)?,
                        &layout.shape.prefix,
                        range.0,
                        range.1,
                        &store::DumpOptions::default(),
                    )?;
                    let rep = check::check(&log, &dump);
                    eprintln!(
                        "check through the StoreAPI: {} acknowledged, {} lost, {} changed, {} invented",
                        rep.acked, rep.lost, rep.changed, rep.invented
                    );
                    Some(rep)
                }
                _ => None,
            };
            let check = if kind == Kind::Ringest && size <= CHECK_MAX_SERIES {
                let rep = check::check(&log, &check::promtool_dump(&r.data.join("default-tenant"))?);
                eprintln!(
                    "check: {} acknowledged, {} lost, {} changed, {} invented",
                    rep.acked, rep.lost, rep.changed, rep.invented
                );
                Some(rep)
            } else {
                None
            };
            r.kill9();
            if o.workdir.is_none() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            runs.push(RunResult {
                round,
                receiver: kind,
                series: size,
                creation,
                steady,
                latency,
                read,
                under_reads,
                reads_during_writes,
                restart_seconds,
                check,
                store_check,
            });
        }
    }
    Ok(BenchResult {
        runs,
        shards: o.shards,
        max_samples_per_send: o.max_samples_per_send,
        latency_rate: o.latency_rate,
    })
}

/// [`Receiver::start`], again on fresh ports (at most twice) when a port found free was taken
/// before the receiver bound it.
fn start_on_free_ports(kind: Kind, dir: &Path, bins: &Binaries) -> anyhow::Result<Receiver> {
    let mut attempt = 1;
    loop {
        match Receiver::start(kind, dir, bins) {
            Err(e) if attempt < 3 && e.is::<PortTaken>() => {
                eprintln!("{e}\nstarting {} again on fresh ports", kind.name());
                let _ = std::fs::remove_dir_all(dir);
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// The median of `values` (the mean of the middle two of an even count); `None` when empty.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn human_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1048576.0)
    } else if b >= 1024.0 {
        format!("{:.2} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// Three significant digits or so, for small per-unit costs.
fn fmt_small(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn si(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// One row of the summary: a figure for every receiver, and which way is better.
struct Row {
    workload: String,
    figure: &'static str,
    higher_is_better: bool,
    /// Per receiver, its value in each round of the bench.
    values: Vec<(Kind, Vec<Option<f64>>)>,
    fmt: fn(f64) -> String,
    /// A StoreAPI read figure: "n/a" for the receivers the bench does not read.
    reads: bool,
}

impl BenchResult {
    /// The summary table (Markdown), with ringest's advantage over each peer: `N×` means ringest
    /// is N times better on that figure (more throughput, less memory, less latency or time).
    /// Over several rounds, each value is the median of its rounds and each ratio the median of
    /// the rounds' ratios (each round's receivers ran one after the other, on the machine as it
    /// was then).
    pub fn markdown(&self) -> String {
        let kinds: Vec<Kind> = {
            let mut k: Vec<Kind> = Vec::new();
            for r in &self.runs {
                if !k.contains(&r.receiver) {
                    k.push(r.receiver);
                }
            }
            k
        };
        let mut sizes: Vec<usize> = self.runs.iter().map(|r| r.series).collect();
        sizes.dedup();
        let rounds = self.runs.iter().map(|r| r.round + 1).max().unwrap_or(0);
        let get = |kind: Kind, size: usize, f: &dyn Fn(&RunResult) -> Option<f64>| -> Vec<Option<f64>> {
            (0..rounds)
                .map(|round| {
                    self.runs.iter().find(|r| r.receiver == kind && r.series == size && r.round == round).and_then(f)
                })
                .collect()
        };
        let mut rows = Vec::new();
        for &size in &sizes {
            let w = |s: &str| format!("{} series, {s}", si(size as f64));
            let per_cpu = |p: &PhaseReport| p.receivers.first().map(|x| x.samples_per_cpu_second);
            let mk = |workload: String, figure, higher_is_better, f: &dyn Fn(&RunResult) -> Option<f64>, fmt| Row {
                workload,
                figure,
                higher_is_better,
                values: kinds.iter().map(|&k| (k, get(k, size, f))).collect(),
                fmt,
                reads: false,
            };
            let rd = |workload: String, figure, f: &dyn Fn(&RunResult) -> Option<f64>, fmt| Row {
                reads: true,
                ..mk(workload, figure, false, f, fmt)
            };
            rows.push(mk(w("creation"), "series created per CPU-second", true, &|r| per_cpu(&r.creation), si));
            rows.push(mk(w("steady"), "samples per CPU-second", true, &|r| per_cpu(&r.steady), si));
            rows.push(mk(w("steady"), "samples per second (wall)", true, &|r| Some(r.steady.samples_per_second), si));
            rows.push(mk(
                w("steady"),
                "peak RSS per active series",
                false,
                &|r| r.steady.receivers.first().map(|x| x.peak_rss_per_series_bytes),
                human_bytes,
            ));
            rows.push(mk(w("steady"), "p99 latency (ms)", false, &|r| Some(r.steady.latency_ms.p99), |v| {
                format!("{v:.1}")
            }));
            let lat = format!("{} samples/s offered", si(self.latency_rate));
            rows.push(mk(w(&lat), "p50 latency (ms)", false, &|r| Some(r.latency.latency_ms.p50), |v| {
                format!("{v:.2}")
            }));
            rows.push(mk(w(&lat), "p99 latency (ms)", false, &|r| Some(r.latency.latency_ms.p99), |v| {
                format!("{v:.2}")
            }));
            rows.push(mk(
                format!("{} series x {ROUNDS} samples", si(size as f64)),
                "kill -9, start to ready (s)",
                false,
                &|r| r.restart_seconds,
                |v| format!("{v:.2}"),
            ));
            if !self.runs.iter().any(|r| r.series == size && r.read.is_some()) {
                continue;
            }
            let q = |name: &'static str| {
                move |r: &RunResult| r.read.as_ref().and_then(|x| x.queries.iter().find(|q| q.name == name)).cloned()
            };
            // What each query returned (the first receiver that read), for the workload column.
            let first = self.runs.iter().find(|r| r.series == size && r.read.is_some());
            let per_call = |name: &'static str| {
                first.and_then(q(name)).filter(|x| x.calls > 0).map(|x| x.series / x.calls).unwrap_or(0)
            };
            let rw = |s: String| format!("{} series, read: {s}", si(size as f64));
            rows.push(rd(
                rw("first call after the writes (1 metric)".into()),
                "receiver CPU-ms",
                &|r| r.read.as_ref().map(|x| x.first_call.cpu_seconds * 1e3),
                fmt_small,
            ));
            rows.push(rd(
                rw(format!("1 metric ({} series)", per_call("selective"))),
                "receiver CPU-us per sample returned",
                &|r| q("selective")(r).and_then(|x| x.cpu_us_per_sample),
                fmt_small,
            ));
            rows.push(rd(
                rw(format!("regex, 10 metrics ({} series)", per_call("regex"))),
                "receiver CPU-us per sample returned",
                &|r| q("regex")(r).and_then(|x| x.cpu_us_per_sample),
                fmt_small,
            ));
            rows.push(rd(
                rw(format!("regex, 222 of 500 metrics ({} series)", per_call("wide"))),
                "receiver CPU-us per sample returned",
                &|r| q("wide")(r).and_then(|x| x.cpu_us_per_sample),
                fmt_small,
            ));
            rows.push(rd(
                rw(format!("skip_chunks, 10 metrics ({} series)", per_call("series"))),
                "receiver CPU-us per series returned",
                &|r| q("series")(r).and_then(|x| x.cpu_us_per_series),
                fmt_small,
            ));
            rows.push(rd(
                rw("all Series calls".into()),
                "extra RSS (peak during reads - before)",
                &|r| r.read.as_ref().map(|x| x.extra_rss as f64),
                human_bytes,
            ));
            rows.push(rd(
                rw(format!(
                    "{} s after all Series and LabelValues calls (ringest's head index built)",
                    read::SETTLE.as_secs()
                )),
                "RSS per active series",
                &|r| r.read.as_ref().map(|x| x.rss_after as f64 / size as f64),
                human_bytes,
            ));
            let values = first.and_then(|r| r.read.as_ref()).map(|x| x.label_values.values).unwrap_or(0);
            rows.push(rd(
                rw(format!("LabelValues({}, {values} values)", read::VALUES_LABEL)),
                "receiver CPU-ms per call",
                &|r| r.read.as_ref().map(|x| x.label_values.cpu_ms_per_call),
                fmt_small,
            ));
            let under = format!("{} samples/s offered + reads", si(self.latency_rate));
            rows.push(rd(w(&under), "p99 latency (ms)", &|r| r.under_reads.as_ref().map(|p| p.latency_ms.p99), |v| {
                format!("{v:.2}")
            }));
            rows.push(Row {
                reads: true,
                ..mk(
                    w(&under),
                    "Series calls completed meanwhile",
                    true,
                    &|r| r.under_reads.as_ref().map(|_| r.reads_during_writes as f64),
                    |v| format!("{v:.0}"),
                )
            });
            rows.push(rd(
                w(&under),
                "p99 under reads / idle p99",
                &|r| r.under_reads.as_ref().map(|p| p.latency_ms.p99 / r.latency.latency_ms.p99.max(1e-3)),
                |v| format!("{v:.2}"),
            ));
        }
        // Each peer against ringest in the same shape (a ring against ringest's ring), and each
        // variant of ringest against ringest: `a vs b` is how many times better `a` is.
        let pairs: Vec<(Kind, Kind)> = kinds
            .iter()
            .copied()
            .filter_map(|k| match k.baseline() {
                Some(base) => Some((k, base)),
                None if !k.is_ringest() => Some((k.counterpart(), k)),
                None => None,
            })
            .filter(|(a, b)| kinds.contains(a) && kinds.contains(b))
            .collect();
        let mut out = String::from("| workload | figure |");
        for k in &kinds {
            out.push_str(&format!(" {} |", k.name()));
        }
        for (a, b) in &pairs {
            out.push_str(&format!(" {} vs {} |", a.name(), b.name()));
        }
        out.push('\n');
        out.push_str(&"| --- ".repeat(2 + kinds.len() + pairs.len()));
        out.push_str("|\n");
        for row in rows {
            out.push_str(&format!("| {} | {} |", row.workload, row.figure));
            for (k, v) in &row.values {
                let none = if row.reads && !k.reads() { "n/a" } else { "-" };
                out.push_str(&format!(
                    " {} |",
                    median(v.iter().flatten().copied()).map(row.fmt).unwrap_or_else(|| none.into())
                ));
            }
            let of = |kind: &Kind| row.values.iter().find(|(k, _)| k == kind).map(|(_, v)| v.as_slice()).unwrap_or(&[]);
            for (a, b) in &pairs {
                let ratios = of(a).iter().zip(of(b)).filter_map(|pair| match pair {
                    (Some(x), Some(y)) if *x > 0.0 && *y > 0.0 => {
                        Some(if row.higher_is_better { x / y } else { y / x })
                    }
                    _ => None,
                });
                let ratio = median(ratios);
                let none = if row.reads && !(a.reads() && b.reads()) { "n/a" } else { "-" };
                let ratio = ratio.map(|r| if r >= 0.1 { format!("{r:.2}x") } else { format!("{r:.3}x") });
                out.push_str(&format!(" {} |", ratio.unwrap_or_else(|| none.into())));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    fn result(round: usize, receiver: Kind, restart: f64) -> RunResult {
        let phase = PhaseReport::new("p", &crate::send::PhaseResult::default(), &[], 1);
        RunResult {
            round,
            receiver,
            series: 1000,
            creation: phase.clone(),
            steady: phase.clone(),
            latency: phase,
            read: None,
            under_reads: None,
            reads_during_writes: 0,
            restart_seconds: Some(restart),
            check: None,
            store_check: None,
        }
    }

    #[test]
    fn rounds_give_median_values_and_the_median_of_each_rounds_ratio() {
        // Round ratios (Thanos' time over ringest's): 10, 2 and 4; value medians 2 and 10.
        let runs = vec![
            result(0, Kind::Ringest, 1.0),
            result(0, Kind::Thanos, 10.0),
            result(1, Kind::Ringest, 5.0),
            result(1, Kind::Thanos, 10.0),
            result(2, Kind::Ringest, 2.0),
            result(2, Kind::Thanos, 8.0),
        ];
        let md = BenchResult { runs, shards: 1, max_samples_per_send: 1, latency_rate: 1.0 }.markdown();
        let row = md.lines().find(|l| l.contains("start to ready")).unwrap();
        assert_eq!(row, "| 1k series x 24 samples | kill -9, start to ready (s) | 2.00 | 10.00 | 4.00x |", "{md}");
    }
}
