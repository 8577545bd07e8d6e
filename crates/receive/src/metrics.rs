//! The metrics registry: Thanos' and Prometheus' names and labels (shared spec thanos-receive
//! §9), plus the names the operations guide uses. Everything lives in a [`Metrics`] value
//! passed down, so several nodes can run in one process (tests).

use std::sync::Arc;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Summary};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::tenancy::Tenants;

/// Buckets of `http_request_duration_seconds` for the receive handler as Thanos sets them: up to
/// 5 s, then every 2 s below the forward timeout, and the forward timeout itself.
pub fn receive_duration_buckets(forward_timeout: Duration) -> Vec<f64> {
    let mut b = vec![
        0.001, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 4.0,
        5.0,
    ];
    let timeout = forward_timeout.as_secs_f64();
    let mut max = 7.0;
    while max < timeout {
        b.push(max);
        max += 2.0;
    }
    if b[b.len() - 1] < timeout {
        b.push(timeout);
    }
    b
}
/// Buckets of `http_request_duration_seconds` for other handlers.
pub const DEFAULT_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0, 360.0, 720.0];
/// Buckets of `thanos_receive_write_timeseries` / `_samples`.
pub const WRITE_SIZE_BUCKETS: &[f64] = &[10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0];

/// HTTP instrumentation of the remote-write port.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// `http_requests_total{code,handler,method,tenant}`
    pub requests: IntCounterVec,
    /// `http_request_duration_seconds{code,handler,method,tenant}` for `receive`.
    pub duration_receive: HistogramVec,
    /// `http_request_size_bytes{code,handler,method,tenant}`
    pub request_size: HistogramVec,
    /// `http_response_size_bytes{code,handler,method,tenant}`
    pub response_size: HistogramVec,
    /// `http_inflight_requests{handler,method,tenant}`
    pub inflight: IntGaugeVec,
}

/// Most distinct tenant values the request metrics label by; later ones are labelled
/// [`OTHER`]. The tenant comes from a request header, so a client choosing names could
/// otherwise grow the series count of `/metrics` without bound.
pub const MAX_TENANT_LABELS: usize = 1000;

/// The label value of whatever is past a cap: a tenant past [`MAX_TENANT_LABELS`], a request
/// method that is not a standard one.
pub const OTHER: &str = "other";

/// The tenant label values the request metrics use, at most [`MAX_TENANT_LABELS`] of them.
/// Clones share the set, like the metric handles beside it.
#[derive(Debug, Default, Clone)]
pub struct TenantLabels(Arc<parking_lot::Mutex<std::collections::HashSet<String>>>);

impl TenantLabels {
    /// The label value for `tenant`: itself while the cap allows, else [`OTHER`].
    pub fn label(&self, tenant: &str) -> String {
        let mut seen = self.0.lock();
        if seen.contains(tenant) {
            return tenant.to_owned();
        }
        if seen.len() < MAX_TENANT_LABELS {
            seen.insert(tenant.to_owned());
            return tenant.to_owned();
        }
        OTHER.to_owned()
    }
}

/// The `method` label of a request: a standard HTTP method as sent, anything else [`OTHER`].
pub fn method_label(m: &http::Method) -> &'static str {
    use http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => OTHER,
    }
}

/// go-grpc-prometheus' server metrics (`grpc_server_*`), as Thanos registers them: every
/// method of the served APIs starts at zero, with `grpc_server_handled_total` for every code.
#[derive(Debug, Clone)]
pub struct GrpcServerMetrics {
    started: prometheus::IntCounterVec,
    handled: prometheus::IntCounterVec,
    seconds: prometheus::HistogramVec,
}

/// `grpc_server_handling_seconds` buckets (Thanos' gRPC server).
const GRPC_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0];

impl GrpcServerMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<GrpcServerMetrics> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = prometheus::IntCounterVec::new(
            prometheus::Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
            &labels,
        )?;
        let handled = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let seconds = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            )
            .buckets(GRPC_BUCKETS.to_vec()),
            &labels,
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(GrpcServerMetrics { started, handled, seconds })
    }
}

impl ringest_grpc::Observer for GrpcServerMetrics {
    fn serving(&self, methods: &[ringest_grpc::Method]) {
        for m in methods {
            let l = [m.kind.as_str(), m.service.as_str(), m.name.as_str()];
            self.started.with_label_values(&l);
            self.seconds.with_label_values(&l);
            for code in 0..=16 {
                let code = ringest_grpc::Code::from_i32(code).as_str();
                self.handled.with_label_values(&[l[0], l[1], l[2], code]);
            }
        }
    }

