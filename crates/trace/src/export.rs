//! The exporters behind a provider: OTLP over gRPC (tonic, TLS through ringest-tls) or HTTP
//! (protobuf bodies, this crate's client), and Jaeger; each run on the server's tokio runtime
//! ([`OnRuntime`]), since the SDK's batch processor exports from a thread of its own.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use opentelemetry_otlp::{Compression, Protocol, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::Handle;

use crate::TraceError;
use crate::config::{ClientType, Otlp, Retry, Tls};
use crate::http_client::Client;

/// Runs `E`'s exports on a tokio runtime and logs their failures once each, as Thanos'
/// OpenTelemetry error handler does.
#[derive(Debug)]
pub struct OnRuntime<E> {
    inner: Arc<E>,
    handle: Handle,
}

impl<E> OnRuntime<E> {
    /// `inner`, exporting on `handle`.
    pub fn new(inner: E, handle: Handle) -> OnRuntime<E> {
        OnRuntime { inner: Arc::new(inner), handle }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        let r = match self.handle.spawn(async move { inner.export(batch).await }).await {
            Ok(r) => r,
            Err(e) => Err(OTelSdkError::InternalFailure(format!("export task: {e}"))),
        };
        if let Err(e) = &r {
            tracing::error!(err = %e, "OpenTelemetry ErrorHandler");
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// `tls_config` as ringest-tls' client options.
pub fn tls_options(t: &Tls) -> ringest_tls::ClientOptions {
    ringest_tls::ClientOptions {
        cert: t.cert_file.clone(),
        key: t.key_file.clone(),
        ca: t.ca_file.clone(),
        server_name: t.server_name.clone(),
        skip_verify: t.insecure_skip_verify,
        min_version: String::new(),
    }
}

/// Go's exponential backoff, as a number of retries whose delays fit in `max_elapsed`.
fn retry_policy(r: Option<Retry>) -> RetryPolicy {
    let Some(r) = r else { return RetryPolicy::default() };
    let (mut delay, mut total, mut retries) = (r.initial, Duration::ZERO, 0);
    while total + delay <= r.max_elapsed && retries < 64 {
        total += delay;
        retries += 1;
        delay = (delay * 2).min(r.max);
    }
    RetryPolicy::default()
        .with_max_retries(retries)
        .with_initial_delay(r.initial)
        .with_max_delay(r.max)
        .with_max_jitter(r.initial / 2)
}

/// The OTLP exporter of `c`, built on `handle`'s runtime.
pub fn otlp(c: &Otlp, handle: &Handle) -> Result<OnRuntime<opentelemetry_otlp::SpanExporter>, TraceError> {
    let _entered = handle.enter();
    let failed = |e: &dyn std::fmt::Display| TraceError::Exporter(format!("otlp: {e}"));
    let tls = if c.insecure {
        None
    } else {
        let alpn: &[&[u8]] = if c.client_type == ClientType::Grpc { &[b"h2"] } else { &[b"http/1.1"] };
        Some(ringest_tls::Connector::new(&tls_options(&c.tls), alpn)?)
    };
    let exporter = match c.client_type {
        ClientType::Grpc => {
            let endpoint = if c.endpoint.is_empty() { "localhost:4317" } else { c.endpoint.as_str() };
            let url = format!("http://{endpoint}");
            let ep = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| failed(&format!("endpoint {endpoint:?}: {e}")))?
                .connect_timeout(c.timeout)
                .timeout(c.timeout);
            let channel = match tls {
                None => ep.connect_lazy(),
                Some(connector) => ep.connect_with_connector_lazy(TlsConnect { connector }),
            };
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &c.headers {
                let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|e| failed(&format!("header {k:?}: {e}")))?;
                let value = v.parse().map_err(|e| failed(&format!("header {k:?}: {e}")))?;
                metadata.insert(key, value);
            }
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .with_timeout(c.timeout)
                .with_metadata(metadata)
                .with_retry_policy(retry_policy(c.retry));
            if c.gzip {
                b = b.with_compression(Compression::Gzip);
            }
            b.build().map_err(|e| failed(&e))?
        }
        ClientType::Http => {
            let endpoint = if c.endpoint.is_empty() { "localhost:4318" } else { c.endpoint.as_str() };
            let path = if c.url_path.is_empty() { "/v1/traces" } else { c.url_path.as_str() };
            let scheme = if c.insecure { "http" } else { "https" };
            let headers: HashMap<String, String> = c.headers.clone().into_iter().collect();
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("{scheme}://{endpoint}{path}"))
                .with_http_client(Client::new(tls, c.timeout))
                .with_timeout(c.timeout)
                .with_headers(headers)
                .with_retry_policy(retry_policy(c.retry));
            if c.gzip {
                b = b.with_compression(Compression::Gzip);
            }
            b.build().map_err(|e| failed(&e))?
        }
    };
    Ok(OnRuntime::new(exporter, handle.clone()))
}

/// tonic's connector for a TLS collector: TCP, then ringest-tls with ALPN `h2`.
#[derive(Clone)]
struct TlsConnect {
    connector: ringest_tls::Connector,
}

/// A TLS connection to the collector.
type Connected = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for TlsConnect {
    type Response = Connected;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Connected, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']).to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(connector.connect(&host, tcp).await?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_fit_the_elapsed_time() {
        let r = Retry {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(60),
        };
        // 5 + 10 + 20 = 35 s; one more (30 s) would pass 60 s.
        let p = format!("{:?}", retry_policy(Some(r)));
        assert!(p.contains("max_retries: 3"), "{p}");
    }
}
