//! What a write may cost: bounds on one request's decoded form, and one budget for every write
//! in flight, over HTTP and gRPC together.
//!
//! A request is admitted (one of `--ringest.write.max-inflight-requests`) before its body is
//! read, then charged, each before it is allocated: over HTTP what its connection holds while
//! the body arrives ([`crate::http::serve::CONNECTION_COST`]) and the memory its body makes
//! resident ([`crate::http::body`]), over gRPC the message, then the decompressed size from the
//! snappy header, and the decoded form (series, labels and samples counted by a pass that
//! allocates nothing). A charge that would take the bytes in flight past the part of
//! `--ringest.write.max-inflight-bytes` writes may be charged ([`WriteLimits::chargeable_bytes`])
//! is refused at once with "busy" (HTTP 503 with `Retry-After`, gRPC `Unavailable`): there is
//! no queue. A request over one of its own bounds is refused as too large (413, gRPC
//! `ResourceExhausted`), naming the bound and its flag.
//! Everything charged is released when the request's answer is sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::outcome::{Outcome, WriteStatus};
use crate::remote_write::{DecodeError, Shape, outline, shape_of};

/// One request's bounds and the in-flight budget (the `--ringest.write.*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Most bytes of a request body, compressed and decompressed.
    pub max_decoded_bytes: usize,
    /// Most series in one request.
    pub max_series: u64,
    /// Most labels in one request (all series together).
    pub max_labels: u64,
    /// Most samples in one request.
    pub max_samples: u64,
    /// Most write requests in flight (HTTP and gRPC).
    pub max_inflight_requests: usize,
    /// Most bytes charged by the writes in flight.
    pub max_inflight_bytes: usize,
    /// Writes decompressing to more bytes than this run on the bulk lane ([`crate::lane`]).
    pub bulk_bytes: u64,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            max_decoded_bytes: 32 << 20,
            max_series: 200_000,
            max_labels: 4_000_000,
            max_samples: 1_000_000,
            max_inflight_requests: 256,
            max_inflight_bytes: 128 << 20,
            bulk_bytes: 4 << 20,
        }
    }
}

/// A per-request bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Bytes of the body, compressed or decompressed.
    DecodedBytes,
    /// Series.
    Series,
    /// Labels.
    Labels,
    /// Samples.
    Samples,
    /// Bytes of a remote write 2.0 request translated into 1.0 (its labels written out in
    /// full where 2.0 names them by reference), under `--ringest.write.max-decoded-bytes`.
    TranslatedBytes,
}

impl Bound {
    fn at_least(self) -> &'static str {
        match self {
            Bound::DecodedBytes => "it has",
            Bound::TranslatedBytes => "its remote write 1.0 form has at least",
            _ => "it has at least",
        }
    }

    /// The flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Bound::DecodedBytes | Bound::TranslatedBytes => "ringest.write.max-decoded-bytes",
            Bound::Series => "ringest.write.max-series",
            Bound::Labels => "ringest.write.max-labels",
            Bound::Samples => "ringest.write.max-samples",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Bound::DecodedBytes | Bound::TranslatedBytes => "bytes",
            Bound::Series => "series",
            Bound::Labels => "labels",
            Bound::Samples => "samples",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Bound::DecodedBytes => "decoded_bytes",
            Bound::TranslatedBytes => "translated_bytes",
            Bound::Series => "series",
            Bound::Labels => "labels",
            Bound::Samples => "samples",
        }
    }
}

/// What the budget is short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Requests in flight.
    Requests,
    /// Bytes in flight.
    Bytes,
}

/// Why a write was refused before it was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is over one of its bounds: sending it again will not help.
    #[error("write request too large: {} {got} {}, over the limit of {limit} (--{})", .bound.at_least(), .bound.unit(), .bound.flag())]
    TooLarge {
        /// The bound.
        bound: Bound,
        /// The request's count (for counts: a lower bound, as counting stops past the limit).
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// The request alone needs more bytes than the writes in flight may be charged together.
    #[error(
        "write request too large: it needs {need} bytes in memory, more than the {limit} bytes writes may be \
         charged of the in-flight budget of {budget} bytes (--ringest.write.max-inflight-bytes)"
    )]
    OverBudget {
        /// Bytes the request needs.
        need: u64,
        /// What the writes in flight may be charged together ([`WriteLimits::chargeable_bytes`]).
        limit: u64,
        /// The budget.
        budget: u64,
    },
    /// The writes in flight use the budget: try again shortly.
    #[error("server busy: the writes in flight already use the limit of {limit} {} (--{}); retry later", .what.unit(), .what.flag())]
    Busy {
        /// What ran out.
        what: Resource,
        /// Its limit.
        limit: u64,
    },
}