    fn started(&self, call: &ringest_grpc::CallMeta) {
        let m = &call.method;
        self.started.with_label_values(&[m.kind.as_str(), m.service.as_str(), m.name.as_str()]).inc();
    }

    fn handled(&self, call: &ringest_grpc::CallMeta, end: ringest_grpc::CallEnd<'_>) {
        let m = &call.method;
        let l = [m.kind.as_str(), m.service.as_str(), m.name.as_str()];
        self.handled.with_label_values(&[l[0], l[1], l[2], end.code.as_str()]).inc();
        self.seconds.with_label_values(&l).observe(end.seconds);
    }
}

/// All metrics of one node.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// HTTP metrics.
    pub http: HttpMetrics,
    /// `thanos_receive_write_timeseries{code,tenant}`
    pub write_timeseries: HistogramVec,
    /// `thanos_receive_write_samples{code,tenant}`
    pub write_samples: HistogramVec,
    /// Operations guide: `thanos_receive_write_requests_total{code,tenant}`
    pub write_requests_total: IntCounterVec,
    /// Operations guide: `thanos_receive_write_timeseries_total{code,tenant}`
    pub write_timeseries_total: IntCounterVec,
    /// `thanos_receive_write_samples_total{code,tenant}`
    pub write_samples_total: IntCounterVec,
    /// `thanos_status{check,component}`
    pub status: IntGaugeVec,
    /// The tenant label values of the request metrics, capped.
    pub tenants: TenantLabels,
    /// `ringest_http_connections_refused_total{server}`: connections closed at once because
    /// `--ringest.http.max-connections` were open.
    pub http_connections_refused: IntCounterVec,
}

/// Registers `c` in `r` and returns it (a handle to the same metric).
pub(crate) fn register<C: Collector + Clone + 'static>(r: &Registry, c: C) -> Result<C, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    register(r, c).expect("metric registered once")
}

impl Metrics {
    /// A registry with every metric of the node (TSDB metrics come from [`TsdbCollector`]);
    /// `forward_timeout` sets the receive handler's latency buckets.
    pub fn new(forward_timeout: Duration) -> Metrics {
        let r = Registry::new();
        let labels = ["code", "handler", "method", "tenant"];
        let size_buckets = prometheus::exponential_buckets(64.0, 2.0, 10).expect("valid buckets");
        let http = HttpMetrics {
            requests: reg(
                &r,
                IntCounterVec::new(Opts::new("http_requests_total", "Tracks the number of HTTP requests."), &labels)
                    .expect("metric"),
            ),
            duration_receive: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "Tracks the latencies for HTTP requests.")
                        .buckets(receive_duration_buckets(forward_timeout)),
                    &labels,
                )
                .expect("metric"),
            ),
            request_size: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_size_bytes", "Tracks the size of HTTP requests.")
                        .buckets(size_buckets.clone()),
                    &labels,
                )
                .expect("metric"),
            ),
            response_size: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_response_size_bytes", "Tracks the size of HTTP responses.")
                        .buckets(size_buckets),
                    &labels,
                )
                .expect("metric"),
            ),
            inflight: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "http_inflight_requests",
                        "Current number of HTTP requests the handler is responding to.",
                    ),
                    &["handler", "method", "tenant"],
                )
                .expect("metric"),
            ),
        };
        let hist = |name: &str, help: &str| {
            reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(WRITE_SIZE_BUCKETS.to_vec()),
                    &["code", "tenant"],
                )
                .expect("metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            reg(&r, IntCounterVec::new(Opts::new(name, help), &["code", "tenant"]).expect("metric"))
        };
        let m = Metrics {
            http,
            write_timeseries: hist(
                "thanos_receive_write_timeseries",
                "The number of timeseries received in the incoming write requests.",
            ),
            write_samples: hist(
                "thanos_receive_write_samples",
                "The number of sampled received in the incoming write requests.",
            ),
            write_requests_total: counter(
                "thanos_receive_write_requests_total",
                "The number of remote-write requests handled, by response code.",
            ),
            write_timeseries_total: counter(
                "thanos_receive_write_timeseries_total",
                "The number of timeseries received in remote-write requests, by response code.",
            ),
            write_samples_total: counter(
                "thanos_receive_write_samples_total",
                "The number of samples received in remote-write requests, by response code.",
            ),
            status: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "thanos_status",
                        "Represents status (0 indicates failure, 1 indicates success) of the component.",
                    )
                    .const_label("component", "receive"),
                    &["check"],
                )
                .expect("metric"),
            ),
            http_connections_refused: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "ringest_http_connections_refused_total",
                        "HTTP connections closed as soon as they were accepted, because the server had \
                         --ringest.http.max-connections open.",
                    ),
                    &["server"],
                )
                .expect("metric"),
            ),
            registry: r,
            tenants: TenantLabels::default(),
        };
        let build = IntGaugeVec::new(
            Opts::new("thanos_build_info", "A metric with a constant '1' value labeled by version and implementation."),
            &["version", "revision", "branch", "goversion"],
        )
        .expect("metric");
        build.with_label_values(&[crate::VERSION, "", "", "ringest (rust)"]).set(1);
        m.registry.register(Box::new(build)).expect("metric registered once");
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registered once");
        m
    }

    /// Renders every metric in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut buf = String::new();
        let families = self.registry.gather();
        prometheus::TextEncoder::new().encode_utf8(&families, &mut buf).unwrap_or_default();
        buf
    }
}

