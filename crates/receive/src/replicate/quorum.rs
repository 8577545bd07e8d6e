//! Quorum accounting and Thanos' error aggregation (shared spec §5), as a pure state machine
//! so the truth table is unit-tested without peers.
//!
//! Every write goes to groups (one per endpoint and replica); a group's outcome counts for each
//! series it carries. A series succeeds when `success_threshold` groups holding it succeeded,
//! and fails when `failure_threshold = replicas - success_threshold + 1` failed. The request is
//! decided when every series is. A failed series' cause is the error kind that reached the
//! threshold, else "unavailable" when its errors did; across series, unavailable wins over not
//! ready, which wins over invalid input, which wins over conflicts.

use http::StatusCode;

/// Why one group write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Samples refused as out of order, duplicate or out of bounds (409, gRPC AlreadyExists).
    Conflict,
    /// Invalid label sets or unsupported data (400, gRPC InvalidArgument).
    BadRequest,
    /// The target is not ready (starting, shutting down).
    NotReady,
    /// The target is down, backing off, or its write failed in a way worth retrying.
    Unavailable,
    /// Anything else (timeouts, internal errors).
    Other,
}

/// A failed group write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its kind.
    pub kind: Kind,
    /// The message.
    pub message: String,
}

/// Per-series accounting of one request.
#[derive(Debug)]
pub struct Quorum {
    success_threshold: u32,
    failure_threshold: u32,
    successes: Vec<u32>,
    failures: Vec<Vec<Kind>>,
    undecided: usize,
    messages: Vec<String>,
}

/// The verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// HTTP status.
    pub status: StatusCode,
    /// Error kind behind a non-200 status.
    pub kind: Option<Kind>,
    /// Message (empty on success).
    pub message: String,
}

impl Quorum {
    /// `series` series each written to `replicas` groups, decided at `success_threshold`.
    pub fn new(series: usize, replicas: u32, success_threshold: u32) -> Quorum {
        Quorum {
            success_threshold,
            failure_threshold: replicas.saturating_sub(success_threshold) + 1,
            successes: vec![0; series],
            failures: vec![Vec::new(); series],
            undecided: series,
            messages: Vec::new(),
        }
    }

    fn decided(&self, i: usize) -> bool {
        self.successes[i] >= self.success_threshold || self.failures[i].len() as u32 >= self.failure_threshold
    }

    /// Records the outcome of a group carrying `series` (indices).
    pub fn record(&mut self, series: &[u32], outcome: Result<(), &Failure>) {
        if let Err(f) = outcome
            && !self.messages.contains(&f.message)
        {
            self.messages.push(f.message.clone());
        }
        for &i in series {
            let i = i as usize;
            let before = self.decided(i);
            match outcome {
                Ok(()) => self.successes[i] += 1,
                Err(f) => self.failures[i].push(f.kind),
            }
            if !before && self.decided(i) {
                self.undecided -= 1;
            }
        }
    }

    /// The distinct failure messages seen so far.
    pub fn failures(&self) -> &[String] {
        &self.messages
    }

    /// Whether every series is decided.
    pub fn done(&self) -> bool {
        self.undecided == 0
    }

