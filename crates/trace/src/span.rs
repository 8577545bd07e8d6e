//! Spans as the write path uses them: a [`Span`] is a started span (or nothing, when tracing
//! is off or the span is not sampled), ended when dropped; W3C `traceparent`/`tracestate` and
//! `baggage` are read from and written into HTTP headers and gRPC metadata, the propagators
//! Thanos installs by default.

use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

use http::HeaderMap;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracer;

use crate::sampler::FORCE_TRACING_ATTRIBUTE;

/// The header that forces a request to be traced (Thanos' `ForceTracingBaggageKey`).
pub const FORCE_TRACING_HEADER: &str = "X-Thanos-Force-Tracing";

/// The response header naming a sampled request's trace.
pub const TRACE_ID_HEADER: &str = "X-Thanos-Trace-Id";

/// The tracer, once tracing is configured.
pub(crate) static TRACER: OnceLock<SdkTracer> = OnceLock::new();

static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new()), Box::new(BaggagePropagator::new())])
});

/// Whether tracing is configured.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The request headers that carry trace context (what a server keeps of its metadata).
pub fn is_propagation_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("traceparent")
        || name.eq_ignore_ascii_case("tracestate")
        || name.eq_ignore_ascii_case("baggage")
        || name.eq_ignore_ascii_case(FORCE_TRACING_HEADER)
}

/// A started span, ended when dropped; a no-op when tracing is off.
#[derive(Debug, Default)]
pub struct Span {
    cx: Option<Context>,
}

impl Span {
    /// No span.
    pub fn none() -> Span {
        Span { cx: None }
    }

    fn start(name: Cow<'static, str>, kind: SpanKind, parent: &Context, attributes: Vec<KeyValue>) -> Span {
        let Some(tracer) = TRACER.get() else { return Span::none() };
        let span =
            tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(tracer, parent);
        Span { cx: Some(parent.with_span(span)) }
    }

    /// A server span continuing the trace of `headers` (a new trace without one); the
    /// `X-Thanos-Force-Tracing` header samples it. `attributes` are computed only when tracing
    /// is on.
    pub fn server(
        name: impl Into<Cow<'static, str>>,
        headers: &HeaderMap,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Span {
        if !enabled() {
            return Span::none();
        }
        let parent = PROPAGATOR.extract(&HeaderExtractor(headers));
        let mut attrs = attributes();
        if headers.get(FORCE_TRACING_HEADER).is_some_and(|v| !v.is_empty()) {
            attrs.push(KeyValue::new(FORCE_TRACING_ATTRIBUTE, "true"));
        }
        Span::start(name.into(), SpanKind::Server, &parent, attrs)
    }

    /// A new trace's first span (work that no request started, e.g. an upload).
    pub fn root(name: impl Into<Cow<'static, str>>, attributes: impl FnOnce() -> Vec<KeyValue>) -> Span {
        if !enabled() {
            return Span::none();
        }
        Span::start(name.into(), SpanKind::Internal, &Context::new(), attributes())
    }

    /// A child of this span (nothing when this is nothing).
    pub fn child(&self, name: impl Into<Cow<'static, str>>, attributes: impl FnOnce() -> Vec<KeyValue>) -> Span {
        match &self.cx {
            Some(cx) => Span::start(name.into(), SpanKind::Internal, cx, attributes()),
            None => Span::none(),
        }
    }

    /// A client span under this one, for a call whose metadata [`Span::inject`] fills.
    pub fn client(&self, name: impl Into<Cow<'static, str>>, attributes: impl FnOnce() -> Vec<KeyValue>) -> Span {
        match &self.cx {
            Some(cx) => Span::start(name.into(), SpanKind::Client, cx, attributes()),
            None => Span::none(),
        }
    }

    /// Whether this is a started span (tracing on), so that work done only to describe it can
    /// be skipped otherwise.
    pub fn is_recording(&self) -> bool {
        self.cx.is_some()
    }

    /// Sets an attribute.
    pub fn set(&self, kv: impl FnOnce() -> KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(kv());
        }
    }

    /// Marks the span failed with `message` (the attributes Thanos sets, and the status).
    pub fn fail(&self, message: &str) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("error", true));
            span.set_attribute(KeyValue::new("error.msg", message.to_string()));
            span.set_status(Status::error(message.to_string()));
        }
    }

    /// Writes this span's context into `headers` (HTTP headers or gRPC metadata).
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(cx) = &self.cx {
            PROPAGATOR.inject_context(cx, &mut HeaderInjector(headers));
        }
    }

    /// The trace ID (32 hex digits) when the span is sampled.
    pub fn sampled_trace_id(&self) -> Option<String> {
        let cx = self.cx.as_ref()?;
        let sc = cx.span().span_context().clone();
        (sc.is_sampled() && sc.is_valid()).then(|| sc.trace_id().to_string())
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}