impl Default for Metrics {
    /// The metrics of a node with Thanos' default forward timeout (5 s).
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

/// Renders each tenant TSDB's counters as `prometheus_tsdb_*{tenant}` (and the operations
/// guide's `thanos_receive_head_series{tenant}`).
pub struct TsdbCollector {
    tenants: Arc<Tenants>,
    descs: Vec<Desc>,
}

impl TsdbCollector {
    /// A collector over `tenants`.
    pub fn new(tenants: Arc<Tenants>) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, _)| (*name, *help))
            .chain(std::iter::once(OPEN_FAILED))
            .map(|(name, help)| {
                Desc::new(name.into(), help.into(), vec!["tenant".into()], Default::default()).expect("valid desc")
            })
            .collect();
        TsdbCollector { tenants, descs }
    }
}

enum Kind {
    Counter,
    Gauge,
    /// A summary (count and sum) of the TSDB.
    Summary(fn(&ringest_tsdb::Tsdb) -> &ringest_tsdb::metrics::Summary),
    /// The compaction duration histogram.
    Histogram,
}

type Read = fn(&ringest_tsdb::Tsdb) -> f64;

/// name, help, kind, read.
const FAMILIES: &[(&str, &str, Kind, Read)] = &[
    ("prometheus_tsdb_head_series", "Total number of series in the head block.", Kind::Gauge, |d| {
        d.num_series() as f64
    }),
    (
        "thanos_receive_head_series",
        "Number of series in the head of each tenant (operations guide name).",
        Kind::Gauge,
        |d| d.num_series() as f64,
    ),
    ("prometheus_tsdb_head_series_created_total", "Total number of series created in the head", Kind::Counter, |d| {
        d.metrics().head.series_created.get() as f64
    }),
    ("prometheus_tsdb_head_series_removed_total", "Total number of series removed in the head", Kind::Counter, |d| {
        d.metrics().head.series_removed.get() as f64
    }),
    ("prometheus_tsdb_head_samples_appended_total", "Total number of appended samples.", Kind::Counter, |d| {
        d.metrics().head.samples_appended.get() as f64
    }),
    ("prometheus_tsdb_head_chunks", "Total number of chunks in the head block.", Kind::Gauge, |d| {
        d.metrics().head.chunks.get() as f64
    }),
    ("prometheus_tsdb_head_chunks_created_total", "Total number of chunks created in the head", Kind::Counter, |d| {
        d.metrics().head.chunks_created.get() as f64
    }),
    (
        "prometheus_tsdb_out_of_order_samples_total",
        "Total number of out of order samples ingestion failed attempts due to out of order being disabled.",
        Kind::Counter,
        |d| d.metrics().head.out_of_order_samples.get() as f64,
    ),
    (
        "prometheus_tsdb_out_of_bound_samples_total",
        "Total number of out of bound samples ingestion failed attempts with out of order support disabled.",
        Kind::Counter,
        |d| d.metrics().head.out_of_bound_samples.get() as f64,
    ),
    (
        "prometheus_tsdb_head_min_time",
        "Minimum time bound of the head block. The unit is decided by the library consumer.",
        Kind::Gauge,
        |d| d.head_stats().min_time as f64,
    ),
    (
        "prometheus_tsdb_head_max_time",
        "Maximum timestamp of the head block. The unit is decided by the library consumer.",
        Kind::Gauge,
        |d| d.head_stats().max_time as f64,
    ),
    ("prometheus_tsdb_data_replay_duration_seconds", "Time taken to replay the data on disk.", Kind::Gauge, |d| {
        d.metrics().replay_duration_seconds.get()
    }),
    ("prometheus_tsdb_head_chunks_removed_total", "Total number of chunks removed in the head", Kind::Counter, |d| {
        d.metrics().head.chunks_removed.get() as f64
    }),
    (
        "prometheus_tsdb_compactions_total",
        "Total number of compactions that were executed for the partition.",
        Kind::Counter,
        |d| d.metrics().compactions.get() as f64,
    ),
    (
        "prometheus_tsdb_compactions_failed_total",
        "Total number of compactions that failed for the partition.",
        Kind::Counter,
        |d| d.metrics().compactions_failed.get() as f64,
    ),
    ("prometheus_tsdb_compaction_duration_seconds", "Duration of compaction runs", Kind::Histogram, |_| 0.0),
    ("prometheus_tsdb_blocks_loaded", "Number of currently loaded data blocks", Kind::Gauge, |d| {
        d.metrics().blocks_loaded.get() as f64
    }),
    (
        "ringest_tsdb_blocks_unreadable",
        "Block directories found at start-up whose meta.json cannot be read: left on disk, not read, not compacted.",
        Kind::Gauge,
        |d| d.metrics().blocks_unreadable.get() as f64,
    ),
    ("prometheus_tsdb_head_truncations_total", "Total number of head truncations attempted.", Kind::Counter, |d| {
        d.metrics().head_truncations.get() as f64
    }),
    (
        "prometheus_tsdb_checkpoint_creations_total",
        "Total number of checkpoint creations attempted.",
        Kind::Counter,
        |d| d.metrics().checkpoint_creations.get() as f64,
    ),
    (
        "prometheus_tsdb_checkpoint_creations_failed_total",
        "Total number of checkpoint creations that failed.",
        Kind::Counter,
        |d| d.metrics().checkpoint_creations_failed.get() as f64,
    ),
    (
        "prometheus_tsdb_checkpoint_deletions_total",
        "Total number of checkpoint deletions attempted.",
        Kind::Counter,
        |d| d.metrics().checkpoint_deletions.get() as f64,
    ),
    (
        "prometheus_tsdb_time_retentions_total",
        "The number of times that blocks were deleted because the maximum time limit was exceeded.",
        Kind::Counter,
        |d| d.metrics().time_retentions.get() as f64,
    ),
    (
        "prometheus_tsdb_wal_fsync_duration_seconds",
        "Duration of write log fsync.",
        Kind::Summary(|d| &d.metrics().wal.fsync_duration),
        |_| 0.0,
    ),
    (
        "prometheus_tsdb_head_gc_duration_seconds",
        "Runtime of garbage collection in the head block.",
        Kind::Summary(|d| &d.metrics().head_gc_duration),
        |_| 0.0,
    ),
    (
        "prometheus_tsdb_storage_blocks_bytes",
        "The number of bytes that are currently used for local storage by all blocks.",
        Kind::Gauge,
        |d| d.blocks_bytes() as f64,
    ),
    (
        "prometheus_tsdb_lowest_timestamp",
        "Lowest timestamp value stored in the database. The unit is decided by the library consumer.",
        Kind::Gauge,
        |d| d.lowest_timestamp() as f64,
    ),
    ("prometheus_tsdb_wal_page_flushes_total", "Total number of page flushes.", Kind::Counter, |d| {
        d.metrics().wal.page_flushes.get() as f64
    }),
    ("prometheus_tsdb_wal_completed_pages_total", "Total number of completed pages.", Kind::Counter, |d| {
        d.metrics().wal.completed_pages.get() as f64
    }),
    (
        "prometheus_tsdb_wal_truncations_failed_total",
        "Total number of write log truncations that failed.",
        Kind::Counter,
        |d| d.metrics().wal.truncations_failed.get() as f64,
    ),
    ("prometheus_tsdb_wal_truncations_total", "Total number of write log truncations attempted.", Kind::Counter, |d| {
        d.metrics().wal.truncations.get() as f64
    }),
    ("prometheus_tsdb_wal_corruptions_total", "Total number of WAL corruptions.", Kind::Counter, |d| {
        d.metrics().wal.corruptions.get() as f64
    }),
    (
        "prometheus_tsdb_mmap_chunk_corruptions_total",
        "Total number of memory-mapped chunk corruptions.",
        Kind::Counter,
        |d| d.metrics().mmap_chunk_corruptions.get() as f64,
    ),
    ("prometheus_tsdb_wal_writes_failed_total", "Total number of write log writes that failed.", Kind::Counter, |d| {
        d.metrics().wal.writes_failed.get() as f64
    }),
    (
        "prometheus_tsdb_wal_segment_current",
        "Write log segment index that TSDB is currently writing to.",
        Kind::Gauge,
        |d| d.metrics().wal.segment_current.get() as f64,
    ),
    ("prometheus_tsdb_wal_storage_size_bytes", "Size of the write log directory.", Kind::Gauge, |d| {
        d.wal_size_bytes() as f64
    }),
    (
        "prometheus_tsdb_wal_record_part_writes_total",
        "Total number of record parts written before flushing.",
        Kind::Counter,
        |d| d.metrics().wal.record_part_writes.get() as f64,
    ),
    (
        "prometheus_tsdb_wal_record_parts_bytes_written_total",
        "Total number of record part bytes written before flushing, including CRC and compression headers.",
        Kind::Counter,
        |d| d.metrics().wal.record_parts_bytes_written.get() as f64,
    ),
    (
        "prometheus_tsdb_wal_record_bytes_saved_total",
        "Total number of bytes saved by the optional record compression. Use this metric to learn about the effectiveness compression.",
        Kind::Counter,
        |d| d.metrics().wal.record_bytes_saved.get() as f64,
    ),
];

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

