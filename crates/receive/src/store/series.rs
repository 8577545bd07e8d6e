//! Series answers that stream. Every tenant's selection is made first, on labels alone (as ids
//! into one table of strings, see `ringest_tsdb::LabelTable`), merged in the order of the final
//! labels; then a blocking task reads each series' chunks (whole as stored, each sample once
//! across blocks and head) and hands frames of about 1 MiB of chunks over a short channel as the
//! client takes them, batched when the client asks. A call holds its selection's labels and a
//! few frames, not its answer; it stops when the client goes away or takes no frame for
//! [`STALL`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ringest_proto::encoded::Encoded;
use ringest_proto::thanos::{SeriesRequest, ShardInfo};
use ringest_tsdb::db::{Candidates, Reader, Selected};
use ringest_tsdb::labels::{METRIC_NAME, Pairs};
use ringest_tsdb::postings::Matcher;
use ringest_tsdb::{LabelTable, RawChunk, Tsdb};
use tonic::Status;

use super::{Limits, abort_on_error, strip_external, tenant_name};
use crate::external::ExternalLabels;

mod frame;

/// Bytes of chunks per Series frame (Thanos' remote-read frame limit), less the labels' size.
const MAX_BYTES_PER_FRAME: i64 = 1 << 20;

/// Responses a Series call produces ahead of the client: its memory is about this many frames.
const FRAMES_IN_FLIGHT: usize = 4;

/// Frames the client takes from a full channel before its producer goes on.
const FRAMES_TO_WAKE: usize = 2;

/// How long a Series call waits for its client to take a frame before it stops (it holds back
/// head truncation meanwhile).
pub(super) const STALL: Duration = Duration::from_secs(60);

/// What a Series call needs besides its request.
pub(super) struct Call {
    pub(super) tenants: Vec<(String, Arc<Tsdb>)>,
    pub(super) ext: Arc<ExternalLabels>,
    pub(super) limits: Limits,
    pub(super) dropped: prometheus::IntCounterVec,
    pub(super) stall: Duration,
}

impl Call {
    /// Starts answering `req` (with its converted, non-empty matchers `ms`) on a blocking task;
    /// the answer streams as the client takes it.
    pub(super) fn answer(self, req: SeriesRequest, ms: Vec<Matcher>) -> Frames {
        let (mut out, frames) = Out::new(usize::try_from(req.response_batch_size).unwrap_or(0), self.stall);
        tokio::task::spawn_blocking(move || {
            let mut budget = Budget { limits: self.limits, dropped: &self.dropped, series: 0, samples: 0 };
            if let Err(Stop::Fail(status)) = stream_series(&self.tenants, &self.ext, &req, &ms, &mut budget, &mut out) {
                out.fail(status);
            }
            // What the call freed (its selection, and its frames, freed by the threads that
            // sent them) is given back now: the allocator would keep it for a second, in which
            // the next calls allocate anew (extra RSS over the bench's reads at 1M series: 0-7
            // MiB with this, 27-42 MiB without; the same CPU per sample).
            crate::pool::release_memory();
        });
        frames
    }
}

