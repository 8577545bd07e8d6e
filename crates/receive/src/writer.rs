//! Writes a decoded remote-write request into a tenant's TSDB and turns what happened into
//! the [`Outcome`] and message a client gets (Thanos' `Writer.Write` plus its error
//! aggregation).
//!
//! Policy (one place): a TSDB/WAL failure writes nothing and is unavailable (503) so senders
//! retry; label sets that are not valid UTF-8 and unsupported native histograms are invalid
//! (400); label sets Thanos refuses (empty, an empty name or value, a duplicate name, names not
//! sorted) and samples refused as out-of-order, duplicate-with-another-value or out-of-bounds
//! (too old, or beyond `--tsdb.too-far-in-future.time-window`) are conflicts (409), as Thanos
//! has them, so that every node of a mixed ring gives the same answer. In the 4xx cases the request's
//! valid samples are still written (partial write, as Thanos). The message lists every reason,
//! deduplicated and sorted, as `N errors: a; b`, each with the first offending series.

use ringest_tsdb::labels::SeriesKey;
use ringest_tsdb::labels::write_go_quoted;
use ringest_tsdb::{AppendBuffers, LabelError, LabelRef, Tsdb, TsdbError, validate_request_order};

use crate::outcome::{Outcome, WriteStatus};
use crate::remote_write::{DecodeError, Decoded, LabelSpan, SeriesSpan, decode_write_request, series_without_samples};

/// What happened to one request.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Series in the request.
    pub series: u64,
    /// Float samples in the request.
    pub samples: u64,
    /// Samples newly stored.
    pub appended: u64,
    /// Refused label sets: reason, count, first offending series.
    label_errors: Vec<LabelRefusal>,
    sample_errors: [(u64, Option<String>); 4],
    histograms: (u64, Option<String>),
}

/// Label sets refused for one reason.
#[derive(Debug)]
struct LabelRefusal {
    reason: &'static str,
    log: &'static str,
    /// 400 rather than Thanos' 409: only for checks Thanos does not make (UTF-8).
    client_error: bool,
    count: u64,
    first: String,
}

const OUT_OF_ORDER: usize = 0;
const DUPLICATE: usize = 1;
const OUT_OF_BOUNDS: usize = 2;
const TOO_FAR_IN_FUTURE: usize = 3;

const SAMPLE_REASONS: [&str; 4] =
    ["out of order sample", "duplicate sample for timestamp", "out of bounds", "out of bounds: too far in the future"];
const SAMPLE_LOGS: [&str; 4] = [
    "Error on ingesting out-of-order samples",
    "Error on ingesting samples with different value but same timestamp",
    "Error on ingesting samples that are too old or are too far into the future",
    "Error on ingesting samples that are too old or are too far into the future",
];

/// Renders request labels (in request order) as `{a="1", b="2"}`.
pub(crate) fn series_string(buf: &[u8], labels: &[LabelSpan]) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&String::from_utf8_lossy(l.name(buf)));
        s.push('=');
        let _ = write_go_quoted(&mut s, &String::from_utf8_lossy(l.value(buf)));
    }
    s.push('}');
    s
}

/// Errors that make the whole request fail (nothing written).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The TSDB is closed: the node is shutting down.
    #[error("target not available: TSDB not ready: shutting down")]
    Closed,
    /// The TSDB could not write the WAL.
    #[error("target not available: write to WAL: {0}")]
    Wal(TsdbError),
}

/// Appends the request's series to `db` (the TSDB of `tenant`). `max_t` is the newest
/// timestamp accepted.
pub fn write(
    tenant: &str,
    db: &Tsdb,
    buf: &[u8],
    req: &Decoded,
    max_t: i64,
    bufs: &mut AppendBuffers,
) -> Result<WriteReport, WriteError> {
    write_selected(tenant, db, buf, req, None, max_t, bufs)
}

