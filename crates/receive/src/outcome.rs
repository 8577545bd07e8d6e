//! What became of a write, as one closed type whatever the transport.
//!
//! The ingest service (decoding bounds, the TSDB write, the quorum of a replicated write)
//! produces an [`Outcome`] and a message; it knows nothing of HTTP or gRPC. Each transport maps
//! an outcome to its codes once, at its edge: `http::status_of` and `grpc::code_of` for
//! answers, `replicate::outcome_of` for what a peer's gRPC code means. Nothing is ever
//! recognised by its message text.

/// What became of a write (or of the part of it one node or one peer handled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Written (exact duplicates of stored samples included).
    Ok,
    /// Samples or label sets refused as Thanos refuses them: out of order, duplicate with
    /// another value, out of bounds, too far in the future, label sets Thanos rejects. The
    /// request's valid samples were written.
    Conflict,
    /// Malformed or unsupported input (bad snappy or protobuf, labels that are not UTF-8,
    /// native histograms, an invalid tenant or replica number).
    Invalid,
    /// Over one of the request's own bounds: sending it again will not help.
    TooLarge,
    /// Over a limit of the node (tenants per node).
    Limited,
    /// Refused at once because the writes in flight use the budget: retry shortly.
    Busy,
    /// The target is not ready: starting or shutting down.
    NotReady,
    /// The target is down, backing off, or failed in a way worth retrying (WAL, a tenant
    /// that failed to open).
    Unavailable,
    /// Anything else.
    Internal,
}

impl Outcome {
    /// Which of two outcomes a request made of both parts (e.g. two tenants of one gRPC
    /// write) reports: a retryable one first, so that a sender resends what failed (what was
    /// written comes back as exact duplicates), then the ones that need the request changed.
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.rank() > self.rank() { other } else { self }
    }

    fn rank(self) -> u8 {
        match self {
            Outcome::Unavailable => 8,
            Outcome::NotReady => 7,
            Outcome::Busy => 6,
            Outcome::Internal => 5,
            Outcome::Limited => 4,
            Outcome::TooLarge => 3,
            Outcome::Invalid => 2,
            Outcome::Conflict => 1,
            Outcome::Ok => 0,
        }
    }

    /// Whether the same write may succeed if sent again unchanged.
    pub fn retryable(self) -> bool {
        matches!(self, Outcome::Busy | Outcome::NotReady | Outcome::Unavailable | Outcome::Internal)
    }
}

/// An outcome and its message (empty when [`Outcome::Ok`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteStatus {
    /// The outcome.
    pub outcome: Outcome,
    /// What a client is told.
    pub message: String,
    /// When a retry may succeed, in seconds, if the refusal knows (HTTP `Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl WriteStatus {
    /// Success.
    pub fn ok() -> WriteStatus {
        WriteStatus { outcome: Outcome::Ok, message: String::new(), retry_after_s: None }
    }

    /// A failure.
    pub fn new(outcome: Outcome, message: impl Into<String>) -> WriteStatus {
        WriteStatus { outcome, message: message.into(), retry_after_s: None }
    }

    /// The same, saying that a retry may succeed after `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> WriteStatus {
        self.retry_after_s = Some(seconds);
        self
    }

    /// Whether the write succeeded.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_cause_is_the_one_to_act_on_first() {
        use Outcome::*;
        assert_eq!(Conflict.worst(Invalid), Invalid);
        assert_eq!(Invalid.worst(Unavailable), Unavailable);
        assert_eq!(NotReady.worst(Conflict), NotReady);
        assert_eq!(Internal.worst(Conflict), Internal, "what can be retried first");
        assert_eq!(Ok.worst(Internal), Internal);
        assert!(Busy.retryable() && !TooLarge.retryable() && !Conflict.retryable());
    }
}
