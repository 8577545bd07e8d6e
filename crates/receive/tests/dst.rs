//! Deterministic simulation of an RF=3 ring (turmoil): three nodes, each a real TSDB on disk and
//! the real replicator, talking the real gRPC write RPC over turmoil's simulated TCP; a client
//! writes through any node while the network partitions, holds (delays) and releases links and
//! nodes are killed and restarted. Time is virtual and every choice comes from the seed, so a
//! failing seed replays exactly (`RINGEST_DST_SEED=n`).
//!
//! At the end every link is repaired, every node is up and the writes in flight have settled;
//! then each node's TSDB is opened from its directory (as a restart after kill -9 would) and
//! checked: no acknowledged sample is on fewer nodes than the write quorum (lost), no stored
//! sample was never sent (phantom), no series holds two values at one timestamp across the
//! nodes (conflicting duplicates), and every stored series is in time order.
//!
//! What a node does with a write is the server's ingest path reduced to its two cases: a write
//! with a replica number is a peer's copy, appended here; one without is routed by the
//! replicator, which appends this node's share and forwards the rest.
//!
//! `RINGEST_DST_SEEDS` (default 1000) and `RINGEST_DST_OPS` (default 200) size the run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use ringest::outcome::{Outcome, WriteStatus};
use ringest::remote_write::{Shape, decode_thanos_write_request, write_thanos_request_end, write_thanos_series};
use ringest::replicate::{Failure, MAX_MESSAGE_BYTES, Options, REMOTE_WRITE_PATH, ReplicationMetrics, Replicator};
use ringest::writer;
use ringest_grpc::{
    Acceptor, Channel, ChannelOptions, Compression, Dialer, Dialing, Message, Server, Status, Stream, UnaryHandler,
};
use ringest_hashring::{Algorithm, MultiHashring};
use ringest_proto::prometheus as pb;
use ringest_trace::Span;
use ringest_tsdb::{AppendBuffers, Tsdb};

const NODES: usize = 3;
const PORT: u16 = 10901;
const TENANT: &str = "default-tenant";
/// Series the client writes (a request takes a few of them).
const SERIES: u64 = 8;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(1);
/// The client's deadline for one write (the router answers within the forward timeout).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

fn node(i: usize) -> String {
    format!("n{i}")
}

fn endpoint(i: usize) -> String {
    format!("n{i}:{PORT}")
}

/// The value the client writes for `series` at `t`: anything else in a TSDB is a phantom.
fn value_of(series: u64, t: i64) -> f64 {
    (series * 1_000_003 + t as u64 % 1_000_000_007) as f64
}

/// SplitMix64: the simulation's own choices (turmoil's come from its seed too).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Turmoil's TCP as the gRPC client's transport.
#[derive(Debug)]
struct SimDialer;

impl Dialer for SimDialer {
    fn dial(&self, addr: &str) -> Dialing {
        let addr = addr.to_string();
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as Box<dyn Stream>)
        })
    }
}

/// Turmoil's TCP as the gRPC server's transport.
struct SimAcceptor(turmoil::net::TcpListener);

impl Acceptor for SimAcceptor {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Stream, std::net::SocketAddr)> {
        self.0.accept().await
    }
}

/// One node's write RPC: a peer's copy (replica number set) is appended here, anything else is
/// routed over the ring.
struct NodeHandler {
    db: Arc<Tsdb>,
    replicator: Replicator,
    bug: Bug,
}

/// A defect planted in every node, to show that the checker finds what it claims to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// A peer's copy is acknowledged but never appended.
    AckWithoutWrite,
}

fn status(ws: WriteStatus) -> Result<Bytes, Status> {
    if ws.is_ok() { Ok(Bytes::new()) } else { Err(ringest::grpc::status(ws)) }
}

impl NodeHandler {
    fn append(
        &self,
        tenant: &str,
        buf: &[u8],
        d: &ringest::remote_write::Decoded,
        select: Option<&[u32]>,
    ) -> WriteStatus {
        match writer::write_selected(tenant, &self.db, buf, d, select, i64::MAX, &mut AppendBuffers::default()) {
            Ok(report) => report.status(),
            Err(e) => WriteStatus::new(Outcome::Unavailable, e.to_string()),
        }
    }

