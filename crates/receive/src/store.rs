//! The StoreAPI read path: `thanos.Store` (Series, LabelNames, LabelValues),
//! `thanos.info.Info`, and `thanos.Status` and `thanos.Exemplars` ([`status`]) over every
//! tenant's blocks and head, answering as Thanos Receive does
//! (its proxy over one TSDB store per tenant; facts in the shared spec §3.4).
//!
//! Per tenant, matchers on the tenant's external labels are checked against them and dropped
//! (a contradiction leaves the tenant out; nothing left is Thanos' "no matchers specified
//! (excluding external labels)", a warning or, with partial responses off, `Aborted`). Series
//! get the external labels, which win over their own; `without_replica_labels` are taken out of
//! both; sharding hashes the final labels. Series answers stream ([`series`]).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ringest_proto::encoded::Encoded;
use ringest_proto::thanos::info::{
    ExemplarsInfo, InfoRequest, InfoResponse, StatusInfo, StoreInfo, TsdbInfo, info_server,
};
use ringest_proto::thanos::{
    Label, LabelMatcher, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, PartialResponseStrategy,
    SeriesRequest, ZLabelSet, label_matcher,
};
use ringest_trace::{KeyValue, Span};
use ringest_tsdb::postings::{MatchKind, Matcher};
use ringest_tsdb::{LabelTable, StringList, Tsdb};
use tonic::{Request, Response, Status};

mod series;
mod status;

use crate::external::ExternalLabels;
use crate::probe::Probe;
use crate::tenancy::Tenants;

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
    /// See [`series::STALL`].
    stall: Duration,
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
        Ok(StoreApi { tenants, probe, ext, limits, dropped, stall: series::STALL })
    }
}

/// The Thanos name of a tenant store in messages: its time range.
pub(super) fn tenant_name(db: &Tsdb) -> String {
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
pub(super) fn strip_external(ms: &[Matcher], ext: &BTreeMap<String, String>) -> Option<Vec<Matcher>> {
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

pub(super) fn abort_on_error(partial_disabled: bool, strategy: i32) -> bool {
    partial_disabled || strategy == PartialResponseStrategy::Abort as i32
}

/// The labels of the series `ms` selects with data in `[mint, maxt]` (no sample is read).
fn selected_labels(
    db: &Tsdb,
    ms: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Result<(LabelTable, Vec<ringest_tsdb::labels::SetRef>), ringest_tsdb::TsdbError> {
    let mut table = LabelTable::default();
    let sets = db.reader(mint, maxt)?.select(ms, &mut table)?.into_iter().map(|s| s.labels).collect();
    Ok((table, sets))
}

/// A `thanos.LabelValuesResponse` written straight from `values` (a million values cost no
/// string each): `values` and `warnings` are repeated strings, fields 1 and 2.
fn label_values_response(values: &StringList, warnings: &[String]) -> Encoded {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    let strings = || values.iter().map(|v| (1, v)).chain(warnings.iter().map(|w| (2, w.as_str())));
    let len: usize = strings().map(|(_, s)| 1 + encoded_len_varint(s.len() as u64) + s.len()).sum();
    let mut buf = Vec::with_capacity(len);
    for (tag, s) in strings() {
        encode_key(tag, WireType::LengthDelimited, &mut buf);
        encode_varint(s.len() as u64, &mut buf);
        buf.extend_from_slice(s.as_bytes());
    }
    Encoded::from(buf)
}

/// Runs blocking TSDB work off the reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("read failed: {e}")))?
}

type SeriesStream = Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<Encoded, Status>> + Send>>;

/// The server span of a StoreAPI call (its method's full name, as Thanos' gRPC interceptor
/// names it), continuing the trace in the call's metadata (e.g. Thanos Query's).
fn server_span<T>(method: &'static str, request: &Request<T>) -> Span {
    if !ringest_trace::enabled() {
        return Span::none();
    }
    let headers = request.metadata().clone().into_headers();
    Span::server(method, &headers, || vec![KeyValue::new("component", "gRPC")])
}

/// Marks `span` failed when `r` is an error.
fn traced<T>(span: &Span, r: Result<T, Status>) -> Result<T, Status> {
    if let Err(st) = &r {
        span.fail(st.message());
    }
    r
}

/// A Series answer that holds its span until the last frame is taken (or the call is
/// dropped), marking it failed on an error frame.
struct TracedSeries {
    inner: SeriesStream,
    span: Span,
}

impl tonic::codegen::tokio_stream::Stream for TracedSeries {
    type Item = Result<Encoded, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = this.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(Err(st))) = &next {
            this.span.fail(st.message());
        }
        next
    }
}

#[tonic::async_trait]
impl ringest_proto::encoded::store_server::Store for StoreApi {
    type SeriesStream = SeriesStream;

