//! Replication over the hashring (Thanos' handler fan-out, shared spec §4.8 and §5).
//!
//! For a fresh write (no replica number) every series is hashed once (tenant and labels in request
//! order) and placed for each replica index `0..RF` on an endpoint of the tenant's hashring;
//! series are grouped by (endpoint, replica). This node's groups are written in-process as one
//! append; every other group becomes one `thanos.WriteableStore/RemoteWrite` call whose `timeseries` are the
//! request's own encoded series bytes (nothing is re-encoded), with the 1-based replica number,
//! so the receiving node writes it locally and never replicates it again. Groups with the same
//! series (in a ring of RF nodes, a home's series go to each peer under another replica number)
//! share one encoded, compressed copy of them; only the tenant and replica fields that end each
//! message are their own. The request is
//! answered as soon as every series reached the quorum (or cannot), within one
//! `--receive-forward-timeout` for the whole fan-out; writes still in flight then finish on
//! their own. A peer that answered Unavailable (or could not be dialed) is skipped for a
//! backoff of 100 ms doubling up to `--receive-forward-max-backoff`.

pub mod quorum;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::{Mutex, RwLock};
use prometheus::{HistogramVec, IntCounterVec, IntGauge};
use ringest_grpc::{Channel, ChannelOptions, Code, Compression, Encoded, SharedStart};
use ringest_hashring::MultiHashring;
use ringest_trace::{KeyValue, Span};
use tokio::sync::{Semaphore, mpsc};

use crate::outcome::{Outcome, WriteStatus};
use crate::remote_write::{Decoded, write_thanos_request_end, write_thanos_series};
pub use quorum::{Failure, Quorum};

/// The replication RPC.
pub const REMOTE_WRITE_PATH: &str = "/thanos.WriteableStore/RemoteWrite";

/// Largest gRPC message sent or accepted.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--receive.replication-factor`.
    pub replication_factor: usize,
    /// `--receive.local-endpoint` (`None`: RouterOnly, nothing is written locally).
    pub local_endpoint: Option<String>,
    /// `--receive-forward-timeout`.
    pub forward_timeout: Duration,
    /// `--receive-forward-max-backoff`.
    pub max_backoff: Duration,
    /// `--receive.grpc-compression`.
    pub compression: Compression,
    /// `--receive.forward.async-workers`: concurrent calls per peer.
    pub async_workers: usize,
    /// `--remote-write.client-tls-*`: TLS towards peers (`None`: plain).
    pub tls: Option<ringest_tls::Connector>,
    /// Opens connections to peers in place of TCP (`None`: TCP; the simulation tests set it).
    pub dialer: Option<Arc<dyn ringest_grpc::Dialer>>,
}

/// Replication metrics (Thanos' names).
#[derive(Debug, Clone)]
pub struct ReplicationMetrics {
    /// `thanos_receive_replications_total{result}`.
    pub replications: IntCounterVec,
    /// Operations guide: `thanos_receive_replication_requests_total{result}`.
    pub replication_requests: IntCounterVec,
    /// `thanos_receive_forward_requests_total{result}`.
    pub forward_requests: IntCounterVec,
    /// `thanos_receive_forward_delay_seconds{worker}`: time waiting for a peer worker.
    pub forward_delay: HistogramVec,
    /// `ringest_receive_forwards_in_flight`: forwards to peers not answered yet, including the
    /// replicas still on their way after a write's quorum was answered.
    pub forwards_in_flight: IntGauge,
}

impl ReplicationMetrics {
    /// Registers the metrics.
    pub fn new(r: &prometheus::Registry) -> Result<ReplicationMetrics, prometheus::Error> {
        use crate::metrics::register as reg;
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = reg(r, IntCounterVec::new(prometheus::Opts::new(name, help), &["result"])?)?;
            for res in ["success", "error"] {
                c.with_label_values(&[res]);
            }
            Ok(c)
        };
        Ok(ReplicationMetrics {
            replications: counter("thanos_receive_replications_total", "The number of replication operations done by the receiver. The success of replication is fulfilled when a quorum is met.")?,
            replication_requests: counter("thanos_receive_replication_requests_total", "The number of replicated write requests by result (operations guide).")?,
            forward_requests: counter("thanos_receive_forward_requests_total", "The number of forward requests.")?,
            forward_delay: reg(
                r,
                HistogramVec::new(
                    prometheus::HistogramOpts::new("thanos_receive_forward_delay_seconds", "The delay between the time the request was received and the time it was forwarded to a worker.")
                        .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
                    &["worker"],
                )?,
            )?,
            forwards_in_flight: reg(
                r,
                IntGauge::new(
                    "ringest_receive_forwards_in_flight",
                    "Forwards to peers not answered yet, including replicas still on their way after a quorum answer.",
                )?,
            )?,
        })
    }
}

