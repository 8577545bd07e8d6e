//! A run's requests, encoded before the clock starts.
//!
//! Like Prometheus' remote-write queue: every series belongs to one of N shards (by a hash of
//! its index, so it always goes through the same shard, in timestamp order) and each shard
//! sends batches of at most `max_samples_per_send` samples. One round gives every series one
//! sample. A request is identified by `(round, shard, batch)`, from which its samples can be
//! regenerated exactly (see [`Plan::samples_of`]).

use serde::{Deserialize, Serialize};

use crate::encode::{self, Series};
use crate::shape::{Shape, splitmix64};

/// One sample as sent: labels, timestamp, value.
pub type Sample = (Vec<(String, String)>, i64, f64);

/// Identifies one request of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReqId {
    /// Round (one sample per series).
    pub round: u32,
    /// Shard.
    pub shard: u16,
    /// Batch within the shard and round.
    pub batch: u32,
}

/// How a workload is cut into requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// The series.
    pub shape: Shape,
    /// Concurrent senders.
    pub shards: usize,
    /// Samples per request at most.
    pub max_samples_per_send: usize,
    /// Send remote write 2.0 (`io.prometheus.write.v2.Request`) instead of 1.0.
    #[serde(default)]
    pub remote_write_v2: bool,
}

/// One pre-encoded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its id.
    pub id: ReqId,
    /// snappy(protobuf) body.
    pub body: Vec<u8>,
    /// Samples in it.
    pub samples: u32,
}

/// Pre-encoded requests of some rounds: `rounds[r][shard]` lists the shard's requests of round r.
#[derive(Debug)]
pub struct Plan {
    /// The layout.
    pub layout: Layout,
    /// First round held.
    pub first_round: usize,
    /// Requests by round, then shard.
    pub rounds: Vec<Vec<Vec<Request>>>,
    /// Series indexes of each shard, in order.
    members: Vec<Vec<u32>>,
}

impl Layout {
    /// The shard of series `index`.
    pub fn shard_of(&self, index: usize) -> usize {
        (splitmix64(index as u64 ^ 0x5eed) % self.shards as u64) as usize
    }

    fn members(&self) -> Vec<Vec<u32>> {
        let mut m = vec![Vec::new(); self.shards];
        for i in 0..self.shape.series {
            m[self.shard_of(i)].push(i as u32);
        }
        m
    }
}

impl Plan {
    /// Encodes rounds `rounds` (in parallel over the machine's cores).
    pub fn build(layout: &Layout, rounds: std::ops::Range<usize>) -> Plan {
        let members = layout.members();
        let first_round = rounds.start;
        let jobs: Vec<(usize, usize)> = rounds.clone().flat_map(|r| (0..layout.shards).map(move |s| (r, s))).collect();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(r, shard)) = jobs.get(j) else { break };
                        let reqs = encode_shard_round(layout, &members[shard], r, shard);
                        done.lock().unwrap().push((r, shard, reqs));
                    }
                });
            }
        });
        let mut out: Vec<Vec<Vec<Request>>> =
            rounds.map(|_| (0..layout.shards).map(|_| Vec::new()).collect()).collect();
        for (r, s, reqs) in done.into_inner().unwrap() {
            out[r - first_round][s] = reqs;
        }
        Plan { layout: layout.clone(), first_round, rounds: out, members }
    }

    /// The rounds held.
    pub fn round_range(&self) -> std::ops::Range<usize> {
        self.first_round..self.first_round + self.rounds.len()
    }

    /// Requests of `round`, by shard.
    pub fn round(&self, round: usize) -> &[Vec<Request>] {
        &self.rounds[round - self.first_round]
    }

    /// Total samples in the plan.
    pub fn samples(&self) -> u64 {
        self.rounds.iter().flatten().flatten().map(|r| r.samples as u64).sum()
    }

    /// Bytes of encoded bodies held.
    pub fn bytes(&self) -> u64 {
        self.rounds.iter().flatten().flatten().map(|r| r.body.len() as u64).sum()
    }

    /// The samples of a request: `(labels, timestamp, value)`.
    pub fn samples_of(&self, id: ReqId) -> Vec<Sample> {
        samples_of(&self.layout, &self.members, id)
    }

    /// Shard memberships (for regenerating samples without encoding).
    pub fn members_of(layout: &Layout) -> Vec<Vec<u32>> {
        layout.members()
    }
}

/// The samples of request `id` given the shard memberships.
pub fn samples_of(layout: &Layout, members: &[Vec<u32>], id: ReqId) -> Vec<Sample> {
    let m = &members[id.shard as usize];
    let per = layout.max_samples_per_send;
    let start = id.batch as usize * per;
    let r = id.round as usize;
    m[start.min(m.len())..(start + per).min(m.len())]
        .iter()
        .map(|&i| {
            let i = i as usize;
            let g = layout.shape.generation(i, r);
            (layout.shape.labels(i, g), layout.shape.timestamp(i, r), layout.shape.value(i, g, r))
        })
        .collect()
}

fn encode_shard_round(layout: &Layout, members: &[u32], round: usize, shard: usize) -> Vec<Request> {
    let shape = &layout.shape;
    members
        .chunks(layout.max_samples_per_send.max(1))
        .enumerate()
        .map(|(b, chunk)| {
            let mut raw = Vec::with_capacity(chunk.len() * 200);
            let mut v2 = encode::V2Request::default();
            for &i in chunk {
                let i = i as usize;
                let g = shape.generation(i, round);
                let labels = shape.labels(i, g);
                let sample = [(shape.timestamp(i, round), shape.value(i, g, round))];
                let series = Series { labels: &labels, samples: &sample };
                if layout.remote_write_v2 {
                    v2.put_series(series);
                } else {
                    encode::put_series(&mut raw, series);
                }
            }
            if layout.remote_write_v2 {
                raw = v2.finish();
            }
            Request {
                id: ReqId { round: round as u32, shard: shard as u16, batch: b as u32 },
                body: encode::snappy(&raw),
                samples: chunk.len() as u32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_once_per_round_in_one_shard() {
        let layout = Layout { shape: Shape::node(5000), shards: 8, max_samples_per_send: 300, remote_write_v2: false };
        let plan = Plan::build(&layout, 2..4);
        assert_eq!(plan.samples(), 10_000);
        for r in plan.round_range() {
            let mut seen = std::collections::HashSet::new();
            for (s, reqs) in plan.round(r).iter().enumerate() {
                for req in reqs {
                    assert_eq!(req.id.round as usize, r);
                    assert_eq!(req.id.shard as usize, s);
                    assert!(req.samples as usize <= 300);
                    for (labels, t, _) in plan.samples_of(req.id) {
                        assert!(seen.insert(labels));
                        assert!(t >= layout.shape.start_ms + r as i64 * 15_000);
                    }
                }
            }
            assert_eq!(seen.len(), 5000);
        }
    }
}
