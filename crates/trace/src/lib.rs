//! Tracing as Thanos configures it (`--tracing.config` / `--tracing.config-file`): the YAML
//! ([`config`]), an OpenTelemetry SDK provider with Thanos' samplers ([`sampler`]) exporting
//! in batches over OTLP (gRPC or HTTP) or to Jaeger ([`jaeger`]), and the [`Span`]s the write
//! path, replication and uploads open, propagated in W3C trace-context headers so that traces
//! cross Go Thanos and ringest nodes alike.

pub mod config;
mod export;
mod http_client;
pub mod jaeger;
mod sampler;
mod span;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use tokio::runtime::Handle;

pub use config::{ConfigError, TracingConfig, parse};
pub use opentelemetry::KeyValue;
pub use span::{FORCE_TRACING_HEADER, Span, TRACE_ID_HEADER, enabled, is_propagation_header};

use config::{Exporter, JaegerSampler, JaegerTarget, OtlpSampler};
use jaeger::{JaegerExporter, Sink};
use sampler::Decide;

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `tls_config`.
    #[error("tracing tls_config: {0}")]
    Tls(#[from] ringest_tls::TlsError),
    /// The exporter could not be built.
    #[error("{0}")]
    Exporter(String),
    /// Tracing is already running in this process.
    #[error("tracing was already started")]
    AlreadyStarted,
}

/// A running tracer provider; [`Tracing::shutdown`] exports what is left.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// How long the final export may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl Tracing {
    /// Starts exporting spans as `config` says; exports run on `handle`'s runtime.
    pub fn start(config: &TracingConfig, handle: &Handle) -> Result<Tracing, TraceError> {
        if span::enabled() {
            return Err(TraceError::AlreadyStarted);
        }
        let provider = match &config.exporter {
            Exporter::Otlp(c) => {
                let mut resource = Resource::builder_empty();
                if !c.service_name.is_empty() {
                    resource = resource.with_service_name(c.service_name.clone());
                }
                let attrs = c.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
                let (root, parent) = match c.sampler {
                    OtlpSampler::Always => (Sampler::AlwaysOn, None),
                    OtlpSampler::Never => (Sampler::AlwaysOff, None),
                    OtlpSampler::Ratio(r) => (Sampler::TraceIdRatioBased(r), None),
                    OtlpSampler::ParentAlways => (Sampler::AlwaysOn, Some(Default::default())),
                    OtlpSampler::ParentNever => (Sampler::AlwaysOff, Some(Default::default())),
                    OtlpSampler::ParentRatio(r) => (Sampler::TraceIdRatioBased(r), Some(Default::default())),
                };
                let processor = BatchSpanProcessor::builder(export::otlp(c, handle)?).build();
                SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource.with_attributes(attrs).build())
                    .with_sampler(Decide { root, parent })
                    .build()
            }
            Exporter::Jaeger(c) => {
                let service = if c.service_name.is_empty() { "ringest".to_string() } else { c.service_name.clone() };
                let tags: Vec<KeyValue> = c.tags.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
                let resource =
                    Resource::builder_empty().with_service_name(service.clone()).with_attributes(tags.clone());
                let client = Arc::new(http_client::Client::new(None, Duration::from_secs(10)));
                let root = match &c.sampler {
                    JaegerSampler::Const(true) => Sampler::AlwaysOn,
                    JaegerSampler::Const(false) => Sampler::AlwaysOff,
                    JaegerSampler::Probabilistic(r) => Sampler::TraceIdRatioBased(*r),
                    JaegerSampler::Remote { url, refresh, initial_rate } => {
                        let _entered = handle.enter();
                        let initial = Sampler::TraceIdRatioBased(*initial_rate);
                        Sampler::jaeger_remote(
                            opentelemetry_sdk::runtime::Tokio,
                            client.as_ref().clone(),
                            initial,
                            service.clone(),
                        )
                        .with_endpoint(url.clone())
                        .with_update_interval(*refresh)
                        .build()
                        .map_err(|e| TraceError::Exporter(format!("jaeger: remote sampler: {e}")))?
                    }
                };
                let sink = match &c.target {
                    JaegerTarget::Agent { host, port } => {
                        let socket = UdpSocket::bind(("0.0.0.0", 0))
                            .and_then(|s| s.connect((host.as_str(), *port)).map(|()| s))
                            .map_err(|e| TraceError::Exporter(format!("jaeger: agent {host}:{port}: {e}")))?;
                        Sink::Agent(socket)
                    }
                    JaegerTarget::Collector { url, user, password } => {
                        let auth = (!user.is_empty() || !password.is_empty()).then(|| basic_auth(user, password));
                        Sink::Collector { url: url.clone(), auth, client: client.clone() }
                    }
                };
                let exporter = export::OnRuntime::new(JaegerExporter::new(sink, service, tags), handle.clone());
                let mut batch = BatchConfigBuilder::default();
                if c.max_queue_size > 0 {
                    batch = batch.with_max_queue_size(c.max_queue_size);
                }
                if !c.flush_interval.is_zero() {
                    batch = batch.with_scheduled_delay(c.flush_interval);
                }
                let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch.build()).build();
                SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource.build())
                    .with_sampler(Decide { root, parent: Some(c.parent) })
                    .build()
            }
        };
        let tracer = provider.tracer("thanos");
        span::TRACER.set(tracer).map_err(|_| TraceError::AlreadyStarted)?;
        Ok(Tracing { provider })
    }

    /// Exports the spans still queued and stops (at most a few seconds); failures are logged.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::error!(err = %e, "OpenTelemetry ErrorHandler");
        }
    }
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}
