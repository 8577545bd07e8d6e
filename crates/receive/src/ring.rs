//! The hashring configuration: loaded at start-up (a file that does not parse stops the
//! process), then watched (Thanos' `ConfigWatcher`, shared spec §4.7). The file is checked
//! every half second (size and modification time, which also catches Kubernetes' ConfigMap
//! symlink swaps that file watches lose) and re-read every
//! `--receive.hashrings-file-refresh-interval`; a change is detected by the SHA-256 of its
//! bytes. A new ring is applied without a restart, without a flush and without leaving the
//! ready state; content that does not parse keeps the old ring, is logged and counted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus::{Gauge, IntCounter, IntGaugeVec, Opts, Registry};
use ringest_hashring::{MultiHashring, parse_config};
use sha2::{Digest, Sha256};

use crate::config::{RingConfig, RingSource};
use crate::metrics::register as reg;
use crate::replicate::Replicator;

/// How often the file's size and modification time are checked.
const POLL: Duration = Duration::from_millis(500);

/// `thanos_receive_hashring*` and `thanos_receive_config*` metrics.
#[derive(Debug, Clone)]
pub struct RingMetrics {
    /// `thanos_receive_hashring_tenants{name}`.
    pub tenants: IntGaugeVec,
    /// `thanos_receive_hashrings_file_changes_total`.
    pub changes: IntCounter,
    /// `thanos_receive_hashrings_file_errors_total`.
    pub errors: IntCounter,
    /// `thanos_receive_hashrings_file_refreshes_total`.
    pub refreshes: IntCounter,
    /// `thanos_receive_config_hash`.
    pub hash: Gauge,
    /// `thanos_receive_config_last_reload_successful`.
    pub last_ok: Gauge,
    /// `thanos_receive_config_last_reload_success_timestamp_seconds`.
    pub last_ok_time: Gauge,
    /// `thanos_receive_replication_factor`.
    pub replication_factor: Gauge,
}

impl RingMetrics {
    /// Registers the metrics.
    pub fn new(r: &Registry) -> anyhow::Result<RingMetrics> {
        Ok(RingMetrics {
            tenants: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("thanos_receive_hashring_tenants", "The number of tenants per hashring."),
                    &["name"],
                )?,
            )?,
            changes: reg(
                r,
                IntCounter::new(
                    "thanos_receive_hashrings_file_changes_total",
                    "The number of times the hashrings configuration file has changed.",
                )?,
            )?,
            errors: reg(
                r,
                IntCounter::new(
                    "thanos_receive_hashrings_file_errors_total",
                    "The number of errors watching the hashrings configuration file.",
                )?,
            )?,
            refreshes: reg(
                r,
                IntCounter::new(
                    "thanos_receive_hashrings_file_refreshes_total",
                    "The number of refreshes of the hashrings configuration file.",
                )?,
            )?,
            hash: reg(
                r,
                Gauge::new("thanos_receive_config_hash", "Hash of the currently loaded hashring configuration file.")?,
            )?,
            last_ok: reg(
                r,
                Gauge::new(
                    "thanos_receive_config_last_reload_successful",
                    "Whether the last hashring configuration file reload attempt was successful.",
                )?,
            )?,
            last_ok_time: reg(
                r,
                Gauge::new(
                    "thanos_receive_config_last_reload_success_timestamp_seconds",
                    "Timestamp of the last successful hashring configuration file reload.",
                )?,
            )?,
            replication_factor: reg(r, Gauge::new("thanos_receive_replication_factor", "The replication factor.")?)?,
        })
    }

    fn loaded(&self, ring: &MultiHashring, digest: &[u8]) {
        self.tenants.reset();
        for (name, _, tenants) in ring.rings() {
            self.tenants.with_label_values(&[name]).set(tenants as i64);
        }
        // Thanos exports the first 48 bits of the SHA-256 (a float holds them exactly).
        let mut h = 0u64;
        for b in &digest[..6] {
            h = h << 8 | *b as u64;
        }
        self.hash.set(h as f64);
        self.last_ok.set(1.0);
        self.last_ok_time
            .set(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0));
    }
}

/// Parses and builds a hashring from file content.
pub fn build(content: &str, cfg: &RingConfig) -> anyhow::Result<MultiHashring> {
    let parsed = parse_config(content)?;
    for w in &parsed.warnings {
        tracing::warn!(warning = %w, "hashring configuration");
    }
    Ok(MultiHashring::new(&parsed.rings, cfg.algorithm, cfg.replication.replication_factor)?)
}

fn read(source: &RingSource) -> anyhow::Result<String> {
    match source {
        RingSource::File(p) => std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("read {}: {e}", p.display())),
        RingSource::Content(c) => Ok(c.clone()),
    }
}