/// Whether a series with final labels `labels` belongs to the requested shard.
fn in_shard(labels: Pairs<'_>, shard: Option<&ShardInfo>) -> bool {
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

/// Where a Series answer goes, frame by frame, as the client takes them.
struct Out {
    tx: tokio::sync::mpsc::Sender<Result<Encoded, Status>>,
    /// How the answer ends when it fails: told after the frames already queued.
    end: Arc<parking_lot::Mutex<Option<Status>>>,
    runtime: tokio::runtime::Handle,
    /// The longest the client may leave a frame untaken before the read gives up.
    stall: Duration,
    /// `response_batch_size` (0 or 1: one series per response).
    batch_size: usize,
    /// The encoded `SeriesBatch.series` fields of the batch being filled (after room for its
    /// header), and how many.
    batch: Vec<u8>,
    batched: usize,
}

/// The client went away or stopped taking frames: stop reading.
struct Gone;

impl Out {
    /// A channel for one answer: the producer's end and the stream tonic sends.
    fn new(batch_size: usize, stall: Duration) -> (Out, Frames) {
        let (tx, rx) = tokio::sync::mpsc::channel(FRAMES_IN_FLIGHT);
        let end = Arc::new(parking_lot::Mutex::new(None));
        let runtime = tokio::runtime::Handle::current();
        let out = Out { tx, end: end.clone(), runtime, stall, batch_size, batch: Vec::new(), batched: 0 };
        (out, Frames { rx, end })
    }

    /// Sends one encoded `SeriesResponse`.
    fn send(&mut self, response: Encoded) -> Result<(), Gone> {
        let response = match self.tx.try_send(Ok(response)) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Err(Gone),
            Err(tokio::sync::mpsc::error::TrySendError::Full(response)) => response,
        };
        // Full: wait until the client has taken [`FRAMES_TO_WAKE`] frames, not one, so that
        // the producer sleeps and wakes once per few frames rather than once per frame.
        let room = self.runtime.block_on(async {
            let permits = tokio::time::timeout(self.stall, self.tx.reserve_many(FRAMES_TO_WAKE)).await;
            permits.map(|p| p.map(drop))
        });
        match room {
            Ok(Ok(())) => match self.tx.try_send(response) {
                Ok(()) => Ok(()),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(Gone),
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    unreachable!("only this producer takes room in its channel")
                }
            },
            Ok(Err(_closed)) => Err(Gone),
            Err(_elapsed) => {
                // A reader that waits on its client holds back head truncation.
                self.fail(Status::aborted(format!(
                    "the client took no series frame for {:?}: read stopped",
                    self.stall
                )));
                Err(Gone)
            }
        }
    }

    fn warning(&mut self, text: &str) -> Result<(), Gone> {
        self.flush()?;
        self.send(frame::warning(text).into())
    }

    /// Sends (or batches) a series frame of `labels` (whose label fields take `labels_len`
    /// bytes) and `chunks`.
    fn series(&mut self, labels: Pairs<'_>, labels_len: usize, chunks: &[(RawChunk, u64)]) -> Result<(), Gone> {
        let len = frame::series_len(labels_len, chunks);
        if self.batch_size <= 1 {
            let mut buf = Vec::with_capacity(len + 11);
            frame::put_message(frame::RESPONSE_SERIES, len, &mut buf, |b| frame::put_series(labels, chunks, b));
            return self.send(buf.into());
        }
        if self.batched == 0 {
            // Room for the batch's header, written when it is sent.
            self.batch.resize(frame::MAX_HEADER, 0);
        }
        frame::put_message(frame::BATCH_SERIES, len, &mut self.batch, |b| frame::put_series(labels, chunks, b));
        self.batched += 1;
        if self.batched < self.batch_size { Ok(()) } else { self.flush() }
    }

    fn flush(&mut self) -> Result<(), Gone> {
        if self.batched == 0 {
            return Ok(());
        }
        let next = Vec::with_capacity(self.batch.len());
        let mut batch = std::mem::replace(&mut self.batch, next);
        let start = frame::put_header_before(frame::RESPONSE_BATCH, &mut batch);
        self.batched = 0;
        self.send(Encoded::starting_at(batch, start))
    }

    /// Ends the answer with `status` once the frames already queued are sent.
    fn fail(&mut self, status: Status) {
        self.end.lock().get_or_insert(status);
    }
}

/// Samples a chunk counts for against `--store.limits.request-samples` (Thanos counts every
/// chunk as full, whatever it holds).
const SAMPLES_PER_CHUNK: u64 = 120;

/// Counts what a Series call sent against `--store.limits.*` as Thanos does: every series
/// frame is a series, every chunk [`SAMPLES_PER_CHUNK`] samples. (Thanos Receive checks only
/// unbatched responses, so a querier asking for batches escapes its limits; these apply to
/// every frame.)
struct Budget<'a> {
    limits: Limits,
    dropped: &'a prometheus::IntCounterVec,
    series: u64,
    samples: u64,
}

impl Budget<'_> {
    /// Takes one more series frame with `chunks` chunks; refuses it past a limit, with Thanos'
    /// message.
    fn take(&mut self, chunks: usize) -> Result<(), Status> {
        let refuse = |what: &str, reason: &str, limit: u64, got: u64| {
            self.dropped.with_label_values(&[reason]).inc();
            Status::unknown(format!("send series response: failed to send {what}: limit {limit} violated (got {got})"))
        };
        self.series += 1;
        if self.limits.series > 0 && self.series > self.limits.series {
            return Err(refuse("series", "series", self.limits.series, self.series));
        }
        self.samples += chunks as u64 * SAMPLES_PER_CHUNK;
        if self.limits.samples > 0 && self.samples > self.limits.samples {
            return Err(refuse("samples", "chunks", self.limits.samples, self.samples));
        }
        Ok(())
    }
}

/// Why a Series answer stopped early.
enum Stop {
    /// A limit or a failure: the call ends with this status.
    Fail(Status),
    /// The client went away.
    Gone,
}