    async fn handle(&self, m: Message) -> Result<Bytes, Status> {
        let buf = m.into_bytes()?;
        let w = decode_thanos_write_request(&buf, &Shape::default())
            .map_err(|e| Status::new(ringest_grpc::Code::InvalidArgument, e.to_string()))?;
        let mut answer = WriteStatus::ok();
        for (tenant, d) in &w.tenants {
            let ws = if w.replica > 0 && self.bug == Bug::AckWithoutWrite {
                WriteStatus::ok()
            } else if w.replica > 0 {
                self.append(tenant, &buf, d, None)
            } else {
                let mut local = |select: &[u32], _: &Span| {
                    let ws = self.append(tenant, &buf, d, Some(select));
                    if ws.is_ok() { Ok(()) } else { Err(Failure { outcome: ws.outcome, message: ws.message }) }
                };
                match self.replicator.route(tenant, &buf, d, &mut local, Span::none()) {
                    Ok(pending) => pending.wait().await,
                    Err(f) => WriteStatus::new(f.outcome, f.message),
                }
            };
            if answer.outcome.worst(ws.outcome) != answer.outcome {
                answer = ws;
            }
        }
        status(answer)
    }
}

impl UnaryHandler for NodeHandler {
    fn call(
        &self,
        m: Message,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, Status>> + Send + '_>> {
        Box::pin(self.handle(m))
    }
}

fn tsdb_options() -> ringest_tsdb::Options {
    ringest_tsdb::Options { lockfile: false, ..ringest_tsdb::Options::default() }
}

/// The hashring file and algorithm every node loads.
struct Ring {
    json: String,
    algorithm: Algorithm,
}

impl Ring {
    fn build(&self) -> Result<MultiHashring, Box<dyn std::error::Error>> {
        Ok(MultiHashring::new(&ringest_hashring::parse_config(&self.json)?.rings, self.algorithm, NODES)?)
    }
}

/// A node's software: opens its TSDB (replaying its WAL) and serves the write RPC.
async fn run_node(i: usize, dir: PathBuf, ring: Rc<Ring>, compression: Compression, bug: Bug) -> turmoil::Result {
    let (db, _) = Tsdb::open(&dir, tsdb_options())?;
    let ring = ring.build()?;
    let opts = Options {
        replication_factor: NODES,
        local_endpoint: Some(endpoint(i)),
        forward_timeout: FORWARD_TIMEOUT,
        max_backoff: Duration::from_secs(1),
        compression,
        async_workers: 4,
        tls: None,
        dialer: Some(Arc::new(SimDialer)),
    };
    let metrics = ReplicationMetrics::new(&prometheus::Registry::new())?;
    let handler = NodeHandler { db: Arc::new(db), replicator: Replicator::new(ring, opts, metrics), bug };
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    Server::new(MAX_MESSAGE_BYTES)
        .route(REMOTE_WRITE_PATH, Arc::new(handler))
        .serve_from(SimAcceptor(listener), std::future::pending())
        .await?;
    Ok(())
}

/// What the client asks the driver to do to a node between steps.
enum Fault {
    /// kill -9 (the node stays down).
    Kill(usize),
    /// Start it again (a running node is killed first).
    Restart(usize),
}

/// One write: its samples and, once answered, whether it was acknowledged.
struct Write {
    samples: Vec<(u64, i64)>,
    acked: Option<bool>,
}

#[derive(Default)]
struct Log {
    writes: Vec<Write>,
    faults: VecDeque<Fault>,
    /// Events in order, for the determinism check.
    trace: Vec<String>,
    /// The client's operations are over (nodes still down are started for the end).
    ops_done: bool,
}