    async fn series(&self, request: Request<SeriesRequest>) -> Result<Response<SeriesStream>, Status> {
        let span = server_span("/thanos.Store/Series", &request);
        let req = request.into_inner();
        let ms = traced(&span, matchers(&req.matchers))?;
        if ms.is_empty() {
            return traced(&span, Err(Status::invalid_argument("no matchers specified (excluding selector labels)")));
        }
        let call = series::Call {
            tenants: self.tenants.all(),
            ext: self.ext.clone(),
            limits: self.limits,
            dropped: self.dropped.clone(),
            stall: self.stall,
        };
        let answer: SeriesStream = Box::pin(call.answer(req, ms));
        if !ringest_trace::enabled() {
            return Ok(Response::new(answer));
        }
        Ok(Response::new(Box::pin(TracedSeries { inner: answer, span })))
    }

    async fn label_names(&self, request: Request<LabelNamesRequest>) -> Result<Response<LabelNamesResponse>, Status> {
        let span = server_span("/thanos.Store/LabelNames", &request);
        let req = request.into_inner();
        let ms = matchers(&req.matchers)?;
        let (tenants, ext) = (self.tenants.all(), self.ext.clone());
        let abort = abort_on_error(req.partial_response_disabled, req.partial_response_strategy);
        let answer = blocking(move || {
            let removed: BTreeSet<&str> = req.without_replica_labels.iter().map(String::as_str).collect();
            let (mut names, mut warnings) = (BTreeSet::new(), Vec::new());
            for (tenant, db) in tenants {
                let ext = ext.of(&tenant);
                let Some(left) = strip_external(&ms, &ext) else { continue };
                let got = if left.is_empty() {
                    db.label_names(req.start, req.end)
                } else {
                    selected_labels(&db, &left, req.start, req.end).map(|(table, sets)| {
                        let names: BTreeSet<&str> = sets.iter().flat_map(|&s| table.pairs(s).map(|(n, _)| n)).collect();
                        names.into_iter().map(str::to_owned).collect()
                    })
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
        .await;
        traced(&span, answer)
    }

    async fn label_values(&self, request: Request<LabelValuesRequest>) -> Result<Response<Encoded>, Status> {
        let span = server_span("/thanos.Store/LabelValues", &request);
        let req = request.into_inner();
        if req.label.is_empty() {
            return Err(Status::invalid_argument("label name parameter cannot be empty"));
        }
        let ms = matchers(&req.matchers)?;
        let (tenants, ext) = (self.tenants.all(), self.ext.clone());
        let abort = abort_on_error(req.partial_response_disabled, req.partial_response_strategy);
        let answer = blocking(move || {
            let (mut lists, mut warnings) = (Vec::new(), Vec::new());
            if req.without_replica_labels.contains(&req.label) {
                return Ok(Response::new(Encoded::default()));
            }
            for (tenant, db) in tenants {
                let ext = ext.of(&tenant);
                let Some(left) = strip_external(&ms, &ext) else { continue };
                let got = match ext.get(&req.label) {
                    Some(v) if left.is_empty() => Ok(StringList::from_sorted([v.as_str()])),
                    Some(v) => selected_labels(&db, &left, req.start, req.end).map(|(_, sets)| {
                        StringList::from_sorted(if sets.is_empty() { None } else { Some(v.as_str()) })
                    }),
                    None if left.is_empty() => db.label_values(&req.label, req.start, req.end),
                    None => selected_labels(&db, &left, req.start, req.end).map(|(table, sets)| {
                        let mut v: Vec<&str> = sets.iter().filter_map(|&s| table.get(s, &req.label)).collect();
                        v.sort_unstable();
                        v.dedup();
                        StringList::from_sorted(v)
                    }),
                };
                // Each list sorted, each value once.
                match got {
                    Ok(v) => lists.push(v),
                    Err(e) => {
                        let msg = format!("fetch label values from store {}: {e}", tenant_name(&db));
                        if abort {
                            return Err(Status::internal(msg));
                        }
                        warnings.push(msg);
                    }
                }
            }
            let mut values = StringList::merge(lists);
            if req.limit > 0 {
                values.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
            }
            Ok(Response::new(label_values_response(&values, &warnings)))
        })
        .await;
        traced(&span, answer)
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

#[cfg(test)]
mod tests {
    use prost::Message;
    use ringest_proto::thanos::LabelValuesResponse;

    use super::*;

    /// The hand-written LabelValues answer is the bytes prost writes, empty strings included.
    #[test]
    fn label_values_answers_are_the_bytes_prost_writes() {
        let values = StringList::from_sorted(["", "a", &"x".repeat(300), "é"]);
        let warnings = vec!["careful".to_string(), String::new()];
        let want = LabelValuesResponse {
            values: values.iter().map(str::to_owned).collect(),
            warnings: warnings.clone(),
            hints: None,
        };
        assert_eq!(label_values_response(&values, &warnings).bytes(), want.encode_to_vec());
        assert!(label_values_response(&StringList::default(), &[]).bytes().is_empty());
    }
}
