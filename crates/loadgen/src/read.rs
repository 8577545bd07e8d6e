//! The bench's read phase: a fixed set of StoreAPI calls, shaped as Thanos Query sends them,
//! straight to a receiver's gRPC port, with the receiver's CPU and memory measured from
//! `/proc` as the write phases are.
//!
//! The query set (for the avalanche shape the bench writes, `<prefix>_metric_mmmmm_<m>_0`
//! with a `series_id` label): a selective query (one metric name), a regex query (ten metric
//! names), a wide query (every metric whose number starts with 1 or 2: 222 of 500 names, 44 %
//! of the series) and a series-only query (`skip_chunks`, the regex query's matchers), each
//! repeated a fixed number of times; then LabelValues of `series_id`, the label with the most
//! values (one per series of a metric: series / 500 values).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use ringest_proto::thanos as pb;
use ringest_proto::thanos::label_matcher::Type;

use crate::procstat::{self, Watch};
use crate::shape::Shape;
use crate::store::{Store, StoreError, matcher, regex_quote, series_request};

/// One query of the set.
#[derive(Debug, Clone)]
pub struct Query {
    /// Short name (report rows).
    pub name: &'static str,
    /// What it selects.
    pub description: String,
    /// Its matchers.
    pub matchers: Vec<pb::LabelMatcher>,
    /// Series only, no chunks.
    pub skip_chunks: bool,
    /// Calls in the measured phase.
    pub iterations: usize,
}

/// Calls per query (and LabelValues calls) in the measured read phase.
#[derive(Debug, Clone, Copy)]
pub struct Iterations {
    /// The selective query.
    pub selective: usize,
    /// The regex query.
    pub regex: usize,
    /// The wide query.
    pub wide: usize,
    /// The series-only query.
    pub series: usize,
    /// LabelValues.
    pub label_values: usize,
}

impl Iterations {
    /// The full bench's.
    pub const FULL: Iterations = Iterations { selective: 100, regex: 20, wide: 3, series: 20, label_values: 1000 };
    /// The smoke run's.
    pub const SMOKE: Iterations = Iterations { selective: 2, regex: 2, wide: 1, series: 2, label_values: 2 };
}

/// The label LabelValues asks for.
pub const VALUES_LABEL: &str = "series_id";

/// The query set for an avalanche-shaped workload.
pub fn queries(shape: &Shape, it: Iterations) -> Vec<Query> {
    let name = |re: &str| format!("{}_metric_mmmmm_{re}_0", regex_quote(&shape.prefix));
    let eq = format!("{}_metric_mmmmm_{}_0", shape.prefix, 7 % shape.metrics.max(1));
    let regex = name("4[0-9]");
    let wide = name("[12][0-9]*");
    vec![
        Query {
            name: "selective",
            description: format!("{{__name__=\"{eq}\"}}"),
            matchers: vec![matcher("__name__", Type::Eq, &eq)],
            skip_chunks: false,
            iterations: it.selective,
        },
        Query {
            name: "regex",
            description: format!("{{__name__=~\"{regex}\"}}"),
            matchers: vec![matcher("__name__", Type::Re, &regex)],
            skip_chunks: false,
            iterations: it.regex,
        },
        Query {
            name: "wide",
            description: format!("{{__name__=~\"{wide}\"}}"),
            matchers: vec![matcher("__name__", Type::Re, &wide)],
            skip_chunks: false,
            iterations: it.wide,
        },
        Query {
            name: "series",
            description: format!("{{__name__=~\"{regex}\"}}, skip_chunks"),
            matchers: vec![matcher("__name__", Type::Re, &regex)],
            skip_chunks: true,
            iterations: it.series,
        },
    ]
}

/// The measured calls of one query.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryReport {
    /// Short name.
    pub name: String,
    /// Its matchers.
    pub description: String,
    /// Calls made.
    pub calls: u64,
    /// Series returned, all calls.
    pub series: u64,
    /// Samples returned (in the chunks), all calls.
    pub samples: u64,
    /// Receiver CPU seconds.
    pub cpu_seconds: f64,
    /// Wall seconds.
    pub wall_seconds: f64,
    /// Receiver CPU microseconds per sample returned (none for series-only calls).
    pub cpu_us_per_sample: Option<f64>,
    /// Receiver CPU microseconds per series returned.
    pub cpu_us_per_series: Option<f64>,
}

/// LabelValues calls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelValuesReport {
    /// The label.
    pub label: String,
    /// Calls made.
    pub calls: u64,
    /// Values in one answer.
    pub values: u64,
    /// Receiver CPU seconds, all calls.
    pub cpu_seconds: f64,
    /// Receiver CPU milliseconds per call.
    pub cpu_ms_per_call: f64,
}

/// The measured read phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadReport {
    /// The first call after the writes (the first query once), apart: ringest builds its head
    /// index on the first read (Thanos keeps its index up to date while it writes), so this
    /// call carries that cost and the query rows do not.
    pub first_call: QueryReport,
    /// Per query.
    pub queries: Vec<QueryReport>,
    /// LabelValues of [`VALUES_LABEL`].
    pub label_values: LabelValuesReport,
    /// Receiver RSS just before the first call, bytes.
    pub rss_before: u64,
    /// Highest receiver RSS sampled during the calls, bytes.
    pub peak_rss: u64,
    /// `peak_rss - rss_before`.
    pub extra_rss: u64,
    /// Receiver RSS [`SETTLE`] after the calls, bytes: what the receiver keeps between reads
    /// (ringest's head index included).
    pub rss_after: u64,
}