    /// The verdict now (undecided series count as failed: call it when done or out of time).
    pub fn verdict(&self) -> Verdict {
        let mut cause: Option<Option<Kind>> = None;
        for i in 0..self.successes.len() {
            if self.successes[i] >= self.success_threshold {
                continue;
            }
            let c = series_cause(&self.failures[i], self.success_threshold);
            cause = Some(match cause {
                None => c,
                Some(prev) => worst(prev, c),
            });
        }
        let Some(cause) = cause else {
            return Verdict { status: StatusCode::OK, kind: None, message: String::new() };
        };
        let mut messages = self.messages.clone();
        messages.sort();
        if messages.is_empty() {
            messages.push("context deadline exceeded".into());
        }
        let status = match cause {
            Some(Kind::Unavailable) | Some(Kind::NotReady) => StatusCode::SERVICE_UNAVAILABLE,
            Some(Kind::BadRequest) => StatusCode::BAD_REQUEST,
            Some(Kind::Conflict) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Verdict { status, kind: cause, message: crate::writer::join_reasons(&messages) }
    }
}

/// The cause of one failed series: the kind that reached the threshold, else unavailable when
/// the errors did, else none (an internal error).
fn series_cause(failures: &[Kind], threshold: u32) -> Option<Kind> {
    let count = |k: Kind| failures.iter().filter(|&&f| f == k).count() as u32;
    let mut best: Option<(u32, Kind)> = None;
    for k in [Kind::Unavailable, Kind::NotReady, Kind::BadRequest, Kind::Conflict] {
        let n = count(k);
        if n > 0 && best.is_none_or(|(m, _)| n > m) {
            best = Some((n, k));
        }
    }
    match best {
        Some((n, k)) if n >= threshold => Some(k),
        _ if failures.len() as u32 >= threshold => Some(Kind::Unavailable),
        _ => None,
    }
}

/// Across series: unavailable, then not ready, then bad request, then conflict; an unknown
/// cause only when nothing else is known.
fn worst(a: Option<Kind>, b: Option<Kind>) -> Option<Kind> {
    let rank = |k: Option<Kind>| match k {
        Some(Kind::Unavailable) => 5,
        Some(Kind::NotReady) => 4,
        Some(Kind::BadRequest) => 3,
        Some(Kind::Conflict) => 2,
        Some(Kind::Other) => 1,
        None => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: Kind) -> Failure {
        Failure { kind, message: format!("{kind:?}") }
    }

    /// One series written to `outcomes.len()` replicas with `threshold`: the verdict.
    fn run(outcomes: &[Option<Kind>], threshold: u32) -> StatusCode {
        let mut q = Quorum::new(1, outcomes.len() as u32, threshold);
        for o in outcomes {
            match o {
                None => q.record(&[0], Ok(())),
                Some(k) => q.record(&[0], Err(&f(*k))),
            }
        }
        assert!(q.done());
        q.verdict().status
    }

    /// Thanos' `TestReceiveQuorum*` truth table (shared spec §5). A commit error (the TSDB's
    /// write failed) is an unknown error.
    #[test]
    fn thanos_truth_table() {
        use Kind::*;
        assert_eq!(run(&[Some(Other)], 1), StatusCode::SERVICE_UNAVAILABLE, "RF1 commit error");
        assert_eq!(run(&[Some(Conflict)], 1), StatusCode::CONFLICT, "RF1 conflict");
        assert_eq!(run(&[None, None, Some(Other)], 2), StatusCode::OK, "RF3 one faulty");
        assert_eq!(run(&[None, Some(Conflict), Some(Conflict)], 2), StatusCode::CONFLICT, "RF3 two conflicts");
        assert_eq!(
            run(&[None, Some(Conflict), Some(Other)], 2),
            StatusCode::SERVICE_UNAVAILABLE,
            "RF3 conflict+commit"
        );
        assert_eq!(run(&[None, Some(Other), Some(Other)], 2), StatusCode::SERVICE_UNAVAILABLE, "RF3 two commit errors");
        assert_eq!(run(&[None, None, None, Some(Other), Some(Other)], 3), StatusCode::OK, "RF5 two commit errors");
        assert_eq!(run(&[Some(Unavailable), Some(Unavailable), None], 2), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(run(&[Some(BadRequest), Some(BadRequest), Some(BadRequest)], 2), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn decided_early_and_across_series() {
        let mut q = Quorum::new(2, 3, 2);
        q.record(&[0, 1], Ok(()));
        assert!(!q.done());
        q.record(&[0], Ok(()));
        assert!(!q.done(), "series 1 still needs a second success");
        q.record(&[1], Err(&f(Kind::Conflict)));
        q.record(&[1], Err(&f(Kind::Conflict)));
        assert!(q.done());
        let v = q.verdict();
        assert_eq!(v.status, StatusCode::CONFLICT);
        assert_eq!(v.message, "Conflict");
        // One unavailable series makes the whole request retryable.
        let mut q = Quorum::new(2, 1, 1);
        q.record(&[0], Err(&f(Kind::Conflict)));
        q.record(&[1], Err(&f(Kind::Unavailable)));
        assert_eq!(q.verdict().status, StatusCode::SERVICE_UNAVAILABLE);
        // Out of time: undecided series fail as unavailable once enough errors are known, else 500.
        let mut q = Quorum::new(1, 3, 2);
        q.record(&[0], Ok(()));
        assert_eq!(q.verdict().status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