/// [`write`] for the series `select` (indices into `req.series`; `None`: all of them).
pub fn write_selected(
    tenant: &str,
    db: &Tsdb,
    buf: &[u8],
    req: &Decoded,
    select: Option<&[u32]>,
    max_t: i64,
    bufs: &mut AppendBuffers,
) -> Result<WriteReport, WriteError> {
    let count = select.map_or(req.series.len(), <[u32]>::len);
    let nth = |k: usize| &req.series[select.map_or(k, |s| s[k] as usize)];
    let samples = match select {
        None => req.samples.len() as u64,
        Some(_) => (0..count).map(|k| (nth(k).samples_end - nth(k).samples_start) as u64).sum(),
    };
    let mut report = WriteReport { series: count as u64, samples, ..Default::default() };
    let mut app = db.appender(bufs);
    let mut refs: Vec<LabelRef<'_>> = Vec::with_capacity(16);
    let spans_of = |s: &SeriesSpan| &req.labels[s.labels_start as usize..s.labels_end as usize];
    // Hash every series first so the appender can prefetch the head lookups ahead. Series whose
    // names are not strictly sorted (remote write sends them sorted) are refused, as Thanos does.
    let mut unsorted: Vec<usize> = Vec::new();
    for (k, s) in (0..count).map(nth).enumerate() {
        if let Some(encoded) = s.encoded_labels(buf) {
            // Sorted and canonically encoded: hashed as received, no label copied.
            app.prepare_key(SeriesKey::of_encoded(encoded));
            continue;
        }
        refs.clear();
        refs.extend(spans_of(s).iter().map(|l| LabelRef { name: l.name(buf), value: l.value(buf) }));
        if !app.prepare(&refs) {
            unsorted.push(k);
        }
    }
    let mut unsorted = unsorted.into_iter().peekable();
    for (k, s) in (0..count).map(nth).enumerate() {
        let spans = spans_of(s);
        if unsorted.next_if_eq(&k).is_some() {
            app.skip_prepared();
            refs.clear();
            refs.extend(spans.iter().map(|l| LabelRef { name: l.name(buf), value: l.value(buf) }));
            if let Some(e) = validate_request_order(&refs) {
                report.label_error(&e, buf, spans);
            }
            continue;
        }
        let samples = &req.samples[s.samples_start as usize..s.samples_end as usize];
        if s.histograms > 0 {
            report.histograms.0 += s.histograms as u64;
            report.histograms.1.get_or_insert_with(|| series_string(buf, spans));
        }
        // The labels are built only for a series the head does not have yet.
        let refs = &mut refs;
        let labels = move || {
            // Moving the borrow in makes the closure `FnOnce`: it may hand out the vector.
            let refs = refs;
            refs.clear();
            refs.extend(spans.iter().map(|l| LabelRef { name: l.name(buf), value: l.value(buf) }));
            &refs[..]
        };
        match app.append_prepared(labels, samples, max_t) {
            Ok(o) => {
                let refused = [
                    (OUT_OF_ORDER, o.out_of_order),
                    (DUPLICATE, o.duplicate),
                    (OUT_OF_BOUNDS, o.out_of_bounds),
                    (TOO_FAR_IN_FUTURE, o.too_far_in_future),
                ];
                for (i, n) in refused {
                    if n > 0 {
                        let e = &mut report.sample_errors[i];
                        e.0 += n as u64;
                        if e.1.is_none() {
                            let t = o.first_refused.unwrap_or_default();
                            e.1 = Some(format!("{} at timestamp {t}", series_string(buf, spans)));
                        }
                    }
                }
            }
            Err(e) => report.label_error(&e, buf, spans),
        }
    }
    let out = app.commit().map_err(|e| match e {
        TsdbError::Closed => WriteError::Closed,
        e => WriteError::Wal(e),
    })?;
    report.appended = out.appended;
    if out.lost_races > 0 {
        report.sample_errors[OUT_OF_ORDER].0 += out.lost_races;
        report.sample_errors[OUT_OF_ORDER].1.get_or_insert_with(|| "a series written concurrently".into());
    }
    report.log_summary(tenant);
    Ok(report)
}

/// The reason a client reads (Thanos' error texts) and the warning logged, for a label error.
fn label_texts(e: &LabelError) -> (&'static str, &'static str) {
    match e {
        LabelError::EmptyName | LabelError::EmptyValue(_) => {
            ("label set contains a label with empty name or value", "Error on series with empty label name or value")
        }
        LabelError::DuplicateName(_) => {
            ("label set contains duplicate label names", "Error on series with duplicate labels")
        }
        LabelError::OutOfOrder(..) => ("out of order labels", "Error on series with out-of-order labels"),
        LabelError::InvalidUtf8 => {
            ("label set contains a label name or value that is not valid UTF-8", "Error on series with invalid labels")
        }
        LabelError::Empty => ("label set is empty", "Error on series with empty label name or value"),
    }
}