/// Loads the hashring at start-up.
pub fn load(cfg: &RingConfig, metrics: &RingMetrics) -> anyhow::Result<(MultiHashring, Vec<u8>)> {
    let content = read(&cfg.source)?;
    let ring =
        build(&content, cfg).map_err(|e| anyhow::anyhow!("failed to validate hashring configuration file: {e}"))?;
    let digest = Sha256::digest(content.as_bytes()).to_vec();
    metrics.loaded(&ring, &digest);
    metrics.replication_factor.set(cfg.replication.replication_factor as f64);
    tracing::info!(hashrings = ring.rings().count(), "loaded hashring configuration");
    Ok((ring, digest))
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Watches the hashring file until `stop` and applies changes to `replicator`.
pub async fn watch(
    cfg: RingConfig,
    replicator: Arc<Replicator>,
    metrics: RingMetrics,
    mut digest: Vec<u8>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let RingSource::File(path) = &cfg.source else { return };
    let mut last_stamp = stamp(path);
    let mut last_refresh = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now_stamp = stamp(path);
        let refresh = last_refresh.elapsed() >= cfg.refresh;
        if now_stamp == last_stamp && !refresh {
            continue;
        }
        last_stamp = now_stamp;
        if refresh {
            last_refresh = Instant::now();
            metrics.refreshes.inc();
        }
        let content = match read(&cfg.source) {
            Ok(c) => c,
            Err(e) => {
                metrics.errors.inc();
                metrics.last_ok.set(0.0);
                tracing::error!(err = %e, "failed to load configuration file");
                continue;
            }
        };
        let d = Sha256::digest(content.as_bytes()).to_vec();
        if d == digest {
            // The file holds the running configuration again (e.g. a bad edit was reverted):
            // the last reload no longer failed.
            metrics.last_ok.set(1.0);
            tracing::debug!("refreshed hashring config");
            continue;
        }
        metrics.changes.inc();
        match build(&content, &cfg) {
            Ok(ring) => {
                metrics.loaded(&ring, &d);
                tracing::info!(hashrings = ring.rings().count(), "loaded hashring configuration");
                replicator.set_ring(ring);
                digest = d;
            }
            Err(e) => {
                metrics.errors.inc();
                metrics.last_ok.set(0.0);
                tracing::error!(err = %e, "failed to load configuration file");
                // Keep the bad content's digest out: a fix back to the old text is a change too.
            }
        }
    }
}

/// `thanos_receive_hashring_nodes`: Thanos' `{name}` series (nodes per hashring) on every node,
/// and, for the operations guide's alert
/// `count(thanos_receive_hashring_nodes{state="active"}) != count(up{job="thanos-receive"} == 1)`,
/// one `{name, node, state="active"}` series per member of the hashring, exported by one node
/// of the ring only: the first member, in hashring order, that this node sees up (itself, or a
/// peer not in backoff). The count is then the hashring's size whichever nodes are scraped:
/// equal to the number of receivers up on a healthy ring; more when a member is down (its
/// peers take over the export when the first member goes, once forwards to it fail), or when a
/// node left the hashring but still runs.
///
/// Beside it, `ringest_receive_peer_up{node}` on every node: 1 for each peer of its hashrings
/// it can forward to, 0 while the peer is in backoff after failed forwards.
#[derive(Debug)]
pub struct HashringNodes {
    replicator: Arc<Replicator>,
    desc: prometheus::core::Desc,
    peer_up: prometheus::core::Desc,
}

impl HashringNodes {
    /// The collector over `replicator`'s current ring.
    pub fn new(replicator: Arc<Replicator>) -> anyhow::Result<HashringNodes> {
        let desc = prometheus::core::Desc::new(
            "thanos_receive_hashring_nodes".into(),
            "The number of nodes per hashring.".into(),
            vec!["name".into()],
            Default::default(),
        )?;
        let peer_up = prometheus::core::Desc::new(
            "ringest_receive_peer_up".into(),
            "Whether this node forwards to the peer (1), or holds off after failed forwards (0).".into(),
            vec!["node".into()],
            Default::default(),
        )?;
        Ok(HashringNodes { replicator, desc, peer_up })
    }
}

impl prometheus::core::Collector for HashringNodes {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc, &self.peer_up]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto::{Gauge as G, LabelPair, Metric, MetricFamily, MetricType};
        let pair = |n: &str, v: &str| {
            let mut l = LabelPair::default();
            l.set_name(n.into());
            l.set_value(v.into());
            l
        };
        let gauge = |labels: Vec<LabelPair>, v: f64| {
            let mut g = G::default();
            g.set_value(v);
            let mut m = Metric::default();
            m.set_label(labels);
            m.set_gauge(g);
            m
        };
        let mut mf = MetricFamily::default();
        mf.set_name("thanos_receive_hashring_nodes".into());
        mf.set_help("The number of nodes per hashring.".into());
        mf.set_field_type(MetricType::GAUGE);
        let me = self.replicator.options().local_endpoint.clone();
        let rings = self.replicator.state().ring.to_json();
        let mut peers = std::collections::BTreeSet::new();
        for ring in rings.as_array().map(Vec::as_slice).unwrap_or_default() {
            let name = ring["hashring"].as_str().unwrap_or_default();
            let eps = ring["endpoints"].as_array().map(Vec::as_slice).unwrap_or_default();
            mf.mut_metric().push(gauge(vec![pair("name", name)], eps.len() as f64));
            let addrs: Vec<&str> = eps.iter().map(|ep| ep["address"].as_str().unwrap_or_default()).collect();
            let is_me = |a: &str| me.as_deref() == Some(a);
            peers.extend(addrs.iter().filter(|&&a| !is_me(a)).map(|a| a.to_string()));
            let exporter = addrs.iter().find(|&&a| is_me(a) || self.replicator.peer_available(a));
            if !exporter.is_some_and(|&a| is_me(a)) {
                continue;
            }
            for addr in &addrs {
                mf.mut_metric().push(gauge(vec![pair("name", name), pair("node", addr), pair("state", "active")], 1.0));
            }
        }
        let mut up = MetricFamily::default();
        up.set_name("ringest_receive_peer_up".into());
        up.set_help("Whether this node forwards to the peer (1), or holds off after failed forwards (0).".into());
        up.set_field_type(MetricType::GAUGE);
        for peer in &peers {
            let v = if self.replicator.peer_available(peer) { 1.0 } else { 0.0 };
            up.mut_metric().push(gauge(vec![pair("node", peer)], v));
        }
        vec![mf, up]
    }
}