fn request(samples: &[(u64, i64)]) -> Bytes {
    let series: Vec<Vec<u8>> = samples
        .iter()
        .map(|&(s, t)| {
            pb::TimeSeries {
                labels: vec![
                    pb::Label { name: "__name__".into(), value: "dst".into() },
                    pb::Label { name: "series".into(), value: s.to_string() },
                ],
                samples: vec![pb::Sample { value: value_of(s, t), timestamp: t }],
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let mut out = Vec::new();
    let mut put = |b: &[u8]| -> Result<(), std::convert::Infallible> {
        out.extend_from_slice(b);
        Ok(())
    };
    let _ = write_thanos_series(series.iter().map(Vec::as_slice), &mut put);
    let _ = write_thanos_request_end(TENANT, 0, &mut put);
    Bytes::from(out)
}

/// The client: `ops` operations chosen by `rng`, then repair, restart and settle.
async fn client(mut rng: Rng, ops: usize, compression: Compression, log: Rc<RefCell<Log>>) -> turmoil::Result {
    let opts = ChannelOptions {
        compression,
        connect_timeout: Duration::from_millis(500),
        dialer: Some(Arc::new(SimDialer)),
        ..ChannelOptions::default()
    };
    let channels: Vec<Channel> = (0..NODES).map(|i| Channel::new(endpoint(i), opts.clone())).collect();
    let mut next_t = [1_000_000i64; SERIES as usize];
    let mut tasks = Vec::new();
    let send = |id: usize, target: usize, tasks: &mut Vec<tokio::task::JoinHandle<()>>| {
        let (ch, log) = (channels[target].clone(), log.clone());
        let body = request(&log.borrow().writes[id].samples);
        tasks.push(tokio::task::spawn_local(async move {
            let r = ch.unary(REMOTE_WRITE_PATH, body, CLIENT_TIMEOUT).await;
            let mut log = log.borrow_mut();
            let event =
                format!("{:?} answer {id} via n{target}: {:?}", turmoil::elapsed(), r.as_ref().map_err(|s| s.code));
            log.trace.push(event);
            let w = &mut log.writes[id];
            w.acked = Some(w.acked == Some(true) || r.is_ok());
        }));
    };
    let pair = |rng: &mut Rng| {
        let a = rng.below(NODES as u64) as usize;
        (node(a), node((a + 1 + rng.below(NODES as u64 - 1) as usize) % NODES))
    };
    for _ in 0..ops {
        let roll = rng.below(100);
        let event = match roll {
            0..=59 => {
                let n = 1 + rng.below(4);
                let mut picked = BTreeSet::new();
                for _ in 0..n {
                    picked.insert(rng.below(SERIES));
                }
                let samples: Vec<(u64, i64)> = picked
                    .into_iter()
                    .map(|s| {
                        next_t[s as usize] += 1000;
                        (s, next_t[s as usize])
                    })
                    .collect();
                let id = log.borrow().writes.len();
                log.borrow_mut().writes.push(Write { samples, acked: None });
                let target = rng.below(NODES as u64) as usize;
                send(id, target, &mut tasks);
                format!("write {id} via n{target}")
            }
            60..=69 => {
                // An exact retry of an earlier write, through any node.
                let count = log.borrow().writes.len();
                if count == 0 {
                    continue;
                }
                let id = rng.below(count as u64) as usize;
                let target = rng.below(NODES as u64) as usize;
                send(id, target, &mut tasks);
                format!("retry {id} via n{target}")
            }
            70..=73 => {
                let i = rng.below(NODES as u64) as usize;
                log.borrow_mut().faults.push_back(Fault::Kill(i));
                format!("kill n{i}")
            }
            74..=79 => {
                let i = rng.below(NODES as u64) as usize;
                log.borrow_mut().faults.push_back(Fault::Restart(i));
                format!("restart n{i}")
            }
            80..=85 => {
                let (a, b) = pair(&mut rng);
                turmoil::partition(a.as_str(), b.as_str());
                format!("partition {a} {b}")
            }
            86..=91 => {
                let (a, b) = pair(&mut rng);
                turmoil::repair(a.as_str(), b.as_str());
                format!("repair {a} {b}")
            }
            92..=95 => {
                let (a, b) = pair(&mut rng);
                turmoil::hold(a.as_str(), b.as_str());
                format!("hold {a} {b}")
            }
            _ => {
                let (a, b) = pair(&mut rng);
                turmoil::release(a.as_str(), b.as_str());
                format!("release {a} {b}")
            }
        };
        log.borrow_mut().trace.push(format!("{:?} {event}", turmoil::elapsed()));
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
    }
    // Heal: every link repaired and released, every node up.
    log.borrow_mut().ops_done = true;
    for a in 0..NODES {
        for b in a + 1..NODES {
            turmoil::repair(node(a).as_str(), node(b).as_str());
            turmoil::release(node(a).as_str(), node(b).as_str());
        }
    }
    for t in tasks {
        t.await?;
    }
    // Replicas still on their way after a quorum answer land within the forward timeout.
    tokio::time::sleep(FORWARD_TIMEOUT * 2).await;
    Ok(())
}

/// What the checker found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    acked: usize,
    lost: Vec<String>,
    phantom: Vec<String>,
    conflicting: Vec<String>,
    unordered: Vec<String>,
    /// Per node, every stored (series, t), for the determinism check.
    stored: Vec<BTreeSet<(u64, i64)>>,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.lost.is_empty() && self.phantom.is_empty() && self.conflicting.is_empty() && self.unordered.is_empty()
    }
}

fn check(dirs: &[PathBuf], writes: &[Write]) -> Result<Verdict, Box<dyn std::error::Error>> {
    let mut v = Verdict::default();
    let sent: BTreeSet<(u64, i64)> = writes.iter().flat_map(|w| w.samples.iter().copied()).collect();
    // (series, t) -> values seen on each node.
    let mut seen: BTreeMap<(u64, i64), Vec<(usize, f64)>> = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let (db, _) = Tsdb::open_read_only(dir, tsdb_options())?;
        let mut stored = BTreeSet::new();
        for s in db.dump() {
            let series: u64 = s.labels.get("series").ok_or("a series without the series label")?.parse()?;
            if s.samples.windows(2).any(|p| p[0].0 >= p[1].0) {
                v.unordered.push(format!("n{i} series {series}"));
            }
            for &(t, val) in &s.samples {
                stored.insert((series, t));
                seen.entry((series, t)).or_default().push((i, val));
                if !sent.contains(&(series, t)) || val != value_of(series, t) {
                    v.phantom.push(format!("n{i} series {series} t {t} value {val}"));
                }
            }
        }
        v.stored.push(stored);
    }
    for (&(series, t), vals) in &seen {
        if vals.iter().any(|&(_, x)| x.to_bits() != vals[0].1.to_bits()) {
            v.conflicting.push(format!("series {series} t {t}: {vals:?}"));
        }
    }
    let quorum = ringest_hashring::write_quorum(NODES);
    for (id, w) in writes.iter().enumerate().filter(|(_, w)| w.acked == Some(true)) {
        v.acked += 1;
        for &(series, t) in &w.samples {
            let on = seen.get(&(series, t)).map_or(0, Vec::len);
            if on < quorum {
                v.lost.push(format!("write {id}: series {series} t {t} on {on} nodes"));
            }
        }
    }
    Ok(v)
}