impl From<Status> for Stop {
    fn from(s: Status) -> Stop {
        Stop::Fail(s)
    }
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Stop {
        Stop::Gone
    }
}

/// Sends one series as frames of about [`MAX_BYTES_PER_FRAME`] of chunks each (Thanos' cut:
/// a frame closes once its chunks and labels reach the limit).
fn send_series(
    out: &mut Out,
    budget: &mut Budget<'_>,
    labels: Pairs<'_>,
    chunks: Vec<RawChunk>,
    skip: bool,
) -> Result<(), Stop> {
    let (labels_budget, labels_len) = frame::labels_sizes(labels.clone());
    if skip {
        budget.take(0)?;
        return Ok(out.series(labels, labels_len, &[])?);
    }
    let base = MAX_BYTES_PER_FRAME - labels_budget as i64;
    let chunks: Vec<(RawChunk, u64)> = chunks
        .into_iter()
        .map(|c| {
            let hash = xxhash_rust::xxh64::xxh64(&c.data, 0);
            (c, hash)
        })
        .collect();
    let (mut room, mut start) = (base, 0);
    for (i, (c, hash)) in chunks.iter().enumerate() {
        room -= frame::aggr_len(c, *hash) as i64;
        if room <= 0 || i == chunks.len() - 1 {
            budget.take(i + 1 - start)?;
            out.series(labels.clone(), labels_len, &chunks[start..=i])?;
            (room, start) = (base, i + 1);
        }
    }
    Ok(())
}

/// Answers a Series call into `out`: every tenant's selection first (where each series' data
/// lies, grouped by metric name), then group by group in the order of their names, each group's
/// labels merged across tenants and sorted, and each series' chunks read and sent as the client
/// takes them. A call holds its selection's places, one group's labels and the chunks of about
/// one frame at a time. (When a label name sorts before `__name__`, the groups' order is not
/// their series' order and all are taken as one.)
fn stream_series(
    tenants: &[(String, Arc<Tsdb>)],
    ext: &ExternalLabels,
    req: &SeriesRequest,
    ms: &[Matcher],
    budget: &mut Budget<'_>,
    out: &mut Out,
) -> Result<(), Stop> {
    let abort = abort_on_error(req.partial_response_disabled, req.partial_response_strategy);
    let removed: Vec<&str> = req.without_replica_labels.iter().map(String::as_str).collect();
    let mut warnings = Vec::new();
    // A tenant's failure: the call's end, or a warning with partial responses.
    let failed = |warnings: &mut Vec<String>, db: &Tsdb, e: String| {
        let msg = format!("receive series from {}: rpc error: {e}", tenant_name(db));
        if abort {
            return Err(Status::aborted(msg));
        }
        warnings.push(msg);
        Ok(())
    };
    // Every tenant's reader and candidates, with the labels its series are finished with.
    let mut sources = Vec::new();
    // Whether the groups of every source can be taken in the order of their metric names.
    let mut by_name = !removed.contains(&METRIC_NAME);
    for (tenant, db) in tenants {
        if db.lowest_timestamp() > req.max_time {
            continue;
        }
        let ext = ext.of(tenant);
        let Some(left) = strip_external(ms, &ext) else { continue };
        if left.is_empty() {
            failed(
                &mut warnings,
                db,
                "code = InvalidArgument desc = no matchers specified (excluding external labels)".into(),
            )?;
            continue;
        }
        match db.reader(req.min_time, req.max_time).and_then(|r| Ok((r.candidates(&left)?, r))) {
            Ok((candidates, reader)) => {
                by_name &= !candidates.misordered() && ext.iter().all(|(n, _)| n.as_str() > METRIC_NAME);
                sources.push(Source { reader, db, ext, candidates });
            }
            Err(e) => failed(&mut warnings, db, format!("code = Internal desc = {e}"))?,
        }
    }
    for w in std::mem::take(&mut warnings) {
        out.warning(&w)?;
    }
    // Every source's groups, in the order their series are answered in.
    let mut groups: Vec<(Option<&str>, usize, u32)> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.candidates.groups().map(move |(g, name)| (name, i, g)))
        .collect();
    fn key(name: Option<&str>, by_name: bool) -> (bool, Option<&str>) {
        (name.is_none() || !by_name, name.filter(|_| by_name))
    }
    groups.sort_unstable_by(|a, b| key(a.0, by_name).cmp(&key(b.0, by_name)));
    let limit = u64::try_from(req.limit).ok().filter(|&l| l > 0).unwrap_or(u64::MAX);
    let mut sent = 0u64;
    let (mut all, mut starts, mut chunks) = (Vec::<Selected>::new(), Vec::new(), Vec::new());
    // Sources whose read failed: left out of the rest of the answer.
    let mut broken = vec![false; sources.len()];
    for run in groups.chunk_by(|a, b| key(a.0, by_name) == key(b.0, by_name)) {
        let mut table = LabelTable::default();
        all.clear();
        starts.clear();
        for &(_, i, g) in run {
            let s = &sources[i];
            if broken[i] {
                continue;
            }
            table.set_merge(s.ext.iter().map(|(n, v)| (n.as_str(), v.as_str())), &removed);
            starts.push((all.len(), i));
            if let Err(e) = s.reader.finish(&s.candidates, g, &mut table, &mut all) {
                broken[i] = true;
                failed(&mut warnings, s.db, format!("code = Internal desc = {e}"))?;
            }
        }
        // The answer's order, as positions in `all` (a second vector of series would double a
        // wide selection's memory).
        let mut order: Vec<u32> = (0..all.len())
            .filter(|&i| in_shard(table.pairs(all[i].labels), req.shard_info.as_ref()))
            .map(|i| u32::try_from(i).expect("fewer than 2^32 series in one answer"))
            .collect();
        table.rank();
        order.sort_unstable_by(|&a, &b| table.cmp(all[a as usize].labels, all[b as usize].labels));
        for i in order {
            if sent >= limit {
                break;
            }
            let (i, p) = (i as usize, &all[i as usize]);
            let s = &sources[source_of(&starts, i)];
            chunks.clear();
            if let Err(e) = s.reader.chunks(&p.parts, &mut chunks) {
                failed(&mut warnings, s.db, format!("code = Internal desc = {e}"))?;
                continue;
            }
            if chunks.is_empty() {
                continue;
            }
            send_series(out, budget, table.pairs(p.labels), std::mem::take(&mut chunks), req.skip_chunks)?;
            sent += 1;
        }
    }
    for w in warnings {
        out.warning(&w)?;
    }
    Ok(out.flush()?)
}

