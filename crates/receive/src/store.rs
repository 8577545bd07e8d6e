//! The StoreAPI read path: `thanos.Store` (Series, LabelNames, LabelValues),
//! `thanos.info.Info`, and `thanos.Status` and `thanos.Exemplars` ([`status`]) over every
//! tenant's blocks and head, answering as Thanos Receive does
//! (its proxy over one TSDB store per tenant; facts in the shared spec §3.4).
//!
//! Per tenant, matchers on the tenant's external labels are checked against them and dropped
//! (a contradiction leaves the tenant out; nothing left is Thanos' "no matchers specified
//! (excluding external labels)", a warning or, with partial responses off, `Aborted`). Series
//! get the external labels, which win over their own; `without_replica_labels` are taken out of
//! both; sharding hashes the final labels. Chunks go out whole as stored (each sample once
//! across blocks and head, see `Tsdb::select_chunks`), about 1 MiB of chunks per frame, every
//! series sorted by its final labels, warnings first, in batches when the client asks.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;

use ringest_proto::thanos::info::{
    ExemplarsInfo, InfoRequest, InfoResponse, StatusInfo, StoreInfo, TsdbInfo, info_server,
};
use ringest_proto::thanos::{
    AggrChunk, Chunk, Label, LabelMatcher, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, PartialResponseStrategy, Series, SeriesBatch, SeriesRequest, SeriesResponse, ShardInfo,
    ZLabelSet, label_matcher, series_response, store_server,
};
use ringest_tsdb::Tsdb;
use ringest_tsdb::postings::{MatchKind, Matcher};
use tonic::{Request, Response, Status};

mod status;

use crate::external::ExternalLabels;
use crate::probe::Probe;
use crate::tenancy::Tenants;

/// Bytes of chunks per Series frame (Thanos' remote-read frame limit), less the labels' size.
const MAX_BYTES_PER_FRAME: i64 = 1 << 20;

/// `--store.limits.request-series` and `--store.limits.request-samples` (0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Series per Series call.
    pub series: u64,
    /// Samples per Series call (counted from the chunks' headers).
    pub samples: u64,
}

/// The StoreAPI of this node.
#[derive(Debug, Clone)]
pub struct StoreApi {
    tenants: Arc<Tenants>,
    probe: Arc<Probe>,
    ext: Arc<ExternalLabels>,
    limits: Limits,
    /// `thanos_store_selects_dropped_total{reason}`: Series calls refused by a limit.
    dropped: prometheus::IntCounterVec,
}

