//! Metrics with Thanos' names: the instrumented bucket's `thanos_objstore_bucket_*` (const
//! label `bucket`, as thanos-io/objstore's `BucketMetrics`) and the shipper's
//! `thanos_shipper_*` (label `tenant`, Thanos' per-tenant const label), plus the two the
//! operations guides alert on (`thanos_shipper_upload_duration_seconds`,
//! `thanos_shipper_last_successful_upload_time`).

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Buckets of `thanos_objstore_bucket_operation_duration_seconds` (objstore's) and of
/// `thanos_shipper_upload_duration_seconds`.
pub const DURATION_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0];

/// Bucket operations, as objstore names them.
pub const OPERATIONS: &[&str] = &["iter", "get", "get_range", "exists", "upload", "delete", "attributes"];

fn register<C: Collector + Clone + 'static>(reg: &Registry, c: C) -> Result<C, prometheus::Error> {
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

/// `thanos_objstore_bucket_*` of one bucket.
#[derive(Debug, Clone)]
pub struct BucketMetrics {
    /// `thanos_objstore_bucket_operations_total{operation}`
    pub ops: IntCounterVec,
    /// `thanos_objstore_bucket_operation_failures_total{operation}`
    pub failures: IntCounterVec,
    /// `thanos_objstore_bucket_operation_fetched_bytes_total{operation}`
    pub fetched_bytes: IntCounterVec,
    /// `thanos_objstore_bucket_operation_transferred_bytes{operation}` (histogram)
    pub transferred_bytes: HistogramVec,
    /// `thanos_objstore_bucket_operation_duration_seconds{operation}`
    pub duration: HistogramVec,
    /// `thanos_objstore_bucket_last_successful_upload_time`
    pub last_upload: Gauge,
}

