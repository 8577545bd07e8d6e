//! `ringest-loadgen run | check | bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ringest_loadgen::bench::{self, BenchOptions, Kind};
use ringest_loadgen::check::{self, AckLog, LogHeader};
use ringest_loadgen::plan::{Layout, Plan};
use ringest_loadgen::procstat::Watch;
use ringest_loadgen::read::Iterations;
use ringest_loadgen::report::{PhaseReport, table};
use ringest_loadgen::send::{self, SendOptions, Target};
use ringest_loadgen::shape::{self, Shape};
use ringest_loadgen::store;

#[derive(Parser)]
#[command(name = "ringest-loadgen", version, about = "Remote-write load generator and benchmark driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send a workload to a remote-write endpoint and report throughput, latency and usage.
    Run(RunArgs),
    /// Verify that every acknowledged sample of a run is stored with its exact value.
    Check(CheckArgs),
    /// ringest, Thanos Receive, Prometheus 2.42 and VictoriaMetrics on the same workloads, side
    /// by side.
    Bench(BenchArgs),
    /// The bench's read phase alone, against a running receiver's StoreAPI (an avalanche
    /// workload written by `run`).
    Read(ReadArgs),
}

#[derive(Args)]
struct ShapeArgs {
    /// Label-set family.
    #[arg(long, value_enum, default_value = "avalanche")]
    shape: shape::Kind,
    /// Active series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Distinct metric names (default: the shape's).
    #[arg(long)]
    metrics: Option<usize>,
    /// Extra labels per series (default: the shape's).
    #[arg(long)]
    labels: Option<usize>,
    /// Minimum label value length.
    #[arg(long, default_value_t = 0)]
    value_len: usize,
    /// Series replaced per minute of sample time.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Concurrent senders; each series always goes through the same one.
    #[arg(long, default_value_t = 8)]
    shards: usize,
    /// Samples per request at most.
    #[arg(long, default_value_t = 2000)]
    max_samples_per_send: usize,
    /// Remote write protocol: 1 (`prometheus.WriteRequest`) or 2 (`io.prometheus.write.v2.Request`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    remote_write_version: u8,
}

