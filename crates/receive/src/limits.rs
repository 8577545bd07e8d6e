//! Thanos' write limits (`--receive.limits-config-file` / `--receive.limits-config`), applied to
//! clients' remote-write requests on the HTTP port, as Thanos applies them (peers replicating
//! over gRPC are not limited again):
//!
//! - `write.global.max_concurrency`: a gate; a request waits for a slot, at most the body read
//!   timeout (then 503 with `Retry-After`);
//! - `request.size_bytes_limit`, `series_limit`, `samples_limit` per tenant: 413, naming the
//!   limit; the size is checked on the declared body length before reading it and on the
//!   declared decompressed length before decompressing;
//! - `head_series_limit`: 429 for the whole request while the tenant's head series across the
//!   ring are at or over it. The count comes from the meta-monitoring Prometheus when
//!   `meta_monitoring_url` is set (as in Thanos), else from this node's own head: see
//!   [`ring_estimate`].
//!
//! The file is read again every `--receive.limits-config-reload-timer` and applied when its
//! content changed; a file that does not parse keeps the limits in force and counts
//! `thanos_receive_limits_config_reload_err_total`.

pub mod client;
pub mod file;
mod meta;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Summary};
use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::TenantLabels;
use crate::outcome::{Outcome, WriteStatus};
use crate::remote_write::Decoded;
pub use file::{LabelLimits, LimitsFile, LimitsFileError, Rate, TenantLimits};

/// Where the limits come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsSource {
    /// `--receive.limits-config-file`: read again on change.
    File(PathBuf),
    /// `--receive.limits-config`: fixed.
    Content(String),
}

/// Why the limits could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The file could not be read.
    #[error("read limits file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content does not parse.
    #[error("parse limit configuration: {0}")]
    File(#[from] LimitsFileError),
}

/// How often the meta-monitoring Prometheus is asked for head series (Thanos' period).
pub const META_MONITORING_INTERVAL: Duration = Duration::from_secs(15);

/// A tenant and the name of a limit it hit.
type HitKey = (String, &'static str);

/// `thanos_receive_write_limits_hit{tenant,limit}`: a summary without quantiles (count and sum
/// of how far past the limit refused requests were).
#[derive(Debug, Clone)]
struct LimitsHit {
    desc: Desc,
    /// `(tenant, limit)` → (count, sum).
    hits: Arc<Mutex<HashMap<HitKey, (u64, f64)>>>,
}

impl LimitsHit {
    fn new() -> LimitsHit {
        let desc = Desc::new(
            "thanos_receive_write_limits_hit".into(),
            "Summary of how much beyond the limit a refused remote write request was.".into(),
            vec!["tenant".into(), "limit".into()],
            HashMap::new(),
        )
        .expect("valid descriptor");
        LimitsHit { desc, hits: Arc::default() }
    }

    fn observe(&self, tenant: &str, limit: &'static str, beyond: f64) {
        let mut hits = self.hits.lock();
        let e = hits.entry((tenant.to_string(), limit)).or_default();
        e.0 += 1;
        e.1 += beyond;
    }
}

impl Collector for LimitsHit {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut mf = MetricFamily::default();
        mf.set_name(self.desc.fq_name.clone());
        mf.set_help(self.desc.help.clone());
        mf.set_field_type(MetricType::SUMMARY);
        let hits = self.hits.lock();
        let mut keys: Vec<_> = hits.keys().collect();
        keys.sort();
        for k in keys {
            let (count, sum) = hits[k];
            let label = |name: &str, value: &str| {
                let mut l = LabelPair::default();
                l.set_name(name.into());
                l.set_value(value.into());
                l
            };
            let mut s = Summary::default();
            s.set_sample_count(count);
            s.set_sample_sum(sum);
            let mut m = Metric::default();
            m.set_label(vec![label("limit", k.1), label("tenant", &k.0)]);
            m.set_summary(s);
            mf.mut_metric().push(m);
        }
        if mf.get_metric().is_empty() { Vec::new() } else { vec![mf] }
    }
}