/// Backoff of one peer.
#[derive(Debug, Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
    /// Jitter source: a xorshift state seeded from this node's and the peer's addresses, so
    /// routers do not retry a peer in lockstep, and a simulation replays the same delays.
    jitter: u64,
}

/// A peer receiver: a gRPC channel, its worker slots and its backoff.
pub struct Peer {
    address: String,
    channel: Channel,
    workers: Semaphore,
    backoff: Mutex<Backoff>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Peer {
    fn new(address: &str, opts: &Options) -> Peer {
        let channel = Channel::new(
            address.to_string(),
            ChannelOptions {
                compression: opts.compression,
                max_message_bytes: MAX_MESSAGE_BYTES,
                connect_timeout: opts.forward_timeout,
                keepalive: Duration::from_secs(10),
                tls: opts.tls.clone(),
                dialer: opts.dialer.clone(),
            },
        );
        let me = opts.local_endpoint.as_deref().unwrap_or_default();
        let seed = xxhash_rust::xxh3::xxh3_64(format!("{me} {address}").as_bytes()) | 1;
        Peer {
            address: address.to_string(),
            channel,
            workers: Semaphore::new(opts.async_workers.max(1)),
            backoff: Mutex::new(Backoff { jitter: seed, ..Backoff::default() }),
        }
    }

    fn backing_off(&self) -> bool {
        self.backoff.lock().until.is_some_and(|u| Instant::now() < u)
    }

    fn mark_down(&self, max: Duration) {
        let mut b = self.backoff.lock();
        b.delay = if b.delay.is_zero() { Duration::from_millis(100) } else { (b.delay * 2).min(max) };
        // Jitter: up to a fifth less, so peers do not retry in lockstep.
        b.jitter ^= b.jitter << 13;
        b.jitter ^= b.jitter >> 7;
        b.jitter ^= b.jitter << 17;
        let jitter = b.delay.as_nanos() as u64 / 5 * (b.jitter % 100) / 100;
        b.until = Some(Instant::now() + b.delay - Duration::from_nanos(jitter));
    }

    fn mark_up(&self) {
        let mut b = self.backoff.lock();
        if b.until.is_some() {
            *b = Backoff { jitter: b.jitter, ..Backoff::default() };
        }
    }

    async fn send(
        &self,
        body: Encoded,
        deadline: Instant,
        opts: &Options,
        m: &ReplicationMetrics,
        span: &Span,
    ) -> Result<(), Failure> {
        let fail = |outcome, e: &dyn std::fmt::Display| Failure {
            outcome,
            message: format!("forwarding request to endpoint {}: {e}", self.address),
        };
        if self.backing_off() {
            return Err(fail(Outcome::Unavailable, &"backing off forward request: target not available"));
        }
        let waited = Instant::now();
        let _slot = match tokio::time::timeout_at(deadline, self.workers.acquire()).await {
            Ok(Ok(s)) => s,
            _ => return Err(fail(Outcome::Internal, &"context deadline exceeded (waiting for a forward worker)")),
        };
        m.forward_delay.with_label_values(&[&self.address]).observe(waited.elapsed().as_secs_f64());
        let left = deadline.saturating_duration_since(Instant::now());
        let call = span.client(REMOTE_WRITE_PATH, || vec![KeyValue::new("component", "gRPC")]);
        let mut metadata = http::HeaderMap::new();
        call.inject(&mut metadata);
        let r = self.channel.unary_encoded_with_metadata(REMOTE_WRITE_PATH, body, left, &metadata).await;
        if let Err(st) = &r {
            call.fail(&st.to_string());
        }
        drop(call);
        match r {
            Ok(_) => {
                self.mark_up();
                Ok(())
            }
            Err(st) => {
                let outcome = outcome_of(st.code);
                if outcome == Outcome::Unavailable {
                    self.mark_down(opts.max_backoff);
                }
                Err(fail(outcome, &st))
            }
        }
    }
}

/// What a peer's gRPC status code says of its write (the gRPC client's edge; the server's is
/// `grpc::code_of`): Thanos' receivers answer conflicts with `AlreadyExists`, invalid
/// input with `InvalidArgument`, an unready or failing TSDB with `Unavailable`, and bounds and
/// limits with `ResourceExhausted`.
pub fn outcome_of(code: Code) -> Outcome {
    match code {
        Code::Ok => Outcome::Ok,
        Code::AlreadyExists => Outcome::Conflict,
        Code::InvalidArgument => Outcome::Invalid,
        Code::Unavailable => Outcome::Unavailable,
        Code::ResourceExhausted => Outcome::Limited,
        _ => Outcome::Internal,
    }
}

/// The loaded hashring and the peers it names.
#[derive(Debug)]
pub struct RingState {
    /// The rings.
    pub ring: MultiHashring,
    peers: HashMap<String, Arc<Peer>>,
}

/// Routes writes over the hashring.
#[derive(Debug)]
pub struct Replicator {
    state: RwLock<Arc<RingState>>,
    opts: Options,
    metrics: ReplicationMetrics,
    /// Forwards in flight, the ones still running after their request was answered included.
    in_flight: Arc<tokio::sync::watch::Sender<usize>>,
}

/// A write whose groups are in flight.
#[derive(Debug)]
pub struct Pending {
    quorum: Quorum,
    groups: Vec<Vec<u32>>,
    rx: mpsc::UnboundedReceiver<(usize, Result<(), Failure>)>,
    deadline: Instant,
    metrics: ReplicationMetrics,
    /// What this node refused before routing (samples too far in the future), part of the
    /// answer.
    refused: Option<WriteStatus>,
    /// `receive_fanout_forward`, ended when the verdict is known.
    span: Span,
}

impl Pending {
    /// Adds to the answer what this node refused before routing: the answer is that refusal
    /// when the replicas succeeded, else the replicas' failure (whose retry refuses it again).
    pub fn with_refused(mut self, refused: WriteStatus) -> Pending {
        self.refused = Some(refused);
        self
    }