impl StoreApi {
    /// A StoreAPI over `tenants`, registering its metrics in `registry`.
    pub fn new(
        tenants: Arc<Tenants>,
        probe: Arc<Probe>,
        ext: Arc<ExternalLabels>,
        limits: Limits,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<StoreApi> {
        let dropped = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "thanos_store_selects_dropped_total",
                "Number of selects that were dropped due to store limits.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(StoreApi { tenants, probe, ext, limits, dropped })
    }
}

/// The Thanos name of a tenant store in messages: its time range.
fn tenant_name(db: &Tsdb) -> String {
    format!("MinTime: {} MaxTime: {}", db.lowest_timestamp(), i64::MAX)
}

/// Converts request matchers; a bad one is `InvalidArgument`.
fn matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    ms.iter()
        .map(|m| {
            let kind = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchKind::Equal,
                Ok(label_matcher::Type::Neq) => MatchKind::NotEqual,
                Ok(label_matcher::Type::Re) => MatchKind::Regex,
                Ok(label_matcher::Type::Nre) => MatchKind::NotRegex,
                Err(_) => {
                    return Err(Status::invalid_argument(format!("unrecognized label matcher type {}", m.r#type)));
                }
            };
            Matcher::new(kind, &m.name, &m.value).map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}

/// The matchers left for a tenant's data once those on its external labels are checked;
/// `None` when one contradicts them (the tenant has nothing to give).
fn strip_external(ms: &[Matcher], ext: &BTreeMap<String, String>) -> Option<Vec<Matcher>> {
    let mut left = Vec::new();
    for m in ms {
        match ext.get(&m.name) {
            Some(v) if m.matches(v) => {}
            Some(_) => return None,
            None => left.push(m.clone()),
        }
    }
    Some(left)
}

fn abort_on_error(partial_disabled: bool, strategy: i32) -> bool {
    partial_disabled || strategy == PartialResponseStrategy::Abort as i32
}

/// Serialized size of a label message (without its tag and length), as Thanos counts it.
fn label_size(name: &str, value: &str) -> i64 {
    let field = |n: usize| if n == 0 { 0 } else { 1 + prost::length_delimiter_len(n) + n };
    (field(name.len()) + field(value.len())) as i64
}

/// Whether a series with final labels `labels` belongs to the requested shard.
fn in_shard(labels: &[(String, String)], shard: Option<&ShardInfo>) -> bool {
    let Some(s) = shard.filter(|s| s.total_shards >= 1) else { return true };
    let mut buf = Vec::new();
    for (n, v) in labels {
        if s.labels.iter().any(|l| l == n) != s.by {
            continue;
        }
        buf.extend_from_slice(n.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    let hash = xxhash_rust::xxh64::xxh64(&buf, 0);
    hash % s.total_shards as u64 == s.shard_index as u64
}

/// One tenant's answer to a Series request: its series frames (final labels, chunks).
type Frames = Vec<(Vec<(String, String)>, Series)>;

fn tenant_series(
    db: &Tsdb,
    ext: &BTreeMap<String, String>,
    req: &SeriesRequest,
    ms: &[Matcher],
) -> Result<Frames, String> {
    let removed: BTreeSet<&str> = req.without_replica_labels.iter().map(String::as_str).collect();
    let series = db.select_chunks(ms, req.min_time, req.max_time).map_err(|e| format!("code = Internal desc = {e}"))?;
    let mut out = Frames::new();
    for s in series {
        let mut labels: BTreeMap<String, String> =
            s.labels.0.into_iter().filter(|l| !removed.contains(l.name.as_str())).map(|l| (l.name, l.value)).collect();
        for (k, v) in ext.iter().filter(|(k, _)| !removed.contains(k.as_str())) {
            labels.insert(k.clone(), v.clone());
        }
        let labels: Vec<(String, String)> = labels.into_iter().collect();
        if !in_shard(&labels, req.shard_info.as_ref()) {
            continue;
        }
        let wire: Vec<Label> = labels.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect();
        if req.skip_chunks {
            out.push((labels, Series { labels: wire, chunks: Vec::new() }));
            continue;
        }
        let base = MAX_BYTES_PER_FRAME - labels.iter().map(|(n, v)| label_size(n, v)).sum::<i64>();
        let (mut budget, mut frame) = (base, Vec::new());
        let last = s.chunks.len().saturating_sub(1);
        for (i, c) in s.chunks.into_iter().enumerate() {
            let hash = xxhash_rust::xxh64::xxh64(&c.data, 0);
            let chunk = AggrChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                raw: Some(Chunk { r#type: ringest_proto::thanos::chunk::Encoding::Xor as i32, data: c.data, hash }),
                ..Default::default()
            };
            budget -= prost::Message::encoded_len(&chunk) as i64;
            frame.push(chunk);
            if budget <= 0 || i == last {
                out.push((labels.clone(), Series { labels: wire.clone(), chunks: std::mem::take(&mut frame) }));
                budget = base;
            }
        }
    }
    Ok(out)
}

/// Everything a Series call sends, in order.
fn series_responses(
    tenants: Vec<(String, Arc<Tsdb>)>,
    ext: &ExternalLabels,
    req: &SeriesRequest,
    limits: Limits,
    dropped: &prometheus::IntCounterVec,
) -> Result<Vec<SeriesResponse>, Status> {
    let ms = matchers(&req.matchers)?;
    if ms.is_empty() {
        return Err(Status::invalid_argument("no matchers specified (excluding selector labels)"));
    }
    let abort = abort_on_error(req.partial_response_disabled, req.partial_response_strategy);
    let mut warnings = Vec::new();
    let mut frames = Frames::new();
    for (tenant, db) in tenants {
        if db.lowest_timestamp() > req.max_time {
            continue;
        }
        let ext = ext.of(&tenant);
        let Some(left) = strip_external(&ms, &ext) else { continue };
        let result = if left.is_empty() {
            Err("code = InvalidArgument desc = no matchers specified (excluding external labels)".to_string())
        } else {
            tenant_series(&db, &ext, req, &left)
        };
        match result {
            Ok(f) => {
                frames.extend(f);
                check_limits(&frames, limits, dropped)?;
            }
            Err(e) => {
                let msg = format!("receive series from {}: rpc error: {e}", tenant_name(&db));
                if abort {
                    return Err(Status::aborted(msg));
                }
                warnings.push(msg);
            }
        }
    }
    frames.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<SeriesResponse> =
        warnings.into_iter().map(|w| SeriesResponse { result: Some(series_response::Result::Warning(w)) }).collect();
    let batch = usize::try_from(req.response_batch_size).unwrap_or(0);
    if batch > 1 {
        let series: Vec<Series> = frames.into_iter().map(|(_, s)| s).collect();
        for group in series.chunks(batch) {
            let b = SeriesBatch { series: group.to_vec() };
            out.push(SeriesResponse { result: Some(series_response::Result::Batch(b)) });
        }
    } else {
        out.extend(
            frames.into_iter().map(|(_, s)| SeriesResponse { result: Some(series_response::Result::Series(s)) }),
        );
    }
    if req.limit > 0 {
        out.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
    }
    Ok(out)
}

/// Refuses a call whose series or samples so far pass a limit, with Thanos' message.
fn check_limits(frames: &Frames, limits: Limits, dropped: &prometheus::IntCounterVec) -> Result<(), Status> {
    let refuse = |what: &str, reason: &str, limit: u64, got: u64| {
        dropped.with_label_values(&[reason]).inc();
        Status::unknown(format!("send series response: failed to send {what}: limit {limit} violated (got {got})"))
    };
    if limits.series > 0 {
        // Frames of one series are adjacent only after sorting: count distinct label sets.
        let series = frames.iter().map(|(l, _)| l).collect::<BTreeSet<_>>().len() as u64;
        if series > limits.series {
            return Err(refuse("series", "series", limits.series, series));
        }
    }
    if limits.samples > 0 {
        let samples: u64 = frames
            .iter()
            .flat_map(|(_, s)| &s.chunks)
            .filter_map(|c| c.raw.as_ref())
            .map(|c| u64::from(ringest_tsdb::chunkenc::xor_num_samples(&c.data)))
            .sum();
        if samples > limits.samples {
            return Err(refuse("samples", "chunks", limits.samples, samples));
        }
    }
    Ok(())
}

/// Runs blocking TSDB work off the reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("read failed: {e}")))?
}

type SeriesStream = Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl store_server::Store for StoreApi {
    type SeriesStream = SeriesStream;

    async fn series(&self, request: Request<SeriesRequest>) -> Result<Response<SeriesStream>, Status> {
        let req = request.into_inner();
        let (tenants, ext, limits, dropped) = (self.tenants.all(), self.ext.clone(), self.limits, self.dropped.clone());
        let out = blocking(move || series_responses(tenants, &ext, &req, limits, &dropped)).await?;
        let stream = tonic::codegen::tokio_stream::iter(out.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn label_names(&self, request: Request<LabelNamesRequest>) -> Result<Response<LabelNamesResponse>, Status> {
        let req = request.into_inner();
        let ms = matchers(&req.matchers)?;
        let (tenants, ext) = (self.tenants.all(), self.ext.clone());
        let abort = abort_on_error(req.partial_response_disabled, req.partial_response_strategy);
        blocking(move || {
            let removed: BTreeSet<&str> = req.without_replica_labels.iter().map(String::as_str).collect();
            let (mut names, mut warnings) = (BTreeSet::new(), Vec::new());
            for (tenant, db) in tenants {
                let ext = ext.of(&tenant);
                let Some(left) = strip_external(&ms, &ext) else { continue };
                let got = if left.is_empty() {
                    db.label_names(req.start, req.end)
                } else {
                    db.select(&left, req.start, req.end)
                        .map(|ss| ss.into_iter().flat_map(|s| s.labels.0.into_iter().map(|l| l.name)).collect())
                };
                match got {
                    Ok(mut n) => {
                        if !n.is_empty() {
                            n.extend(ext.keys().filter(|k| !removed.contains(k.as_str())).cloned());
                        }
                        names.extend(n);
                    }
                    Err(e) => {
                        let msg = format!("fetch label names from store {}: {e}", tenant_name(&db));
                        if abort {
                            return Err(Status::internal(msg));
                        }
                        warnings.push(msg);
                    }
                }
            }
            let mut names: Vec<String> = names.into_iter().collect();
            if req.limit > 0 {
                names.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
            }
            Ok(Response::new(LabelNamesResponse { names, warnings, hints: None }))
        })
        .await
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let req = request.into_inner();
        if req.label.is_empty() {
            return Err(Status::invalid_argument("label name parameter cannot be empty"));
        }
        let ms = matchers(&req.matchers)?;
        let (tenants, ext) = (self.tenants.all(), self.ext.clone());
        let abort = abort_on_error(req.partial_response_disabled, req.partial_response_strategy);
        blocking(move || {
            let (mut values, mut warnings) = (BTreeSet::new(), Vec::new());
            if req.without_replica_labels.contains(&req.label) {
                return Ok(Response::new(LabelValuesResponse::default()));
            }
            for (tenant, db) in tenants {
                let ext = ext.of(&tenant);
                let Some(left) = strip_external(&ms, &ext) else { continue };
                let got = match ext.get(&req.label) {
                    Some(v) if left.is_empty() => Ok(vec![v.clone()]),
                    Some(v) => db
                        .select(&left, req.start, req.end)
                        .map(|ss| if ss.is_empty() { vec![] } else { vec![v.clone()] }),
                    None if left.is_empty() => db.label_values(&req.label, req.start, req.end),
                    None => db
                        .select(&left, req.start, req.end)
                        .map(|ss| ss.into_iter().filter_map(|s| s.labels.get(&req.label).map(str::to_owned)).collect()),
                };
                match got {
                    Ok(v) => values.extend(v),
                    Err(e) => {
                        let msg = format!("fetch label values from store {}: {e}", tenant_name(&db));
                        if abort {
                            return Err(Status::internal(msg));
                        }
                        warnings.push(msg);
                    }
                }
            }
            let mut values: Vec<String> = values.into_iter().collect();
            if req.limit > 0 {
                values.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
            }
            Ok(Response::new(LabelValuesResponse { values, warnings, hints: None }))
        })
        .await
    }
}

#[tonic::async_trait]
impl info_server::Info for StoreApi {
    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        if !self.probe.is_ready() {
            return Err(Status::unknown("Not ready"));
        }
        let (tenants, ext) = (self.tenants.all(), self.ext.clone());
        blocking(move || {
            let mut label_sets: Vec<ZLabelSet> = Vec::new();
            let mut tsdb_infos = Vec::new();
            let mut min_time = if tenants.is_empty() { i64::MIN } else { i64::MAX };
            for (tenant, db) in &tenants {
                let set = ZLabelSet {
                    labels: ext.of(tenant).into_iter().map(|(name, value)| Label { name, value }).collect(),
                };
                let start = db.lowest_timestamp();
                min_time = min_time.min(start);
                tsdb_infos.push(TsdbInfo { labels: Some(set.clone()), min_time: start, max_time: i64::MAX });
                if !label_sets.contains(&set) {
                    label_sets.push(set);
                }
            }
            Ok(Response::new(InfoResponse {
                label_sets,
                component_type: "receive".into(),
                store: Some(StoreInfo {
                    min_time,
                    max_time: i64::MAX,
                    supports_sharding: true,
                    supports_without_replica_labels: true,
                    tsdb_infos,
                }),
                exemplars: Some(ExemplarsInfo { min_time: 0, max_time: 0 }),
                status: Some(StatusInfo {}),
                ..Default::default()
            }))
        })
        .await
    }
}