/// The limits' metrics, with Thanos' names.
#[derive(Debug, Clone)]
pub struct LimitMetrics {
    reloads: IntCounter,
    reload_errors: IntCounter,
    configured: GaugeVec,
    hit: LimitsHit,
    head_series_limit: GaugeVec,
    head_series_limited: IntCounterVec,
    meta_failures: IntCounter,
    gate_max: IntGauge,
    gate_in_flight: IntGauge,
    gate_total: IntCounter,
    gate_seconds: Histogram,
    rate_limited: IntCounterVec,
    label_limited: IntCounterVec,
    /// Tenant label values, capped (shared with the request metrics).
    tenants: TenantLabels,
}

impl LimitMetrics {
    /// Registers the metrics in `r`; tenants are labelled through `tenants`, capped.
    pub fn new(r: &Registry, tenants: TenantLabels) -> prometheus::Result<LimitMetrics> {
        let gate = |name: &str, help: &str| {
            Opts::new(format!("thanos_receive_write_request_concurrent_gate_write_requests_{name}"), help)
        };
        let m = LimitMetrics {
            reloads: IntCounter::new(
                "thanos_receive_limits_config_reload_total",
                "How many times the limit configuration was reloaded",
            )?,
            reload_errors: IntCounter::new(
                "thanos_receive_limits_config_reload_err_total",
                "How many times the limit configuration failed to reload.",
            )?,
            configured: GaugeVec::new(
                Opts::new("thanos_receive_write_limits", "The configured write limits."),
                &["tenant", "limit"],
            )?,
            hit: LimitsHit::new(),
            head_series_limit: GaugeVec::new(
                Opts::new(
                    "thanos_receive_head_series_limit",
                    "The configured limit for active (head) series of tenants.",
                ),
                &["tenant"],
            )?,
            head_series_limited: IntCounterVec::new(
                Opts::new(
                    "thanos_receive_head_series_limited_requests_total",
                    "The total number of remote write requests that have been dropped due to active series limiting.",
                ),
                &["tenant"],
            )?,
            meta_failures: IntCounter::new(
                "thanos_receive_metamonitoring_failed_queries_total",
                "The total number of meta-monitoring queries that failed while limiting.",
            )?,
            gate_max: IntGauge::with_opts(gate("max", "Maximum number of concurrent write_requests."))?,
            gate_in_flight: IntGauge::with_opts(gate(
                "in_flight",
                "Number of write_requests that are currently in flight.",
            ))?,
            gate_total: IntCounter::with_opts(gate("total", "Total number of write_requests."))?,
            gate_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "thanos_receive_write_request_concurrent_gate_write_requests_duration_seconds",
                    "How many seconds it took for write_requests to wait at the gate.",
                )
                .buckets(vec![
                    0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0, 360.0, 720.0,
                ]),
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "ringest_receive_rate_limited_requests_total",
                    "Remote write requests refused with 429 by the tenant's ingestion_rate (limits file).",
                ),
                &["tenant"],
            )?,
            label_limited: IntCounterVec::new(
                Opts::new(
                    "ringest_receive_label_limited_series_total",
                    "Series dropped from remote write requests for the tenant's label limits (limits file).",
                ),
                &["tenant", "limit"],
            )?,
            tenants,
        };
        r.register(Box::new(m.rate_limited.clone()))?;
        r.register(Box::new(m.label_limited.clone()))?;
        r.register(Box::new(m.reloads.clone()))?;
        r.register(Box::new(m.reload_errors.clone()))?;
        r.register(Box::new(m.configured.clone()))?;
        r.register(Box::new(m.hit.clone()))?;
        r.register(Box::new(m.head_series_limit.clone()))?;
        r.register(Box::new(m.head_series_limited.clone()))?;
        r.register(Box::new(m.meta_failures.clone()))?;
        r.register(Box::new(m.gate_max.clone()))?;
        r.register(Box::new(m.gate_in_flight.clone()))?;
        r.register(Box::new(m.gate_total.clone()))?;
        r.register(Box::new(m.gate_seconds.clone()))?;
        Ok(m)
    }
}