impl Resource {
    fn unit(self) -> &'static str {
        match self {
            Resource::Requests => "requests",
            Resource::Bytes => "bytes",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Resource::Requests => "ringest.write.max-inflight-requests",
            Resource::Bytes => "ringest.write.max-inflight-bytes",
        }
    }
}

impl Refusal {
    /// What became of the write: too large for its own bounds, or the server busy.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::TooLarge { .. } | Refusal::OverBudget { .. } => Outcome::TooLarge,
            Refusal::Busy { .. } => Outcome::Busy,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Refusal::TooLarge { bound, .. } => bound.reason(),
            Refusal::OverBudget { .. } => "over_budget",
            Refusal::Busy { what: Resource::Requests, .. } => "inflight_requests",
            Refusal::Busy { what: Resource::Bytes, .. } => "inflight_bytes",
        }
    }
}

/// Checks `got` against a bound.
pub fn check(bound: Bound, got: u64, limit: u64) -> Result<(), Refusal> {
    if got > limit { Err(Refusal::TooLarge { bound, got, limit }) } else { Ok(()) }
}

impl WriteLimits {
    /// What the writes in flight may be charged together: the budget less a sixteenth, held
    /// back for the memory no write is charged for (the connections of requests refused or not
    /// admitted yet, the allocator's rounding). With requests charged up to the whole budget,
    /// 200 concurrent 8 MiB writes grew the peak RSS by the whole budget (124-130 MiB at
    /// 128 MiB, 64-66 MiB at 64 MiB).
    pub fn chargeable_bytes(&self) -> usize {
        self.max_inflight_bytes - self.max_inflight_bytes / 16
    }

    /// Checks a body's size (compressed or decompressed) against `--ringest.write.max-decoded-bytes`.
    pub fn check_body(&self, bytes: u64) -> Result<(), Refusal> {
        check(Bound::DecodedBytes, bytes, self.max_decoded_bytes as u64)
    }

    /// The most a request may hold, for [`Shape`] counting.
    pub fn max_shape(&self) -> Shape {
        Shape { series: self.max_series, labels: self.max_labels, samples: self.max_samples, tuples: u64::MAX }
    }

    /// Checks a request's counts against the bounds.
    pub fn check_shape(&self, shape: &Shape) -> Result<(), Refusal> {
        check(Bound::Series, shape.series, self.max_series)?;
        check(Bound::Labels, shape.labels, self.max_labels)?;
        check(Bound::Samples, shape.samples, self.max_samples)
    }

    /// Charges `permit` for the decoded form of the request in `buf` (a `thanos.WriteRequest`
    /// when `thanos`) before it is decoded. A small request is charged the most any request of
    /// its size could take, without reading it; a medium one its
    /// [`Outline`](crate::remote_write::Outline)'s bound, which costs a look at each series'
    /// length; a larger one is counted exactly ([`Shape`]) and refused if over a bound. Returns the charge to settle after decoding, and the exact
    /// shape when it was counted (to size the decoded vectors with).
    pub fn charge_decoded_form(
        &self,
        permit: &Permit,
        buf: &[u8],
        thanos: bool,
    ) -> Result<(FormCharge, Option<Shape>), PlanError> {
        // Whatever it holds, a request decodes to at most this (each element takes 2 bytes or
        // more), and has at most this many series: a small one is charged it without a look,
        // when the budget has room for it (else it is looked at, and charged less).
        let worst = Shape::decoded_form_bytes_at_most(buf.len() as u64, thanos);
        if worst <= QUICK_CHARGE_MAX && buf.len() as u64 / 2 <= self.max_series && permit.charge(worst as usize).is_ok()
        {
            return Ok((FormCharge { charged: worst, exact: false }, None));
        }
        let o = outline(buf, thanos, self.max_series)?;
        check(Bound::Series, o.series, self.max_series)?;
        let bound = o.decoded_form_bound();
        if bound <= QUICK_CHARGE_MAX {
            permit.charge(bound as usize)?;
            return Ok((FormCharge { charged: bound, exact: false }, None));
        }
        let max = self.max_shape();
        let shape = shape_of(buf, thanos, &max)?;
        self.check_shape(&shape)?;
        let bytes = shape.decoded_form_bytes();
        permit.charge(usize::try_from(bytes).unwrap_or(usize::MAX))?;
        Ok((FormCharge { charged: bytes, exact: true }, Some(shape)))
    }
}

/// Largest bound charged as it is, before a request is decoded: a request whose bound is larger
/// is counted exactly first. (Prometheus' requests, of at most a few thousand samples, stay
/// under it, most without being read twice.)
pub const QUICK_CHARGE_MAX: u64 = 8 << 20;

/// What a request's decoded form was charged before it was decoded.
#[derive(Debug)]
#[must_use = "settle the charge once the request is decoded"]
pub struct FormCharge {
    charged: u64,
    /// Whether the request was counted exactly (its bounds are checked already).
    exact: bool,
}