    /// Waits until every series is decided or the forward timeout passed; the verdict.
    pub async fn wait(mut self) -> WriteStatus {
        let refused = self.refused.take();
        let span = std::mem::take(&mut self.span);
        let verdict = self.wait_quorum().await;
        if !verdict.is_ok() {
            span.fail(&verdict.message);
        }
        drop(span);
        match refused {
            Some(r) if verdict.is_ok() => r,
            _ => verdict,
        }
    }

    async fn wait_quorum(mut self) -> WriteStatus {
        let mut reported = vec![false; self.groups.len()];
        let mut outstanding = self.groups.len();
        while outstanding > 0 && !self.quorum.done() {
            match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
                Ok(Some((g, r))) => {
                    reported[g] = true;
                    outstanding -= 1;
                    let result = if r.is_ok() { "success" } else { "error" };
                    self.metrics.forward_requests.with_label_values(&[result]).inc();
                    self.quorum.record(&self.groups[g], r.as_ref().map(|_| ()));
                }
                Ok(None) => break,
                Err(_) => {
                    let late = Failure { outcome: Outcome::Internal, message: "context deadline exceeded".into() };
                    for (g, done) in reported.iter().enumerate() {
                        if !done {
                            self.metrics.forward_requests.with_label_values(&["error"]).inc();
                            self.quorum.record(&self.groups[g], Err(&late));
                        }
                    }
                    outstanding = 0;
                    break;
                }
            }
        }
        let v = self.quorum.verdict();
        if outstanding > 0 {
            // Writes still in flight after an early answer are counted when they end.
            let (mut rx, metrics) = (self.rx, self.metrics.clone());
            tokio::spawn(async move {
                while let Some((_, r)) = rx.recv().await {
                    let result = if r.is_ok() { "success" } else { "error" };
                    metrics.forward_requests.with_label_values(&[result]).inc();
                }
            });
        }
        let result = if v.is_ok() { "success" } else { "error" };
        self.metrics.replications.with_label_values(&[result]).inc();
        self.metrics.replication_requests.with_label_values(&[result]).inc();
        if v.is_ok() {
            for f in self.quorum.failures() {
                tracing::debug!(err = %f, "request failed, but not needed to achieve quorum");
            }
            tracing::debug!("replication succeeded");
        }
        v
    }
}

