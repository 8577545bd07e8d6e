//! Series shapes: which label sets a workload writes, their values and their churn.
//!
//! Two families: `avalanche` (the load tester's metric_mmmmm / label_key_kkkkk style: many
//! labels, long shared keys) and `node` (node_exporter-like: a hundred metric names per host,
//! `instance`/`job` plus a couple of per-metric labels). Everything is a pure function of the
//! shape and (series index, generation, round), so a checker can regenerate exactly what was
//! sent from a few numbers.

use serde::{Deserialize, Serialize};

/// The family of label sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// avalanche-like: `avalanche_metric_mmmmm_<m>_<generation>` with `label_key_kkkkk_<k>` labels.
    Avalanche,
    /// node_exporter-like: `node_*` metric names, `instance`, `job`, `cpu`, `mode`.
    Node,
}

/// A workload's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// Label-set family.
    pub kind: Kind,
    /// Active series.
    pub series: usize,
    /// Distinct metric names.
    pub metrics: usize,
    /// Extra labels per series (avalanche: `label_key_kkkkk_<k>`).
    pub labels: usize,
    /// Minimum length of label values (padded).
    pub value_len: usize,
    /// Series replaced per minute of sample time.
    pub churn_per_min: f64,
    /// Sample interval (ms): one sample per series per round.
    pub interval_ms: i64,
    /// Timestamp of round 0 (ms).
    pub start_ms: i64,
    /// Prefix of every metric name (tells workloads apart).
    pub prefix: String,
}

const NODE_METRICS: &[&str] = &[
    "cpu_seconds_total",
    "memory_MemAvailable_bytes",
    "memory_MemFree_bytes",
    "memory_Cached_bytes",
    "disk_read_bytes_total",
    "disk_written_bytes_total",
    "disk_io_time_seconds_total",
    "disk_reads_completed_total",
    "disk_writes_completed_total",
    "filesystem_avail_bytes",
    "filesystem_size_bytes",
    "filesystem_files_free",
    "network_receive_bytes_total",
    "network_transmit_bytes_total",
    "network_receive_packets_total",
    "network_transmit_packets_total",
    "network_receive_errs_total",
    "load1",
    "load5",
    "load15",
    "context_switches_total",
    "intr_total",
    "forks_total",
    "procs_running",
    "procs_blocked",
    "boot_time_seconds",
    "time_seconds",
    "entropy_available_bits",
    "vmstat_pgfault",
    "vmstat_pgmajfault",
    "netstat_Tcp_CurrEstab",
    "sockstat_TCP_inuse",
];
const MODES: &[&str] = &["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"];

impl Shape {
    /// avalanche-like defaults for `series` series.
    pub fn avalanche(series: usize) -> Shape {
        Shape {
            kind: Kind::Avalanche,
            series,
            metrics: 500.min(series.max(1)),
            labels: 10,
            value_len: 0,
            churn_per_min: 0.0,
            interval_ms: 15_000,
            start_ms: 0,
            prefix: "avalanche".into(),
        }
    }

    /// node_exporter-like defaults for `series` series.
    pub fn node(series: usize) -> Shape {
        Shape {
            kind: Kind::Node,
            metrics: NODE_METRICS.len().min(series.max(1)),
            labels: 2,
            prefix: "node".into(),
            ..Self::avalanche(series)
        }
    }

    /// Series replaced in each round (may be fractional; accumulated).
    fn churn_per_round(&self) -> f64 {
        self.churn_per_min * self.interval_ms as f64 / 60_000.0
    }

    /// How many times series `index` has been replaced by `round`.
    pub fn generation(&self, index: usize, round: usize) -> u64 {
        let replaced = (self.churn_per_round() * round as f64).floor() as u64;
        let i = index as u64;
        if replaced > i { (replaced - i - 1) / self.series as u64 + 1 } else { 0 }
    }

    fn pad(&self, v: String) -> String {
        if v.len() >= self.value_len {
            v
        } else {
            let n = self.value_len - v.len();
            format!("{v}{}", "x".repeat(n))
        }
    }