impl BucketMetrics {
    /// Registers the bucket metrics of bucket `name` (objstore's `Name()`) in `reg`.
    pub fn new(reg: &Registry, name: &str) -> Result<Self, prometheus::Error> {
        let opts = |n: &str, h: &str| Opts::new(n, h).const_label("bucket", name);
        let hopts = |n: &str, h: &str| HistogramOpts::new(n, h).const_label("bucket", name);
        let op = &["operation"];
        let m = BucketMetrics {
            ops: register(
                reg,
                IntCounterVec::new(
                    opts("thanos_objstore_bucket_operations_total", "Total number of all attempted operations against a bucket."),
                    op,
                )?,
            )?,
            failures: register(
                reg,
                IntCounterVec::new(
                    opts(
                        "thanos_objstore_bucket_operation_failures_total",
                        "Total number of operations against a bucket that failed, but were not expected to fail in certain way from caller perspective. Those errors have to be investigated.",
                    ),
                    op,
                )?,
            )?,
            fetched_bytes: register(
                reg,
                IntCounterVec::new(
                    opts(
                        "thanos_objstore_bucket_operation_fetched_bytes_total",
                        "Total number of bytes fetched from bucket, per operation.",
                    ),
                    op,
                )?,
            )?,
            transferred_bytes: register(
                reg,
                HistogramVec::new(
                    hopts(
                        "thanos_objstore_bucket_operation_transferred_bytes",
                        "Number of bytes transferred from/to bucket per operation.",
                    )
                    .buckets(prometheus::exponential_buckets(32768.0, 2.0, 16)?),
                    op,
                )?,
            )?,
            duration: register(
                reg,
                HistogramVec::new(
                    hopts(
                        "thanos_objstore_bucket_operation_duration_seconds",
                        "Duration of successful operations against the bucket per operation - iter operations include time spent on each callback.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    op,
                )?,
            )?,
            last_upload: register(
                reg,
                Gauge::with_opts(opts(
                    "thanos_objstore_bucket_last_successful_upload_time",
                    "Second timestamp of the last successful upload to the bucket.",
                ))?,
            )?,
        };
        for o in OPERATIONS {
            m.ops.with_label_values(&[o]);
            m.failures.with_label_values(&[o]);
            m.duration.with_label_values(&[o]);
        }
        for o in ["get", "get_range", "upload"] {
            m.fetched_bytes.with_label_values(&[o]);
            m.transferred_bytes.with_label_values(&[o]);
        }
        Ok(m)
    }
}

/// `thanos_shipper_*` of every tenant.
#[derive(Debug, Clone)]
pub struct ShipperMetrics {
    /// `thanos_shipper_dir_syncs_total{tenant}`
    pub dir_syncs: IntCounterVec,
    /// `thanos_shipper_dir_sync_failures_total{tenant}`
    pub dir_sync_failures: IntCounterVec,
    /// `thanos_shipper_uploads_total{tenant}`
    pub uploads: IntCounterVec,
    /// `thanos_shipper_upload_failures_total{tenant}`
    pub upload_failures: IntCounterVec,
    /// `thanos_shipper_corrupted_blocks_total{tenant}`
    pub corrupted_blocks: IntCounterVec,
    /// `thanos_shipper_upload_compacted_done{tenant}` (always 0: receive never uploads
    /// compacted blocks)
    pub upload_compacted_done: GaugeVec,
    /// Operations guide: `thanos_shipper_upload_duration_seconds{tenant}`, one observation per
    /// uploaded block.
    pub upload_duration: HistogramVec,
    /// Troubleshooting guide: `thanos_shipper_last_successful_upload_time{tenant}`.
    pub last_upload: GaugeVec,
}

impl ShipperMetrics {
    /// Registers the shipper metrics in `reg`.
    pub fn new(reg: &Registry) -> Result<Self, prometheus::Error> {
        let t = &["tenant"];
        let counter = |n: &str, h: &str| -> Result<IntCounterVec, prometheus::Error> {
            register(reg, IntCounterVec::new(Opts::new(n, h), t)?)
        };
        Ok(ShipperMetrics {
            dir_syncs: counter("thanos_shipper_dir_syncs_total", "Total number of dir syncs")?,
            dir_sync_failures: counter("thanos_shipper_dir_sync_failures_total", "Total number of failed dir syncs")?,
            uploads: counter("thanos_shipper_uploads_total", "Total number of uploaded blocks")?,
            upload_failures: counter("thanos_shipper_upload_failures_total", "Total number of block upload failures")?,
            corrupted_blocks: counter("thanos_shipper_corrupted_blocks_total", "Total number of corrupted blocks")?,
            upload_compacted_done: register(
                reg,
                GaugeVec::new(
                    Opts::new(
                        "thanos_shipper_upload_compacted_done",
                        "If 1 it means shipper uploaded all compacted blocks from the filesystem.",
                    ),
                    t,
                )?,
            )?,
            upload_duration: register(
                reg,
                HistogramVec::new(
                    HistogramOpts::new(
                        "thanos_shipper_upload_duration_seconds",
                        "Time taken to upload one block (chunks, index and meta.json).",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    t,
                )?,
            )?,
            last_upload: register(
                reg,
                GaugeVec::new(
                    Opts::new(
                        "thanos_shipper_last_successful_upload_time",
                        "Unix time in seconds of the last block uploaded by the shipper.",
                    ),
                    t,
                )?,
            )?,
        })
    }

    /// Creates the series of `tenant` so they show 0 before anything happens.
    pub fn init_tenant(&self, tenant: &str) {
        for c in
            [&self.dir_syncs, &self.dir_sync_failures, &self.uploads, &self.upload_failures, &self.corrupted_blocks]
        {
            c.with_label_values(&[tenant]);
        }
        self.upload_compacted_done.with_label_values(&[tenant]).set(0.0);
        self.upload_duration.with_label_values(&[tenant]);
        self.last_upload.with_label_values(&[tenant]);
    }
}