/// Counts a forward as in flight until dropped.
struct Forwarding(Arc<tokio::sync::watch::Sender<usize>>, IntGauge);

impl Forwarding {
    fn start(counter: &Arc<tokio::sync::watch::Sender<usize>>, gauge: &IntGauge) -> Forwarding {
        counter.send_modify(|n| *n += 1);
        gauge.inc();
        Forwarding(counter.clone(), gauge.clone())
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
        self.1.dec();
    }
}

impl Replicator {
    /// A replicator over `ring`.
    pub fn new(ring: MultiHashring, opts: Options, metrics: ReplicationMetrics) -> Replicator {
        let state = Self::state_for(ring, &opts, &HashMap::new());
        let in_flight = Arc::new(tokio::sync::watch::Sender::new(0));
        Replicator { state: RwLock::new(Arc::new(state)), opts, metrics, in_flight }
    }

    /// Waits until no forward is in flight: at shutdown, once nothing new can arrive, so the
    /// replicas still on their way after a quorum answer reach their peers (each is bounded by
    /// the forward timeout).
    pub async fn drained(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn state_for(ring: MultiHashring, opts: &Options, old: &HashMap<String, Arc<Peer>>) -> RingState {
        let mut peers = HashMap::new();
        for ep in ring.endpoints() {
            if Some(&ep.address) == opts.local_endpoint.as_ref()
                || Some(&ep.capnproto_address) == opts.local_endpoint.as_ref()
            {
                continue;
            }
            // Connections to endpoints that stay are kept; their backoff is reset (Thanos).
            let peer = match old.get(&ep.address) {
                Some(p) => {
                    p.mark_up();
                    p.clone()
                }
                None => Arc::new(Peer::new(&ep.address, opts)),
            };
            peers.insert(ep.address.clone(), peer);
        }
        RingState { ring, peers }
    }

    /// Replaces the hashring (hot reload): new writes use it at once; writes in flight finish
    /// on the old one.
    pub fn set_ring(&self, ring: MultiHashring) {
        let old = self.state.read().clone();
        let state = Self::state_for(ring, &self.opts, &old.peers);
        *self.state.write() = Arc::new(state);
    }

    /// The current rings.
    pub fn state(&self) -> Arc<RingState> {
        self.state.read().clone()
    }

    /// Whether `address` is this node or a peer not in backoff.
    pub fn peer_available(&self, address: &str) -> bool {
        self.state().peers.get(address).is_none_or(|p| !p.backing_off())
    }

    /// The settings.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn is_local(&self, address: &str, capnp: &str) -> bool {
        self.opts.local_endpoint.as_deref().is_some_and(|l| l == address || l == capnp)
    }