/// One seeded run: the verdict and the event trace.
fn simulate(seed: u64, ops: usize, bug: Bug) -> Result<(Verdict, Vec<String>), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dirs: Vec<PathBuf> = (0..NODES).map(|i| tmp.path().join(node(i))).collect();
    let mut rng = Rng(seed);
    let algorithm = if rng.below(2) == 0 { Algorithm::Hashmod } else { Algorithm::Ketama };
    let compression = if rng.below(2) == 0 { Compression::Snappy } else { Compression::None };
    let endpoints: Vec<String> = (0..NODES).map(|i| format!("\"{}\"", endpoint(i))).collect();
    let json = format!(r#"[{{"hashring": "r", "endpoints": [{}]}}]"#, endpoints.join(", "));
    let ring = Rc::new(Ring { json, algorithm });
    ring.build()?;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(3600))
        .build();
    for (i, dir) in dirs.iter().enumerate() {
        let (dir, ring) = (dir.clone(), ring.clone());
        sim.host(node(i).as_str(), move || run_node(i, dir.clone(), ring.clone(), compression, bug));
    }
    let log = Rc::new(RefCell::new(Log::default()));
    sim.client("client", client(Rng(rng.next()), ops, compression, log.clone()));
    // Each link has its own fixed latency. (A latency drawn per message would depend on the
    // order in which a crash drops the node's connections, which tokio does not fix.)
    let hosts: Vec<String> = (0..NODES).map(node).chain(["client".to_string()]).collect();
    for (k, a) in hosts.iter().enumerate() {
        for b in &hosts[k + 1..] {
            sim.set_link_latency(a.as_str(), b.as_str(), Duration::from_millis(rng.below(30)));
        }
    }
    let mut down = [false; NODES];
    loop {
        let done = sim.step()?;
        let faults: Vec<Fault> = log.borrow_mut().faults.drain(..).collect();
        for f in faults {
            match f {
                Fault::Kill(i) if !down[i] => {
                    sim.crash(node(i).as_str());
                    down[i] = true;
                }
                Fault::Kill(_) => {}
                Fault::Restart(i) => {
                    if !down[i] {
                        sim.crash(node(i).as_str());
                    }
                    sim.bounce(node(i).as_str());
                    down[i] = false;
                }
            }
        }
        if done {
            break;
        }
        // Nodes still down once the client's operations are over come back for the end.
        if log.borrow().ops_done && down.iter().any(|&d| d) {
            for (i, d) in down.iter_mut().enumerate().filter(|(_, d)| **d) {
                sim.bounce(node(i).as_str());
                *d = false;
            }
        }
    }
    drop(sim);
    let log = Rc::try_unwrap(log).map_err(|_| "the log is still shared")?.into_inner();
    let verdict = check(&dirs, &log.writes)?;
    Ok((verdict, log.trace))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn report(seed: u64, v: &Verdict, trace: &[String]) -> String {
    format!(
        "seed {seed} (rerun with RINGEST_DST_SEED={seed}): {} lost, {} phantom, {} conflicting, {} out of order\n\
         lost: {:?}\nphantom: {:?}\nconflicting: {:?}\nout of order: {:?}\nlast events: {:?}",
        v.lost.len(),
        v.phantom.len(),
        v.conflicting.len(),
        v.unordered.len(),
        &v.lost[..v.lost.len().min(10)],
        &v.phantom[..v.phantom.len().min(10)],
        &v.conflicting[..v.conflicting.len().min(10)],
        v.unordered,
        &trace[trace.len().saturating_sub(30)..],
    )
}