impl FormCharge {
    /// Once the request is decoded into `got`: checks the bounds a quick charge did not check
    /// yet, and gives back what it charged over the decoded form's real size.
    pub fn settle(self, limits: &WriteLimits, permit: &Permit, got: &Shape) -> Result<(), Refusal> {
        if !self.exact {
            limits.check_shape(got)?;
        }
        permit.refund(usize::try_from(self.charged.saturating_sub(got.decoded_form_bytes())).unwrap_or(0));
        Ok(())
    }
}

/// Why a decoded form could not be charged.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Refused by the bounds or the budget.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

#[derive(Debug, Clone)]
struct BudgetMetrics {
    requests: IntGauge,
    bytes: IntGauge,
    refused: IntCounterVec,
}

/// The budget of every write in flight, shared by the HTTP and gRPC write handlers.
#[derive(Debug)]
pub struct Budget {
    limits: WriteLimits,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    metrics: BudgetMetrics,
}

impl Budget {
    /// A budget with `limits`, its metrics registered in `registry`.
    pub fn new(limits: WriteLimits, registry: &Registry) -> prometheus::Result<Arc<Budget>> {
        let requests = IntGauge::with_opts(Opts::new(
            "ringest_write_inflight_requests",
            "Write requests (HTTP and gRPC) admitted and not answered yet.",
        ))?;
        let bytes = IntGauge::with_opts(Opts::new(
            "ringest_write_inflight_bytes",
            "Bytes charged by the write requests in flight: bodies, decompressed bodies and decoded forms.",
        ))?;
        let refused = IntCounterVec::new(
            Opts::new(
                "ringest_write_refused_total",
                "Write requests refused before decoding, by reason: a per-request bound (decoded_bytes, series, \
                 labels, samples, over_budget) or a busy server (inflight_requests, inflight_bytes).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        for r in [
            "decoded_bytes",
            "translated_bytes",
            "series",
            "labels",
            "samples",
            "over_budget",
            "inflight_requests",
            "inflight_bytes",
        ] {
            refused.with_label_values(&[r]);
        }
        Ok(Arc::new(Budget {
            limits,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            metrics: BudgetMetrics { requests, bytes, refused },
        }))
    }

    /// The limits.
    pub fn limits(&self) -> &WriteLimits {
        &self.limits
    }

    /// A refusal as the write's status, counted (every refusal goes through here once, where
    /// it is answered).
    pub fn refuse(&self, r: Refusal) -> WriteStatus {
        self.metrics.refused.with_label_values(&[r.reason()]).inc();
        WriteStatus::new(r.outcome(), r.to_string())
    }

    /// Admits one request, or refuses at once when the requests in flight are at the limit.
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Refusal> {
        let max = self.limits.max_inflight_requests;
        self.requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map_err(|_| Refusal::Busy { what: Resource::Requests, limit: max as u64 })?;
        self.metrics.requests.inc();
        Ok(Permit { budget: self.clone(), bytes: AtomicUsize::new(0) })
    }
}

/// One admitted request; what it charged is released when it is dropped.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    bytes: AtomicUsize,
}

