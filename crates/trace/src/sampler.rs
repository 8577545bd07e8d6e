//! Sampling as Thanos decides it: the configured root sampler behind a parent-based rule
//! (with Jaeger's `sampler_parent_config`), and the `thanos.force_tracing` attribute (from the
//! `X-Thanos-Force-Tracing` header) sampling a span whatever the rest says.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

use crate::config::ParentConfig;

/// The attribute that forces a span to be sampled (Thanos' `ForceTracingAttributeKey`).
pub const FORCE_TRACING_ATTRIBUTE: &str = "thanos.force_tracing";

/// The sampler every provider gets.
#[derive(Debug, Clone)]
pub struct Decide {
    /// Decides spans without a parent (or when `parent` says so).
    pub root: Sampler,
    /// `None`: the root decides every span; else a parent's decision is followed, except
    /// where the flags send sampled parents to the root sampler.
    pub parent: Option<ParentConfig>,
}

fn result(decision: SamplingDecision, trace_state: TraceState) -> SamplingResult {
    SamplingResult { decision, attributes: Vec::new(), trace_state }
}

impl ShouldSample for Decide {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context.filter(|cx| cx.has_active_span()).map(|cx| cx.span().span_context().clone());
        let trace_state = parent.as_ref().map(|p| p.trace_state().clone()).unwrap_or_default();
        if attributes.iter().any(|kv| kv.key.as_str() == FORCE_TRACING_ATTRIBUTE) {
            return result(SamplingDecision::RecordAndSample, trace_state);
        }
        let root = || self.root.should_sample(parent_context, trace_id, name, span_kind, attributes, links);
        let (Some(flags), Some(p)) = (self.parent, parent.filter(|p| p.is_valid())) else { return root() };
        let via_root = if p.is_remote() { flags.remote_parent_sampled } else { flags.local_parent_sampled };
        match (p.is_sampled(), via_root) {
            (true, true) => root(),
            (true, false) => result(SamplingDecision::RecordAndSample, trace_state),
            (false, _) => result(SamplingDecision::Drop, trace_state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};

    fn parent(sampled: bool, remote: bool) -> Context {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let sc = SpanContext::new(TraceId::from(7u128), SpanId::from(9u64), flags, remote, TraceState::default());
        Context::new().with_remote_span_context(sc)
    }

    fn decide(d: &Decide, cx: Option<&Context>, attrs: &[KeyValue]) -> SamplingDecision {
        d.should_sample(cx, TraceId::from(7u128), "s", &SpanKind::Internal, attrs, &[]).decision
    }

    #[test]
    fn parents_and_forcing() {
        let never = Decide { root: Sampler::AlwaysOff, parent: Some(ParentConfig::default()) };
        assert_eq!(decide(&never, None, &[]), SamplingDecision::Drop);
        assert_eq!(decide(&never, Some(&parent(true, true)), &[]), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&never, Some(&parent(false, true)), &[]), SamplingDecision::Drop);
        let forced = [KeyValue::new(FORCE_TRACING_ATTRIBUTE, "true")];
        assert_eq!(decide(&never, None, &forced), SamplingDecision::RecordAndSample);
        let via_root = Decide {
            root: Sampler::AlwaysOff,
            parent: Some(ParentConfig { remote_parent_sampled: true, local_parent_sampled: false }),
        };
        assert_eq!(decide(&via_root, Some(&parent(true, true)), &[]), SamplingDecision::Drop);
        let rootless = Decide { root: Sampler::AlwaysOff, parent: None };
        assert_eq!(decide(&rootless, Some(&parent(true, true)), &[]), SamplingDecision::Drop);
    }
}