/// A slot of the concurrency gate, held until the answer is sent.
#[derive(Debug)]
pub struct GateSlot {
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: Option<IntGauge>,
}

impl Drop for GateSlot {
    fn drop(&mut self) {
        if let Some(g) = &self.in_flight {
            g.dec();
        }
    }
}

/// The limits in force and what applies them.
#[derive(Debug)]
pub struct Limiter {
    source: Option<LimitsSource>,
    current: RwLock<Arc<LimitsFile>>,
    /// The content the limits in force were parsed from.
    loaded: Mutex<String>,
    gate: RwLock<Option<Arc<Semaphore>>>,
    /// Head series per tenant from the meta-monitoring Prometheus (its last good answer).
    meta_counts: RwLock<HashMap<String, f64>>,
    /// Token buckets of `ingestion_rate`, per tenant.
    buckets: Mutex<HashMap<String, Bucket>>,
    metrics: LimitMetrics,
}

/// One tenant's token bucket on this node: samples it may take now.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// Buckets kept before full ones (idle tenants) are dropped: tenant names come from clients.
const MAX_BUCKETS: usize = 10_000;

/// Longest part of a series' labels quoted in an error.
const MAX_QUOTED: usize = 256;

impl Limiter {
    /// Loads the limits from `source` (none: no limits). An error stops the start-up.
    pub fn new(source: Option<LimitsSource>, metrics: LimitMetrics) -> Result<Limiter, LimitsError> {
        let l = Limiter {
            source,
            current: RwLock::new(Arc::new(LimitsFile::default())),
            loaded: Mutex::new(String::new()),
            gate: RwLock::new(None),
            meta_counts: RwLock::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            metrics,
        };
        if let Some(content) = l.read()? {
            l.apply(&content, LimitsFile::parse(&content)?);
        }
        Ok(l)
    }

    fn read(&self) -> Result<Option<String>, LimitsError> {
        match &self.source {
            None => Ok(None),
            Some(LimitsSource::Content(c)) => Ok(Some(c.clone())),
            Some(LimitsSource::File(path)) => std::fs::read_to_string(path)
                .map(Some)
                .map_err(|source| LimitsError::Read { path: path.clone(), source }),
        }
    }

    fn apply(&self, content: &str, file: LimitsFile) {
        let m = &self.metrics;
        m.configured.reset();
        let set = |tenant: &str, t: &TenantLimits| {
            m.configured.with_label_values(&[tenant, "body_size"]).set(t.request.size_bytes as f64);
            m.configured.with_label_values(&[tenant, "series"]).set(t.request.series as f64);
            m.configured.with_label_values(&[tenant, "samples"]).set(t.request.samples as f64);
        };
        set("", &file.default);
        for (tenant, t) in &file.tenants {
            set(tenant, t);
        }
        m.head_series_limit.reset();
        if file.limits_head_series() {
            m.head_series_limit.with_label_values(&[""]).set(file.default.head_series as f64);
            for (tenant, t) in &file.tenants {
                m.head_series_limit.with_label_values(&[tenant]).set(t.head_series as f64);
            }
        }
        let gate = (file.max_concurrency > 0).then(|| Arc::new(Semaphore::new(file.max_concurrency)));
        m.gate_max.set(file.max_concurrency as i64);
        *self.gate.write() = gate;
        *self.current.write() = Arc::new(file);
        *self.loaded.lock() = content.to_string();
    }

    /// The limits in force.
    pub fn limits(&self) -> Arc<LimitsFile> {
        self.current.read().clone()
    }