impl Permit {
    /// Charges `n` more bytes to the budget, before they are allocated.
    pub fn charge(&self, n: usize) -> Result<(), Refusal> {
        let b = &self.budget;
        let max = b.limits.chargeable_bytes();
        let mine = self.bytes.load(Ordering::Acquire).saturating_add(n);
        if mine > max {
            let budget = b.limits.max_inflight_bytes as u64;
            return Err(Refusal::OverBudget { need: mine as u64, limit: max as u64, budget });
        }
        b.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(n).filter(|&total| total <= max))
            .map_err(|_| Refusal::Busy { what: Resource::Bytes, limit: b.limits.max_inflight_bytes as u64 })?;
        self.bytes.fetch_add(n, Ordering::AcqRel);
        b.metrics.bytes.add(n as i64);
        Ok(())
    }

    /// Charges a body of `n` bytes (as received, or decompressed), refusing one over
    /// `--ringest.write.max-decoded-bytes` first.
    pub fn charge_body(&self, n: usize) -> Result<(), Refusal> {
        self.budget.limits.check_body(n as u64)?;
        self.charge(n)
    }

    /// Gives back `n` of the bytes charged (at most all of them).
    pub fn refund(&self, n: usize) {
        let n = n.min(self.bytes.load(Ordering::Acquire));
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(n, Ordering::AcqRel);
        self.budget.metrics.bytes.sub(n as i64);
    }

    /// Bytes charged so far.
    pub fn charged(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let n = *self.bytes.get_mut();
        let b = &self.budget;
        b.bytes.fetch_sub(n, Ordering::AcqRel);
        b.requests.fetch_sub(1, Ordering::AcqRel);
        b.metrics.bytes.sub(n as i64);
        b.metrics.requests.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(requests: usize, bytes: usize) -> Arc<Budget> {
        let limits = WriteLimits { max_inflight_requests: requests, max_inflight_bytes: bytes, ..Default::default() };
        Budget::new(limits, &Registry::new()).unwrap()
    }

    #[test]
    fn requests_over_the_limit_are_refused_and_released_on_drop() {
        let b = budget(2, 1000);
        let p1 = b.admit().unwrap();
        let _p2 = b.admit().unwrap();
        let e = b.admit().unwrap_err();
        assert_eq!(e.outcome(), Outcome::Busy);
        assert!(e.to_string().contains("--ringest.write.max-inflight-requests"), "{e}");
        drop(p1);
        b.admit().unwrap();
    }

    #[test]
    fn bytes_are_charged_all_or_nothing_and_released() {
        // A sixteenth of the budget is held back: writes may be charged 1500 of 1600 bytes.
        let b = budget(10, 1600);
        assert_eq!(b.limits().chargeable_bytes(), 1500);
        let p1 = b.admit().unwrap();
        p1.charge(900).unwrap();
        let p2 = b.admit().unwrap();
        let e = p2.charge(601).unwrap_err();
        assert_eq!(e, Refusal::Busy { what: Resource::Bytes, limit: 1600 });
        assert_eq!(p2.charged(), 0, "a refused charge takes nothing");
        p2.charge(600).unwrap();
        assert_eq!(b.bytes.load(Ordering::Acquire), 1500);
        drop(p1);
        assert_eq!(b.bytes.load(Ordering::Acquire), 600);
        drop(p2);
        assert_eq!(b.bytes.load(Ordering::Acquire), 0);
        assert_eq!(b.requests.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_request_larger_than_the_whole_budget_is_too_large_not_busy() {
        let b = budget(10, 1600);
        let p = b.admit().unwrap();
        p.charge(1000).unwrap();
        let e = p.charge(501).unwrap_err();
        assert_eq!(e, Refusal::OverBudget { need: 1501, limit: 1500, budget: 1600 });
        assert_eq!(
            e.to_string(),
            "write request too large: it needs 1501 bytes in memory, more than the 1500 bytes writes may be charged of \
             the in-flight budget of 1600 bytes (--ringest.write.max-inflight-bytes)"
        );
        assert_eq!(e.outcome(), Outcome::TooLarge);
    }

    /// A small request is charged its outline's bound, then refunded down to its decoded form;
    /// the bounds the outline could not check are checked when the charge is settled.
    #[test]
    fn a_quick_charge_is_settled_to_the_real_size() {
        use prost::Message;
        let series = |i: usize| ringest_proto::prometheus::TimeSeries {
            labels: vec![ringest_proto::prometheus::Label { name: "a".into(), value: i.to_string() }],
            samples: vec![ringest_proto::prometheus::Sample { value: 1.0, timestamp: 5 }; 3],
            ..Default::default()
        };
        let buf =
            ringest_proto::prometheus::WriteRequest { timeseries: (0..10).map(series).collect(), metadata: vec![] }
                .encode_to_vec();
        let b = budget(10, 1 << 20);
        let p = b.admit().unwrap();
        let limits = WriteLimits::default();
        let (charge, shape) = limits.charge_decoded_form(&p, &buf, false).unwrap();
        assert!(shape.is_none(), "small: not counted exactly");
        let got = Shape { series: 10, labels: 10, samples: 30, tuples: 0 };
        assert!(p.charged() as u64 > got.decoded_form_bytes(), "the bound is above the real size");
        charge.settle(&limits, &p, &got).unwrap();
        assert_eq!(p.charged() as u64, got.decoded_form_bytes());

        let tight = WriteLimits { max_samples: 29, ..limits };
        let (charge, _) = tight.charge_decoded_form(&p, &buf, false).unwrap();
        let e = charge.settle(&tight, &p, &got).unwrap_err();
        assert!(matches!(e, Refusal::TooLarge { bound: Bound::Samples, got: 30, limit: 29 }), "{e:?}");
        let few = WriteLimits { max_series: 9, ..limits };
        let e = few.charge_decoded_form(&p, &buf, false).unwrap_err();
        assert!(matches!(e, PlanError::Refused(Refusal::TooLarge { bound: Bound::Series, got: 10, .. })), "{e:?}");
    }

    #[test]
    fn messages_name_the_bound_and_its_flag() {
        let e = check(Bound::Series, 200_001, 200_000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "write request too large: it has at least 200001 series, over the limit of 200000 (--ringest.write.max-series)"
        );
        assert!(check(Bound::Samples, 5, 5).is_ok());
    }
}
