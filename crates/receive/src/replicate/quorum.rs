//! Quorum accounting and Thanos' error aggregation (shared spec §5), as a pure state machine
//! so the truth table is unit-tested without peers.
//!
//! Every write goes to groups (one per endpoint and replica); a group's outcome counts for each
//! series it carries. A series succeeds when `success_threshold` groups holding it succeeded,
//! and fails when `failure_threshold = replicas - success_threshold + 1` failed. The request is
//! decided when every series is. A failed series' cause is the error kind that reached the
//! threshold, else "unavailable" when its errors did; across series, unavailable wins over not
//! ready, which wins over invalid input, which wins over conflicts.

use crate::outcome::{Outcome, WriteStatus};

/// A failed group write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed (never [`Outcome::Ok`]).
    pub outcome: Outcome,
    /// The message.
    pub message: String,
}

/// Per-series accounting of one request.
#[derive(Debug)]
pub struct Quorum {
    success_threshold: u32,
    failure_threshold: u32,
    successes: Vec<u32>,
    failures: Vec<Vec<Outcome>>,
    undecided: usize,
    messages: Vec<String>,
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
                Err(f) => self.failures[i].push(f.outcome),
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
    pub fn verdict(&self) -> WriteStatus {
        let mut cause: Option<Outcome> = None;
        for i in 0..self.successes.len() {
            if self.successes[i] >= self.success_threshold {
                continue;
            }
            let c = series_cause(&self.failures[i], self.success_threshold);
            cause = Some(cause.map_or(c, |prev| worst(prev, c)));
        }
        let Some(cause) = cause else {
            return WriteStatus::ok();
        };
        let mut messages = self.messages.clone();
        messages.sort();
        if messages.is_empty() {
            messages.push("context deadline exceeded".into());
        }
        WriteStatus::new(cause, crate::writer::join_reasons(&messages))
    }
}

/// The cause of one failed series: the outcome that reached the threshold (the most frequent
/// known one), else unavailable when the errors did, else an internal error.
fn series_cause(failures: &[Outcome], threshold: u32) -> Outcome {
    use Outcome::*;
    let count = |k: Outcome| failures.iter().filter(|&&f| f == k).count() as u32;
    let mut best: Option<(u32, Outcome)> = None;
    for k in [Unavailable, NotReady, Busy, Limited, TooLarge, Invalid, Conflict] {
        let n = count(k);
        if n > 0 && best.is_none_or(|(m, _)| n > m) {
            best = Some((n, k));
        }
    }
    match best {
        Some((n, k)) if n >= threshold => k,
        _ if failures.len() as u32 >= threshold => Unavailable,
        _ => Internal,
    }
}