impl ShapeArgs {
    fn layout(&self, start_ms: i64) -> Layout {
        let mut s = match self.shape {
            shape::Kind::Avalanche => Shape::avalanche(self.series),
            shape::Kind::Node => Shape::node(self.series),
        };
        if let Some(m) = self.metrics {
            s.metrics = m.max(1);
        }
        if let Some(l) = self.labels {
            s.labels = l;
        }
        s.value_len = self.value_len;
        s.churn_per_min = self.churn;
        s.start_ms = start_ms;
        Layout {
            shape: s,
            shards: self.shards.max(1),
            max_samples_per_send: self.max_samples_per_send.max(1),
            remote_write_v2: self.remote_write_version == 2,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Remote-write URL, e.g. http://127.0.0.1:19291/api/v1/receive.
    #[arg(long)]
    url: String,
    /// Tenant sent in the tenant header.
    #[arg(long)]
    tenant: Option<String>,
    /// Header carrying the tenant.
    #[arg(long, default_value = "THANOS-TENANT")]
    tenant_header: String,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Rounds (one sample per series each); round 0 creates the series.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Offered load in samples per second (default: as fast as acknowledged).
    #[arg(long)]
    rate: Option<f64>,
    /// Receiver process ids to measure (CPU seconds, RSS).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Write the acknowledgement log here (for `check`).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["tsdb", "store"])))]
struct CheckArgs {
    /// Acknowledgement log written by `run --log`.
    #[arg(long)]
    log: PathBuf,
    /// TSDB directory to read with promtool (a tenant directory of ringest, or Prometheus'
    /// data) of a stopped receiver.
    #[arg(long)]
    tsdb: Option<PathBuf>,
    /// Read a running receiver through the Thanos StoreAPI at this gRPC address (host:port)
    /// instead: Series with `__name__=~"<prefix>_.*"` over the logged rounds' time range.
    #[arg(long)]
    store: Option<String>,
    /// With --store: the tenant to read (a matcher on --tenant-label).
    #[arg(long, default_value = "default-tenant")]
    tenant: String,
    /// With --store: the external label naming the tenant (stripped before comparing).
    #[arg(long, default_value = "tenant_id")]
    tenant_label: String,
    /// With --store: more labels to strip before comparing (the external labels that the
    /// store's Info announces, e.g. replica labels, are stripped anyway).
    #[arg(long = "strip-label")]
    strip_labels: Vec<String>,
}

fn check_cmd(a: CheckArgs) -> anyhow::Result<bool> {
    let log = AckLog::read(&a.log)?;
    let dump = match (&a.tsdb, &a.store) {
        (Some(dir), _) => check::promtool_dump(dir)?,
        (None, Some(addr)) => {
            let h = &log.header;
            let (min, max) = store::workload_range(&h.layout, h.first_round, h.end_round);
            let s = store::Store::connect(addr)?;
            let o = store::DumpOptions {
                tenant: Some(a.tenant.clone()),
                tenant_label: a.tenant_label.clone(),
                strip: a.strip_labels.clone(),
            };
            store::dump(&s, &h.layout.shape.prefix, min, max, &o)?
        }
        (None, None) => anyhow::bail!("--tsdb or --store"),
    };
    let rep = check::check(&log, &dump);
    println!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(rep.ok())
}

#[derive(Args)]
struct BenchArgs {
    /// Seconds-long run with a tiny workload (what the test command runs).
    #[arg(long)]
    smoke: bool,
    /// Workload sizes in active series.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<usize>,
    /// Receivers to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ringest,ringest-rf3,thanos,thanos-rf3,prometheus,victoria-metrics"
    )]
    receivers: Vec<Kind>,
    /// The ringest binary (default: next to this one).
    #[arg(long)]
    ringest: Option<PathBuf>,
    /// The thanos binary, for the Thanos receivers (default: $THANOS_BIN; scripts/thanos.sh
    /// builds it).
    #[arg(long)]
    thanos: Option<PathBuf>,
    /// Concurrent senders.
    #[arg(long, default_value_t = 8)]
    shards: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 2000)]
    max_samples_per_send: usize,
    /// Offered load of the latency phase, samples per second.
    #[arg(long, default_value_t = 100_000.0)]
    latency_rate: f64,
    /// Keep receivers' data here instead of a temporary directory.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the summary table (Markdown) here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Rounds over all receivers, one after the other; the table gives each figure's median
    /// and the median of the rounds' ratios (one run's figures vary by 20 % on a busy machine).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
}

#[derive(Args)]
struct ReadArgs {
    /// gRPC address of the StoreAPI (host:port).
    #[arg(long)]
    store: String,
    /// Active series of the avalanche workload written (sets the metric names queried).
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Receiver process id to measure (CPU seconds, RSS); without it only calls are counted.
    #[arg(long)]
    pid: Option<u32>,
    /// One or two calls per query.
    #[arg(long)]
    smoke: bool,
    /// Query the last this many seconds (up to now plus an hour).
    #[arg(long, default_value_t = 86_400)]
    seconds: i64,
    /// LabelValues calls (default: the bench's, or the smoke run's).
    #[arg(long)]
    label_values_calls: Option<usize>,
}

fn read_cmd(a: ReadArgs) -> anyhow::Result<bool> {
    let it = if a.smoke { Iterations::SMOKE } else { Iterations::FULL };
    let queries = ringest_loadgen::read::queries(&Shape::avalanche(a.series), it);
    let now = now_ms();
    let range = (now - a.seconds * 1000, now + 3_600_000);
    let s = store::Store::connect(&a.store)?;
    let calls = a.label_values_calls.unwrap_or(it.label_values);
    let rep = ringest_loadgen::read::measure(&s, a.pid.unwrap_or(0), &queries, range, calls)?;
    println!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(rep.queries.iter().all(|q| q.series > 0))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn run(a: RunArgs) -> anyhow::Result<bool> {
    let layout = a.shape.layout(now_ms() - (a.rounds as i64 + 2) * 15_000);
    let mut target = Target::parse(&a.url)?;
    if let Some(t) = &a.tenant {
        target = target.with_header(&a.tenant_header, t);
    }
    let t = std::time::Instant::now();
    let plan = Plan::build(&layout, 0..a.rounds.max(1));
    eprintln!("encoded {} samples in {:.1}s", plan.samples(), t.elapsed().as_secs_f64());
    let opts = SendOptions { rate: a.rate, ..SendOptions::default() };
    let acked = std::sync::Mutex::new(Vec::new());
    let mut reports = Vec::new();
    for (name, rounds) in [("creation", 0..1), ("steady", 1..a.rounds.max(1))] {
        if rounds.is_empty() {
            continue;
        }
        let watch = Watch::start(&a.pids);
        let res = send::send(&target, &plan, rounds, &opts, &|id| acked.lock().unwrap().push(id));
        let usage: Vec<_> = a.pids.iter().copied().zip(watch.finish()).collect();
        reports.push(PhaseReport::new(name, &res, &usage, layout.shape.series));
    }
    print!("{}", table(&reports));
    for r in &reports {
        for e in &r.errors {
            eprintln!("{}: {e}", r.phase);
        }
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&reports)?)?;
    }
    if let Some(p) = &a.log {
        let log = AckLog {
            header: LogHeader { layout: layout.clone(), first_round: 0, end_round: a.rounds.max(1) },
            acked: acked.into_inner().unwrap_or_default(),
        };
        let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
        log.write(&mut f)?;
    }
    Ok(reports.iter().all(|r| r.samples_dropped == 0))
}