impl Collector for TsdbCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let tenants = self.tenants.all();
        FAMILIES
            .iter()
            .map(|(name, help, kind, read)| {
                let mut mf = MetricFamily::default();
                mf.set_name((*name).into());
                mf.set_help((*help).into());
                mf.set_field_type(match kind {
                    Kind::Counter => MetricType::COUNTER,
                    Kind::Gauge => MetricType::GAUGE,
                    Kind::Summary(_) => MetricType::SUMMARY,
                    Kind::Histogram => MetricType::HISTOGRAM,
                });
                for (tenant, db) in &tenants {
                    let mut m = Metric::default();
                    let mut labels = vec![label("tenant", tenant)];
                    match kind {
                        Kind::Counter => {
                            let mut c = Counter::default();
                            c.set_value(read(db));
                            m.set_counter(c);
                        }
                        Kind::Gauge => {
                            let mut g = Gauge::default();
                            g.set_value(read(db));
                            m.set_gauge(g);
                        }
                        Kind::Summary(get) => {
                            let f = get(db);
                            let mut s = Summary::default();
                            s.set_sample_count(f.count());
                            s.set_sample_sum(f.sum());
                            m.set_summary(s);
                        }
                        Kind::Histogram => {
                            let h = &db.metrics().compaction_duration;
                            let mut out = Histogram::default();
                            let (count, sum) = h.count_sum();
                            out.set_sample_count(count);
                            out.set_sample_sum(sum);
                            let buckets = ringest_tsdb::metrics::DurationHistogram::BOUNDS
                                .iter()
                                .zip(h.cumulative())
                                .map(|(&le, c)| {
                                    let mut b = Bucket::default();
                                    b.set_upper_bound(le);
                                    b.set_cumulative_count(c);
                                    b
                                })
                                .collect();
                            out.set_bucket(buckets);
                            m.set_histogram(out);
                        }
                    }
                    if name.starts_with("prometheus_tsdb_head_samples_appended")
                        || name.starts_with("prometheus_tsdb_out_of")
                    {
                        labels.push(label("type", "float"));
                    }
                    if name.starts_with("prometheus_tsdb_wal_record_bytes_saved") {
                        labels.push(label("compression", "snappy"));
                    }
                    m.set_label(labels);
                    mf.mut_metric().push(m);
                }
                mf
            })
            .chain(std::iter::once(self.open_failures()))
            .filter(|mf| !mf.get_metric().is_empty())
            .collect()
    }
}

/// `ringest_tsdb_open_failed{tenant}`: 1 for each tenant whose TSDB failed to open at start-up
/// (its writes are refused; the error is in the log).
const OPEN_FAILED: (&str, &str) = (
    "ringest_tsdb_open_failed",
    "1 for a tenant whose TSDB failed to open at start-up: its writes are refused until a restart opens it.",
);

impl TsdbCollector {
    fn open_failures(&self) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(OPEN_FAILED.0.into());
        mf.set_help(OPEN_FAILED.1.into());
        mf.set_field_type(MetricType::GAUGE);
        for (tenant, _) in self.tenants.failed() {
            let mut m = Metric::default();
            let mut g = Gauge::default();
            g.set_value(1.0);
            m.set_gauge(g);
            m.set_label(vec![label("tenant", &tenant)]);
            mf.mut_metric().push(m);
        }
        mf
    }
}