    /// Distributes the series of a fresh write `req` (decoded from `buf`) for `tenant` to RF
    /// replicas: remote groups are sent at once (on the runtime of the calling blocking
    /// thread), the local one is written with `local` before this returns. (A write that
    /// carries a replica number is never routed: its receiver writes it.) `span` (Thanos'
    /// `receive_fanout_forward`) holds a `receive_forward` span per remote group and lasts
    /// until the verdict.
    pub fn route(
        &self,
        tenant: &str,
        buf: &[u8],
        req: &Decoded,
        local: &mut LocalWrite<'_>,
        span: Span,
    ) -> Result<Pending, Failure> {
        let rf = self.opts.replication_factor;
        let deadline = Instant::now() + self.opts.forward_timeout;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = self.state();
        let other = |e: ringest_hashring::HashringError| Failure { outcome: Outcome::Internal, message: e.to_string() };
        let ring = state.ring.for_tenant(tenant).map_err(other)?;
        let endpoints = ring.endpoints();
        // Group of each (endpoint index, replica index), u32::MAX until the first series.
        let mut group_of = vec![u32::MAX; endpoints.len() * rf];
        let mut keys: Vec<(usize, usize)> = Vec::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for (i, s) in req.series.iter().enumerate() {
            let spans = &req.labels[s.labels_start as usize..s.labels_end as usize];
            let hash =
                ringest_hashring::series_hash(tenant.as_bytes(), spans.iter().map(|l| (l.name(buf), l.value(buf))));
            for n in 0..rf {
                let e = ring.get_n_index(hash, n).map_err(other)?;
                let slot = &mut group_of[e * rf + n];
                if *slot == u32::MAX {
                    *slot = groups.len() as u32;
                    groups.push(Vec::new());
                    keys.push((e, n));
                }
                groups[*slot as usize].push(i as u32);
            }
        }
        let quorum = Quorum::new(req.series.len(), rf as u32, ringest_hashring::write_quorum(rf) as u32);
        let mut local_groups = Vec::new();
        // Encoded series of the groups sent so far: groups with the same series (in a ring of
        // RF nodes, the series of one home go to each peer under another replica number)
        // share them, encoded and compressed once.
        let mut starts: Vec<(usize, SharedStart)> = Vec::new();
        for (g, &(e, n)) in keys.iter().enumerate() {
            let ep = &endpoints[e];
            if self.is_local(&ep.address, &ep.capnproto_address) {
                local_groups.push(g);
                continue;
            }
            let Some(peer) = state.peers.get(&ep.address).cloned() else {
                let _ = tx.send((
                    g,
                    Err(Failure {
                        outcome: Outcome::Internal,
                        message: format!("no connection to endpoint {}", ep.address),
                    }),
                ));
                continue;
            };
            let failed = |st: ringest_grpc::Status| Failure { outcome: Outcome::Internal, message: st.message };
            let start = match starts.iter().find(|(h, _)| groups[*h] == groups[g]) {
                Some((_, start)) => start.clone(),
                None => {
                    // Compressed as it is built, a window at a time, while the copied series
                    // are in cache.
                    let size: usize = groups[g].iter().map(|&i| req.series[i as usize].raw(buf).len() + 6).sum();
                    let mut enc = self.opts.compression.encoder(size);
                    let series = groups[g].iter().map(|&i| req.series[i as usize].raw(buf));
                    write_thanos_series(series, &mut |b| enc.write(b)).map_err(failed)?;
                    let start = enc.share().map_err(failed)?;
                    starts.push((g, start.clone()));
                    start
                }
            };
            let mut enc = start.encoder();
            let msg = write_thanos_request_end(tenant, n as i64 + 1, &mut |b| enc.write(b))
                .and_then(|()| enc.finish())
                .map_err(failed)?;
            let (tx, opts, metrics) = (tx.clone(), self.opts.clone(), self.metrics.clone());
            let forwarding = Forwarding::start(&self.in_flight, &self.metrics.forwards_in_flight);
            let forward = forward_span(&span, ep, Some(n));
            tokio::runtime::Handle::current().spawn(async move {
                let r = peer.send(msg, deadline, &opts, &metrics, &forward).await;
                if let Err(f) = &r {
                    forward.fail(&f.message);
                }
                drop(forward);
                let _ = tx.send((g, r));
                drop(forwarding);
            });
        }
        // This node's groups (one per replica index it holds) are written as one append, in
        // request order; the outcome counts for each of them.
        if !local_groups.is_empty() {
            let mut select: Vec<u32> = local_groups.iter().flat_map(|&g| groups[g].iter().copied()).collect();
            select.sort_unstable();
            select.dedup();
            let forward = forward_span(&span, &endpoints[keys[local_groups[0]].0], None);
            let r = local(&select, &forward);
            if let Err(f) = &r {
                forward.fail(&f.message);
            }
            drop(forward);
            for g in local_groups {
                let _ = tx.send((g, r.clone()));
            }
        }
        Ok(Pending { quorum, groups, rx, deadline, metrics: self.metrics.clone(), refused: None, span })
    }
}

/// Writes this node's series (the positions given) under the `receive_forward` span given.
pub type LocalWrite<'a> = dyn FnMut(&[u32], &Span) -> Result<(), Failure> + 'a;

/// A `receive_forward` span under `fanout`, with Thanos' attributes: the endpoint as its
/// `String()` prints it and the replica index as text (none for this node's own groups, which
/// are written in one append whatever their replica indexes).
fn forward_span(fanout: &Span, ep: &ringest_hashring::Endpoint, replica: Option<usize>) -> Span {
    fanout.child("receive_forward", || {
        let endpoint = format!("addr: {}, capnp_addr: {}, az: {}", ep.address, ep.capnproto_address, ep.az);
        let mut attrs = vec![KeyValue::new("endpoint", endpoint)];
        if let Some(n) = replica {
            attrs.push(KeyValue::new("replica", n.to_string()));
        }
        attrs
    })
}

