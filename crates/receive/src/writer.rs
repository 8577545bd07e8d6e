//! Writes a decoded remote-write request into a tenant's TSDB and turns the outcome into the
//! status code and message a client gets (Thanos' `Writer.Write` plus its error aggregation).
//!
//! Status policy (one place): a TSDB/WAL failure writes nothing and answers 503 so senders
//! retry; invalid label sets and unsupported native histograms answer 400; samples refused as
//! out-of-order, duplicate-with-another-value or out-of-bounds (too old, or beyond
//! `--tsdb.too-far-in-future.time-window`) answer 409. In the 4xx cases the request's valid
//! samples are still written (partial write, as Thanos). The message lists every reason,
//! deduplicated and sorted, as `N errors: a; b`, each with the first offending series.

use http::StatusCode;
use ringest_tsdb::labels::write_go_quoted;
use ringest_tsdb::{AppendBuffers, LabelError, LabelRef, Tsdb, TsdbError};

use crate::remote_write::{Decoded, LabelSpan, SeriesSpan};

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
    label_errors: Vec<(String, u64, String)>,
    sample_errors: [(u64, Option<String>); 4],
    histograms: (u64, Option<String>),
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
fn series_string(buf: &[u8], labels: &[LabelSpan]) -> String {
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
    /// The TSDB could not write the WAL or is closed.
    #[error("target not available: {0}")]
    Unavailable(String),
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
    // Hash every series first so the appender can prefetch the head lookups ahead.
    for s in (0..count).map(nth) {
        refs.clear();
        refs.extend(spans_of(s).iter().map(|l| LabelRef { name: l.name(buf), value: l.value(buf) }));
        app.prepare(&refs);
    }
    for s in (0..count).map(nth) {
        let spans = spans_of(s);
        refs.clear();
        refs.extend(spans.iter().map(|l| LabelRef { name: l.name(buf), value: l.value(buf) }));
        let samples = &req.samples[s.samples_start as usize..s.samples_end as usize];
        if s.histograms > 0 {
            report.histograms.0 += s.histograms as u64;
            report.histograms.1.get_or_insert_with(|| series_string(buf, spans));
        }
        match app.append_prepared(&refs, samples, max_t) {
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
            Err(e) => {
                let reason = label_reason(&e);
                if let Some(entry) = report.label_errors.iter_mut().find(|(r, _, _)| *r == reason) {
                    entry.1 += 1;
                } else {
                    report.label_errors.push((reason, 1, series_string(buf, spans)));
                }
            }
        }
    }
    let out = app.commit().map_err(|e| match e {
        TsdbError::Closed => WriteError::Unavailable("TSDB not ready: shutting down".into()),
        e => WriteError::Unavailable(format!("write to WAL: {e}")),
    })?;
    report.appended = out.appended;
    if out.lost_races > 0 {
        report.sample_errors[OUT_OF_ORDER].0 += out.lost_races;
        report.sample_errors[OUT_OF_ORDER].1.get_or_insert_with(|| "a series written concurrently".into());
    }
    report.log_summary(tenant);
    Ok(report)
}

fn label_reason(e: &LabelError) -> String {
    match e {
        LabelError::EmptyName | LabelError::EmptyValue(_) => {
            "label set contains a label with empty name or value".into()
        }
        LabelError::DuplicateName(_) => "label set contains duplicate label names".into(),
        LabelError::InvalidUtf8 => "label set contains a label name or value that is not valid UTF-8".into(),
        LabelError::Empty => "label set is empty".into(),
    }
}

impl WriteReport {
    fn log_summary(&self, tenant: &str) {
        for (i, (n, _)) in self.sample_errors.iter().enumerate() {
            if *n > 0 {
                tracing::warn!(tenant, numDropped = n, "{}", SAMPLE_LOGS[i]);
            }
        }
        for (reason, n, _) in &self.label_errors {
            let msg = if reason.contains("duplicate") {
                "Error on series with duplicate labels"
            } else if reason.contains("empty name or value") {
                "Error on series with empty label name or value"
            } else {
                "Error on series with invalid labels"
            };
            tracing::warn!(tenant, numDropped = n, reason = %reason, "{msg}");
        }
        if self.histograms.0 > 0 {
            tracing::warn!(
                tenant,
                numDropped = self.histograms.0,
                "Error on ingesting native histograms: not supported"
            );
        }
    }

    /// Status code and body of the response.
    pub fn response(&self) -> (StatusCode, String) {
        let mut bad: Vec<String> = Vec::new();
        let mut conflict: Vec<String> = Vec::new();
        for (reason, n, first) in &self.label_errors {
            bad.push(format!("add {n} series: {reason} (first: {first})"));
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
        let status = if !bad.is_empty() {
            StatusCode::BAD_REQUEST
        } else if !conflict.is_empty() {
            StatusCode::CONFLICT
        } else {
            return (StatusCode::OK, String::new());
        };
        let mut reasons: Vec<String> = bad.into_iter().chain(conflict).collect();
        reasons.sort();
        reasons.dedup();
        (status, join_reasons(&reasons))
    }
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

    #[test]
    fn statuses_and_messages() {
        let ok = WriteReport::default();
        assert_eq!(ok.response(), (StatusCode::OK, String::new()));

        let mut r = WriteReport::default();
        r.sample_errors[OUT_OF_ORDER] = (2, Some("{__name__=\"a\"} at timestamp 5".into()));
        let (code, msg) = r.response();
        assert_eq!(code, StatusCode::CONFLICT);
        assert_eq!(msg, "add 2 samples: out of order sample (first: {__name__=\"a\"} at timestamp 5)");

        r.sample_errors[DUPLICATE] = (1, Some("x".into()));
        let (code, msg) = r.response();
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(msg.starts_with("2 errors: add 1 samples: duplicate sample for timestamp"), "{msg}");

        r.label_errors.push(("label set contains duplicate label names".into(), 1, "{a=\"1\", a=\"2\"}".into()));
        let (code, msg) = r.response();
        assert_eq!(code, StatusCode::BAD_REQUEST, "invalid labels win over conflicts");
        assert!(msg.starts_with("3 errors: "), "{msg}");
        assert!(msg.contains("(first: {a=\"1\", a=\"2\"})"), "{msg}");
    }
}