impl WriteReport {
    /// Counts a refused label set (reason, and the first series refused for it).
    fn label_error(&mut self, e: &LabelError, buf: &[u8], spans: &[LabelSpan]) {
        let (reason, log) = label_texts(e);
        match self.label_errors.iter_mut().find(|r| r.reason == reason) {
            Some(r) => r.count += 1,
            None => self.label_errors.push(LabelRefusal {
                reason,
                log,
                client_error: matches!(e, LabelError::InvalidUtf8),
                count: 1,
                first: series_string(buf, spans),
            }),
        }
    }

    fn log_summary(&self, tenant: &str) {
        for (i, (n, _)) in self.sample_errors.iter().enumerate() {
            if *n > 0 {
                tracing::warn!(tenant, numDropped = n, "{}", SAMPLE_LOGS[i]);
            }
        }
        for r in &self.label_errors {
            tracing::warn!(tenant, numDropped = r.count, reason = r.reason, "{}", r.log);
        }
        if self.histograms.0 > 0 {
            tracing::warn!(
                tenant,
                numDropped = self.histograms.0,
                "Error on ingesting native histograms: not supported"
            );
        }
    }

    /// The request's outcome and the message a client gets.
    pub fn status(&self) -> WriteStatus {
        let mut bad: Vec<String> = Vec::new();
        let mut conflict: Vec<String> = Vec::new();
        for r in &self.label_errors {
            let msg = format!("add {} series: {} (first: {})", r.count, r.reason, r.first);
            if r.client_error { bad.push(msg) } else { conflict.push(msg) }
        }
        if self.histograms.0 > 0 {
            bad.push(format!(
                "add {} histograms: native histograms are not supported by ringest yet (first: {})",
                self.histograms.0,
                self.histograms.1.as_deref().unwrap_or_default()
            ));
        }
        for (i, (n, first)) in self.sample_errors.iter().enumerate() {
            if *n > 0 {
                conflict.push(format!(
                    "add {n} samples: {} (first: {})",
                    SAMPLE_REASONS[i],
                    first.as_deref().unwrap_or_default()
                ));
            }
        }
        let outcome = if !bad.is_empty() {
            Outcome::Invalid
        } else if !conflict.is_empty() {
            Outcome::Conflict
        } else {
            return WriteStatus::ok();
        };
        let mut reasons: Vec<String> = bad.into_iter().chain(conflict).collect();
        reasons.sort();
        reasons.dedup();
        WriteStatus::new(outcome, join_reasons(&reasons))
    }
}

/// A request without its samples newer than `max_t`, decided once, on the node that received
/// it, before it is routed: the remaining series (re-encoded only where samples were dropped),
/// decoded, and the conflict to answer for the dropped samples. `None` when nothing is newer.
pub fn strip_too_far_in_future(
    buf: &[u8],
    req: &Decoded,
    max_t: i64,
) -> Result<Option<(Vec<u8>, Decoded, WriteStatus)>, DecodeError> {
    // `i64::MAX`: the window is off, and nothing needs a look.
    if max_t == i64::MAX || !req.samples.iter().any(|&(t, _)| t > max_t) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(buf.len());
    let mut series = Vec::new();
    let mut report = WriteReport::default();
    for s in &req.series {
        let samples = &req.samples[s.samples_start as usize..s.samples_end as usize];
        let newer = samples.iter().filter(|&&(t, _)| t > max_t).count() as u64;
        let raw = if newer == 0 {
            s.raw(buf)
        } else {
            let e = &mut report.sample_errors[TOO_FAR_IN_FUTURE];
            e.0 += newer;
            if e.1.is_none() {
                let t = samples.iter().map(|&(t, _)| t).find(|&t| t > max_t).unwrap_or_default();
                let spans = &req.labels[s.labels_start as usize..s.labels_end as usize];
                e.1 = Some(format!("{} at timestamp {t}", series_string(buf, spans)));
            }
            series.clear();
            series_without_samples(s.raw(buf), |t| t > max_t, &mut series)?;
            &series[..]
        };
        out.push(0x0a);
        ringest_tsdb::encoding::put_uvarint(&mut out, raw.len() as u64);
        out.extend_from_slice(raw);
    }
    let mut decoded = Decoded::default();
    decode_write_request(&out, &mut decoded)?;
    Ok(Some((out, decoded, report.status())))
}