#[cfg(test)]
mod tests {
    //! The quorum truth table through the real router and gRPC client, with fake peers; what
    //! each peer receives, with peers that record it.

    use super::*;
    use crate::remote_write::{Shape, decode_thanos_write_request, decode_write_request};
    use bytes::Bytes;
    use prost::Message;
    use ringest_grpc::{Server, Status, UnaryHandler};
    use ringest_proto::prometheus as pb;
    use std::future::Future;

    /// A peer that answers every write with `code` (`None`: OK).
    struct Fake(Option<Code>);

    impl UnaryHandler for Fake {
        fn call(
            &self,
            _: ringest_grpc::Message,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + '_>> {
            let code = self.0;
            Box::pin(async move {
                match code {
                    None => Ok(Bytes::new()),
                    Some(code) => Err(Status::new(code, "fake peer")),
                }
            })
        }
    }

    /// A peer: `Some(outcome)` serves it, `None` is a closed port.
    async fn peer(outcome: Option<Option<Code>>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        match outcome {
            Some(o) => {
                let s = Server::new(MAX_MESSAGE_BYTES).route(REMOTE_WRITE_PATH, Arc::new(Fake(o)));
                tokio::spawn(s.serve(l, std::future::pending()));
            }
            None => drop(l),
        }
        addr
    }

