//! Phase reports: throughput, status codes, latency percentiles and receiver usage, as a
//! table or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::procstat::Usage;
use crate::send::PhaseResult;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// Latency percentiles of microsecond samples.
pub fn latency(us: &[u64]) -> Latency {
    if us.is_empty() {
        return Latency::default();
    }
    let mut v = us.to_vec();
    v.sort_unstable();
    let q = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)] as f64 / 1000.0;
    Latency { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: *v.last().unwrap_or(&0) as f64 / 1000.0 }
}

/// Usage of one receiver during a phase.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverReport {
    /// Process id.
    pub pid: u32,
    /// CPU seconds used.
    pub cpu_seconds: f64,
    /// Acknowledged samples per CPU-second.
    pub samples_per_cpu_second: f64,
    /// Peak RSS during the phase.
    pub peak_rss_bytes: u64,
    /// Peak RSS divided by active series.
    pub peak_rss_per_series_bytes: f64,
}

/// One phase of a run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Phase name.
    pub phase: String,
    /// Requests sent (retries not counted).
    pub requests: u64,
    /// Samples acknowledged.
    pub samples_acked: u64,
    /// Samples dropped (a non-retryable 4xx or given up).
    pub samples_dropped: u64,
    /// Final status code counts.
    pub status: BTreeMap<String, u64>,
    /// Retries made.
    pub retries: u64,
    /// Wall seconds.
    pub wall_seconds: f64,
    /// Acknowledged samples per wall second.
    pub samples_per_second: f64,
    /// Latency of HTTP exchanges.
    pub latency_ms: Latency,
    /// Receivers watched.
    pub receivers: Vec<ReceiverReport>,
    /// First error responses seen.
    pub errors: Vec<String>,
}

impl PhaseReport {
    /// Summarises a phase. `active_series` scales RSS per series.
    pub fn new(phase: &str, r: &PhaseResult, usage: &[(u32, Usage)], active_series: usize) -> PhaseReport {
        let mut status = BTreeMap::new();
        let (mut acked, mut dropped, mut retries) = (0u64, 0u64, 0u64);
        for o in &r.outcomes {
            *status.entry(o.status.to_string()).or_default() += 1;
            retries += o.attempts.saturating_sub(1) as u64;
            if (200..300).contains(&o.status) {
                acked += o.samples as u64;
            } else {
                dropped += o.samples as u64;
            }
        }
        let wall = r.wall.as_secs_f64();
        PhaseReport {
            phase: phase.to_string(),
            requests: r.outcomes.len() as u64,
            samples_acked: acked,
            samples_dropped: dropped,
            status,
            retries,
            wall_seconds: wall,
            samples_per_second: if wall > 0.0 { acked as f64 / wall } else { 0.0 },
            latency_ms: latency(&r.latencies_us),
            receivers: usage
                .iter()
                .map(|(pid, u)| ReceiverReport {
                    pid: *pid,
                    cpu_seconds: u.cpu_seconds,
                    samples_per_cpu_second: if u.cpu_seconds > 0.0 { acked as f64 / u.cpu_seconds } else { 0.0 },
                    peak_rss_bytes: u.peak_rss,
                    peak_rss_per_series_bytes: u.peak_rss as f64 / active_series.max(1) as f64,
                })
                .collect(),
            errors: r.errors.clone(),
        }
    }

    /// The watched receivers as one (a ring): CPU seconds and peak RSS summed.
    pub fn total(&self) -> Option<ReceiverReport> {
        let first = self.receivers.first()?;
        let cpu: f64 = self.receivers.iter().map(|r| r.cpu_seconds).sum();
        let rss: u64 = self.receivers.iter().map(|r| r.peak_rss_bytes).sum();
        // Per-series RSS was computed per receiver against the same series count.
        let per_series: f64 = self.receivers.iter().map(|r| r.peak_rss_per_series_bytes).sum();
        Some(ReceiverReport {
            pid: first.pid,
            cpu_seconds: cpu,
            samples_per_cpu_second: if cpu > 0.0 { self.samples_acked as f64 / cpu } else { 0.0 },
            peak_rss_bytes: rss,
            peak_rss_per_series_bytes: per_series,
        })
    }
}

/// A plain-text table of phase reports. With several receivers the CPU and RSS columns are
/// their sums (a ring measured as one), and a line per receiver follows each phase.
pub fn table(reports: &[PhaseReport]) -> String {
    let mut out = format!(
        "{:<12} {:>8} {:>11} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12} {:>10}  {}\n",
        "phase",
        "requests",
        "acked",
        "dropped",
        "samples/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "cpu s",
        "samples/cpu",
        "rss/series",
        "status"
    );
    for r in reports {
        let total = r.total();
        let rx = total.as_ref();
        out.push_str(&format!(
            "{:<12} {:>8} {:>11} {:>9} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10} {:>12} {:>10}  {}\n",
            r.phase,
            r.requests,
            r.samples_acked,
            r.samples_dropped,
            r.samples_per_second,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.latency_ms.max,
            rx.map(|x| format!("{:.2}", x.cpu_seconds)).unwrap_or_else(|| "-".into()),
            rx.map(|x| format!("{:.0}", x.samples_per_cpu_second)).unwrap_or_else(|| "-".into()),
            rx.map(|x| format!("{:.0} B", x.peak_rss_per_series_bytes)).unwrap_or_else(|| "-".into()),
            r.status.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" "),
        ));
        if r.receivers.len() > 1 {
            for x in &r.receivers {
                out.push_str(&format!(
                    "{:<12} {:>83} {:>10.2} {:>12.0} {:>8.0} B\n",
                    "",
                    format!("pid {}", x.pid),
                    x.cpu_seconds,
                    x.samples_per_cpu_second,
                    x.peak_rss_per_series_bytes,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let l = latency(&v);
        assert_eq!((l.p50, l.p99, l.max), (51.0, 99.0, 100.0));
        assert_eq!(latency(&[]).p99, 0.0);
    }

    #[test]
    fn several_receivers_are_summed() {
        let rx = |pid, cpu: f64, rss: u64| ReceiverReport {
            pid,
            cpu_seconds: cpu,
            samples_per_cpu_second: 1000.0 / cpu,
            peak_rss_bytes: rss,
            peak_rss_per_series_bytes: rss as f64 / 10.0,
        };
        let r = PhaseReport {
            phase: "steady".into(),
            requests: 1,
            samples_acked: 1000,
            samples_dropped: 0,
            status: BTreeMap::new(),
            retries: 0,
            wall_seconds: 1.0,
            samples_per_second: 1000.0,
            latency_ms: Latency::default(),
            receivers: vec![rx(7, 2.0, 100), rx(8, 1.0, 50), rx(9, 1.0, 50)],
            errors: vec![],
        };
        let t = r.total().unwrap();
        assert_eq!((t.cpu_seconds, t.samples_per_cpu_second, t.peak_rss_bytes), (4.0, 250.0, 200));
        assert_eq!(t.peak_rss_per_series_bytes, 20.0);
        let text = table(&[r]);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().nth(1).unwrap().contains(" 4.00 "), "{text}");
        assert!(text.lines().nth(2).unwrap().contains("pid 7"), "{text}");
    }
}
