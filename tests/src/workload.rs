//! A deterministic remote-write workload and the record of what was acknowledged.

use std::collections::BTreeMap;

use ringest_proto::prometheus as pb;

use crate::client::{RemoteWriter, label};
use crate::oracle::labels_string;

/// Stale marker bits.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A generated set of series written in rounds (one sample per series per round).
#[derive(Debug, Clone)]
pub struct Workload {
    /// Number of series.
    pub series: usize,
    /// Series per request.
    pub batch: usize,
    /// Timestamp of round 0.
    pub start_ms: i64,
    /// Time between rounds.
    pub step_ms: i64,
    /// Metric-name prefix (distinguishes workloads).
    pub name: String,
}

/// Samples of one request: label string, timestamp, value bits.
pub type Sent = Vec<(String, i64, u64)>;

/// Acknowledged samples: label string → timestamp → value bits.
pub type Acked = BTreeMap<String, BTreeMap<i64, u64>>;

impl Workload {
    /// Labels of series `i`.
    pub fn labels(&self, i: usize) -> Vec<(String, String)> {
        vec![
            ("__name__".into(), format!("{}_{}", self.name, i % 7)),
            ("instance".into(), format!("host-{i}")),
            ("job".into(), "e2e".into()),
        ]
    }

    /// Value of series `i` in `round`: mostly counters, with every special value mixed in.
    pub fn value(&self, i: usize, round: usize) -> f64 {
        match (i * 31 + round) % 23 {
            0 => f64::NAN,
            1 => f64::from_bits(STALE_NAN),
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => -0.0,
            5 => 5e-324,
            6 => f64::MIN_POSITIVE / 3.0,
            7 => 0.1 * round as f64,
            _ => (round * 1000 + i) as f64,
        }
    }

    /// Timestamp of `round` for series `i` (a little jitter, like real scrapes).
    pub fn ts(&self, i: usize, round: usize) -> i64 {
        self.start_ms + round as i64 * self.step_ms + (i % 13) as i64
    }

    /// The requests of one round.
    pub fn round(&self, round: usize) -> Vec<(pb::WriteRequest, Sent)> {
        (0..self.series)
            .collect::<Vec<_>>()
            .chunks(self.batch)
            .map(|idx| {
                let mut req = pb::WriteRequest::default();
                let mut sent = Vec::new();
                for &i in idx {
                    let labels = self.labels(i);
                    let (t, v) = (self.ts(i, round), self.value(i, round));
                    req.timeseries.push(pb::TimeSeries {
                        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
                        samples: vec![pb::Sample { value: v, timestamp: t }],
                        ..Default::default()
                    });
                    sent.push((labels_string(&labels), t, v.to_bits()));
                }
                (req, sent)
            })
            .collect()
    }

    /// Sends rounds `rounds` in order and records what was acknowledged. Stops at the first
    /// request that fails (connection error or non-2xx) and returns the samples of that
    /// request as in flight (possibly stored, never acknowledged).
    pub fn send(
        &self,
        w: &mut RemoteWriter,
        rounds: std::ops::Range<usize>,
        acked: &mut Acked,
    ) -> Result<(), InFlight> {
        for r in rounds {
            for (req, sent) in self.round(r) {
                match w.send(&req) {
                    Ok(resp) if resp.status == 200 => {
                        for (l, t, v) in sent {
                            acked.entry(l).or_default().insert(t, v);
                        }
                    }
                    Ok(resp) => return Err(InFlight { sent, reason: format!("{} {}", resp.status, resp.text()) }),
                    Err(e) => return Err(InFlight { sent, reason: e.to_string() }),
                }
            }
        }
        Ok(())
    }
}

/// The request that was interrupted.
#[derive(Debug)]
pub struct InFlight {
    /// Its samples.
    pub sent: Sent,
    /// Why it failed.
    pub reason: String,
}