    /// Reads the file again and applies it if its content changed. A file that cannot be read
    /// or parsed keeps the limits in force; the error is counted and returned.
    pub fn reload(&self) -> Result<bool, LimitsError> {
        let Some(content) = self.read().inspect_err(|_| self.metrics.reload_errors.inc())? else { return Ok(false) };
        if *self.loaded.lock() == content {
            return Ok(false);
        }
        self.metrics.reloads.inc();
        match LimitsFile::parse(&content) {
            Ok(file) => {
                self.apply(&content, file);
                Ok(true)
            }
            Err(e) => {
                self.metrics.reload_errors.inc();
                Err(e.into())
            }
        }
    }

    /// With `--receive.limits-config-file`: reloads every `interval` until `stop`.
    pub async fn run_reload(self: Arc<Self>, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(LimitsSource::File(path)) = &self.source else { return };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match self.reload() {
                Ok(true) => tracing::info!(file = %path.display(), "reloaded limit config"),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    err = %e,
                    "error reloading tenant limits config from {}: the limits in force are kept",
                    path.display()
                ),
            }
        }
    }

    /// Asks the meta-monitoring Prometheus for head series every
    /// [`META_MONITORING_INTERVAL`] while the limits name one, until `stop`.
    pub async fn run_meta_monitoring(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let file = self.limits();
            if let Some(meta) = file.meta_monitoring.as_ref().filter(|_| file.limits_head_series()) {
                match meta::head_series(meta).await {
                    Ok(counts) => {
                        tracing::debug!(tenants = counts.len(), "successfully queried meta-monitoring");
                        self.meta_counts.write().extend(counts);
                    }
                    Err(e) => {
                        self.metrics.meta_failures.inc();
                        tracing::error!(err = %e, url = %meta.url, "querying meta-monitoring failed: head series are not limited meanwhile");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(META_MONITORING_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Waits for a slot of the `max_concurrency` gate, at most `wait`.
    pub async fn enter(&self, wait: Duration) -> Result<GateSlot, WriteStatus> {
        let Some(gate) = self.gate.read().clone() else { return Ok(GateSlot { _permit: None, in_flight: None }) };
        let start = std::time::Instant::now();
        let permit = tokio::time::timeout(wait, gate.acquire_owned()).await;
        self.metrics.gate_seconds.observe(start.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(p)) => {
                self.metrics.gate_total.inc();
                self.metrics.gate_in_flight.inc();
                Ok(GateSlot { _permit: Some(p), in_flight: Some(self.metrics.gate_in_flight.clone()) })
            }
            // Closed: never (the semaphore is only replaced); the wait ran out.
            _ => Err(WriteStatus::new(
                Outcome::Busy,
                format!(
                    "no write slot within {wait:?}: {} write requests are in flight, the limit \
                     (write.global.max_concurrency in the limits file)",
                    self.limits().max_concurrency
                ),
            )),
        }
    }

    fn refuse(&self, tenant: &str, metric: &'static str, what: &str, got: u64, limit: u64, key: &str) -> WriteStatus {
        self.metrics.hit.observe(&self.metrics.tenants.label(tenant), metric, (got - limit) as f64);
        WriteStatus::new(
            Outcome::TooLarge,
            format!("{what}: {got}, over the limit of {limit} ({key} of tenant {tenant:?} in the limits file)"),
        )
    }

    /// `size_bytes_limit`: `bytes` is the body's length, compressed or decompressed.
    pub fn check_size(&self, l: &TenantLimits, tenant: &str, bytes: u64) -> Result<(), WriteStatus> {
        let limit = l.request.size_bytes;
        if limit > 0 && bytes > limit {
            return Err(self.refuse(tenant, "body_size", "write request too large", bytes, limit, "size_bytes_limit"));
        }
        Ok(())
    }

    /// `series_limit` and `samples_limit`.
    pub fn check_counts(&self, l: &TenantLimits, tenant: &str, series: u64, samples: u64) -> Result<(), WriteStatus> {
        let r = &l.request;
        if r.series > 0 && series > r.series {
            return Err(self.refuse(tenant, "series", "too many timeseries", series, r.series, "series_limit"));
        }
        if r.samples > 0 && samples > r.samples {
            return Err(self.refuse(tenant, "samples", "too many samples", samples, r.samples, "samples_limit"));
        }
        Ok(())
    }

    /// `head_series_limit`: refuses the request while `tenant` has at least its limit of head
    /// series across the ring: the meta-monitoring count when one is configured, else
    /// `estimate` (this node's own; `None` when it cannot tell, and the request is allowed,
    /// as Thanos allows a tenant meta-monitoring does not know).
    pub fn check_head_series(
        &self,
        l: &TenantLimits,
        tenant: &str,
        estimate: impl FnOnce() -> Option<u64>,
    ) -> Result<(), WriteStatus> {
        if l.head_series == 0 {
            return Ok(());
        }
        let count = if self.limits().meta_monitoring.is_some() {
            self.meta_counts.read().get(tenant).map(|&v| v.max(0.0) as u64)
        } else {
            estimate()
        };
        match count {
            Some(n) if n >= l.head_series => {
                self.metrics.head_series_limited.with_label_values(&[self.metrics.tenants.label(tenant)]).inc();
                tracing::error!(tenant, current_series = n, limit = l.head_series, "tenant above limit");
                Err(WriteStatus::new(
                    Outcome::Limited,
                    format!(
                        "tenant is above active series limit: {n} head series across the ring, the limit is {} \
                         (head_series_limit of tenant {tenant:?} in the limits file)",
                        l.head_series
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
    /// `ingestion_rate`: takes `samples` from `tenant`'s bucket on this node, which fills at
    /// the rate divided by `nodes` (the nodes of the tenant's ring, among which clients spread
    /// their writes; Mimir's global strategy) up to `ingestion_burst_size`. Refused with 429
    /// and the seconds until the bucket holds enough in `Retry-After`.
    pub fn check_rate(&self, l: &TenantLimits, tenant: &str, samples: u64, nodes: usize) -> Result<(), WriteStatus> {
        let Some(rate) = l.rate else { return Ok(()) };
        let per_second = rate.per_second / nodes.max(1) as f64;
        let refuse = |msg: String, retry_s: u64| {
            self.metrics.rate_limited.with_label_values(&[self.metrics.tenants.label(tenant)]).inc();
            Err(WriteStatus::new(Outcome::Limited, msg).retry_after(retry_s))
        };
        if samples > rate.burst {
            return refuse(
                format!(
                    "ingestion rate limit exceeded: a request of {samples} samples is more than the \
                     ingestion_burst_size {} of tenant {tenant:?} in the limits file; send smaller requests",
                    rate.burst
                ),
                1,
            );
        }
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(tenant) {
            // Full buckets hold nothing worth keeping: a new one starts full too.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < rate.burst as f64);
        }
        if !buckets.contains_key(tenant) {
            buckets.insert(tenant.to_string(), Bucket { tokens: rate.burst as f64, at: now });
        }
        let Some(b) = buckets.get_mut(tenant) else { return Ok(()) };
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_second).min(rate.burst as f64);
        b.at = now;
        if b.tokens >= samples as f64 {
            b.tokens -= samples as f64;
            return Ok(());
        }
        let wait = ((samples as f64 - b.tokens) / per_second).ceil().max(1.0) as u64;
        drop(buckets);
        refuse(
            format!(
                "ingestion rate limit exceeded: tenant {tenant:?} may write {} samples per second across the ring \
                 ({per_second:.0} on this node of {nodes}), with bursts of {} (ingestion_rate and \
                 ingestion_burst_size in the limits file)",
                rate.per_second, rate.burst
            ),
            wait,
        )
    }

    /// The label limits: drops from `decoded` the series over one of `tenant`'s limits, so
    /// that the others are written. When any was dropped, the 400 naming the first and how
    /// many, to answer once the others are written (as Mimir does).
    pub fn drop_over_label_limits(
        &self,
        l: &TenantLimits,
        tenant: &str,
        buf: &[u8],
        decoded: &mut Decoded,
    ) -> Option<WriteStatus> {
        let LabelLimits { names_per_series, name_length, value_length } = l.labels;
        // The decoder kept the largest figures: nothing to look at when none is over a limit.
        let x = decoded.label_extremes;
        let over = |limit: u64, got: u32| limit > 0 && u64::from(got) > limit;
        if !over(names_per_series, x.labels_per_series)
            && !over(name_length, x.name_len)
            && !over(value_length, x.value_len)
        {
            return None;
        }
        let mut first: Option<String> = None;
        let mut dropped = 0usize;
        let labels = &decoded.labels;
        decoded.series.retain(|s| {
            let spans = &labels[s.labels_start as usize..s.labels_end as usize];
            let over = if names_per_series > 0 && spans.len() as u64 > names_per_series {
                Some(("max_label_names_per_series", format!("{} labels", spans.len()), names_per_series))
            } else if let Some(n) = spans.iter().find(|x| name_length > 0 && x.name(buf).len() as u64 > name_length) {
                Some(("max_label_name_length", format!("a label name of {} bytes", n.name(buf).len()), name_length))
            } else {
                spans.iter().find(|x| value_length > 0 && x.value(buf).len() as u64 > value_length).map(|v| {
                    ("max_label_value_length", format!("a label value of {} bytes", v.value(buf).len()), value_length)
                })
            };
            let Some((key, what, limit)) = over else { return true };
            dropped += 1;
            self.metrics.label_limited.with_label_values(&[&self.metrics.tenants.label(tenant), key]).inc();
            if first.is_none() {
                let mut series = crate::writer::series_string(buf, spans);
                if series.len() > MAX_QUOTED {
                    let mut end = MAX_QUOTED;
                    while !series.is_char_boundary(end) {
                        end -= 1;
                    }
                    series.truncate(end);
                    series.push_str("...");
                }
                first = Some(format!("{series} has {what}, over the {key} of {limit}"));
            }
            false
        });
        first.map(|first| {
            WriteStatus::new(
                Outcome::Invalid,
                format!(
                    "{dropped} series dropped for the label limits of tenant {tenant:?} in the limits file (first: \
                     {first}); the other series were written"
                ),
            )
        })
    }
}

/// ringest's own count of a tenant's head series across the ring, as Thanos' docs define the
/// limit ("across all replicas, including data replication"): this node's head series of the
/// tenant times the number of nodes in the tenant's ring, `local * nodes`. Every node holds
/// about `RF / nodes` of the tenant's `S` series, so the ring holds `S * RF` and each node's
/// share times `nodes` estimates it with no query to anyone. Exact when `RF == nodes` (every
/// node holds every series); otherwise the relative error is about `sqrt((1 - p) / (S p))`
/// with `p = RF / nodes`, plus ketama's section imbalance (a node's share is up to 1.2% to
/// 3.1% off the mean for 4 to 12 nodes; hashmod has none). `None` when this node is not in the tenant's ring (a router only).
pub fn ring_estimate(local_head_series: Option<u64>, nodes: usize, local_in_ring: bool) -> Option<u64> {
    if !local_in_ring || nodes == 0 {
        return None;
    }
    Some(local_head_series.unwrap_or(0) * nodes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(yaml: &str) -> Limiter {
        let m = LimitMetrics::new(&Registry::new(), TenantLabels::default()).unwrap();
        Limiter::new(Some(LimitsSource::Content(yaml.into())), m).unwrap()
    }

    #[test]
    fn request_limits_name_the_limit() {
        let l =
            limiter("write:\n  default:\n    request: {size_bytes_limit: 100, series_limit: 2, samples_limit: 3}\n");
        let t = *l.limits().of("a");
        assert!(l.check_size(&t, "a", 100).is_ok());
        let e = l.check_size(&t, "a", 101).unwrap_err();
        assert_eq!(e.outcome, Outcome::TooLarge);
        assert!(
            e.message.starts_with("write request too large: 101") && e.message.contains("size_bytes_limit"),
            "{}",
            e.message
        );
        assert!(l.check_counts(&t, "a", 2, 3).is_ok());
        assert!(l.check_counts(&t, "a", 3, 1).unwrap_err().message.contains("series_limit"));
        assert!(l.check_counts(&t, "a", 1, 4).unwrap_err().message.contains("samples_limit"));
        let families = l.metrics.hit.collect();
        assert_eq!(families[0].get_metric().len(), 3);
    }

    #[test]
    fn head_series_from_the_estimate_without_meta_monitoring() {
        let l =
            limiter("write:\n  default:\n    head_series_limit: 30\n  tenants:\n    free: {head_series_limit: 0}\n");
        let t = *l.limits().of("a");
        assert!(l.check_head_series(&t, "a", || ring_estimate(Some(9), 3, true)).is_ok());
        let e = l.check_head_series(&t, "a", || ring_estimate(Some(10), 3, true)).unwrap_err();
        assert_eq!(e.outcome, Outcome::Limited);
        assert!(e.message.starts_with("tenant is above active series limit: 30"), "{}", e.message);
        assert!(l.check_head_series(&t, "a", || ring_estimate(Some(1000), 3, false)).is_ok(), "a router cannot tell");
        let free = *l.limits().of("free");
        assert!(l.check_head_series(&free, "free", || Some(u64::MAX)).is_ok());
    }

    #[test]
    fn the_rate_is_shared_by_the_nodes_of_the_ring() {
        let l = limiter("write:\n  default:\n    ingestion_rate: 10\n    ingestion_burst_size: 10\n");
        let t = *l.limits().of("a");
        assert!(l.check_rate(&t, "a", 10, 2).is_ok(), "a full burst");
        let e = l.check_rate(&t, "a", 5, 2).unwrap_err();
        assert_eq!(e.outcome, Outcome::Limited);
        // 5 samples at 10 / 2 nodes = 5 per second: a second from now.
        assert_eq!(e.retry_after_s, Some(1));
        assert!(e.message.contains("5 on this node of 2"), "{}", e.message);
        let e = l.check_rate(&t, "b", 11, 1).unwrap_err();
        assert!(e.message.contains("more than the ingestion_burst_size 10"), "{}", e.message);
        assert!(l.check_rate(&t, "b", 10, 1).is_ok(), "another tenant has its own bucket");
    }

    #[test]
    fn reload_keeps_the_limits_in_force_when_the_file_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.yaml");
        std::fs::write(&path, "write:\n  default:\n    request: {series_limit: 5}\n").unwrap();
        let m = LimitMetrics::new(&Registry::new(), TenantLabels::default()).unwrap();
        let l = Limiter::new(Some(LimitsSource::File(path.clone())), m).unwrap();
        assert_eq!(l.limits().default.request.series, 5);
        assert!(!l.reload().unwrap(), "unchanged");
        std::fs::write(&path, "write:\n  default:\n    request: {series_limt: 6}\n").unwrap();
        assert!(l.reload().is_err());
        assert_eq!(l.limits().default.request.series, 5);
        assert_eq!(l.metrics.reload_errors.get(), 1);
        std::fs::write(&path, "write:\n  default:\n    request: {series_limit: 7}\n").unwrap();
        assert!(l.reload().unwrap());
        assert_eq!(l.limits().default.request.series, 7);
        assert_eq!(l.metrics.reload_errors.get(), 1);
    }
}