/// How long after the last call [`ReadReport::rss_after`] is taken.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

fn per(x: f64, n: u64, scale: f64) -> Option<f64> {
    (n > 0).then(|| x * scale / n as f64)
}

/// Runs the query set, then LabelValues, against `store`, measuring process `pid`.
pub fn measure(
    store: &Store,
    pid: u32,
    queries: &[Query],
    range: (i64, i64),
    label_values_calls: usize,
) -> Result<ReadReport, StoreError> {
    let mut rep = ReadReport { rss_before: procstat::sample(pid).map(|s| s.rss).unwrap_or(0), ..Default::default() };
    let mut peak = 0;
    if let Some(q) = queries.first() {
        let watch = Watch::start(&[pid]);
        let n = call(store, q, range)?;
        let usage = watch.finish().into_iter().next().unwrap_or_default();
        peak = peak.max(usage.peak_rss);
        rep.first_call = QueryReport {
            name: q.name.into(),
            description: q.description.clone(),
            calls: 1,
            series: n.series,
            samples: n.samples,
            cpu_seconds: usage.cpu_seconds,
            ..Default::default()
        };
    }
    for q in queries {
        let watch = Watch::start(&[pid]);
        let start = std::time::Instant::now();
        let mut r = QueryReport { name: q.name.into(), description: q.description.clone(), ..Default::default() };
        for _ in 0..q.iterations {
            let n = call(store, q, range)?;
            r.calls += 1;
            r.series += n.series;
            r.samples += n.samples;
        }
        r.wall_seconds = start.elapsed().as_secs_f64();
        let usage = watch.finish().into_iter().next().unwrap_or_default();
        peak = peak.max(usage.peak_rss);
        r.cpu_seconds = usage.cpu_seconds;
        r.cpu_us_per_sample = if q.skip_chunks { None } else { per(r.cpu_seconds, r.samples, 1e6) };
        r.cpu_us_per_series = per(r.cpu_seconds, r.series, 1e6);
        rep.queries.push(r);
    }
    let watch = Watch::start(&[pid]);
    let mut lv = LabelValuesReport { label: VALUES_LABEL.into(), ..Default::default() };
    for _ in 0..label_values_calls {
        let resp = store.label_values(pb::LabelValuesRequest {
            label: VALUES_LABEL.into(),
            start: range.0,
            end: range.1,
            partial_response_strategy: pb::PartialResponseStrategy::Warn as i32,
            ..Default::default()
        })?;
        lv.calls += 1;
        lv.values = resp.values.len() as u64;
    }
    let usage = watch.finish().into_iter().next().unwrap_or_default();
    peak = peak.max(usage.peak_rss);
    lv.cpu_seconds = usage.cpu_seconds;
    lv.cpu_ms_per_call = per(lv.cpu_seconds, lv.calls, 1e3).unwrap_or(0.0);
    rep.label_values = lv;
    rep.peak_rss = peak;
    rep.extra_rss = peak.saturating_sub(rep.rss_before);
    // What stays once the calls' buffers are given back: ringest's allocator returns freed
    // memory after a second.
    std::thread::sleep(SETTLE);
    rep.rss_after = procstat::sample(pid).map(|s| s.rss).unwrap_or(0);
    Ok(rep)
}

/// One Series call of `q`.
pub fn call(store: &Store, q: &Query, range: (i64, i64)) -> Result<crate::store::SeriesCount, StoreError> {
    let mut req = series_request(q.matchers.clone(), range.0, range.1);
    req.skip_chunks = q.skip_chunks;
    store.series(req, |_| Ok(()))
}

/// The query set over and over (one call of each query per cycle) until `stop`: the read load
/// under which the bench measures write latency. Returns the calls made.
pub fn cycle(store: &Store, queries: &[Query], range: (i64, i64), stop: &AtomicBool) -> Result<u64, StoreError> {
    let mut calls = 0;
    while !stop.load(Ordering::Relaxed) {
        for q in queries {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            call(store, q, range)?;
            calls += 1;
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_set_selects_the_documented_metric_names() {
        let shape = Shape::avalanche(100_000);
        let qs = queries(&shape, Iterations::FULL);
        let names: Vec<String> = (0..shape.metrics).map(|m| format!("avalanche_metric_mmmmm_{m}_0")).collect();
        // Prometheus' regex matchers are anchored at both ends.
        let count = |re: &str| {
            let re = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
            names.iter().filter(|n| re.is_match(n)).count()
        };
        assert_eq!(qs[0].matchers[0].value, "avalanche_metric_mmmmm_7_0");
        assert_eq!(count(&qs[1].matchers[0].value), 10);
        assert_eq!(count(&qs[2].matchers[0].value), 222);
        assert!(qs[3].skip_chunks && !qs[2].skip_chunks);
    }
}