fn ensure_peers(receivers: &[Kind]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let have = |bin: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if receivers.contains(&Kind::Prometheus) && !(have("prometheus") && have("promtool")) {
        missing.push("prometheus");
    }
    if receivers.contains(&Kind::VictoriaMetrics) && !have("victoria-metrics") {
        missing.push("victoria-metrics");
    }
    if receivers.contains(&Kind::Ringest) && !have("promtool") && !missing.contains(&"prometheus") {
        missing.push("prometheus");
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} (Debian packages)", missing.join(" "));
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut cmd = std::process::Command::new(if root { "apt-get" } else { "sudo" });
    if !root {
        cmd.arg("apt-get");
    }
    let st = cmd.args(["install", "-y", "-qq"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive").status()?;
    anyhow::ensure!(st.success(), "apt-get install {} failed", missing.join(" "));
    Ok(())
}

fn bench(a: BenchArgs) -> anyhow::Result<bool> {
    ensure_peers(&a.receivers)?;
    let ringest = match a.ringest {
        Some(p) => p,
        None => std::env::current_exe()?.parent().context("executable directory")?.join("ringest"),
    };
    anyhow::ensure!(
        ringest.exists(),
        "ringest binary not found at {} (build it: cargo build --release -p ringest)",
        ringest.display()
    );
    let o = BenchOptions {
        sizes: if a.smoke { vec![2000] } else { a.sizes },
        receivers: a.receivers,
        bins: bench::Binaries {
            ringest,
            thanos: a.thanos.or_else(|| std::env::var_os("THANOS_BIN").map(PathBuf::from)),
        },
        shards: a.shards,
        max_samples_per_send: if a.smoke { 200 } else { a.max_samples_per_send },
        latency_rate: if a.smoke { 20_000.0 } else { a.latency_rate },
        workdir: a.workdir,
        read_iterations: if a.smoke { Iterations::SMOKE } else { Iterations::FULL },
        repeat: a.repeat as usize,
    };
    let result = bench::run(&o)?;
    let md = result.markdown();
    let rounds = if o.repeat > 1 {
        format!("; each figure the median of {} rounds, each ratio the median of the rounds' ratios", o.repeat)
    } else {
        String::new()
    };
    println!(
        "\n{} shards x {}-sample requests; latency phase at {} samples/s{rounds}\n\n{md}",
        result.shards, result.max_samples_per_send, result.latency_rate
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&result)?)?;
    }
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md)?;
    }
    let mut ok = true;
    for r in &result.runs {
        for p in [&r.creation, &r.steady, &r.latency].into_iter().chain(r.under_reads.as_ref()) {
            if p.samples_dropped > 0 || p.samples_acked == 0 {
                eprintln!(
                    "{} {} series {}: {} samples dropped {:?}",
                    r.receiver.name(),
                    r.series,
                    p.phase,
                    p.samples_dropped,
                    p.errors
                );
                ok = false;
            }
        }
        if let Some(c) = r.check.as_ref().filter(|c| !c.ok()) {
            eprintln!("ringest check failed: {c:?}");
            ok = false;
        }
        if let Some(c) = r.store_check.as_ref().filter(|c| !c.ok()) {
            eprintln!("{} check through the StoreAPI failed: {c:?}", r.receiver.name());
            ok = false;
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Check(a) => check_cmd(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Read(a) => read_cmd(a),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