    /// The labels of series `index` in generation `generation`, sorted by name.
    pub fn labels(&self, index: usize, generation: u64) -> Vec<(String, String)> {
        let metric = index % self.metrics.max(1);
        let mut out: Vec<(String, String)> = match self.kind {
            Kind::Avalanche => {
                let mut v = vec![
                    ("__name__".to_string(), format!("{}_metric_mmmmm_{metric}_{generation}", self.prefix)),
                    ("cycle_id".to_string(), self.pad(generation.to_string())),
                    ("series_id".to_string(), self.pad((index / self.metrics.max(1)).to_string())),
                ];
                for k in 0..self.labels {
                    v.push((format!("label_key_kkkkk_{k}"), self.pad(format!("label_val_vvvvv_{k}"))));
                }
                v
            }
            Kind::Node => {
                let per_host = (self.metrics * 16).max(1);
                let host = index / per_host;
                let slot = (index % per_host) / self.metrics.max(1);
                let name = NODE_METRICS[metric % NODE_METRICS.len()];
                let mut v = vec![
                    (
                        "__name__".to_string(),
                        format!(
                            "{}_{name}{}",
                            self.prefix,
                            if metric >= NODE_METRICS.len() { format!("_{metric}") } else { String::new() }
                        ),
                    ),
                    (
                        "instance".to_string(),
                        self.pad(format!("10.{}.{}.{}:9100", host >> 16 & 255, host >> 8 & 255, host & 255)),
                    ),
                    ("job".to_string(), "node".to_string()),
                    ("cpu".to_string(), self.pad((slot % 2).to_string())),
                    ("mode".to_string(), self.pad(MODES[slot / 2 % MODES.len()].to_string())),
                ];
                if generation > 0 {
                    v.push(("pod".to_string(), self.pad(format!("pod-{generation}"))));
                }
                for k in 2..self.labels {
                    v.push((format!("extra_{k}"), self.pad(format!("value_{k}"))));
                }
                v
            }
        };
        out.sort();
        out
    }

    /// The value of series `index` (generation `generation`) in `round`: a third of the series
    /// are counters, a third slowly moving gauges, a third arbitrary floats. Always finite.
    pub fn value(&self, index: usize, generation: u64, round: usize) -> f64 {
        let h = splitmix64(index as u64 ^ generation.rotate_left(32));
        if index.is_multiple_of(3) {
            // A counter growing by an integer amount each round.
            ((h % 1000) + (round as u64) * (1 + h % 7)) as f64
        } else if index % 3 == 1 {
            // A gauge with a few distinct values.
            ((h >> 8) % 100) as f64 + (round % 5) as f64 * 0.25
        } else {
            // Arbitrary float bits but finite.
            (h % 1_000_000) as f64 / 1000.0 + round as f64
        }
    }

    /// The timestamp of `round` for series `index` (a little jitter, like real scrapes).
    pub fn timestamp(&self, index: usize, round: usize) -> i64 {
        self.start_ms + round as i64 * self.interval_ms + (splitmix64(index as u64) % 1000) as i64
    }
}

/// A fast, well-mixed 64-bit hash (splitmix64 finaliser).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn label_sets_are_unique_and_sorted() {
        for shape in [Shape::avalanche(20_000), Shape::node(20_000)] {
            let mut seen = HashSet::new();
            for i in 0..shape.series {
                let l = shape.labels(i, 0);
                assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "{l:?}");
                assert!(seen.insert(l), "duplicate series {i} in {:?}", shape.kind);
            }
        }
    }

    #[test]
    fn churn_replaces_the_configured_number_of_series() {
        let mut s = Shape::avalanche(1000);
        s.churn_per_min = 400.0; // 100 per 15 s round
        let changed = (0..1000).filter(|&i| s.generation(i, 3) != s.generation(i, 2)).count();
        assert_eq!(changed, 100);
        assert_ne!(s.labels(250, s.generation(250, 3)), s.labels(250, 0));
        assert_eq!(s.generation(999, 3), 0);
        assert_eq!(s.generation(5, 11), 2, "the 1100 replacements by round 11 wrapped around once");
    }
}
