//! Plain atomic counters and gauges that the TSDB updates; the server renders them with
//! Prometheus' metric names. Keeping them here keeps the TSDB free of any metrics library.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Relaxed);
        }
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// An integer gauge.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A float gauge.
#[derive(Debug, Default)]
pub struct FloatGauge(AtomicU64);

impl FloatGauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// Count and sum of observations (rendered as a summary without quantiles).
#[derive(Debug, Default)]
pub struct Summary {
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Summary {
    /// Records one observation in seconds.
    pub fn observe(&self, secs: f64) {
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
    /// Sum of observations in seconds.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Relaxed) as f64 / 1e6
    }
}

/// A histogram of durations in seconds with Prometheus' compaction buckets (1, 2, 4, ... 8192).
#[derive(Debug, Default)]
pub struct DurationHistogram {
    counts: [AtomicU64; 14],
    summary: Summary,
}

impl DurationHistogram {
    /// Upper bounds of the buckets (`+Inf` is implied).
    pub const BOUNDS: [f64; 14] =
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0];

    /// Records one observation.
    pub fn observe(&self, secs: f64) {
        if let Some(i) = Self::BOUNDS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.summary.observe(secs);
    }

    /// Cumulative counts per bucket bound.
    pub fn cumulative(&self) -> [u64; 14] {
        let mut out = [0; 14];
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c.load(Relaxed);
            out[i] = acc;
        }
        out
    }

    /// Count and sum of all observations.
    pub fn count_sum(&self) -> (u64, f64) {
        (self.summary.count(), self.summary.sum())
    }
}

/// WAL writer metrics (`prometheus_tsdb_wal_*`).
#[derive(Debug, Default)]
pub struct WalMetrics {
    /// `fsync_duration_seconds`
    pub fsync_duration: Summary,
    /// `page_flushes_total`
    pub page_flushes: Counter,
    /// `completed_pages_total`
    pub completed_pages: Counter,
    /// `writes_failed_total`
    pub writes_failed: Counter,
    /// `corruptions_total`
    pub corruptions: Counter,
    /// `segment_current`
    pub segment_current: Gauge,
    /// `record_part_writes_total`
    pub record_part_writes: Counter,
    /// `record_parts_bytes_written_total`
    pub record_parts_bytes_written: Counter,
    /// `record_bytes_saved_total{compression="snappy"}`
    pub record_bytes_saved: Counter,
    /// `truncations_total`
    pub truncations: Counter,
    /// `truncations_failed_total`
    pub truncations_failed: Counter,
}

/// Head metrics (`prometheus_tsdb_*`).
#[derive(Debug, Default)]
pub struct HeadMetrics {
    /// `head_series_created_total`
    pub series_created: Counter,
    /// `head_series_removed_total`
    pub series_removed: Counter,
    /// `head_samples_appended_total{type="float"}`
    pub samples_appended: Counter,
    /// `head_chunks` (gauge)
    pub chunks: Gauge,
    /// `head_chunks_created_total`
    pub chunks_created: Counter,
    /// `head_chunks_removed_total`
    pub chunks_removed: Counter,
    /// `out_of_order_samples_total{type="float"}`
    pub out_of_order_samples: Counter,
    /// `out_of_bound_samples_total{type="float"}`
    pub out_of_bound_samples: Counter,
    /// Exact duplicates accepted as no-ops (not exported by Prometheus; kept for tests).
    pub duplicate_samples_ignored: Counter,
    /// `wal_replay_unknown_refs_total{type="series"}`
    pub replay_unknown_refs: Counter,
}

/// All metrics of one TSDB.
#[derive(Debug, Default)]
pub struct TsdbMetrics {
    /// Head metrics.
    pub head: HeadMetrics,
    /// WAL metrics, shared with the writer.
    pub wal: std::sync::Arc<WalMetrics>,
    /// `data_replay_duration_seconds`
    pub replay_duration_seconds: FloatGauge,
    /// `compactions_total`
    pub compactions: Counter,
    /// `compactions_failed_total`
    pub compactions_failed: Counter,
    /// `compaction_duration_seconds`
    pub compaction_duration: DurationHistogram,
    /// `blocks_loaded`
    pub blocks_loaded: Gauge,
    /// Block directories found at open whose `meta.json` could not be read (left unread).
    pub blocks_unreadable: Gauge,
    /// `mmap_chunk_corruptions_total`: head chunk files found corrupt at open (cut back there)
    pub mmap_chunk_corruptions: Counter,
    /// `head_truncations_total`
    pub head_truncations: Counter,
    /// `head_gc_duration_seconds`
    pub head_gc_duration: Summary,
    /// `checkpoint_creations_total`
    pub checkpoint_creations: Counter,
    /// `checkpoint_creations_failed_total`
    pub checkpoint_creations_failed: Counter,
    /// `checkpoint_deletions_total`
    pub checkpoint_deletions: Counter,
    /// `time_retentions_total`
    pub time_retentions: Counter,
}