    /// An RF=3 hashmod ring of this node and two peers, as this node's replicator.
    fn ring_of(peers: [&str; 2], compression: Compression, timeout: Duration) -> Replicator {
        let me = "127.0.0.1:1".to_string();
        let json = format!(r#"[{{"hashring": "r", "endpoints": ["{me}", "{}", "{}"]}}]"#, peers[0], peers[1]);
        let parsed = ringest_hashring::parse_config(&json).unwrap();
        let ring = MultiHashring::new(&parsed.rings, ringest_hashring::Algorithm::Hashmod, 3).unwrap();
        let opts = Options {
            replication_factor: 3,
            local_endpoint: Some(me),
            forward_timeout: timeout,
            max_backoff: Duration::from_secs(1),
            compression,
            async_workers: 2,
            tls: None,
            dialer: None,
        };
        Replicator::new(ring, opts, ReplicationMetrics::new(&prometheus::Registry::new()).unwrap())
    }

    /// A remote-write request of `n` series with the labels `labels(i)`, encoded and decoded.
    fn request(n: usize, labels: impl Fn(usize) -> Vec<pb::Label>) -> (Vec<u8>, Decoded) {
        let req = pb::WriteRequest {
            timeseries: (0..n)
                .map(|i| pb::TimeSeries {
                    labels: labels(i),
                    samples: vec![pb::Sample { value: i as f64, timestamp: 1 }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let buf = req.encode_to_vec();
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        (buf, d)
    }

    /// RF=3 over this node and two peers; every series goes to all three.
    async fn verdict(local: Option<Outcome>, p1: Option<Option<Code>>, p2: Option<Option<Code>>) -> Outcome {
        let (a1, a2) = (peer(p1).await, peer(p2).await);
        let rep = ring_of([&a1, &a2], Compression::Snappy, Duration::from_secs(2));
        let name = |i: usize| vec![pb::Label { name: "__name__".into(), value: format!("s{i}") }];
        let (buf, d) = request(10, name);
        let mut calls = Vec::new();
        let mut local_write = |select: &[u32], _: &Span| {
            calls.push(select.to_vec());
            match local {
                None => Ok(()),
                Some(outcome) => Err(Failure { outcome, message: "local".into() }),
            }
        };
        let status = rep.route("t", &buf, &d, &mut local_write, Span::none()).unwrap().wait().await.outcome;
        // Every series has one replica here, whatever its replica index: one append of all
        // of them, in request order.
        assert_eq!(calls, vec![(0..10).collect::<Vec<u32>>()]);
        status
    }

    #[tokio::test]
    async fn thanos_truth_table_with_fake_peers() {
        use Code::*;
        use Outcome as O;
        let ok = Some(None);
        let code = |c| Some(Some(c));
        assert_eq!(verdict(None, ok, ok).await, O::Ok);
        assert_eq!(verdict(None, ok, code(Unavailable)).await, O::Ok, "one faulty");
        assert_eq!(verdict(None, ok, None).await, O::Ok, "one peer down");
        assert_eq!(verdict(None, code(AlreadyExists), code(AlreadyExists)).await, O::Conflict, "two conflicts");
        assert_eq!(verdict(Some(O::Conflict), code(AlreadyExists), ok).await, O::Conflict, "local conflict too");
        assert_eq!(verdict(None, code(AlreadyExists), code(Internal)).await, O::Unavailable, "conflict + commit");
        assert_eq!(verdict(None, code(Internal), code(Internal)).await, O::Unavailable, "two commit errors");
        assert_eq!(verdict(None, None, None).await, O::Unavailable, "two peers down");
        assert_eq!(verdict(Some(O::NotReady), code(Unavailable), ok).await, O::Unavailable);
        assert_eq!(verdict(None, code(InvalidArgument), code(InvalidArgument)).await, O::Invalid);
    }

    /// A message a recording peer got: replica number, tenant, each series' encoded bytes.
    type Received = (i64, String, Vec<u8>);

    /// A peer that decodes and records every write it gets.
    struct Recorder(Arc<Mutex<Vec<Received>>>);

    impl UnaryHandler for Recorder {
        fn call(
            &self,
            m: ringest_grpc::Message,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + '_>> {
            Box::pin(async move {
                let bytes = m.into_bytes()?;
                let w = decode_thanos_write_request(&bytes, &Shape::default())
                    .map_err(|e| Status::new(Code::InvalidArgument, e.to_string()))?;
                let mut log = self.0.lock();
                for (tenant, d) in &w.tenants {
                    log.extend(d.series.iter().map(|s| (w.replica, tenant.clone(), s.raw(&bytes).to_vec())));
                }
                Ok(Bytes::new())
            })
        }
    }

    /// In a ring of three with RF=3 the series of each home go to both peers under different
    /// replica numbers, and share one encoded copy: every peer still gets every series it is a
    /// replica of, exactly once, with the replica number of that placement, compressed or not.
    #[tokio::test]
    async fn peers_get_each_series_once_with_its_own_replica_number() {
        for compression in [Compression::Snappy, Compression::None] {
            let mut peers = Vec::new();
            for _ in 0..2 {
                let log: Arc<Mutex<Vec<Received>>> = Arc::default();
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap().to_string();
                let s = Server::new(MAX_MESSAGE_BYTES).route(REMOTE_WRITE_PATH, Arc::new(Recorder(log.clone())));
                tokio::spawn(s.serve(l, std::future::pending()));
                peers.push((addr, log));
            }
            let rep = ring_of([&peers[0].0, &peers[1].0], compression, Duration::from_secs(5));
            let (buf, d) = request(400, |i| {
                vec![
                    pb::Label { name: "__name__".into(), value: format!("s{i}") },
                    pb::Label { name: "job".into(), value: "x".repeat(i * 37 % 500) },
                ]
            });
            // What each peer must get: (replica number, tenant, series) for every placement on it.
            let state = rep.state();
            let ring = state.ring.for_tenant("t").unwrap();
            let mut want: Vec<Vec<Received>> = vec![Vec::new(), Vec::new()];
            for s in &d.series {
                let spans = &d.labels[s.labels_start as usize..s.labels_end as usize];
                let hash = ringest_hashring::series_hash(b"t", spans.iter().map(|l| (l.name(&buf), l.value(&buf))));
                for n in 0..3 {
                    let address = &ring.endpoints()[ring.get_n_index(hash, n).unwrap()].address;
                    if let Some(p) = peers.iter().position(|(a, _)| a == address) {
                        want[p].push((n as i64 + 1, "t".into(), s.raw(&buf).to_vec()));
                    }
                }
            }
            let v = rep.route("t", &buf, &d, &mut |_, _| Ok(()), Span::none()).unwrap().wait().await;
            assert!(v.is_ok(), "{compression:?}: {}", v.message);
            // The answer comes at quorum; wait for the other peer's copy too.
            let deadline = Instant::now() + Duration::from_secs(5);
            while peers.iter().zip(&want).any(|((_, log), w)| log.lock().len() < w.len()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for ((_, log), mut w) in peers.iter().zip(want) {
                let mut got = log.lock().clone();
                got.sort();
                w.sort();
                assert_eq!(got.len(), 400, "{compression:?}: every series on every peer (RF=3 of 3)");
                assert_eq!(got, w, "{compression:?}");
            }
        }
    }
}