/// Runs `seeds` on this thread: the failures' reports, the writes acknowledged, the seeds run.
fn run_seeds(seeds: impl Iterator<Item = u64>, ops: usize) -> (Vec<String>, usize, usize) {
    let (mut failures, mut acked, mut runs) = (Vec::new(), 0, 0);
    for seed in seeds {
        match simulate(seed, ops, Bug::None) {
            Ok((v, trace)) => {
                acked += v.acked;
                runs += 1;
                if !v.ok() {
                    failures.push(report(seed, &v, &trace));
                }
            }
            Err(e) => {
                failures.push(format!("seed {seed} (rerun with RINGEST_DST_SEED={seed}): simulation failed: {e}"))
            }
        }
    }
    (failures, acked, runs)
}

/// Every seed: nothing acknowledged lost, nothing invented, no conflicting duplicates.
#[test]
fn seeded_faults_lose_nothing_acknowledged_and_invent_nothing() {
    let ops = env_or("RINGEST_DST_OPS", 200) as usize;
    let seeds: Vec<u64> = match std::env::var("RINGEST_DST_SEED") {
        Ok(s) => vec![s.parse().expect("RINGEST_DST_SEED is a number")],
        Err(_) => (0..env_or("RINGEST_DST_SEEDS", 1000)).collect(),
    };
    // The seeds are independent simulations: two threads share them.
    let threads = 2;
    let results: Vec<(Vec<String>, usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let mine: Vec<u64> = seeds.iter().copied().skip(k).step_by(threads).collect();
                s.spawn(move || run_seeds(mine.into_iter(), ops))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a simulation thread panicked")).collect()
    });
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.0).collect();
    let acked: usize = results.iter().map(|r| r.1).sum();
    let runs: usize = results.iter().map(|r| r.2).sum();
    eprintln!("{runs} seeds x {ops} operations: {acked} writes acknowledged, {} seeds failed", failures.len());
    assert!(failures.is_empty(), "{} of {} seeds failed; first:\n{}", failures.len(), seeds.len(), failures[0]);
    // The faults must leave writes to check: about 0.6 new writes per operation, and at
    // least a fifth of them acknowledged.
    assert!(acked * 5 * 10 >= seeds.len() * ops * 6, "only {acked} writes acknowledged over {} seeds", seeds.len());
}

/// The checker has teeth: nodes that acknowledge a peer's copy without appending it lose
/// acknowledged samples (only the router's own copy is kept), and the checker says so.
#[test]
fn the_checker_finds_acknowledged_writes_a_node_did_not_keep() {
    let (v, _) = simulate(3, 100, Bug::AckWithoutWrite).unwrap();
    assert!(v.acked > 0);
    assert!(!v.lost.is_empty(), "no loss found though peers dropped every copy");
    assert!(v.phantom.is_empty() && v.conflicting.is_empty());
}

/// A seed replays exactly: the same events, answers and stored samples.
#[test]
fn a_seed_replays_exactly() {
    for seed in [7, 1234, 99] {
        let (a, ta) = simulate(seed, 200, Bug::None).unwrap();
        let (b, tb) = simulate(seed, 200, Bug::None).unwrap();
        if let Some(k) = (0..ta.len().max(tb.len())).find(|&k| ta.get(k) != tb.get(k)) {
            let from = k.saturating_sub(5);
            panic!(
                "seed {seed}: the event traces differ at event {k}:\n{:?}\n{:?}",
                &ta[from..ta.len().min(k + 3)],
                &tb[from..tb.len().min(k + 3)]
            );
        }
        assert_eq!(a, b, "seed {seed}: the verdicts differ");
    }
}