/// Across series, as Thanos decides: unavailable, then not ready, then the other known causes,
/// then invalid input, then conflicts; an unknown cause only when nothing else is known.
fn worst(a: Outcome, b: Outcome) -> Outcome {
    use Outcome::*;
    let rank = |o: Outcome| match o {
        Unavailable => 7,
        NotReady => 6,
        Busy => 5,
        Limited => 4,
        TooLarge => 3,
        Invalid => 2,
        Conflict => 1,
        Internal | Ok => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(outcome: Outcome) -> Failure {
        Failure { outcome, message: format!("{outcome:?}") }
    }

    /// One series written to `outcomes.len()` replicas with `threshold`: the verdict.
    fn run(outcomes: &[Option<Outcome>], threshold: u32) -> Outcome {
        let mut q = Quorum::new(1, outcomes.len() as u32, threshold);
        for o in outcomes {
            match o {
                None => q.record(&[0], Ok(())),
                Some(k) => q.record(&[0], Err(&f(*k))),
            }
        }
        assert!(q.done());
        q.verdict().outcome
    }

    /// Thanos' `TestReceiveQuorum*` truth table (shared spec §5). A commit error (the TSDB's
    /// write failed) is an unknown error.
    #[test]
    fn thanos_truth_table() {
        use Outcome::*;
        assert_eq!(run(&[Some(Internal)], 1), Unavailable, "RF1 commit error");
        assert_eq!(run(&[Some(Conflict)], 1), Conflict, "RF1 conflict");
        assert_eq!(run(&[None, None, Some(Internal)], 2), Ok, "RF3 one faulty");
        assert_eq!(run(&[None, None, Some(Conflict)], 2), Ok, "RF3 one conflict");
        assert_eq!(run(&[None, Some(Unavailable), Some(NotReady)], 2), Unavailable, "RF3 two different errors");
        assert_eq!(run(&[None, Some(Conflict), Some(Conflict)], 2), Conflict, "RF3 two conflicts");
        assert_eq!(run(&[None, Some(Conflict), Some(Internal)], 2), Unavailable, "RF3 conflict+commit");
        assert_eq!(run(&[None, Some(Internal), Some(Internal)], 2), Unavailable, "RF3 two commit errors");
        assert_eq!(run(&[None, None, None, Some(Internal), Some(Internal)], 3), Ok, "RF5 two commit errors");
        assert_eq!(run(&[Some(Unavailable), Some(Unavailable), None], 2), Unavailable);
        assert_eq!(run(&[Some(Invalid), Some(Invalid), Some(Invalid)], 2), Invalid);
        assert_eq!(run(&[Some(Limited), Some(Limited), None], 2), Limited, "every replica over its tenant limit");
        // The rest of Thanos' rows (`TestReceiveQuorum`, handler_test.go of v0.42.5), by name.
        // An appender that cannot be had is an unknown error too; a sample too old is a conflict.
        let all = |o| [Some(o), Some(o), Some(o)];
        assert_eq!(run(&all(Internal), 2), Unavailable, "size 3 commit error with replication");
        assert_eq!(run(&all(Internal), 2), Unavailable, "size 3 appender error with replication");
        assert_eq!(run(&all(Conflict), 2), Conflict, "size 3 conflict with replication (also ErrTooOldSample)");
        assert_eq!(
            run(&[Some(Conflict), Some(Conflict), Some(Internal)], 2),
            Conflict,
            "two conflicts, one commit error"
        );
        assert_eq!(run(&[None, None, None], 2), Ok, "size 3 success with replication");
    }

    /// Thanos' rows over six nodes, where each series has its own replica set: with hashmod,
    /// a series whose hash lands on node `k` goes to nodes `k..k+rf` (mod 6), and the request's
    /// series cover every `k`. `nodes[n]` is node `n`'s outcome.
    fn six_nodes(nodes: [Option<Outcome>; 6], rf: u32, threshold: u32) -> Outcome {
        let mut q = Quorum::new(6, rf, threshold);
        for (n, o) in nodes.iter().enumerate() {
            let series: Vec<u32> = (0..6u32).filter(|&k| (0..rf).any(|r| (k + r) % 6 == n as u32)).collect();
            match o {
                None => q.record(&series, Ok(())),
                Some(k) => q.record(&series, Err(&f(*k))),
            }
        }
        assert!(q.done());
        q.verdict().outcome
    }

    #[test]
    fn thanos_rows_over_six_nodes() {
        use Outcome::*;
        assert_eq!(six_nodes([None; 6], 3, 2), Ok, "size 6 with replication 3");
        // A series on nodes 5, 0, 1 has one success, a commit error and a conflict: 503.
        let nodes = [Some(Internal), Some(Conflict), Some(Conflict), None, None, None];
        assert_eq!(six_nodes(nodes, 3, 2), Unavailable, "size 6 with replication 3 one commit and two conflict error");
        let nodes = [Some(Internal), Some(Internal), None, None, None, None];
        assert_eq!(six_nodes(nodes, 5, 3), Ok, "size 6 with replication 5 two commit errors");
    }

    #[test]
    fn decided_early_and_across_series() {
        let mut q = Quorum::new(2, 3, 2);
        q.record(&[0, 1], Ok(()));
        assert!(!q.done());
        q.record(&[0], Ok(()));
        assert!(!q.done(), "series 1 still needs a second success");
        q.record(&[1], Err(&f(Outcome::Conflict)));
        q.record(&[1], Err(&f(Outcome::Conflict)));
        assert!(q.done());
        let v = q.verdict();
        assert_eq!(v.outcome, Outcome::Conflict);
        assert_eq!(v.message, "Conflict");
        // One unavailable series makes the whole request retryable.
        let mut q = Quorum::new(2, 1, 1);
        q.record(&[0], Err(&f(Outcome::Conflict)));
        q.record(&[1], Err(&f(Outcome::Unavailable)));
        assert_eq!(q.verdict().outcome, Outcome::Unavailable);
        // Out of time: undecided series fail as unavailable once enough errors are known, else
        // as an internal error.
        let mut q = Quorum::new(1, 3, 2);
        q.record(&[0], Ok(()));
        assert_eq!(q.verdict().outcome, Outcome::Internal);
    }
}