/// The source of the series at position `i` of a group's selection, from where each source's
/// series start (`(start, source)`, by start).
fn source_of(starts: &[(usize, usize)], i: usize) -> usize {
    starts[starts.partition_point(|&(start, _)| start <= i) - 1].1
}

/// One tenant's part of a Series call.
struct Source<'a> {
    reader: Reader<'a>,
    db: &'a Tsdb,
    ext: std::collections::BTreeMap<String, String>,
    candidates: Candidates,
}

/// A Series answer as the blocking reader produces it: its frames, then how it failed, if it
/// did.
pub(super) struct Frames {
    rx: tokio::sync::mpsc::Receiver<Result<Encoded, Status>>,
    end: Arc<parking_lot::Mutex<Option<Status>>>,
}

impl tonic::codegen::tokio_stream::Stream for Frames {
    type Item = Result<Encoded, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            // The producer is gone: its failure, if any, was set before.
            std::task::Poll::Ready(None) => std::task::Poll::Ready(self.end.lock().take().map(Err)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::codegen::tokio_stream::StreamExt;

    use super::*;

    fn frame(i: usize) -> String {
        format!("frame {i}")
    }

    /// A client that stops taking frames stops the read after the stall time (the frames
    /// already queued, then `Aborted`); one that goes away stops it at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_or_departed_client_stops_the_read() {
        let (mut out, mut frames) = Out::new(1, Duration::from_millis(100));
        let sent =
            tokio::task::spawn_blocking(move || (0..100).take_while(|&i| out.warning(&frame(i)).is_ok()).count());
        assert_eq!(sent.await.unwrap(), FRAMES_IN_FLIGHT, "the producer stopped once the channel stayed full");
        for i in 0..FRAMES_IN_FLIGHT {
            let got = frames.next().await.unwrap().unwrap();
            assert_eq!(got.bytes(), frame::warning(&frame(i)));
        }
        let end = frames.next().await.unwrap().unwrap_err();
        assert_eq!(end.code(), tonic::Code::Aborted, "{end:?}");
        assert!(frames.next().await.is_none());

        let (mut out, frames) = Out::new(1, Duration::from_secs(3600));
        drop(frames);
        let gone = tokio::task::spawn_blocking(move || out.warning(&frame(0)).is_err());
        assert!(gone.await.unwrap(), "a departed client ends the read");
    }
}