/// Thanos' error-set text: one reason as is, several as `N errors: a; b`.
pub fn join_reasons(reasons: &[String]) -> String {
    match reasons {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("{} errors: {}", many.len(), many.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label bytes and their spans, as the decoder records them.
    fn labels_of(pairs: &[(&str, &str)]) -> (Vec<u8>, Vec<LabelSpan>) {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for (n, v) in pairs {
            let name_off = bytes.len() as u32;
            bytes.extend_from_slice(n.as_bytes());
            let value_off = bytes.len() as u32;
            bytes.extend_from_slice(v.as_bytes());
            spans.push(LabelSpan { name_off, name_len: n.len() as u32, value_off, value_len: v.len() as u32 });
        }
        (bytes, spans)
    }

    /// A request stripped of its samples beyond `max_t`: the other samples and every other
    /// field kept as received, and a conflict naming the first dropped sample.
    #[test]
    fn too_far_in_future_samples_are_stripped_once() {
        use prost::Message;
        use ringest_proto::prometheus as pb;
        let label = |n: &str, v: &str| pb::Label { name: n.into(), value: v.into() };
        let sample = |t: i64| pb::Sample { value: t as f64, timestamp: t };
        let req = pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![label("__name__", "a")],
                    samples: vec![sample(1), sample(2)],
                    ..Default::default()
                },
                pb::TimeSeries {
                    labels: vec![label("__name__", "b"), label("x", "y")],
                    samples: vec![sample(3), sample(50), sample(4), sample(60)],
                    exemplars: vec![pb::Exemplar { labels: vec![label("trace_id", "t")], value: 1.0, timestamp: 3 }],
                    ..Default::default()
                },
            ],
            metadata: vec![],
        };
        let buf = req.encode_to_vec();
        let mut d = Decoded::default();
        decode_write_request(&buf, &mut d).unwrap();
        assert!(strip_too_far_in_future(&buf, &d, 60).unwrap().is_none(), "nothing beyond 60");
        let (out, stripped, status) = strip_too_far_in_future(&buf, &d, 10).unwrap().unwrap();
        let got = pb::WriteRequest::decode(&out[..]).unwrap();
        let mut want = req.clone();
        want.timeseries[1].samples = vec![sample(3), sample(4)];
        assert_eq!(got, want);
        assert_eq!(stripped.samples.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(stripped.series[0].raw(&out), d.series[0].raw(&buf), "an untouched series is copied as received");
        assert_eq!(status.outcome, Outcome::Conflict);
        assert_eq!(
            status.message,
            "add 2 samples: out of bounds: too far in the future (first: {__name__=\"b\", x=\"y\"} at timestamp 50)"
        );
    }

    #[test]
    fn statuses_and_messages() {
        let ok = WriteReport::default();
        assert_eq!(ok.status(), WriteStatus::ok());

        let mut r = WriteReport::default();
        r.sample_errors[OUT_OF_ORDER] = (2, Some("{__name__=\"a\"} at timestamp 5".into()));
        let WriteStatus { outcome, message: msg, .. } = r.status();
        assert_eq!(outcome, Outcome::Conflict);
        assert_eq!(msg, "add 2 samples: out of order sample (first: {__name__=\"a\"} at timestamp 5)");

        r.sample_errors[DUPLICATE] = (1, Some("x".into()));
        let WriteStatus { outcome, message: msg, .. } = r.status();
        assert_eq!(outcome, Outcome::Conflict);
        assert!(msg.starts_with("2 errors: add 1 samples: duplicate sample for timestamp"), "{msg}");

        let (bytes, spans) = labels_of(&[("a", "1"), ("a", "2")]);
        r.label_error(&LabelError::DuplicateName("a".into()), &bytes, &spans);
        let WriteStatus { outcome, message: msg, .. } = r.status();
        assert_eq!(outcome, Outcome::Conflict, "label sets Thanos refuses are conflicts too");
        assert!(msg.starts_with("3 errors: "), "{msg}");
        assert!(msg.contains("(first: {a=\"1\", a=\"2\"})"), "{msg}");

        r.label_error(&LabelError::InvalidUtf8, &bytes, &spans);
        assert_eq!(r.status().outcome, Outcome::Invalid, "invalid UTF-8 wins over conflicts");
    }
}
